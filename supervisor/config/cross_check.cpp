// Checks across tables: addresses bound twice, unknown sockets, handoff without a stream socket.
#include <algorithm>
#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common/address.hpp"
#include "config/loader.hpp"

namespace fdsup::config::detail {

namespace {

// "tcp://[0:0::1]:53" and "tcp://[::1]:53" are the same address; host names
// stay as written (they are resolved only at bind time).
std::string canonicalInet(const Address &address)
{
    Address canonical = address;
    if (address.isNumericHost()) {
        unsigned char raw[sizeof(in6_addr)];
        char text[INET6_ADDRSTRLEN];
        const int family = address.isIpv6Literal() ? AF_INET6 : AF_INET;
        if (inet_pton(family, address.host.c_str(), raw) == 1 &&
            inet_ntop(family, raw, text, sizeof text) != nullptr) {
            canonical.host = text;
        }
    }
    return formatAddress(canonical);
}

} // namespace

void Loader::crossCheck()
{
    std::vector<std::string_view> socketNames;
    for (const auto &def : sockets_) {
        socketNames.push_back(def.config.name);
    }

    // Listen addresses: canonical text for inet (port 0 is "any free port",
    // never a clash), the path alone for unix, because a unix path or
    // abstract name is one name whatever the socket type.
    struct Use {
        const SocketDefinition *socket;
        Location at;
    };
    std::map<std::string, Use> used;
    for (const auto &def : sockets_) {
        for (std::size_t i = 0; i < def.config.listen.size(); ++i) {
            const Address &address = def.config.listen[i];
            const Location &at = def.listenAt[i];
            std::string key;
            if (address.isInet()) {
                if (address.port == 0) {
                    continue;
                }
                key = "inet " + canonicalInet(address);
            } else {
                key = (address.abstract ? "unix @" : "unix ") + address.host;
            }
            auto [it, inserted] = used.emplace(key, Use{&def, at});
            if (inserted) {
                continue;
            }
            const std::string what =
                address.isInet()
                    ? "listen address " + squote(formatAddress(address))
                    : "unix socket " + squote(address.abstract ? "@" + address.host : address.host);
            if (it->second.socket == &def) {
                error(at, what + " is listed twice in [socket." + def.config.name + "] (first at " +
                              it->second.at.str() + ")");
            } else {
                error(at, what + " is already used by [socket." + it->second.socket->config.name + "] at " +
                              it->second.at.str());
            }
        }
    }

    // Activation sockets: one name each, like any unix socket fdsupd binds.
    std::map<std::string, const ServiceDefinition *> activation;
    for (const auto &def : services_) {
        const auto &s = def.config;
        if (!s.activationSocket) {
            if (def.activationAccessAt && (!s.activationUsers.empty() || !s.activationGroups.empty())) {
                error(*def.activationAccessAt,
                      "'" +
                          std::string(s.activationUsers.empty() ? "activation_groups" : "activation_users") +
                          "' needs 'activation_socket' in [service." + s.name +
                          "]: without it no external worker can connect");
            }
            continue;
        }
        const std::string &path = *s.activationSocket;
        const std::string key = path.starts_with('@') ? "unix @" + path.substr(1) : "unix " + path;
        const std::string what = "'activation_socket': " + squote(path);
        if (auto it = used.find(key); it != used.end()) {
            error(def.activationSocketAt, what + " is already used by [socket." +
                                              it->second.socket->config.name + "] at " + it->second.at.str());
        } else if (path == supervisor_.control) {
            error(def.activationSocketAt, what + " is fdsupd's control socket");
        } else if (auto [other, inserted] = activation.emplace(key, &def); !inserted) {
            error(def.activationSocketAt, what + " is already the activation socket of [service." +
                                              other->second->config.name + "] at " +
                                              other->second->activationSocketAt.str());
        }
    }

    for (const auto &def : services_) {
        crossCheckPreloadMap(def);
        crossCheckInherit(def);
    }

    for (const auto &def : services_) {
        const auto &s = def.config;
        bool allKnown = true;
        bool stream = false;
        for (std::size_t i = 0; i < s.sockets.size(); ++i) {
            auto it = std::find_if(sockets_.begin(), sockets_.end(),
                                   [&](const SocketDefinition &d) { return d.config.name == s.sockets[i]; });
            if (it == sockets_.end()) {
                allKnown = false;
                // A file that failed to parse may hold the definition.
                if (!parseFailed_) {
                    error(def.socketsAt[i], "'sockets': no [socket." + s.sockets[i] + "] is defined" +
                                                didYouMean(s.sockets[i], socketNames));
                }
                continue;
            }
            if (!it->complete) {
                allKnown = false;
            }
            for (const auto &address : it->config.listen) {
                stream = stream || address.socketType() != SOCK_DGRAM;
            }
        }
        if (s.handoff && s.sockets.empty()) {
            error(def.handoffAt, "'handoff' needs a stream socket to hand connections over, but [service." +
                                     s.name + "] has no 'sockets'");
        } else if (s.handoff && allKnown && !stream) {
            error(def.handoffAt,
                  "'handoff' needs a stream socket to hand connections over, but every socket of "
                  "[service." +
                      s.name + "] is a datagram socket");
        }
    }
}

} // namespace fdsup::config::detail
