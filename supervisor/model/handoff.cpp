// The worker channel as the service sees it, and the handoff broker: holds
// the connections draining workers hand over and gives each, with its state,
// to a ready replacement (docs/worker-channel.md, docs/handoff.md).
#include <algorithm>
#include <cerrno>

#include <fcntl.h>
#include <sys/epoll.h>

#include <spdlog/spdlog.h>

#include "io/handoff_check.hpp"
#include "model/service.hpp"

namespace fdsup {
namespace {

// How soon a replacement whose channel was full is tried again.
constexpr auto kRetryAfter = std::chrono::milliseconds(20);

std::uint32_t allowedCapabilities(const config::ServiceConfig &config)
{
    std::uint32_t allowed = 0;
    if (config.handoff) {
        allowed |= kChannelCapHandoff | kChannelCapAdopt;
    }
    if (config.activation == config::Activation::Channel) {
        allowed |= kChannelCapListeners;
    }
    return allowed;
}

} // namespace

bool Service::wantsChannel(const config::ServiceConfig &config) const
{
    return config.handoff || config.activation == config::Activation::Channel ||
           config.ready == config::Readiness::Channel;
}

const config::ServiceConfig &Service::configOf(const ChannelPeer &peer) const
{
    return peer.instance != nullptr ? peer.instance->config() : config();
}

unsigned Service::generationOf(const ChannelPeer &peer) const
{
    return peer.instance != nullptr ? peer.instance->generation() : generation();
}

std::string Service::peerName(const ChannelPeer &peer) const
{
    if (peer.instance != nullptr) {
        return name() + "[" + std::to_string(peer.instance->slot_) + "] (pid " + std::to_string(peer.pid) +
               ")";
    }
    return name() + " external worker " + std::to_string(peer.external->id) + " (pid " +
           std::to_string(peer.pid) + ", uid " + std::to_string(peer.external->uid) + ")";
}

bool Service::canAdopt(const ChannelPeer &peer)
{
    if (!peer.granted(kChannelCapAdopt)) {
        return false;
    }
    if (peer.instance != nullptr) {
        return peer.instance->state_ == InstanceState::Ready && !peer.instance->retiring_;
    }
    return peer.external->ready && !peer.external->draining;
}

void Service::onChannelMessage(ChannelPeer &peer, ChannelMessage &&message)
{
    WorkerChannel &channel = *peer.channel;
    if (!channel.welcomed && message.type != ChannelType::Hello) {
        channel.fail(EPROTO,
                     std::string("the first message must be HELLO, not ") + channelTypeName(message.type));
        return;
    }
    switch (message.type) {
    case ChannelType::Hello:
        welcomePeer(peer, message);
        return;
    case ChannelType::ListenersRequest:
        sendListeners(peer);
        return;
    case ChannelType::Ready:
        if (peer.external != nullptr) {
            if (!message.text.empty()) {
                peer.external->status = message.text;
            }
            if (!peer.external->ready) {
                peer.external->ready = true;
                spdlog::info("{} is ready{}", peerName(peer),
                             message.text.empty() ? "" : ": " + message.text);
                deliverHeld();
                changed();
            }
            return;
        }
        if (!message.text.empty()) {
            peer.instance->status_ = message.text;
        }
        if (configOf(peer).ready == config::Readiness::Channel &&
            peer.instance->state_ == InstanceState::Starting) {
            Instance &instance = *peer.instance;
            instance.execDone_ = true;
            instance.statusSource_.reset();
            instance.statusPipe_.reset();
            becomeReady(instance);
        }
        return;
    case ChannelType::Handoff:
        acceptHandoff(peer, message);
        return;
    case ChannelType::Done:
        spdlog::debug("{} has handed over everything", peerName(peer));
        return;
    case ChannelType::Error:
        spdlog::warn("{} reports a channel error: {} ({})", peerName(peer), message.text,
                     errnoText(static_cast<int>(message.code)));
        channel.close("the worker reported an error");
        return;
    case ChannelType::Welcome:
    case ChannelType::Reject:
    case ChannelType::Listeners:
    case ChannelType::Drain:
    case ChannelType::HandoffResult:
    case ChannelType::Adopt:
        break;
    }
    channel.fail(EPROTO, std::string(channelTypeName(message.type)) + " is not sent by workers");
}

void Service::welcomePeer(ChannelPeer &peer, const ChannelMessage &hello)
{
    WorkerChannel &channel = *peer.channel;
    if (channel.welcomed) {
        channel.fail(EPROTO, "HELLO sent twice");
        return;
    }
    if (hello.minVersion > kChannelVersion || hello.maxVersion < kChannelVersion) {
        ChannelMessage reject;
        reject.type = ChannelType::Reject;
        reject.code = EPROTONOSUPPORT;
        reject.text = "fdsupd speaks worker channel version " + std::to_string(kChannelVersion) +
                      ", the worker " + std::to_string(hello.minVersion) + " to " +
                      std::to_string(hello.maxVersion);
        (void)channel.send(reject);
        channel.close(reject.text);
        return;
    }
    const config::ServiceConfig &config = configOf(peer);
    // An external worker connected for its listeners: it always may ask.
    const std::uint32_t allowed =
        allowedCapabilities(config) | (peer.external != nullptr ? kChannelCapListeners : 0);
    ChannelMessage welcome;
    welcome.type = ChannelType::Welcome;
    welcome.version = kChannelVersion;
    welcome.capabilities = hello.capabilities & allowed;
    welcome.service = name();
    welcome.instance = peer.instance != nullptr ? peer.instance->slot_ : kChannelExternalInstance;
    welcome.generation = generationOf(peer);
    welcome.maxInlineState =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(kChannelMaxInlineState, context_.stateLimit));
    welcome.maxMemfdState = std::min<std::uint64_t>(kChannelMaxMemfdState, context_.stateLimit);
    if (const int r = channel.send(welcome); r < 0) {
        channel.fail(static_cast<std::uint32_t>(-r), std::string("cannot send WELCOME: ") + errnoText(-r));
        return;
    }
    channel.welcomed = true;
    channel.capabilities = welcome.capabilities;
    spdlog::debug("{} joined its channel (capabilities {:#x})", peerName(peer), channel.capabilities);
    deliverHeld();
}

void Service::sendListeners(ChannelPeer &peer)
{
    WorkerChannel &channel = *peer.channel;
    if ((channel.capabilities & kChannelCapListeners) == 0) {
        channel.fail(EPERM, "listeners over the channel need activation = \"channel\"");
        return;
    }
    ChannelMessage listeners;
    listeners.type = ChannelType::Listeners;
    for (const auto &socketName : configOf(peer).sockets) {
        const HeldSocket *socket = context_.sockets.find(socketName);
        for (std::size_t i = 0; socket != nullptr && i < socket->fds.size(); ++i) {
            UniqueFd copy(fcntl(socket->fds[i].get(), F_DUPFD_CLOEXEC, 3));
            if (!copy) {
                channel.fail(static_cast<std::uint32_t>(errno), "cannot duplicate a listener");
                return;
            }
            listeners.names.push_back(socketName);
            listeners.fds.push_back(std::move(copy));
        }
    }
    if (const int r = channel.send(listeners); r < 0) {
        channel.fail(static_cast<std::uint32_t>(-r), std::string("cannot send LISTENERS: ") + errnoText(-r));
    }
}

void Service::onChannelClosed(ChannelPeer &peer, const std::string &why)
{
    spdlog::info("{}: channel closed: {}", peerName(peer), why);
    if (peer.external != nullptr) {
        // Not from here: this runs inside the channel being closed.
        if (!externalReaper_) {
            if (auto defer = context_.loop.addDefer([this] { reapExternal(); })) {
                externalReaper_ = std::move(*defer);
            }
        }
    }
    // An instance's channel object stays (closed) until the instance goes.
}

void Service::refuseHandoff(ChannelPeer &peer, std::uint64_t id, int code, const std::string &why)
{
    ++handoff_.refused;
    spdlog::warn("{}: handoff of connection {} refused: {}", peerName(peer), id, why);
    ChannelMessage result;
    result.type = ChannelType::HandoffResult;
    result.id = id;
    result.code = static_cast<std::uint32_t>(code);
    result.text = why.substr(0, kChannelMaxText);
    (void)peer.channel->send(result);
}

void Service::acceptHandoff(ChannelPeer &peer, ChannelMessage &message)
{
    WorkerChannel &channel = *peer.channel;
    if ((channel.capabilities & kChannelCapHandoff) == 0) {
        refuseHandoff(peer, message.id, EPERM, "handoff is not enabled for this service (handoff = false)");
        return;
    }
    if (message.stateSize > context_.stateLimit) {
        refuseHandoff(peer, message.id, EMSGSIZE,
                      "state of " + std::to_string(message.stateSize) + " bytes is over the limit of " +
                          std::to_string(context_.stateLimit) + " ([supervisor.limits] state_size)");
        return;
    }
    if (held_.size() >= context_.heldLimitPerService) {
        refuseHandoff(peer, message.id, ENOBUFS,
                      "the service holds " + std::to_string(held_.size()) +
                          " connections already ([supervisor.limits] held_connections_per_service)");
        return;
    }
    if (context_.heldTotal >= context_.heldLimit) {
        refuseHandoff(peer, message.id, ENOBUFS,
                      "fdsupd holds " + std::to_string(context_.heldTotal) +
                          " connections already ([supervisor.limits] held_connections)");
        return;
    }
    // Trust nothing: the connection must come from one of the listeners of
    // this worker's own configuration.
    std::vector<BorrowedFd> listeners;
    for (const auto &socketName : configOf(peer).sockets) {
        if (const HeldSocket *socket = context_.sockets.find(socketName)) {
            for (const auto &fd : socket->fds) {
                listeners.push_back(fd.borrow());
            }
        }
    }
    const auto addresses = listenerAddresses(listeners);
    if (auto checked = checkHandedConnection(message.fds.at(0).borrow(), addresses); !checked) {
        refuseHandoff(peer, message.id, checked.error().code, checked.error().message);
        return;
    }
    auto held = std::make_unique<HeldConnection>();
    held->id = message.id;
    held->fd = std::move(message.fds[0]);
    held->stateFlags = message.stateFlags;
    held->stateSize = message.stateSize;
    held->state = std::move(message.state);
    if ((message.stateFlags & kChannelStateMemfd) != 0) {
        held->stateMemfd = std::move(message.fds.at(1));
    }
    held->from = peer.pid;
    held->fromGeneration = generationOf(peer);
    held->fromExternal = peer.external != nullptr;
    held->since = context_.loop.now();
    HeldConnection *raw = held.get();
    // EPOLLRDHUP: the client closed while nobody was serving it.
    if (auto watch = context_.loop.addIo(raw->fd.borrow(), EPOLLRDHUP, [this, raw](std::uint32_t) {
            ++handoff_.hungUp;
            dropHeld(raw);
        })) {
        held->hangup = std::move(*watch);
    }
    held_.push_back(std::move(held));
    ++context_.heldTotal;
    if (peer.external != nullptr && !peer.external->draining) {
        // Nobody tells an external worker to drain: handing over is how it
        // says it does. Its connections must not come straight back.
        peer.external->draining = true;
        spdlog::info("{} is draining", peerName(peer));
    }
    ++handoff_.handed;
    ChannelMessage result;
    result.type = ChannelType::HandoffResult;
    result.id = message.id;
    result.code = 0;
    (void)channel.send(result);
    if (!holdTimer_) {
        expireHeld(); // arms the timer for the oldest
    }
    deliverHeld();
}

void Service::deliverHeld()
{
    while (!held_.empty()) {
        // The newest generation first (a rollout's replacements; external
        // workers count as the current one), then the adopter given the
        // fewest so far.
        ChannelPeer *target = nullptr;
        const auto consider = [&](ChannelPeer &peer) {
            if (!canAdopt(peer)) {
                return;
            }
            if (target == nullptr || generationOf(peer) > generationOf(*target) ||
                (generationOf(peer) == generationOf(*target) && peer.adopted < target->adopted)) {
                target = &peer;
            }
        };
        for (auto &instance : instances_) {
            consider(instance->peer_);
        }
        for (auto &external : external_) {
            consider(external->peer);
        }
        if (target == nullptr) {
            return; // held until a replacement is ready, or handoff_timeout
        }
        HeldConnection &held = *held_.front();
        ChannelMessage adopt;
        adopt.type = ChannelType::Adopt;
        adopt.id = held.id;
        adopt.stateFlags = held.stateFlags;
        adopt.stateSize = held.stateSize;
        adopt.state = std::move(held.state);
        adopt.fds.push_back(std::move(held.fd));
        if (held.stateMemfd) {
            adopt.fds.push_back(std::move(held.stateMemfd));
        }
        const int r = target->channel->send(adopt);
        if (r == 0) {
            ++target->adopted;
            ++handoff_.adopted;
            spdlog::debug("{}: connection {} from pid {} adopted by {}", name(), held.id, held.from,
                          peerName(*target));
            held.hangup.reset();
            held_.pop_front(); // our copies close with `adopt`
            --context_.heldTotal;
            continue;
        }
        // Not sent: the connection stays held, unchanged.
        held.state = std::move(adopt.state);
        held.fd = std::move(adopt.fds.at(0));
        if (adopt.fds.size() > 1) {
            held.stateMemfd = std::move(adopt.fds[1]);
        }
        if (r == -EAGAIN) {
            if (!retryTimer_) {
                if (auto t = context_.loop.addTimer(kRetryAfter, [this] {
                        retryTimer_.reset();
                        deliverHeld();
                    })) {
                    retryTimer_ = std::move(*t);
                }
            }
            return;
        }
        target->channel->fail(static_cast<std::uint32_t>(-r),
                              std::string("cannot send ADOPT: ") + errnoText(-r));
    }
    holdTimer_.reset();
}

void Service::expireHeld()
{
    holdTimer_.reset();
    const Duration now = context_.loop.now();
    const Duration timeout = config().handoffTimeout;
    while (!held_.empty() && now - held_.front()->since >= timeout) {
        const HeldConnection &oldest = *held_.front();
        spdlog::warn("{}: connection {} from pid {} was not adopted within {}, closing it", name(), oldest.id,
                     oldest.from, formatDuration(timeout));
        ++handoff_.expired;
        held_.pop_front();
        --context_.heldTotal;
    }
    if (held_.empty()) {
        return;
    }
    if (auto t = context_.loop.addTimer(held_.front()->since + timeout - now, [this] { expireHeld(); })) {
        holdTimer_ = std::move(*t);
    }
}

void Service::dropHeld(HeldConnection *held)
{
    const auto it =
        std::find_if(held_.begin(), held_.end(), [held](const auto &h) { return h.get() == held; });
    if (it == held_.end()) {
        return;
    }
    spdlog::debug("{}: the client of held connection {} went away", name(), held->id);
    held_.erase(it); // destroys the source that called us: allowed
    --context_.heldTotal;
    if (held_.empty()) {
        holdTimer_.reset();
    }
}

bool Service::drainsOverChannel(const Instance &instance)
{
    return instance.peer_.granted(kChannelCapHandoff);
}

std::string Service::drainHow(const Instance &instance)
{
    return drainsOverChannel(instance) ? "over its channel"
                                       : "with " + config::signalName(instance.config().drainSignal);
}

bool Service::sendDrain(Instance &instance)
{
    if (!drainsOverChannel(instance)) {
        return false;
    }
    ChannelMessage drain;
    drain.type = ChannelType::Drain;
    drain.deadlineUsec =
        static_cast<std::uint64_t>((context_.loop.now() + instance.config().drainTimeout).count());
    return instance.peer_.channel->send(drain) == 0;
}

nlohmann::json Service::connectionsJson() const
{
    const Duration now = context_.loop.now();
    nlohmann::json held = nlohmann::json::array();
    for (const auto &h : held_) {
        held.push_back({{"id", h->id},
                        {"from_pid", h->from},
                        {"from_external", h->fromExternal},
                        {"from_generation", h->fromGeneration},
                        {"held_usec", (now - h->since).count()},
                        {"state_bytes", h->stateSize}});
    }
    nlohmann::json adopters = nlohmann::json::array();
    for (const auto &instance : instances_) {
        if (instance->peer_.joined()) {
            adopters.push_back({{"index", instance->slot_},
                                {"external", false},
                                {"pid", instance->pid_},
                                {"generation", instance->generation()},
                                {"adopted", instance->peer_.adopted},
                                {"ready", canAdopt(instance->peer_)},
                                {"draining", instance->state_ == InstanceState::Draining}});
        }
    }
    for (const auto &external : external_) {
        if (external->peer.joined()) {
            adopters.push_back({{"index", nullptr},
                                {"external", true},
                                {"id", external->id},
                                {"pid", external->peer.pid},
                                {"uid", external->uid},
                                {"generation", generation()},
                                {"adopted", external->peer.adopted},
                                {"ready", canAdopt(external->peer)},
                                {"draining", external->draining}});
        }
    }
    return {{"service", name()},
            {"handoff", config().handoff},
            {"handoff_timeout_usec", config().handoffTimeout.count()},
            {"held", held},
            {"instances", adopters},
            {"handed", handoff_.handed},
            {"adopted", handoff_.adopted},
            {"expired", handoff_.expired},
            {"hung_up", handoff_.hungUp},
            {"refused", handoff_.refused}};
}

} // namespace fdsup
