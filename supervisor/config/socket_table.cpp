// The [socket.NAME] tables: listen addresses and socket options.
#include <algorithm>
#include <chrono>
#include <cstdint>
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

namespace {

using KeyLocations = std::map<std::string, Location, std::less<>>;

// Where a message of validateSocketOptions() belongs: at the key it names
// first ("'nodelay' applies ..."), when that key was written; else at the table.
Location locationOf(const std::string &message, const KeyLocations &keyAt, const Location &table)
{
    if (!message.starts_with('\'')) {
        return table;
    }
    const auto end = message.find('\'', 1);
    if (end == std::string::npos) {
        return table;
    }
    auto it = keyAt.find(std::string_view(message).substr(1, end - 1));
    return it != keyAt.end() ? it->second : table;
}

} // namespace

void Loader::loadSocket(const std::string &name, const toml::table &table, const Location &at,
                        const FileContext &file)
{
    SocketDefinition def;
    def.config.name = name;
    def.config.where = at;
    // Until a listen address is refused, or found missing below.
    def.complete = true;
    const std::string tableName = "[socket." + name + "]";

    std::vector<KeyHandler> handlers;
    for (auto &&group : {listenKeys(def, file), optionKeys(def), unixFileKeys(def)}) {
        handlers.insert(handlers.end(), group.begin(), group.end());
    }
    // Remember where each key was written so that validateSocketOptions()'s
    // messages, which name the key, can point at it.
    KeyLocations keyAt;
    for (auto &handler : handlers) {
        handler.handle = [&keyAt, inner = std::move(handler.handle)](const Entry &e) {
            keyAt.emplace(std::string(e.key), e.keyAt);
            inner(e);
        };
    }
    walk(table, "in " + tableName, at, handlers);

    if (!table.contains("listen")) {
        error(at, "missing required key 'listen' in " + tableName);
        def.complete = false;
    }
    // Each address is checked; a problem they share is reported once.
    std::vector<std::string> seen;
    for (const auto &address : def.config.listen) {
        for (auto &message : validateSocketOptions(address, def.config.options)) {
            if (std::find(seen.begin(), seen.end(), message) != seen.end()) {
                continue;
            }
            seen.push_back(message);
            error(locationOf(message, keyAt, at), message);
        }
    }

    for (const auto &other : sockets_) {
        if (other.config.name == name) {
            error(at, tableName + " is already defined at " + other.config.where.str());
            return;
        }
    }
    sockets_.push_back(std::move(def));
}

// Where it listens: one address or an array of them.
std::vector<KeyHandler> Loader::listenKeys(SocketDefinition &def, const FileContext &file)
{
    return {
        {"receive",
         [&](const Entry &e) {
             if (auto v = getBool(e)) {
                 def.config.receive = *v;
             }
         }},
        {"listen",
         [&](const Entry &e) {
             if (const auto *s = e.value->as_string()) {
                 addListen(def, e, s->get(), e.valueAt, file);
             } else if (const auto *array = e.value->as_array()) {
                 if (array->empty()) {
                     error(e.valueAt, "'listen' must not be an empty array");
                     def.complete = false;
                 }
                 for (const auto &element : *array) {
                     const Location where = locate(element.source(), e.valueAt);
                     if (const auto *text = element.as_string()) {
                         addListen(def, e, text->get(), where, file);
                     } else {
                         error(where, "'listen' must be an array of strings, but an element is " +
                                          std::string(typeName(element.type())));
                         def.complete = false;
                     }
                 }
             } else {
                 wrongType(e, "an address string or an array of them");
                 def.complete = false;
             }
         }},
    };
}

void Loader::addListen(SocketDefinition &def, const Entry &e, const std::string &text, const Location &where,
                       const FileContext &file)
{
    if (text.find('\0') != std::string::npos) {
        error(where, "'listen' must not contain a NUL character");
        def.complete = false;
        return;
    }
    auto address = parseAddress(resolveUnixAddress(text, file));
    if (!address) {
        error(where, squote(e.key) + ": " + address.error().message);
        def.complete = false;
        return;
    }
    def.config.listen.push_back(std::move(*address));
    def.listenAt.push_back(where);
}

// The socket options. Ranges that depend on the transport or the kernel are
// checked by validateSocketOptions() once the table is read; here only what
// the type can hold.
std::vector<KeyHandler> Loader::optionKeys(SocketDefinition &def)
{
    auto &o = def.config.options;
    auto count = [this](std::optional<int> &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getInt(e, 0, kMaxInt)) {
                field = static_cast<int>(*v);
            }
        };
    };
    auto seconds = [this](std::optional<std::chrono::seconds> &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getSeconds(e, 0, kMaxInt)) {
                field = *v;
            }
        };
    };
    auto flag = [this](std::optional<bool> &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getBool(e)) {
                field = *v;
            }
        };
    };
    auto bufferSize = [this](std::optional<int> &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getSize(e, 0, static_cast<std::uint64_t>(kMaxInt))) {
                field = static_cast<int>(*v);
            }
        };
    };
    return {
        {"backlog", count(o.backlog)},
        {"reuse_address", flag(o.reuseAddress)},
        {"reuse_port", flag(o.reusePort)},
        {"ipv6_only", flag(o.ipv6Only)},
        {"free_bind", flag(o.freeBind)},
        {"transparent", flag(o.transparent)},
        {"defer_accept", seconds(o.deferAccept)},
        {"fastopen", count(o.fastOpen)},
        {"keepalive", flag(o.keepAlive)},
        {"keepalive_time", seconds(o.keepAliveTime)},
        {"keepalive_interval", seconds(o.keepAliveInterval)},
        {"keepalive_count", count(o.keepAliveCount)},
        {"nodelay", flag(o.noDelay)},
        {"send_buffer", bufferSize(o.sendBuffer)},
        {"receive_buffer", bufferSize(o.receiveBuffer)},
        {"bind_to_device",
         [&](const Entry &e) {
             if (auto v = getString(e)) {
                 o.bindToDevice = *v;
             }
         }},
    };
}

// The socket file of a unix socket with a path: its mode, owner and group,
// and what to do with a stale one.
std::vector<KeyHandler> Loader::unixFileKeys(SocketDefinition &def)
{
    auto &o = def.config.options;
    // A number, or a user (group) name looked up now.
    auto id = [this]<typename Id>(std::optional<Id> &field, bool isGroup) {
        return [&field, isGroup, this](const Entry &e) {
            if (e.value->is_integer()) {
                if (auto v = getInt(e, 0, kMaxU32 - 1)) {
                    field = static_cast<Id>(*v);
                }
            } else if (auto v = getString(e)) {
                if (auto resolved = resolveId(e.key, *v, e.valueAt, isGroup)) {
                    field = *resolved;
                }
            }
        };
    };
    return {
        {"mode",
         [&](const Entry &e) {
             if (auto v = getOctal(e, 0777)) {
                 o.mode = *v;
             }
         }},
        {"owner", id(o.owner, false)},
        {"group", id(o.group, true)},
        {"remove_stale",
         [&](const Entry &e) {
             if (auto v = getBool(e)) {
                 o.removeStale = *v;
             }
         }},
    };
}

} // namespace fdsup::config::detail
