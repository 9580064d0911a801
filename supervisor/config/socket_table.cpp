// The [socket.NAME] tables: listen addresses and socket options.
#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "config/loader.hpp"

namespace fdsup::config::detail {

void Loader::loadSocket(const std::string &name, const toml::table &table, const Location &at,
                        const FileContext &file)
{
    SocketDefinition def;
    def.config.name = name;
    def.config.where = at;
    auto &o = def.config.options;
    bool listenSeen = false;
    bool listenOk = true;
    std::map<std::string, Location, std::less<>> keyAt;

    auto addListen = [&](const std::string &text, const Location &where, const Entry &e) {
        if (text.find('\0') != std::string::npos) {
            error(where, "'listen' must not contain a NUL character");
            listenOk = false;
            return;
        }
        auto address = parseAddress(resolveUnixAddress(text, file));
        if (!address) {
            error(where, squote(e.key) + ": " + address.error().message);
            listenOk = false;
            return;
        }
        def.config.listen.push_back(std::move(*address));
        def.listenAt.push_back(where);
    };
    auto flag = [&](std::optional<bool> &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getBool(e)) {
                field = *v;
            }
        };
    };
    auto bufferSize = [&](std::optional<int> &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getSize(e, 0, static_cast<std::uint64_t>(kMaxInt))) {
                field = static_cast<int>(*v);
            }
        };
    };

    std::vector<KeyHandler> handlers{
        {"listen",
         [&](const Entry &e) {
             listenSeen = true;
             if (const auto *s = e.value->as_string()) {
                 addListen(s->get(), e.valueAt, e);
             } else if (const auto *array = e.value->as_array()) {
                 if (array->empty()) {
                     error(e.valueAt, "'listen' must not be an empty array");
                     listenOk = false;
                 }
                 for (const auto &element : *array) {
                     const Location where = locate(element.source(), e.valueAt);
                     if (const auto *text = element.as_string()) {
                         addListen(text->get(), where, e);
                     } else {
                         error(where, "'listen' must be an array of strings, but an element is " +
                                          std::string(typeName(element.type())));
                         listenOk = false;
                     }
                 }
             } else {
                 wrongType(e, "an address string or an array of them");
                 listenOk = false;
             }
         }},
        // Ranges that depend on the transport or the kernel are checked by
        // validateSocketOptions() below; here only what the type can hold.
        {"backlog",
         [&](const Entry &e) {
             if (auto v = getInt(e, 0, kMaxInt)) {
                 o.backlog = static_cast<int>(*v);
             }
         }},
        {"reuse_address", flag(o.reuseAddress)},
        {"reuse_port", flag(o.reusePort)},
        {"ipv6_only", flag(o.ipv6Only)},
        {"free_bind", flag(o.freeBind)},
        {"transparent", flag(o.transparent)},
        {"defer_accept",
         [&](const Entry &e) {
             if (auto v = getSeconds(e, 0, kMaxInt)) {
                 o.deferAccept = *v;
             }
         }},
        {"fastopen",
         [&](const Entry &e) {
             if (auto v = getInt(e, 0, kMaxInt)) {
                 o.fastOpen = static_cast<int>(*v);
             }
         }},
        {"keepalive", flag(o.keepAlive)},
        {"keepalive_time",
         [&](const Entry &e) {
             if (auto v = getSeconds(e, 0, kMaxInt)) {
                 o.keepAliveTime = *v;
             }
         }},
        {"keepalive_interval",
         [&](const Entry &e) {
             if (auto v = getSeconds(e, 0, kMaxInt)) {
                 o.keepAliveInterval = *v;
             }
         }},
        {"keepalive_count",
         [&](const Entry &e) {
             if (auto v = getInt(e, 0, kMaxInt)) {
                 o.keepAliveCount = static_cast<int>(*v);
             }
         }},
        {"nodelay", flag(o.noDelay)},
        {"send_buffer", bufferSize(o.sendBuffer)},
        {"receive_buffer", bufferSize(o.receiveBuffer)},
        {"bind_to_device",
         [&](const Entry &e) {
             if (auto v = getString(e)) {
                 o.bindToDevice = *v;
             }
         }},
        {"mode",
         [&](const Entry &e) {
             if (auto v = getOctal(e, 0777)) {
                 o.mode = *v;
             }
         }},
        {"owner",
         [&](const Entry &e) {
             if (e.value->is_integer()) {
                 if (auto v = getInt(e, 0, kMaxU32 - 1)) {
                     o.owner = static_cast<uid_t>(*v);
                 }
             } else if (auto v = getString(e)) {
                 if (auto uid = resolveId(e.key, *v, e.valueAt, false)) {
                     o.owner = *uid;
                 }
             }
         }},
        {"group",
         [&](const Entry &e) {
             if (e.value->is_integer()) {
                 if (auto v = getInt(e, 0, kMaxU32 - 1)) {
                     o.group = static_cast<gid_t>(*v);
                 }
             } else if (auto v = getString(e)) {
                 if (auto gid = resolveId(e.key, *v, e.valueAt, true)) {
                     o.group = *gid;
                 }
             }
         }},
        {"remove_stale",
         [&](const Entry &e) {
             if (auto v = getBool(e)) {
                 o.removeStale = *v;
             }
         }},
    };
    // Remember where each key was written so that validateSocketOptions()'s
    // messages, which name the key, can point at it.
    for (auto &handler : handlers) {
        handler.handle = [&keyAt, inner = std::move(handler.handle)](const Entry &e) {
            keyAt.emplace(std::string(e.key), e.keyAt);
            inner(e);
        };
    }
    walk(table, "in [socket." + name + "]", at, handlers);

    if (!listenSeen) {
        error(at, "missing required key 'listen' in [socket." + name + "]");
        listenOk = false;
    }
    std::vector<std::string> seen;
    for (const auto &address : def.config.listen) {
        for (auto &message : validateSocketOptions(address, o)) {
            if (std::find(seen.begin(), seen.end(), message) != seen.end()) {
                continue;
            }
            seen.push_back(message);
            Location where = at;
            // The messages name the offending key first: "'nodelay' applies ...".
            if (message.starts_with('\'')) {
                const auto end = message.find('\'', 1);
                if (end != std::string::npos) {
                    if (auto it = keyAt.find(std::string_view(message).substr(1, end - 1));
                        it != keyAt.end()) {
                        where = it->second;
                    }
                }
            }
            error(where, message);
        }
    }
    def.complete = listenOk;

    for (const auto &other : sockets_) {
        if (other.config.name == name) {
            error(at, "[socket." + name + "] is already defined at " + other.config.where.str());
            return;
        }
    }
    sockets_.push_back(std::move(def));
}

} // namespace fdsup::config::detail
