// Live reload decisions and in-place socket changes, kept apart from the daemon so they are tested alone.
#include "daemon/reload_plan.hpp"

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/units.hpp"

namespace fdsup {

namespace {

using config::Config;
using config::ServiceConfig;
using config::SocketConfig;
using config::SupervisorConfig;

constexpr const char *kArrow = " → ";

std::string octal(mode_t mode)
{
    char buffer[16];
    (void)std::snprintf(buffer, sizeof buffer, "%04o", static_cast<unsigned>(mode));
    return buffer;
}

// Values as a user would recognise them in the file; "unset" for an option
// left to the kernel default.
std::string text(const std::optional<bool> &v)
{
    if (!v) {
        return "unset";
    }
    return *v ? "true" : "false";
}

std::string text(const std::optional<int> &v)
{
    return v ? std::to_string(*v) : "unset";
}

std::string text(const std::optional<std::chrono::seconds> &v)
{
    return v ? formatDuration(std::chrono::duration_cast<Duration>(*v)) : "unset";
}

std::string text(const std::optional<std::string> &v)
{
    return v ? "\"" + *v + "\"" : "unset";
}

std::string text(const std::vector<Address> &listen)
{
    std::string out = "[";
    for (std::size_t i = 0; i < listen.size(); ++i) {
        out += (i == 0 ? "" : ", ") + formatAddress(listen[i]);
    }
    return out + "]";
}

std::string_view logTargetName(config::LogTarget target)
{
    switch (target) {
    case config::LogTarget::Console:
        return "console";
    case config::LogTarget::Journal:
        return "journal";
    }
    return "?";
}

// ---- sockets ----

// How two option sets of one bound socket differ: what applySocketChange()
// can do to the descriptors, and what it cannot. Shared by the plan and the
// apply step so they can never disagree.
struct OptionDiff {
    std::vector<std::string> inPlace; // "backlog 128 → 1024"
    std::vector<std::string> refused; // "'reuse_port' changed from unset to true: ..."
};

// Everything but backlog, mode, owner, group and remove_stale is set on the
// socket before bind() (or, like nodelay and keepalive, is inherited by each
// connection at accept()): an unset value means "the kernel default", which
// cannot be restored on a live socket, and connections already accepted
// would keep the old value. Only rebinding applies them, and rebinding
// refuses connections, so a reload refuses them instead.
template <typename T>
void refuseIfChanged(OptionDiff &diff, std::string_view key, const T &before, const T &after)
{
    if (before != after) {
        diff.refused.push_back(std::string(key) + " changed from " + text(before) + " to " + text(after) +
                               ": it cannot be changed on a bound socket");
    }
}

template <typename T>
void compareFileOwnership(OptionDiff &diff, std::string_view key, const std::optional<T> &before,
                          const std::optional<T> &after, std::string (*format)(T))
{
    if (before == after) {
        return;
    }
    if (!after) {
        // Unset means "as bind() created it", which is long gone.
        diff.refused.push_back(std::string(key) + " cannot be unset on a bound socket (its file keeps " +
                               format(*before) + "); write the " + std::string(key) +
                               " it should have instead");
        return;
    }
    diff.inPlace.push_back(std::string(key) + " " + (before ? format(*before) : "unset") + kArrow +
                           format(*after));
}

std::string idText(unsigned id)
{
    return std::to_string(id);
}

OptionDiff compareOptions(const SocketOptions &before, const SocketOptions &after)
{
    OptionDiff diff;
    if (before == after) {
        return diff;
    }
    // Effective values: an unset backlog is kDefaultBacklog, so writing the
    // default out changes nothing.
    const int backlogBefore = before.backlog.value_or(kDefaultBacklog);
    const int backlogAfter = after.backlog.value_or(kDefaultBacklog);
    if (backlogBefore != backlogAfter) {
        diff.inPlace.push_back("backlog " + std::to_string(backlogBefore) + kArrow +
                               std::to_string(backlogAfter));
    }
    refuseIfChanged(diff, "reuse_address", before.reuseAddress, after.reuseAddress);
    refuseIfChanged(diff, "reuse_port", before.reusePort, after.reusePort);
    refuseIfChanged(diff, "ipv6_only", before.ipv6Only, after.ipv6Only);
    refuseIfChanged(diff, "free_bind", before.freeBind, after.freeBind);
    refuseIfChanged(diff, "transparent", before.transparent, after.transparent);
    refuseIfChanged(diff, "defer_accept", before.deferAccept, after.deferAccept);
    refuseIfChanged(diff, "fastopen", before.fastOpen, after.fastOpen);
    refuseIfChanged(diff, "keepalive", before.keepAlive, after.keepAlive);
    refuseIfChanged(diff, "keepalive_time", before.keepAliveTime, after.keepAliveTime);
    refuseIfChanged(diff, "keepalive_interval", before.keepAliveInterval, after.keepAliveInterval);
    refuseIfChanged(diff, "keepalive_count", before.keepAliveCount, after.keepAliveCount);
    refuseIfChanged(diff, "nodelay", before.noDelay, after.noDelay);
    refuseIfChanged(diff, "send_buffer", before.sendBuffer, after.sendBuffer);
    refuseIfChanged(diff, "receive_buffer", before.receiveBuffer, after.receiveBuffer);
    refuseIfChanged(diff, "bind_to_device", before.bindToDevice, after.bindToDevice);
    compareFileOwnership<mode_t>(diff, "mode", before.mode, after.mode, octal);
    compareFileOwnership<uid_t>(diff, "owner", before.owner, after.owner, idText);
    compareFileOwnership<gid_t>(diff, "group", before.group, after.group, idText);
    // Only read when the socket is bound, which it already is; recorded so
    // the daemon keeps the new value for the record.
    if (before.removeStale != after.removeStale) {
        diff.inPlace.push_back(std::string("remove_stale ") + (before.removeStale ? "true" : "false") +
                               kArrow + (after.removeStale ? "true" : "false"));
    }
    // An option this function does not know yet must not pass as unchanged.
    if (diff.inPlace.empty() && diff.refused.empty()) {
        SocketOptions a = before;
        SocketOptions b = after;
        a.backlog = b.backlog;
        if (a != b) {
            diff.refused.emplace_back("an option changed that cannot be changed on a bound socket");
        }
    }
    return diff;
}

void planSockets(const Config &running, const Config &next, ReloadPlan &plan)
{
    for (const auto &socket : next.sockets) {
        const SocketConfig *old = running.findSocket(socket.name);
        if (old == nullptr) {
            plan.socketsAdded.push_back(socket.name);
            continue;
        }
        const std::string prefix = "socket '" + socket.name + "': ";
        if (old->listen != socket.listen) {
            plan.refused.push_back(prefix + "listen changed from " + text(old->listen) + " to " +
                                   text(socket.listen) +
                                   ": a bound socket cannot move without refusing connections; add a socket "
                                   "with a new name and point the service at it");
        }
        OptionDiff diff = compareOptions(old->options, socket.options);
        for (const auto &reason : diff.refused) {
            plan.refused.push_back(prefix + reason);
        }
        if (!diff.inPlace.empty()) {
            plan.socketsChanged.push_back(SocketChange{socket.name, std::move(diff.inPlace)});
        }
    }
    for (const auto &socket : running.sockets) {
        if (next.findSocket(socket.name) == nullptr) {
            plan.socketsRemoved.push_back(socket.name);
        }
    }
}

// ---- services ----

template <typename T>
void noteIfChanged(std::vector<std::string> &details, std::string_view key, const T &before, const T &after)
{
    if (before != after) {
        details.emplace_back(key);
    }
}

void compareEnvironment(std::vector<std::string> &details, const std::map<std::string, std::string> &before,
                        const std::map<std::string, std::string> &after)
{
    std::set<std::string> names;
    for (const auto &[name, value] : before) {
        names.insert(name);
    }
    for (const auto &[name, value] : after) {
        names.insert(name);
    }
    for (const auto &name : names) {
        const auto a = before.find(name);
        const auto b = after.find(name);
        const bool same = a != before.end() && b != after.end() && a->second == b->second;
        if (!same) {
            details.push_back("environment." + name);
        }
    }
}

void compareLimits(std::vector<std::string> &details, const std::vector<config::ResourceLimit> &before,
                   const std::vector<config::ResourceLimit> &after)
{
    std::map<int, std::pair<const config::ResourceLimit *, const config::ResourceLimit *>> byResource;
    for (const auto &limit : before) {
        byResource[limit.resource].first = &limit;
    }
    for (const auto &limit : after) {
        byResource[limit.resource].second = &limit;
    }
    for (const auto &[resource, pair] : byResource) {
        const auto [a, b] = pair;
        if (a == nullptr || b == nullptr || !(*a == *b)) {
            const std::string_view name = config::resourceLimitName(resource);
            details.push_back("limits." + (name.empty() ? std::to_string(resource) : std::string(name)));
        }
    }
}

// The keys of docs/config/service.md, in its order, that differ; the one
// place that maps the model back to config names for a reload.
std::vector<std::string> serviceDetails(const ServiceConfig &a, const ServiceConfig &b)
{
    std::vector<std::string> d;
    noteIfChanged(d, "command", a.command, b.command);
    compareEnvironment(d, a.environment, b.environment);
    noteIfChanged(d, "pass_environment", a.passEnvironment, b.passEnvironment);
    noteIfChanged(d, "working_directory", a.workingDirectory, b.workingDirectory);
    noteIfChanged(d, "user", a.user, b.user);
    noteIfChanged(d, "group", a.group, b.group);
    noteIfChanged(d, "supplementary_groups", a.supplementaryGroups, b.supplementaryGroups);
    noteIfChanged(d, "umask", a.umask, b.umask);
    noteIfChanged(d, "no_new_privileges", a.noNewPrivileges, b.noNewPrivileges);
    noteIfChanged(d, "output", a.output, b.output);
    compareLimits(d, a.limits, b.limits);
    noteIfChanged(d, "sockets", a.sockets, b.sockets);
    if (a.instances != b.instances) {
        d.push_back("instances " + std::to_string(a.instances) + kArrow + std::to_string(b.instances));
    }
    noteIfChanged(d, "activation", a.activation, b.activation);
    noteIfChanged(d, "ready", a.ready, b.ready);
    noteIfChanged(d, "inherit", a.inherit, b.inherit);
    noteIfChanged(d, "handoff", a.handoff, b.handoff);
    noteIfChanged(d, "watchdog_timeout", a.watchdogTimeout, b.watchdogTimeout);
    noteIfChanged(d, "start_timeout", a.startTimeout, b.startTimeout);
    noteIfChanged(d, "ready_timeout", a.readyTimeout, b.readyTimeout);
    noteIfChanged(d, "drain_timeout", a.drainTimeout, b.drainTimeout);
    noteIfChanged(d, "handoff_timeout", a.handoffTimeout, b.handoffTimeout);
    noteIfChanged(d, "activation_socket", a.activationSocket, b.activationSocket);
    noteIfChanged(d, "activation_users", a.activationUsers, b.activationUsers);
    noteIfChanged(d, "activation_groups", a.activationGroups, b.activationGroups);
    noteIfChanged(d, "stop_timeout", a.stopTimeout, b.stopTimeout);
    noteIfChanged(d, "drain_signal", a.drainSignal, b.drainSignal);
    noteIfChanged(d, "stop_signal", a.stopSignal, b.stopSignal);
    noteIfChanged(d, "kill_mode", a.killMode, b.killMode);
    noteIfChanged(d, "restart", a.restart, b.restart);
    noteIfChanged(d, "restart_delay", a.restartDelay, b.restartDelay);
    noteIfChanged(d, "restart_delay_max", a.restartDelayMax, b.restartDelayMax);
    noteIfChanged(d, "start_limit_burst", a.startLimitBurst, b.startLimitBurst);
    noteIfChanged(d, "start_limit_interval", a.startLimitInterval, b.startLimitInterval);
    noteIfChanged(d, "rollout_batch", a.rolloutBatch, b.rolloutBatch);
    noteIfChanged(d, "rollout_order", a.rolloutOrder, b.rolloutOrder);
    return d;
}

void planServices(const Config &running, const Config &next, ReloadPlan &plan)
{
    for (const auto &service : next.services) {
        const ServiceConfig *old = running.findService(service.name);
        if (old == nullptr) {
            plan.servicesAdded.push_back(service.name);
            continue;
        }
        if (old->activationSocket != service.activationSocket) {
            // External workers are connected to it; a new one would need
            // binding alongside the sockets (all or nothing), and moving it
            // would cut them off.
            plan.refused.push_back("[service." + service.name + "] activation_socket changed from " +
                                   (old->activationSocket ? *old->activationSocket : "(none)") + " to " +
                                   (service.activationSocket ? *service.activationSocket : "(none)") +
                                   ": an activation socket is created with its service; restart fdsupd "
                                   "to apply it");
        }
        // The classification compares whole models (so a key added to
        // ServiceConfig later is never missed); the details only name keys.
        ServiceConfig a = *old;
        ServiceConfig b = service;
        a.where = {};
        b.where = {};
        if (a == b) {
            plan.servicesUnchanged.push_back(service.name);
            continue;
        }
        std::vector<std::string> details = serviceDetails(a, b);
        a.instances = b.instances;
        if (a == b) {
            plan.servicesScaled.push_back(ServiceChange{service.name, std::move(details)});
        } else {
            if (details.empty()) {
                details.emplace_back("a setting without a name in reload plans");
            }
            plan.servicesRolled.push_back(ServiceChange{service.name, std::move(details)});
        }
    }
    for (const auto &service : running.services) {
        if (next.findService(service.name) == nullptr) {
            plan.servicesRemoved.push_back(service.name);
        }
    }
}

// ---- [supervisor] ----

std::vector<std::string> sorted(std::vector<std::string> names)
{
    std::sort(names.begin(), names.end());
    return names;
}

std::string nofileText(std::uint64_t nofile)
{
    return nofile == 0 ? "max" : std::to_string(nofile);
}

// Where an entry was written means nothing to what it grants.
bool sameAccess(std::vector<config::AccessEntry> a, std::vector<config::AccessEntry> b)
{
    for (auto *list : {&a, &b}) {
        for (auto &entry : *list) {
            entry.where = {};
        }
    }
    return a == b;
}

void planSupervisor(const SupervisorConfig &a, const SupervisorConfig &b, ReloadPlan &plan)
{
    plan.logLevelChanged = a.logLevel != b.logLevel;
    // Access lists are sets: the order they are written in means nothing.
    plan.accessChanged = sorted(a.allowUsers) != sorted(b.allowUsers) ||
                         sorted(a.allowGroups) != sorted(b.allowGroups) || !sameAccess(a.access, b.access);
    // The metrics endpoint is bound afresh at its new address (docs/metrics.md).
    plan.metricsChanged = a.metrics != b.metrics;

    const std::size_t refusedBefore = plan.refused.size();
    auto refuse = [&](std::string_view key, const std::string &from, const std::string &to,
                      std::string_view why) {
        plan.refused.push_back(std::string(key) + " changed from " + from + " to " + to + ": " +
                               std::string(why) + "; restart fdsupd to apply it");
    };
    if (a.control != b.control) {
        refuse("[supervisor] control", a.control, b.control,
               "the control socket cannot move while fdsupd runs");
    }
    if (a.controlMode != b.controlMode) {
        refuse("[supervisor] control_mode", octal(a.controlMode), octal(b.controlMode),
               "the control socket's mode is set when fdsupd creates it");
    }
    if (a.logTarget != b.logTarget) {
        refuse("[supervisor] log_target", std::string(logTargetName(a.logTarget)),
               std::string(logTargetName(b.logTarget)), "the log target is opened once, when fdsupd starts");
    }
    if (a.preloadLibrary != b.preloadLibrary) {
        refuse("[supervisor] preload_library", a.preloadLibrary, b.preloadLibrary,
               "the running wrapped instances were started with the old one");
    }
    const auto &la = a.limits;
    const auto &lb = b.limits;
    constexpr std::string_view kFixed = "limits are fixed when fdsupd starts";
    if (la.nofile != lb.nofile) {
        refuse("[supervisor.limits] nofile", nofileText(la.nofile), nofileText(lb.nofile),
               "RLIMIT_NOFILE is raised once, when fdsupd starts");
    }
    if (la.heldConnections != lb.heldConnections) {
        refuse("[supervisor.limits] held_connections", std::to_string(la.heldConnections),
               std::to_string(lb.heldConnections), kFixed);
    }
    if (la.heldConnectionsPerService != lb.heldConnectionsPerService) {
        refuse("[supervisor.limits] held_connections_per_service",
               std::to_string(la.heldConnectionsPerService), std::to_string(lb.heldConnectionsPerService),
               kFixed);
    }
    if (la.stateSize != lb.stateSize) {
        refuse("[supervisor.limits] state_size", formatSize(la.stateSize), formatSize(lb.stateSize), kFixed);
    }
    if (la.controlRequestSize != lb.controlRequestSize) {
        refuse("[supervisor.limits] control_request_size", formatSize(la.controlRequestSize),
               formatSize(lb.controlRequestSize), kFixed);
    }
    if (la.controlClients != lb.controlClients) {
        refuse("[supervisor.limits] control_clients", std::to_string(la.controlClients),
               std::to_string(lb.controlClients), kFixed);
    }
    if (la.controlIdleTimeout != lb.controlIdleTimeout) {
        refuse("[supervisor.limits] control_idle_timeout", formatDuration(la.controlIdleTimeout),
               formatDuration(lb.controlIdleTimeout), kFixed);
    }

    // A key added to SupervisorConfig later is refused until this function
    // learns whether it can be applied in place.
    if (plan.refused.size() == refusedBefore) {
        SupervisorConfig x = a;
        SupervisorConfig y = b;
        x.where = y.where = {};
        x.logLevel = y.logLevel;
        x.allowUsers = y.allowUsers;
        x.allowGroups = y.allowGroups;
        x.metrics = y.metrics;
        x.metricsPublic = y.metricsPublic; // checked at load: nothing to apply
        x.access = y.access;
        if (x != y) {
            plan.refused.emplace_back(
                "[supervisor] a setting changed that cannot be applied while fdsupd runs; "
                "restart fdsupd to apply it");
        }
    }
}

// ---- applying ----

// The file a unix socket is bound to; empty for inet, abstract and unnamed
// sockets.
Result<std::string> boundPath(BorrowedFd fd)
{
    sockaddr_un address{};
    socklen_t length = sizeof address;
    if (getsockname(fd.get(), reinterpret_cast<sockaddr *>(&address), &length) < 0) {
        return errnoError(errno, "Failed to get the address of fd " + std::to_string(fd.get()));
    }
    constexpr auto kPathOffset = offsetof(sockaddr_un, sun_path);
    if (address.sun_family != AF_UNIX || length <= kPathOffset || address.sun_path[0] == '\0') {
        return std::string();
    }
    return std::string(address.sun_path, strnlen(address.sun_path, length - kPathOffset));
}

} // namespace

bool ReloadPlan::empty() const
{
    return refused.empty() && socketsAdded.empty() && socketsRemoved.empty() && socketsChanged.empty() &&
           servicesAdded.empty() && servicesRemoved.empty() && servicesScaled.empty() &&
           servicesRolled.empty() && !logLevelChanged && !accessChanged && !metricsChanged;
}

ReloadPlan planReload(const Config &running, const Config &next)
{
    ReloadPlan plan;
    planSupervisor(running.supervisor, next.supervisor, plan);
    planSockets(running, next, plan);
    planServices(running, next, plan);
    return plan;
}

Result<void> applySocketChange(BorrowedFd fd, const SocketOptions &before, const SocketOptions &after)
{
    const OptionDiff diff = compareOptions(before, after);
    if (!diff.refused.empty()) {
        std::string message = "Cannot change fd " + std::to_string(fd.get()) + " in place: ";
        for (std::size_t i = 0; i < diff.refused.size(); ++i) {
            message += (i == 0 ? "" : "; ") + diff.refused[i];
        }
        return Error{EINVAL, std::move(message)};
    }

    const bool fileChanged =
        before.mode != after.mode || before.owner != after.owner || before.group != after.group;
    if (fileChanged) {
        auto path = boundPath(fd);
        if (!path) {
            return path.error();
        }
        if (path->empty()) {
            return Error{EINVAL, "Cannot change the mode, owner or group of fd " + std::to_string(fd.get()) +
                                     ": it is not a unix socket bound to a path"};
        }
        // The file must still be the socket fdsupd bound: a user may have
        // removed it (the socket then has no name anyone can reach) or put
        // something else there, which is not ours to change.
        struct stat st {};
        if (lstat(path->c_str(), &st) < 0) {
            return errnoError(errno, "Failed to change socket file " + *path);
        }
        if (!S_ISSOCK(st.st_mode)) {
            return errnoError(ENOTSOCK, "Failed to change socket file " + *path);
        }
        const bool ownerChanged = before.owner != after.owner || before.group != after.group;
        if (ownerChanged) {
            // lchown: never follow a symlink swapped in since the lstat().
            if (lchown(path->c_str(), after.owner.value_or(static_cast<uid_t>(-1)),
                       after.group.value_or(static_cast<gid_t>(-1))) < 0) {
                return errnoError(errno, "Failed to change owner of socket file " + *path + " to " +
                                             (after.owner ? std::to_string(*after.owner) : "-") + ":" +
                                             (after.group ? std::to_string(*after.group) : "-"));
            }
        }
        // chmod after chown (which may clear mode bits), as at bind; with a
        // new owner but the same mode, the mode is set again for that reason.
        if (after.mode && chmod(path->c_str(), *after.mode) < 0) {
            const int error = errno;
            std::string restored;
            // Put the old owner back so the file is as before, not half
            // changed; if that fails too, the error says so.
            if (ownerChanged && lchown(path->c_str(), st.st_uid, st.st_gid) < 0) {
                restored = " (and putting its owner back failed: " + errnoText(errno) + ")";
            }
            return errnoError(error, "Failed to set mode of socket file " + *path + " to " +
                                         octal(*after.mode) + restored);
        }
    }

    const int backlogBefore = before.backlog.value_or(kDefaultBacklog);
    const int backlogAfter = after.backlog.value_or(kDefaultBacklog);
    if (backlogBefore != backlogAfter) {
        int type = 0;
        socklen_t length = sizeof type;
        if (getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &length) < 0) {
            return errnoError(errno, "Failed to get the type of fd " + std::to_string(fd.get()));
        }
        // Linux lets listen() on a listening socket change its backlog;
        // connections already queued stay queued. Datagram sockets have none.
        if (type != SOCK_DGRAM && listen(fd.get(), backlogAfter) < 0) {
            return errnoError(errno, "Failed to listen on fd " + std::to_string(fd.get()) + " with backlog " +
                                         std::to_string(backlogAfter));
        }
    }
    return {};
}

} // namespace fdsup
