// A service across fdsupd's re-exec: what blocks it, its snapshot, and its restore in the new image.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "model/service.hpp"

namespace fdsup {

std::string Service::busyReason() const
{
    const std::string self = "service '" + name() + "': ";
    if (rollouts_.active()) {
        return self + "rollout " + std::to_string(rollouts_.currentId()) + " in progress";
    }
    if (rollouts_.queued() > 0) {
        return self + std::to_string(rollouts_.queued()) + " restart(s) queued";
    }
    if (!broker_.held().empty()) {
        return self + std::to_string(broker_.held().size()) + " handed-over connection(s) held";
    }
    for (unsigned i = 0; i < restartTimers_.size(); ++i) {
        if (restartTimers_[i]) {
            return self + "a restart of " + name() + "[" + std::to_string(i) + "] is pending";
        }
    }
    for (const auto &instance : instances_) {
        if (std::string why = instance->busyReason(); !why.empty()) {
            return self + why;
        }
    }
    return {};
}

ServiceSnapshot Service::snapshot() const
{
    ServiceSnapshot s;
    s.name = name();
    s.generation = generation();
    s.nextGeneration = nextGeneration_;
    s.active = active_;
    s.failed = failed_;
    s.failedReason = failedReason_;
    s.restartsTotal = restartsTotal_;
    for (const Duration t : restartTimes_) {
        s.restartTimesUsec.push_back(static_cast<std::int64_t>(t.count()));
    }
    s.slots = slots_;
    s.notifyFd = notify_->fd().get();
    for (const auto &instance : instances_) {
        s.instances.push_back(instance->snapshot());
    }
    s.lastRollout = rollouts_.last();
    s.rolloutSerial = rollouts_.serial();
    s.rolloutTickets = rollouts_.tickets();
    s.output = output_.entries();
    s.handoff = broker_.counters();
    s.restartsByCause = restartsByCause_;
    s.rollouts = rollouts_.counters();
    s.notifyDropped = notify_->dropped();
    s.channelDropped = session_.dropped();
    s.waitingFor = waitingFor_;
    if (preload_) {
        s.preload = preload_->snapshot();
    }
    if (activation_) {
        s.activation = activation_->snapshot();
    }
    for (const auto &stored : fdStore_.fds()) {
        s.stored.push_back(StoredFdSnapshot{stored.name, stored.fd.get(), static_cast<bool>(stored.poll)});
    }
    return s;
}

Result<std::unique_ptr<Service>> Service::restore(ServiceContext &context,
                                                  const config::ServiceConfig &config,
                                                  const ServiceSnapshot &snapshot, ServiceObserver &observer)
{
    // Every descriptor of the snapshot is owned here first, so an error
    // below leaves none open.
    UniqueFd notifyFd(snapshot.notifyFd);
    std::vector<NotifyMessage> stored;
    for (const auto &s : snapshot.stored) {
        // Stored again the way a worker stores them, so they are checked and watched the same way.
        // Built in place: GCC's -O2 sees a moved local's optionals as maybe uninitialised.
        NotifyMessage &message = stored.emplace_back();
        message.fdStore = true;
        message.fdName = s.name;
        message.fdPoll = s.poll;
        message.fds.emplace_back(s.fd);
    }
    std::vector<UniqueFd> owned;
    for (const auto &i : snapshot.instances) {
        for (const int fd : {i.pidfd, i.stdoutFd, i.stderrFd, i.channelFd}) {
            owned.emplace_back(fd);
        }
    }
    std::vector<UniqueFd> preloadFds;
    if (snapshot.preload) {
        preloadFds.emplace_back(snapshot.preload->fd);
        for (const auto &peer : snapshot.preload->peers) {
            preloadFds.emplace_back(peer.fd);
        }
    }
    std::vector<UniqueFd> activationFds;
    if (snapshot.activation) {
        activationFds.emplace_back(snapshot.activation->fd);
        for (const auto &worker : snapshot.activation->workers) {
            activationFds.emplace_back(worker.fd);
        }
    }
    const auto failed = [&](const Error &error) {
        return Error{error.code, "Service '" + config.name + "': " + error.message};
    };
    auto profile = makeProfile(config, snapshot.generation, context.preloadLibrary);
    if (!profile) {
        return failed(profile.error());
    }
    std::unique_ptr<Service> service(new Service(context, std::move(*profile), observer));
    Service *self = service.get();
    auto notify = NotifyServer::adopt(context.loop, std::move(notifyFd), [self](NotifyMessage &&message) {
        self->onNotify(std::move(message));
    });
    if (!notify) {
        return failed(notify.error());
    }
    service->notify_ = std::move(*notify);
    service->nextGeneration_ = snapshot.nextGeneration;
    service->active_ = snapshot.active;
    service->waitingFor_ = snapshot.waitingFor;
    service->failed_ = snapshot.failed;
    service->failedReason_ = snapshot.failedReason;
    service->restartsTotal_ = snapshot.restartsTotal;
    for (const auto t : snapshot.restartTimesUsec) {
        service->restartTimes_.emplace_back(t);
    }
    service->resizeSlots(static_cast<unsigned>(snapshot.slots.size()));
    service->slots_ = snapshot.slots;
    for (const auto &line : snapshot.output) {
        service->output_.add(LogLine::of(line));
    }
    service->broker_.restoreCounters(snapshot.handoff);
    service->restartsByCause_ = snapshot.restartsByCause;
    service->rollouts_.restoreCounters(snapshot.rollouts);
    service->notify_->restoreDropped(snapshot.notifyDropped);
    service->session_.restoreDropped(snapshot.channelDropped);
    for (auto &message : stored) {
        service->fdStore_.apply(message);
    }
    service->rollouts_.restoreHistory(snapshot.lastRollout, snapshot.rolloutSerial, snapshot.rolloutTickets);
    for (std::size_t k = 0; k < snapshot.instances.size(); ++k) {
        if (auto adopted = service->adoptInstance(snapshot.instances[k], &owned[k * 4]); !adopted) {
            return failed(adopted.error());
        }
    }
    if (auto preload = service->restorePreload(snapshot.preload, std::move(preloadFds)); !preload) {
        return failed(preload.error());
    }
    if (auto activation = service->restoreActivation(snapshot.activation, std::move(activationFds));
        !activation) {
        return failed(activation.error());
    }
    return service;
}

Result<void> Service::restoreActivation(const std::optional<ActivationSnapshot> &snapshot,
                                        std::vector<UniqueFd> fds)
{
    const auto &path = config().activationSocket;
    if (!path && !snapshot) {
        return {};
    }
    if (!path || !snapshot) {
        // The configuration restored is the one the state was written with.
        return Error{EINVAL, path ? "the state carries no activation socket for " + *path
                                  : "the state carries an activation socket the configuration does not have"};
    }
    ActivationHost &host = *this;
    auto socket = ActivationSocket::adopt(context_.loop, *path, host, *snapshot, std::move(fds));
    if (!socket) {
        return socket.error();
    }
    activation_ = std::move(*socket);
    for (const auto &worker : snapshot->workers) {
        context_.nextInstanceId = std::max(context_.nextInstanceId, worker.id + 1);
    }
    return {};
}

Result<void> Service::restorePreload(const std::optional<PreloadSnapshot> &snapshot,
                                     std::vector<UniqueFd> fds)
{
    if (config().wrap != config::Wrap::Preload) {
        return {};
    }
    if (!snapshot) {
        return openPreload(); // a state written before wrapped services were carried
    }
    PreloadHost &host = *this;
    auto socket = PreloadSocket::adopt(context_.loop, context_.clock, preloadAddress(), host, *snapshot,
                                       std::move(fds));
    if (!socket) {
        return socket.error();
    }
    preload_ = std::move(*socket);
    for (const auto &claims : snapshot->claims) {
        if (const Instance *instance = findInstance(claims.instance)) {
            preload_->restoreClaims(claims, instance->describe(), config().sockets,
                                    config().startTimeout + config().readyTimeout);
        }
    }
    return {};
}

Result<void> Service::adoptInstance(const InstanceSnapshot &snapshot, UniqueFd *fds)
{
    InstanceOwner &owner = *this;
    auto instance = std::make_unique<Instance>(owner, context_.loop, context_.clock, snapshot.slot,
                                               snapshot.id, InstanceRole::Primary, profile_);
    if (fds[3]) {
        Instance *peer = instance.get();
        auto channel = WorkerChannel::adopt(
            context_.loop, std::move(fds[3]),
            [this, peer](ChannelMessage &&message) { session_.onMessage(*peer, std::move(message)); },
            [this, peer](const std::string &why) { session_.onClosed(*peer, why); });
        if (!channel) {
            return channel.error();
        }
        (*channel)->setDropHandler([this, peer](const std::string &why) { session_.onDropped(*peer, why); });
        (*channel)->welcomed = snapshot.welcomed;
        (*channel)->capabilities = snapshot.capabilities;
        instance->setChannel(std::move(*channel));
    }
    // The instance owns the other three from here.
    for (int k = 0; k < 3; ++k) {
        (void)fds[k].release();
    }
    if (auto restored = instance->restore(snapshot); !restored) {
        return restored.error();
    }
    context_.nextInstanceId = std::max(context_.nextInstanceId, snapshot.id + 1);
    instances_.push_back(std::move(instance));
    return {};
}

} // namespace fdsup
