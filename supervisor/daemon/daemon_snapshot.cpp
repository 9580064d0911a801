// The daemon across its own re-exec: what blocks one, its part of the state, and its restore.
#include <algorithm>
#include <tuple>
#include <utility>

#include <sys/resource.h>

#include <spdlog/spdlog.h>

#include "daemon/daemon.hpp"

namespace fdsup {

std::string Daemon::reexecBusy(bool &unsupported) const
{
    unsupported = false;
    if (shuttingDown_) {
        unsupported = true;
        return "fdsupd is stopping";
    }
    if (reload_ || committing_) {
        return "a reload is applying";
    }
    if (!removing_.empty()) {
        return "service '" + removing_.front() + "' is being removed by a reload";
    }
    for (const auto &[name, orphans] : orphaned_) {
        if (orphans && !orphans->empty()) {
            return "service '" + name + "': a dead predecessor's orphaned workers are being replaced";
        }
    }
    if (manager_.pending() > 0) {
        // The outbox is this process's memory: it would be lost in the exec.
        return std::to_string(manager_.pending()) + " message(s) to the manager wait for room in its queue";
    }
    if (!retiringSockets_.empty()) {
        return "socket '" + retiringSockets_.front() + "' is being closed by a reload";
    }
    for (const auto &service : services_) {
        if (const config::ServiceConfig *running = config_.findService(service->name());
            running == nullptr || !(*running == service->config())) {
            // A rolled-back reload leaves the service on its own
            // configuration; state version 1 carries the daemon's only.
            unsupported = true;
            return "service '" + service->name() + "' runs another configuration than the one in force";
        }
        if (std::string why = service->busyReason(); !why.empty()) {
            return why;
        }
    }
    return {};
}

void Daemon::snapshot(ReexecState &state) const
{
    state.configPath = config_.files.empty() ? std::string() : config_.files.front();
    state.configText = config::renderConfig(config_);
    state.notifyPrefix = context_->notifyPrefix;
    state.nextInstanceId = context_->nextInstanceId;
    state.nofileCur = context_->originalNofile.soft;
    state.nofileMax = context_->originalNofile.hard;
    for (const auto &held : sockets_.sockets()) {
        SocketSnapshot socket{held.config.name, {}, held.addresses, held.adopted};
        for (const auto &fd : held.fds) {
            socket.fds.push_back(fd.get());
        }
        state.sockets.push_back(std::move(socket));
    }
    for (const auto &service : services_) {
        state.services.push_back(service->snapshot());
    }
    state.metricsFd = metrics_ ? metrics_->listener().get() : -1;
    static_assert(std::tuple_size_v<decltype(state.reloads)> == ReloadOutcome::kKinds);
    state.reloads = reloads_;
}

Result<void> Daemon::checkState(const config::Config &config, const ReexecState &state)
{
    for (const auto &socket : config.sockets) {
        const auto it = std::find_if(state.sockets.begin(), state.sockets.end(),
                                     [&](const SocketSnapshot &s) { return s.name == socket.name; });
        // A receive = true socket not received yet (or released) has none.
        if (it == state.sockets.end() || (it->fds.empty() && !socket.receive)) {
            return Error{EBADMSG,
                         "state: socket '" + socket.name + "' of the configuration is not in the state"};
        }
    }
    for (const auto &service : config.services) {
        if (std::none_of(state.services.begin(), state.services.end(),
                         [&](const ServiceSnapshot &s) { return s.name == service.name; })) {
            return Error{EBADMSG,
                         "state: service '" + service.name + "' of the configuration is not in the state"};
        }
    }
    return {};
}

Result<std::unique_ptr<Daemon>> Daemon::restore(EventLoop &loop, config::Config config, ReexecState &state)
{
    // The sockets are taken as inherited ones (checked as such); every
    // service's descriptors are owned by Service::restore.
    InheritedFds inherited;
    for (auto &socket : state.sockets) {
        for (const int fd : socket.fds) {
            inherited.byName.emplace(socket.name, UniqueFd(fd));
        }
    }
    if (auto checked = checkState(config, state); !checked) {
        return checked.error();
    }
    std::unique_ptr<Daemon> daemon(new Daemon(loop, std::move(config)));
    daemon->restored_ = true;
    const config::Config &cfg = daemon->config_;
    (void)raiseFileLimit(cfg.supervisor.limits.nofile);
    auto sockets = SocketSet::open(cfg, std::move(inherited));
    if (!sockets) {
        return sockets.error();
    }
    daemon->sockets_ = std::move(*sockets);
    for (const auto &socket : state.sockets) {
        if (HeldSocket *held = daemon->sockets_.find(socket.name)) {
            held->adopted = socket.adopted;
        }
    }
    daemon->context_ = std::make_unique<ServiceContext>(
        ServiceContext{loop, loop, daemon->sockets_, state.notifyPrefix,
                       config::ResourceLimit{RLIMIT_NOFILE, state.nofileCur, state.nofileMax},
                       state.nextInstanceId, HandoffLimits{}, cfg.supervisor.preloadLibrary});
    HandoffLimits &handoff = daemon->context_->handoff;
    handoff.heldLimit = cfg.supervisor.limits.heldConnections;
    handoff.heldLimitPerService = cfg.supervisor.limits.heldConnectionsPerService;
    handoff.stateLimit = cfg.supervisor.limits.stateSize;
    daemon->heldStore_ = std::make_unique<HeldStore>(daemon->manager_, heldStoreCapacity(daemon->sockets_));
    handoff.store = daemon->heldStore_.get();
    for (const auto &serviceConfig : cfg.services) {
        const auto snapshot =
            std::find_if(state.services.begin(), state.services.end(),
                         [&](const ServiceSnapshot &s) { return s.name == serviceConfig.name; });
        if (snapshot == state.services.end()) {
            return Error{EBADMSG, "state: service '" + serviceConfig.name +
                                      "' of the configuration is not in the state"};
        }
        ServiceObserver &observer = *daemon;
        auto service = Service::restore(*daemon->context_, serviceConfig, *snapshot, observer);
        snapshot->notifyFd = -1; // owned (and on error closed) by Service::restore
        snapshot->instances.clear();
        if (!service) {
            return service.error();
        }
        daemon->services_.push_back(std::move(*service));
    }
    // The endpoint's socket is carried when it was served: scrapes queued
    // during the exec are answered by the new image, none is refused.
    daemon->reloads_ = state.reloads;
    UniqueFd metrics(std::exchange(state.metricsFd, -1));
    auto served = metrics ? daemon->serveMetrics(std::move(metrics)) : daemon->openMetrics();
    if (!served) {
        return served.error();
    }
    return daemon;
}

} // namespace fdsup
