// The keys of a wrapped service ([service.NAME] wrap, preload_map, pid_file) and their checks.
#include <algorithm>
#include <array>
#include <string>
#include <string_view>
#include <utility>

#include "common/address.hpp"
#include "config/loader.hpp"
#include "config/names.hpp"

namespace fdsup::config::detail {

namespace {

// Set by fdsupd for a wrapped service's workers (docs/preload.md).
constexpr std::array<std::string_view, 4> kWrapEnvironment{"FDSUP_PRELOAD", "FDSUP_PRELOAD_MAP",
                                                           "FDSUP_DRAIN_SIGNAL", "FDSUP_DRAIN_TIMEOUT_USEC"};

} // namespace

std::vector<KeyHandler> Loader::wrapKeys(ServiceDefinition &def, const FileContext &file)
{
    auto &s = def.config;
    return {
        {"wrap",
         [&](const Entry &e) {
             if (auto v = getEnum(e, names::kWrap)) {
                 s.wrap = *v;
                 def.wrapAt = e.valueAt;
             }
         }},
        {"preload_map",
         [&, file](const Entry &e) {
             const auto *t = e.value->as_table();
             if (t == nullptr) {
                 wrongType(e, "a table of socket names to addresses");
                 return;
             }
             def.preloadMapAt = e.keyAt;
             for (auto &&[key, value] : *t) {
                 const Location keyWhere = locate(key.source(), e.valueAt);
                 const Location valueWhere = locate(value.source(), keyWhere);
                 const auto *text = value.as_string();
                 if (text == nullptr) {
                     error(valueWhere, "'preload_map': the address of " + squote(key.str()) +
                                           " must be a string, not " + std::string(typeName(value.type())));
                     continue;
                 }
                 auto address = parseAddress(resolveUnixAddress(text->get(), file));
                 if (!address) {
                     error(valueWhere, "'preload_map': " + address.error().message);
                     continue;
                 }
                 if (address->isInet() && !address->isNumericHost()) {
                     error(valueWhere, "'preload_map': " + squote(text->get()) +
                                           " names a host: the shim compares numeric addresses (write the "
                                           "address the server binds, e.g. 0.0.0.0 or 127.0.0.1)");
                     continue;
                 }
                 s.preloadMap[std::string(key.str())] = std::move(*address);
                 def.preloadMapEntryAt[std::string(key.str())] = keyWhere;
             }
         }},
        {"pid_file",
         [&, file](const Entry &e) {
             if (auto v = getString(e)) {
                 if (v->empty()) {
                     error(e.valueAt, "'pid_file' must not be empty");
                     return;
                 }
                 s.pidFile = resolvePath(*v, file);
                 def.pidFileAt = e.valueAt;
             }
         }},
        {"kill_signal",
         [&](const Entry &e) {
             auto sig = getSignal(e);
             if (sig && *sig == SIGSTOP) {
                 error(e.valueAt, "'kill_signal' cannot be SIGSTOP: a stopped process never exits");
             } else if (sig) {
                 s.killSignal = *sig;
             }
         }},
    };
}

// What a wrapped service cannot be, and what only a wrapped service may say.
void Loader::checkWrap(const ServiceDefinition &def, const Location &readyAt)
{
    const auto &s = def.config;
    const std::string table = "[service." + s.name + "]";
    if (s.wrap == Wrap::None) {
        if (def.preloadMapAt) {
            error(*def.preloadMapAt, "'preload_map' needs wrap = \"preload\" in " + table);
        }
        if (s.ready == Readiness::Bound) {
            error(readyAt, "ready = \"bound\" needs wrap = \"preload\" in " + table +
                               ": only the preload shim reports the listeners a server bound");
        }
    } else {
        const std::string why =
            " in " + table + ": a wrapped server gets its listeners from the preload shim";
        if (s.activation == Activation::Channel) {
            error(def.wrapAt, "wrap = \"preload\" cannot be combined with activation = \"channel\"" + why +
                                  ", not over a worker channel");
        }
        if (s.handoff) {
            error(def.wrapAt, "wrap = \"preload\" cannot be combined with handoff = true" + why +
                                  " and cannot hand connections over");
        }
        if (s.ready == Readiness::Channel) {
            error(def.wrapAt, "wrap = \"preload\" cannot be combined with ready = \"channel\"" + why +
                                  " and has no worker channel; use ready = \"bound\"");
        }
        for (const auto &var : kWrapEnvironment) {
            if (s.environment.contains(std::string(var))) {
                error(def.wrapAt, "'environment': " + std::string(var) +
                                      " is set by fdsupd for a wrapped service" + " (" + table + ")");
            }
        }
    }
    if (s.pidFile && s.instances > 1) {
        error(def.pidFileAt, "'pid_file' needs instances = 1 in " + table +
                                 ": the instances of a daemonising server would write the same file");
    }
}

// preload_map names sockets of the service, with the same kind of socket.
void Loader::crossCheckPreloadMap(const ServiceDefinition &def)
{
    const auto &s = def.config;
    for (const auto &[name, address] : s.preloadMap) {
        const Location &at = def.preloadMapEntryAt.at(name);
        if (std::find(s.sockets.begin(), s.sockets.end(), name) == s.sockets.end()) {
            std::vector<std::string_view> known(s.sockets.begin(), s.sockets.end());
            error(at, "'preload_map': " + squote(name) + " is not one of the service's 'sockets'" +
                          didYouMean(name, known));
            continue;
        }
        const std::string &socketName = name; // a structured binding cannot be captured before C++20's clang
        auto it = std::find_if(sockets_.begin(), sockets_.end(),
                               [&](const SocketDefinition &d) { return d.config.name == socketName; });
        if (it == sockets_.end() || !it->complete) {
            continue;
        }
        for (const auto &listen : it->config.listen) {
            if (listen.socketType() != address.socketType() || listen.isInet() != address.isInet()) {
                error(at, "'preload_map': " + squote(name) + " maps " + squote(formatAddress(address)) +
                              " to [socket." + name + "], which listens on " + squote(formatAddress(listen)) +
                              ": a different kind of socket");
                break;
            }
        }
    }
}

} // namespace fdsup::config::detail
