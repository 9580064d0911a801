// A service: its slots of instances, starting, stopping and scaling them, its state, and the wiring of its
// parts (an instance's end and the restart: service_restart.cpp; rollouts: service_rollout.cpp).
#include "model/service.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "model/inherit.hpp"
#include "model/orphans.hpp"

namespace fdsup {

InstanceEvent Service::instanceEventOf(InstanceEvent::Kind kind, const Instance &instance)
{
    InstanceEvent event;
    event.kind = kind;
    event.slot = instance.slot();
    event.id = instance.id();
    event.pid = instance.pid();
    event.generation = instance.generation();
    return event;
}

const char *serviceStateName(ServiceState state)
{
    switch (state) {
    case ServiceState::Starting:
        return "starting";
    case ServiceState::Running:
        return "running";
    case ServiceState::Stopping:
        return "stopping";
    case ServiceState::Stopped:
        return "stopped";
    case ServiceState::Failed:
        return "failed";
    }
    return "unknown";
}

Result<std::unique_ptr<Service>> Service::create(ServiceContext &context, const config::ServiceConfig &config,
                                                 ServiceObserver &observer)
{
    auto profile = makeProfile(config, 1, context.preloadLibrary);
    if (!profile) {
        return profile.error();
    }
    std::unique_ptr<Service> service(new Service(context, std::move(*profile), observer));
    Service *self = service.get();
    auto notify =
        NotifyServer::create(context.loop, context.notifyPrefix + "/notify/" + config.name,
                             [self](NotifyMessage &&message) { self->onNotify(std::move(message)); });
    if (!notify) {
        return Error{notify.error().code, "Service '" + config.name + "': " + notify.error().message};
    }
    service->notify_ = std::move(*notify);
    if (config.activationSocket) {
        auto activation = ActivationSocket::open(context.loop, *config.activationSocket, *self);
        if (!activation) {
            return Error{activation.error().code,
                         "Service '" + config.name + "': " + activation.error().message};
        }
        service->activation_ = std::move(*activation);
    }
    if (config.wrap == config::Wrap::Preload) {
        if (auto opened = service->openPreload(); !opened) {
            return opened.error();
        }
    }
    service->resizeSlots(config.instances);
    return service;
}

Service::Service(ServiceContext &context, std::shared_ptr<const Profile> profile, ServiceObserver &observer)
    : context_(context), observer_(observer), profile_(std::move(profile)),
      fdStore_(context.loop, profile_->config.name),
      broker_(context.loop, context.clock, context.handoff, profile_->config.name,
              [this](const std::function<void(ChannelPeer &)> &visit) {
                  for (const auto &instance : instances_) {
                      visit(*instance);
                  }
                  for (const auto &external : externalWorkers()) {
                      visit(*external);
                  }
              }),
      session_(profile_->config.name, context.sockets, context.handoff.stateLimit, broker_),
      rollouts_(*this, context.clock), nextGeneration_(profile_->generation + 1)
{
    broker_.setHoldTimeout(profile_->config.handoffTimeout);
}

Service::~Service() = default;

const std::vector<std::unique_ptr<ExternalWorker>> &Service::externalWorkers() const
{
    static const std::vector<std::unique_ptr<ExternalWorker>> none;
    return activation_ ? activation_->workers() : none;
}

ServiceState Service::state() const
{
    if (failed_) {
        return ServiceState::Failed;
    }
    if (!active_) {
        return instances_.empty() ? ServiceState::Stopped : ServiceState::Stopping;
    }
    // Running when every slot has a ready instance (of either generation
    // during a rollout) or finished its job. One pass over the instances,
    // not one per slot: this is asked at every event of every instance, and
    // per slot it made a rollout of 1,000 instances quadratic per event.
    std::vector<bool> up(slots_.size());
    for (unsigned i = 0; i < slots_.size(); ++i) {
        up[i] = slots_[i].done;
    }
    for (const auto &p : instances_) {
        if (p->slot() < up.size() && p->role() != InstanceRole::Retiring &&
            p->state() == InstanceState::Ready) {
            up[p->slot()] = true;
        }
    }
    const bool all = std::all_of(up.begin(), up.end(), [](bool u) { return u; });
    return all ? ServiceState::Running : ServiceState::Starting;
}

void Service::start()
{
    if (waitsForSocket()) {
        return;
    }
    if (rollouts_.active()) {
        // A rollout brings the service up as its new generation already.
        changed();
        return;
    }
    active_ = true;
    failed_ = false;
    failedReason_.clear();
    restartTimes_.clear();
    for (unsigned i = 0; i < slots_.size(); ++i) {
        restartTimers_[i].reset();
        slots_[i].consecutiveFailures = 0;
        slots_[i].done = false;
        if (primaryInstance(i) == nullptr) {
            (void)spawn(i, profile_, InstanceRole::Primary);
        }
    }
    changed();
}

void Service::stop()
{
    // Everything is going down: nothing to roll back to.
    rollouts_.abort("the service was stopped");
    active_ = false;
    waitingFor_.clear();
    // An operator's stop ends a failed state too: the service is now stopped.
    failed_ = false;
    failedReason_.clear();
    for (auto &timer : restartTimers_) {
        timer.reset();
    }
    std::vector<Instance *> running;
    for (const auto &instance : instances_) {
        running.push_back(instance.get());
    }
    for (Instance *instance : running) {
        instance->stop(); // one already draining or stopping goes on as it is
    }
    if (activation_) {
        // A closed channel tells an external worker to finish and exit.
        activation_->closeAll("the service was stopped");
    }
    changed();
}

Result<void> Service::scale(unsigned instances)
{
    const LogScope scope(LogSubject{name(), std::nullopt, 0, generation()});
    if (rollouts_.active()) {
        return Error{EBUSY, "rollout " + std::to_string(rollouts_.currentId()) + " of service '" + name() +
                                "' is in progress"};
    }
    if (config().pidFile && instances > 1) {
        return Error{EINVAL, "service '" + name() +
                                 "' has a pid_file: its instances' daemons would write the same file"};
    }
    const unsigned before = wanted();
    if (!active_) {
        reshape(ServiceShape{instances, active_, failed_, failedReason_}); // applies at the next start
        changed();
        return {};
    }
    if (instances > before) {
        reshape(ServiceShape{instances, active_, failed_, failedReason_});
        spdlog::info("Scaling {} up from {} to {} instances", name(), before, instances);
        for (unsigned i = before; i < instances; ++i) {
            (void)spawn(i, profile_, InstanceRole::Primary);
        }
    } else if (instances < before) {
        spdlog::info("Scaling {} down from {} to {} instances", name(), before, instances);
        std::vector<std::uint64_t> going;
        for (const auto &instance : instances_) {
            if (instance->slot() >= instances && instance->role() != InstanceRole::Retiring) {
                going.push_back(instance->id());
            }
        }
        for (const auto id : going) {
            drain(id);
        }
        reshape(ServiceShape{instances, active_, failed_, failedReason_});
    }
    changed();
    return {};
}

bool Service::settled() const
{
    return std::none_of(instances_.begin(), instances_.end(),
                        [](const auto &p) { return p->role() == InstanceRole::Retiring; });
}

Result<std::shared_ptr<const Profile>> Service::prepare(const config::ServiceConfig &config) const
{
    return makeProfile(config, nextGeneration_, context_.preloadLibrary);
}

bool Service::usesSocket(std::string_view socket) const
{
    const auto uses = [&](const Profile &p) {
        return std::find(p.config.sockets.begin(), p.config.sockets.end(), socket) != p.config.sockets.end();
    };
    return uses(*profile_) || (rollouts_.current() != nullptr && uses(rollouts_.current()->target())) ||
           std::any_of(instances_.begin(), instances_.end(),
                       [&](const auto &i) { return uses(i->profile()); });
}

Result<InstanceView> Service::spawn(unsigned slot, const std::shared_ptr<const Profile> &profile,
                                    InstanceRole role)
{
    const config::ServiceConfig &config = profile->config;
    InstanceOwner &owner = *this;
    auto instance = std::make_unique<Instance>(owner, context_.loop, context_.clock, slot,
                                               context_.nextInstanceId++, role, profile);
    // The listeners (activation = "listen-fds") and stored fds as LISTEN_FDS;
    // a wrapped server gets its listeners from the shim instead.
    const bool wrapped = config.wrap == config::Wrap::Preload;
    if (wrapped) {
        if (auto opened = openPreload(); !opened) {
            spdlog::error("Failed to start {}[{}]: {}", config.name, slot, opened.error().message);
            return opened.error();
        }
    }
    std::vector<NamedFd> fds;
    if (config.activation == config::Activation::ListenFds && !wrapped) {
        for (const auto &socketName : config.sockets) {
            if (const HeldSocket *socket = context_.sockets.find(socketName)) {
                for (const auto &fd : socket->fds) {
                    fds.push_back(NamedFd{fd.borrow(), socketName});
                }
            }
        }
    }
    const std::size_t listeners = fds.size();
    for (const auto &stored : fdStore_.fds()) {
        fds.push_back(NamedFd{stored.fd.borrow(), stored.name});
    }
    SpawnRequest request = spawnRequest(*profile, slot, notify_->socketPath(), fds, context_.originalNofile,
                                        wrapped ? preloadAddress() : std::string());
    if (!context_.supervisorId.empty()) {
        request.environment.push_back(std::string(kSupervisorVariable) + "=" + context_.supervisorId);
    }
    request.listenFds = (config.activation == config::Activation::ListenFds && !wrapped) || !fdStore_.empty();
    const auto announced = announceListeners(config, listeners, request);
    const auto failed = [&](const Error &error) -> Result<InstanceView> {
        spdlog::error("Failed to start {}[{}]: {}", config.name, slot, error.message);
        if (role == InstanceRole::Primary && slot < slots_.size()) {
            slots_[slot].lastError = error.message;
            slots_[slot].lastFailed = true;
            scheduleRestart(slot, Duration::zero(), true, RestartCause::SpawnFailed);
            changed();
        }
        return error;
    };
    if (!announced) {
        return failed(announced.error());
    }
    UniqueFd workerEnd; // the worker's end of its channel, until it is spawned
    if (wantsChannel(config)) {
        Instance *peer = instance.get();
        auto channel = WorkerChannel::create(
            context_.loop, workerEnd,
            [this, peer](ChannelMessage &&message) { session_.onMessage(*peer, std::move(message)); },
            [this, peer](const std::string &why) { session_.onClosed(*peer, why); });
        if (!channel) {
            return failed(channel.error());
        }
        (*channel)->setDropHandler([this, peer](const std::string &why) { session_.onDropped(*peer, why); });
        instance->setChannel(std::move(*channel));
        // Right after the listeners and stored fds, not counted in LISTEN_FDS.
        request.environment.push_back("FDSUP_CHANNEL=" + std::to_string(3 + request.fds.size()));
        request.extraFds.push_back(workerEnd.borrow());
    }
    if (auto spawned = instance->spawn(request); !spawned) {
        return failed(spawned.error());
    }
    const InstanceView view = viewOf(*instance);
    if (wrapped) {
        preload_->track(instance->id(), instance->describe(), config.sockets,
                        config.startTimeout + config.readyTimeout);
    }
    observer_.instanceEvent(*this, instanceEventOf(InstanceEvent::Kind::Started, *instance));
    instances_.push_back(std::move(instance));
    return view;
}

void Service::onNotify(NotifyMessage &&message)
{
    const auto it = std::find_if(instances_.begin(), instances_.end(),
                                 [&](const auto &instance) { return instance->pid() == message.pid; });
    if (it == instances_.end()) {
        // Identified by the kernel's credentials, not by what it says: a
        // process that is not one of this service's workers has no say.
        notify_->countDropped();
        spdlog::debug("Ignoring notification for service '{}' from pid {}, not one of its instances", name(),
                      message.pid);
        return;
    }
    if (message.fdStore || message.fdStoreRemove) {
        fdStore_.apply(message);
    }
    (*it)->onNotify(message);
}

void Service::remove(const Instance &instance)
{
    if (preload_) {
        preload_->forget(instance.id());
    }
    std::erase_if(instances_, [&](const auto &p) { return p.get() == &instance; });
}

void Service::changed()
{
    observer_.serviceChanged(*this);
}

Instance *Service::findInstance(std::uint64_t id) const
{
    const auto it =
        std::find_if(instances_.begin(), instances_.end(), [id](const auto &p) { return p->id() == id; });
    return it == instances_.end() ? nullptr : it->get();
}

Instance *Service::primaryInstance(unsigned slot) const
{
    const auto it = std::find_if(instances_.begin(), instances_.end(), [slot](const auto &p) {
        return p->slot() == slot && p->role() == InstanceRole::Primary;
    });
    return it == instances_.end() ? nullptr : it->get();
}

InstanceView Service::viewOf(const Instance &instance)
{
    return InstanceView{instance.id(), instance.pid(), instance.state()};
}

// ---- InstanceOwner ----

void Service::onInstanceReady(Instance &instance)
{
    observer_.instanceEvent(*this, instanceEventOf(InstanceEvent::Kind::Ready, instance));
    // A replacement got ready, or an instance a rollback restored.
    rollouts_.advance();
    broker_.deliver(); // a replacement to adopt what is held
    changed();
}

void Service::onInstanceChanged(Instance & /*instance*/)
{
    changed();
}

void Service::onInstanceOutput(Instance &instance, bool isStderr, std::string_view line)
{
    const LogScope scope(instance.logSubject());
    spdlog::info("{}[{}]{} {}", name(), instance.slot(), isStderr ? " (stderr):" : ":", line);
    const LogLine kept = output_.add(
        LogLine{realtimeUsec(), instance.slot(), instance.pid(), instance.generation(), isStderr, line});
    observer_.outputLine(*this, kept);
}

bool Service::sendDrain(Instance &instance)
{
    const LogScope scope(instance.logSubject());
    // Over the channel when the worker joined it for handoff: it then hands
    // its connections over instead of only finishing them.
    if (session_.sendDrain(instance, context_.clock.now() + instance.config().drainTimeout)) {
        spdlog::info("Draining {} over its channel", instance.describe());
        return true;
    }
    spdlog::info("Draining {} with {}", instance.describe(),
                 config::signalName(instance.config().drainSignal));
    return false;
}

// ---- ActivationHost ----

void Service::onExternalMessage(ChannelPeer &peer, ChannelMessage &&message)
{
    session_.onMessage(peer, std::move(message));
}

void Service::onExternalClosed(ChannelPeer &peer, const std::string &why)
{
    session_.onClosed(peer, why);
}

void Service::onExternalDropped(ChannelPeer &peer, const std::string &why)
{
    session_.onDropped(peer, why);
}

void Service::onExternalReady(ExternalWorker & /*worker*/)
{
    broker_.deliver();
    changed();
}

void Service::onExternalsChanged()
{
    changed();
}

} // namespace fdsup
