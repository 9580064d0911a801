// 'inherit' in [service.NAME] and the placeholders of its 'command': read, then checked against its sockets.
#include <algorithm>
#include <string>
#include <vector>

#include "config/loader.hpp"

namespace fdsup::config::detail {

namespace {

// The variable each convention sets; 'environment' must not set it too.
std::string_view variableOf(InheritConvention convention)
{
    switch (convention) {
    case InheritConvention::Nginx:
        return "NGINX";
    case InheritConvention::ServerStarter:
        return "SERVER_STARTER_PORT";
    }
    return {};
}

std::string placeholderText(const ArgPiece &piece)
{
    return std::string(piece.kind == ArgPiece::Kind::Fd ? "{fd:" : "{addr:") + piece.text + "}";
}

} // namespace

std::vector<KeyHandler> Loader::inheritKeys(ServiceDefinition &def)
{
    auto &s = def.config;
    return {
        {"inherit",
         [&](const Entry &e) {
             auto list = getStringArray(e);
             if (!list) {
                 return;
             }
             def.inheritAt = e.valueAt;
             std::vector<std::string_view> allowed;
             for (const auto &[name, value] : names::kInherit) {
                 allowed.push_back(name);
             }
             for (const auto &item : *list) {
                 const std::string &text = item.first;
                 const Location &where = item.second;
                 const auto *it = std::find_if(names::kInherit.begin(), names::kInherit.end(),
                                               [&](const auto &entry) { return entry.first == text; });
                 if (it == names::kInherit.end()) {
                     error(where, "'inherit': unknown convention " + squote(text) +
                                      " (allowed: " + joined(allowed) + ")" + didYouMean(text, allowed));
                 } else if (std::find(s.inherit.begin(), s.inherit.end(), it->second) != s.inherit.end()) {
                     error(where, "'inherit': " + squote(text) + " is listed twice");
                 } else {
                     s.inherit.push_back(it->second);
                 }
             }
         }},
    };
}

void Loader::checkPlaceholders(ServiceDefinition &def, const std::string &arg, const Location &where)
{
    auto pieces = parseArgTemplate(arg);
    if (!pieces) {
        error(where, "'command': " + pieces.error().message + " in " + squote(arg));
        return;
    }
    for (auto &piece : *pieces) {
        if (piece.kind != ArgPiece::Kind::Literal) {
            def.placeholders.emplace_back(std::move(piece), where);
        }
    }
}

// Conventions and placeholders announce the listeners fdsupd passes as fds
// 3...: they need them passed (activation = "listen-fds") and name only
// sockets the service has.
void Loader::crossCheckInherit(const ServiceDefinition &def)
{
    const auto &s = def.config;
    const std::string table = "[service." + s.name + "]";
    const bool wrapped = s.wrap == Wrap::Preload;
    const bool passed = s.activation == Activation::ListenFds && !wrapped;
    // Why no listener is passed at spawn, said after the key that needs one.
    const std::string why = wrapped ? " cannot be used with wrap = \"preload\" in " + table +
                                          ": the shim takes the listeners at bind(), none is passed at spawn"
                                    : " needs activation = \"listen-fds\" in " + table +
                                          ": with activation = \"channel\" no listener is passed at spawn";
    if (!s.inherit.empty() && !passed) {
        error(def.inheritAt, "'inherit'" + why);
    }
    if (!s.inherit.empty() && s.sockets.empty()) {
        error(def.inheritAt,
              "'inherit' announces the service's listeners, but " + table + " has no 'sockets'");
    }
    for (const auto convention : s.inherit) {
        const std::string_view var = variableOf(convention);
        if (s.environment.contains(std::string(var))) {
            error(def.inheritAt, "'inherit': " + squote(names::nameOf(names::kInherit, convention)) +
                                     " sets " + std::string(var) + ", which 'environment' sets too");
        }
    }
    std::vector<std::string_view> sockets(s.sockets.begin(), s.sockets.end());
    for (const auto &[piece, where] : def.placeholders) {
        const std::string text = placeholderText(piece);
        std::string message = "'command': " + text;
        if (!passed) {
            error(where, message + why);
        } else if (std::find(s.sockets.begin(), s.sockets.end(), piece.text) == s.sockets.end()) {
            message += " names a socket that is not in the 'sockets' of ";
            message += table;
            if (sockets.empty()) {
                message += " (it has none)";
            } else {
                message += " (" + joined(sockets) + ")";
                message += didYouMean(piece.text, sockets);
            }
            error(where, std::move(message));
        }
    }
}

} // namespace fdsup::config::detail
