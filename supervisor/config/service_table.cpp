// The [service.NAME] tables and their [service.NAME.limits].
#include <algorithm>
#include <array>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/resource.h>

#include "common/units.hpp"
#include "config/loader.hpp"
#include "config/names.hpp"

namespace fdsup::config::detail {

namespace {

// Limits of the language itself; each is documented in docs/config/.
constexpr std::int64_t kMaxInstances = 1024;
constexpr std::int64_t kMaxRolloutBatch = 1024;

// Set by fdsupd for every worker; a value in the config could only be overwritten.
constexpr std::array<std::string_view, 5> kReservedEnvironment{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                                                               "LISTEN_PIDFDID", "NOTIFY_SOCKET"};

bool validEnvironmentName(std::string_view name)
{
    return !name.empty() && name.find('=') == std::string_view::npos &&
           name.find('\0') == std::string_view::npos;
}

// Splits "python3 -m http.server" into a TOML array for the hint; only
// offered when the string has no quoting that a naive split would get wrong.
std::string commandHint(const std::string &text)
{
    if (text.find_first_of("\"'\\") != std::string::npos) {
        return {};
    }
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text[i] == ' ' || text[i] == '\t') {
            ++i;
            continue;
        }
        const std::size_t end = text.find_first_of(" \t", i);
        const std::string word = text.substr(i, end == std::string::npos ? std::string::npos : end - i);
        out += (out.empty() ? "" : ", ") + std::string("\"") + word + "\"";
        i = end == std::string::npos ? text.size() : end;
    }
    return out.empty() ? out : "; write command = [" + out + "]";
}

} // namespace

std::optional<std::uint64_t> Loader::getLimitValue(const Entry &e, names::LimitKind kind)
{
    if (const auto *s = e.value->as_string(); s != nullptr && s->get() == "infinity") {
        return RLIM_INFINITY;
    }
    switch (kind) {
    case names::LimitKind::Count:
        if (e.value->is_string()) {
            error(e.valueAt,
                  squote(e.key) + " must be a number or \"infinity\", not " + squote(nodeText(*e.value)));
            return std::nullopt;
        }
        if (!e.value->is_integer()) {
            wrongType(e, "an integer or \"infinity\"");
            return std::nullopt;
        }
        if (auto v = getInt(e, 0, std::numeric_limits<std::int64_t>::max())) {
            return static_cast<std::uint64_t>(*v);
        }
        return std::nullopt;
    case names::LimitKind::Size:
        if (auto v = getSize(e, 0, RLIM_INFINITY - 1)) {
            return *v;
        }
        return std::nullopt;
    case names::LimitKind::Seconds:
    case names::LimitKind::Microseconds: {
        const bool seconds = kind == names::LimitKind::Seconds;
        if (e.value->is_integer()) {
            if (auto v = getInt(e, 0, std::numeric_limits<std::int64_t>::max())) {
                return static_cast<std::uint64_t>(*v);
            }
            return std::nullopt;
        }
        if (!e.value->is_string()) {
            wrongType(e, seconds ? "a duration, a number of seconds or \"infinity\""
                                 : "a duration, a number of microseconds or \"infinity\"");
            return std::nullopt;
        }
        auto d = getDuration(e);
        if (!d) {
            return std::nullopt;
        }
        if (*d == Duration::max()) {
            return RLIM_INFINITY;
        }
        if (seconds && d->count() % 1000000 != 0) {
            error(e.valueAt,
                  squote(e.key) + " must be a whole number of seconds, not " + squote(nodeText(*e.value)));
            return std::nullopt;
        }
        return static_cast<std::uint64_t>(seconds ? d->count() / 1000000 : d->count());
    }
    }
    return std::nullopt;
}

void Loader::loadServiceLimits(const std::string &tableName, const toml::table &table, const Location &at,
                               ServiceConfig &service)
{
    std::vector<KeyHandler> handlers;
    handlers.reserve(names::kLimits.size());
    for (const auto &limit : names::kLimits) {
        handlers.push_back(
            {limit.name, [&, limit](const Entry &e) {
                 ResourceLimit value{limit.resource, 0, 0};
                 if (const auto *t = e.value->as_table()) {
                     std::optional<std::uint64_t> soft;
                     std::optional<std::uint64_t> hard;
                     walk(*t, "in " + squote(e.key) + " of " + tableName, e.valueAt,
                          {
                              {"soft",
                               [&](const Entry &v) {
                                   soft = getLimitValue(v, limit.kind);
                               }},
                              {"hard",
                               [&](const Entry &v) {
                                   hard = getLimitValue(v, limit.kind);
                               }},
                          });
                     const bool hasSoft = t->contains("soft");
                     const bool hasHard = t->contains("hard");
                     if (!hasSoft || !hasHard) {
                         error(e.valueAt, squote(e.key) + " needs both 'soft' and 'hard'");
                         return;
                     }
                     if (!soft || !hard) {
                         return;
                     }
                     if (*soft > *hard) {
                         error(e.valueAt, squote(e.key) + ": the soft limit must not exceed the hard limit");
                         return;
                     }
                     value.soft = *soft;
                     value.hard = *hard;
                 } else if (auto v = getLimitValue(e, limit.kind)) {
                     value.soft = value.hard = *v;
                 } else {
                     return;
                 }
                 service.limits.push_back(value);
             }});
    }
    walk(table, "in " + tableName, at, handlers);
    std::sort(service.limits.begin(), service.limits.end(),
              [](const ResourceLimit &a, const ResourceLimit &b) {
                  return resourceLimitName(a.resource) < resourceLimitName(b.resource);
              });
}

void Loader::loadService(const std::string &name, const toml::table &table, const Location &at,
                         const FileContext &file)
{
    ServiceDefinition def;
    auto &s = def.config;
    s.name = name;
    s.where = at;
    const std::string tableName = "[service." + name + "]";

    std::vector<KeyHandler> handlers;
    for (auto &&group : {processKeys(def, file), credentialKeys(def), workerKeys(def), inheritKeys(def),
                         lifecycleKeys(def), handoffKeys(def, file), wrapKeys(def, file)}) {
        handlers.insert(handlers.end(), group.begin(), group.end());
    }
    walk(table, "in " + tableName, at, handlers);

    if (!table.contains("command")) {
        error(at, "missing required key 'command' in " + tableName);
    }
    checkWrap(def, def.readyAt);
    if (def.restartDelayMaxAt) {
        if (s.restartDelayMax < s.restartDelay) {
            error(*def.restartDelayMaxAt, "'restart_delay_max' (" + formatDuration(s.restartDelayMax) +
                                              ") must not be less than 'restart_delay' (" +
                                              formatDuration(s.restartDelay) + ")");
        }
    } else if (s.restartDelayMax < s.restartDelay) {
        // Only restart_delay was written: a longer first delay than the
        // default cap means "no backoff", not a contradiction.
        s.restartDelayMax = s.restartDelay;
    }

    for (const auto &other : services_) {
        if (other.config.name == name) {
            error(at, tableName + " is already defined at " + other.config.where.str());
            return;
        }
    }
    services_.push_back(std::move(def));
}

// What runs: the program, its environment and its directory.
std::vector<KeyHandler> Loader::processKeys(ServiceDefinition &def, const FileContext &file)
{
    auto &s = def.config;
    return {
        {"command",
         [&](const Entry &e) {
             if (const auto *str = e.value->as_string()) {
                 error(e.valueAt, "'command' must be an array of strings (argv), not a string" +
                                      commandHint(str->get()));
                 return;
             }
             auto argv = getStringArray(e);
             if (!argv) {
                 return;
             }
             if (argv->empty()) {
                 error(e.valueAt, "'command' must not be empty");
                 return;
             }
             for (auto &[arg, where] : *argv) {
                 // argv[0] is a path, never a template.
                 if (!s.command.empty()) {
                     checkPlaceholders(def, arg, where);
                 }
                 s.command.push_back(arg);
             }
             // A relative program path means "next to this file"; a bare
             // name is left for the PATH search at spawn.
             std::string &program = s.command.front();
             if (program.find('/') != std::string::npos) {
                 program = resolvePath(program, file);
             }
         }},
        {"environment",
         [&](const Entry &e) {
             const auto *t = e.value->as_table();
             if (t == nullptr) {
                 wrongType(e, "a table of strings");
                 return;
             }
             for (auto &&[key, value] : *t) {
                 const Location keyWhere = locate(key.source(), e.valueAt);
                 const Location valueWhere = locate(value.source(), keyWhere);
                 const std::string var(key.str());
                 if (!checkEnvironmentName(var, keyWhere, "environment")) {
                     continue;
                 }
                 const auto *str = value.as_string();
                 if (str == nullptr) {
                     error(valueWhere, "'environment': the value of " + var + " must be a string, not " +
                                           std::string(typeName(value.type())));
                 } else if (str->get().find('\0') != std::string::npos) {
                     error(valueWhere, "'environment': the value of " + var + " must not contain NUL");
                 } else {
                     s.environment[var] = str->get();
                 }
             }
         }},
        {"pass_environment",
         [&](const Entry &e) {
             if (auto vars = getStringArray(e)) {
                 for (const auto &[var, where] : *vars) {
                     if (checkEnvironmentName(var, where, e.key)) {
                         s.passEnvironment.push_back(var);
                     }
                 }
             }
         }},
        {"working_directory",
         [&](const Entry &e) {
             if (auto v = getString(e)) {
                 if (!v->starts_with('/')) {
                     error(e.valueAt, "'working_directory' must be an absolute path, not " + squote(*v));
                 } else {
                     std::string dir = std::filesystem::path(*v).lexically_normal().string();
                     // "/srv/app/" and "/srv/app" are the same directory; keep one spelling.
                     if (dir.size() > 1 && dir.ends_with('/')) {
                         dir.pop_back();
                     }
                     s.workingDirectory = std::move(dir);
                 }
             }
         }},
    };
}

bool Loader::checkEnvironmentName(const std::string &var, const Location &where, std::string_view key)
{
    if (!validEnvironmentName(var)) {
        error(where, squote(key) + ": invalid variable name " + squote(var) +
                         " (it must not be empty or contain '=' or NUL)");
        return false;
    }
    if (std::find(kReservedEnvironment.begin(), kReservedEnvironment.end(), var) !=
        kReservedEnvironment.end()) {
        error(where, squote(key) + ": " + var + " is set by fdsupd for every worker");
        return false;
    }
    return true;
}

// What it runs as: ids, umask, resource limits.
std::vector<KeyHandler> Loader::credentialKeys(ServiceDefinition &def)
{
    auto &s = def.config;
    auto lookup = [this](std::optional<std::string> &field, bool isGroup) {
        return [&field, isGroup, this](const Entry &e) {
            auto v = getString(e);
            if (v && resolveId(e.key, *v, e.valueAt, isGroup)) {
                field = *v;
            }
        };
    };
    return {
        {"user", lookup(s.user, false)},
        {"group", lookup(s.group, true)},
        {"supplementary_groups",
         [&](const Entry &e) {
             checkUsers(e, s.supplementaryGroups, true);
         }},
        {"umask",
         [&](const Entry &e) {
             if (auto v = getOctal(e, 0777)) {
                 s.umask = *v;
             }
         }},
        {"limits",
         [&](const Entry &e) {
             if (const auto *t = e.value->as_table()) {
                 loadServiceLimits("[service." + s.name + ".limits]", *t, e.valueAt, s);
             } else {
                 wrongType(e, "a table");
             }
         }},
        {"no_new_privileges",
         [&](const Entry &e) {
             if (auto v = getBool(e)) {
                 s.noNewPrivileges = *v;
             }
         }},
    };
}

// How many workers run, which sockets they get and how each says it is ready.
std::vector<KeyHandler> Loader::workerKeys(ServiceDefinition &def)
{
    auto &s = def.config;
    return {
        {"sockets",
         [&](const Entry &e) {
             auto list = getStringArray(e);
             if (!list) {
                 return;
             }
             for (const auto &[socket, where] : *list) {
                 auto it = std::find(s.sockets.begin(), s.sockets.end(), socket);
                 if (it != s.sockets.end()) {
                     error(where, "'sockets': " + squote(socket) + " is listed twice (first at " +
                                      def.socketsAt[static_cast<std::size_t>(it - s.sockets.begin())].str() +
                                      ")");
                     continue;
                 }
                 s.sockets.push_back(socket);
                 def.socketsAt.push_back(where);
             }
         }},
        {"instances",
         [&](const Entry &e) {
             if (auto v = getInt(e, 0, kMaxInstances)) {
                 s.instances = static_cast<std::uint32_t>(*v);
             }
         }},
        {"activation",
         [&](const Entry &e) {
             if (auto v = getEnum(e, names::kActivation)) {
                 s.activation = *v;
             }
         }},
        {"ready",
         [&](const Entry &e) {
             if (auto v = getEnum(e, names::kReadiness)) {
                 s.ready = *v;
                 def.readyAt = e.valueAt;
             }
         }},
    };
}

// Restarts, timeouts and how a worker is stopped.
std::vector<KeyHandler> Loader::lifecycleKeys(ServiceDefinition &def)
{
    auto &s = def.config;
    auto duration = [this](Duration &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getDuration(e)) {
                field = *v;
            }
        };
    };
    return {
        {"restart",
         [&](const Entry &e) {
             if (auto v = getEnum(e, names::kRestart)) {
                 s.restart = *v;
             }
         }},
        {"restart_delay", duration(s.restartDelay)},
        {"restart_delay_max",
         [&](const Entry &e) {
             if (auto v = getDuration(e)) {
                 s.restartDelayMax = *v;
                 def.restartDelayMaxAt = e.valueAt;
             }
         }},
        {"start_limit_burst",
         [&](const Entry &e) {
             if (auto v = getInt(e, 1, kMaxInt)) {
                 s.startLimitBurst = static_cast<std::uint32_t>(*v);
             }
         }},
        {"start_limit_interval", duration(s.startLimitInterval)},
        {"start_timeout", duration(s.startTimeout)},
        {"ready_timeout", duration(s.readyTimeout)},
        {"drain_timeout", duration(s.drainTimeout)},
        {"handoff_timeout", duration(s.handoffTimeout)},
        {"stop_timeout", duration(s.stopTimeout)},
        {"watchdog_timeout", duration(s.watchdogTimeout)},
        {"stop_signal",
         [&](const Entry &e) {
             auto sig = getSignal(e);
             if (sig && *sig == SIGSTOP) {
                 error(e.valueAt, "'stop_signal' cannot be SIGSTOP: a stopped process never exits");
             } else if (sig) {
                 s.stopSignal = *sig;
             }
         }},
        {"drain_signal",
         [&](const Entry &e) {
             auto sig = getSignal(e);
             if (sig && (*sig == SIGKILL || *sig == SIGSTOP)) {
                 error(e.valueAt, "'drain_signal' cannot be " + signalName(*sig) +
                                      ": a worker must be able to catch it to drain");
             } else if (sig) {
                 s.drainSignal = *sig;
             }
         }},
        {"kill_mode",
         [&](const Entry &e) {
             if (auto v = getEnum(e, names::kKillMode)) {
                 s.killMode = *v;
             }
         }},
        {"output",
         [&](const Entry &e) {
             if (auto v = getEnum(e, names::kOutput)) {
                 s.output = *v;
             }
         }},
    };
}

// Handing connections over, workers fdsupd did not start, and rollouts.
std::vector<KeyHandler> Loader::handoffKeys(ServiceDefinition &def, const FileContext &file)
{
    auto &s = def.config;
    return {
        {"handoff",
         [&](const Entry &e) {
             if (auto v = getBool(e)) {
                 s.handoff = *v;
                 def.handoffAt = e.valueAt;
             }
         }},
        {"activation_socket",
         [&](const Entry &e) {
             auto v = getString(e);
             if (!v) {
                 return;
             }
             std::string path = v->starts_with('@') ? *v : resolvePath(*v, file);
             if (path.size() < 2 && path.starts_with('@')) {
                 error(e.valueAt, "'activation_socket': an abstract socket needs a name after '@'");
             } else if (path.size() > kMaxUnixPath) {
                 error(e.valueAt, "'activation_socket': socket path " + squote(path) + " is too long (" +
                                      std::to_string(path.size()) + " bytes, at most " +
                                      std::to_string(kMaxUnixPath) + ")");
             } else {
                 s.activationSocket = std::move(path);
                 def.activationSocketAt = e.valueAt;
             }
         }},
        {"activation_users",
         [&](const Entry &e) {
             checkUsers(e, s.activationUsers, false);
             def.activationAccessAt = e.keyAt;
         }},
        {"activation_groups",
         [&](const Entry &e) {
             checkUsers(e, s.activationGroups, true);
             def.activationAccessAt = e.keyAt;
         }},
        {"rollout_batch",
         [&](const Entry &e) {
             if (auto v = getInt(e, 1, kMaxRolloutBatch)) {
                 s.rolloutBatch = static_cast<std::uint32_t>(*v);
             }
         }},
        {"rollout_order",
         [&](const Entry &e) {
             if (auto v = getEnum(e, names::kRolloutOrder)) {
                 s.rolloutOrder = *v;
             }
         }},
    };
}

} // namespace fdsup::config::detail
