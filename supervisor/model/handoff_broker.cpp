// The handoff broker: holds the connections draining workers hand over and gives each to a ready adopter.
#include "model/handoff_broker.hpp"

#include <algorithm>
#include <cerrno>

#include <sys/epoll.h>
#include <sys/resource.h>

#include <spdlog/spdlog.h>

namespace fdsup {

HandoffBroker::HandoffBroker(EventLoop &loop, Clock &clock, HandoffLimits &limits, std::string service,
                             PeerVisitor peers)
    : loop_(loop), clock_(clock), limits_(limits), service_(std::move(service)), peers_(std::move(peers))
{}

HandoffBroker::~HandoffBroker()
{
    release(held_.size());
}

void HandoffBroker::release(std::size_t count)
{
    limits_.heldTotal -= std::min(count, limits_.heldTotal);
}

void HandoffBroker::unstore(const HeldConnection &held)
{
    if (limits_.store != nullptr && !held.storedAs.empty()) {
        limits_.store->remove(held);
    }
}

void HandoffBroker::refuse(ChannelPeer &peer, std::uint64_t id, int code, const std::string &why)
{
    ++counters_.refused;
    if (std::string note; refusedLog_.allow(note)) {
        spdlog::warn("{}: handoff of connection {} refused: {}{}", peer.describe(), id, why, note);
    }
    ChannelMessage result;
    result.type = ChannelType::HandoffResult;
    result.id = id;
    result.code = static_cast<std::uint32_t>(code);
    result.text = why.substr(0, kChannelMaxText);
    peer.channel()->sendInOrder(std::move(result));
}

void HandoffBroker::accept(ChannelPeer &peer, ChannelMessage &message,
                           std::span<const ListenerAddress> listeners)
{
    WorkerChannel &channel = *peer.channel();
    if ((channel.capabilities & kChannelCapHandoff) == 0) {
        refuse(peer, message.id, EPERM, "handoff is not enabled for this service (handoff = false)");
        return;
    }
    if (message.fds.empty()) {
        // Its descriptors never arrived (recvChannelMessage's -EMFILE).
        rlimit limit{};
        (void)getrlimit(RLIMIT_NOFILE, &limit);
        refuse(peer, message.id, EMFILE,
               "fdsupd could not receive the connection: " + errnoText(EMFILE) + " (its RLIMIT_NOFILE is " +
                   std::to_string(limit.rlim_cur) + "); the worker keeps it");
        return;
    }
    if (message.stateSize > limits_.stateLimit) {
        refuse(peer, message.id, EMSGSIZE,
               "state of " + std::to_string(message.stateSize) + " bytes is over the limit of " +
                   std::to_string(limits_.stateLimit) + " ([supervisor.limits] state_size)");
        return;
    }
    if (held_.size() >= limits_.heldLimitPerService) {
        refuse(peer, message.id, ENOBUFS,
               "the service holds " + std::to_string(held_.size()) +
                   " connections already ([supervisor.limits] held_connections_per_service)");
        return;
    }
    if (limits_.heldTotal >= limits_.heldLimit) {
        refuse(peer, message.id, ENOBUFS,
               "fdsupd holds " + std::to_string(limits_.heldTotal) +
                   " connections already ([supervisor.limits] held_connections)");
        return;
    }
    // Trust nothing: the connection must come from one of the listeners of
    // this worker's own configuration.
    if (auto checked = checkHandedConnection(message.fds.at(0).borrow(), listeners); !checked) {
        refuse(peer, message.id, checked.error().code, checked.error().message);
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
    held->from = peer.pid();
    held->fromGeneration = peer.peerGeneration();
    held->fromExternal = peer.isExternal();
    held->since = clock_.now();
    held_.push_back(std::move(held));
    ++limits_.heldTotal;
    peer.handedOver();
    ++counters_.handed;
    // Given to an adopter now if one is ready; parked (watched, stored,
    // timed) only if still held. Both before the answer, so that the worker
    // closes its copy only once fdsupd's is safe.
    deliver();
    park();
    ChannelMessage result;
    result.type = ChannelType::HandoffResult;
    result.id = message.id;
    result.code = 0;
    channel.sendInOrder(std::move(result));
}

void HandoffBroker::park()
{
    auto first = held_.end();
    while (first != held_.begin() && !(*std::prev(first))->parked) {
        --first;
    }
    for (auto it = first; it != held_.end(); ++it) {
        HeldConnection &held = **it;
        held.parked = true;
        watchHangup(held);
        if (limits_.store != nullptr && held.storedAs.empty()) {
            limits_.store->put(service_, held);
        }
    }
    if (!held_.empty() && !holdTimer_) {
        expire(); // arms the timer for the oldest
    }
}

void HandoffBroker::deliver()
{
    while (!held_.empty()) {
        // The newest generation first (a rollout's replacements; external
        // workers count as the current one), then the adopter given the
        // fewest so far.
        ChannelPeer *target = nullptr;
        peers_([&](ChannelPeer &peer) {
            if (!canAdopt(peer)) {
                return;
            }
            if (target == nullptr || peer.peerGeneration() > target->peerGeneration() ||
                (peer.peerGeneration() == target->peerGeneration() && peer.adopted() < target->adopted())) {
                target = &peer;
            }
        });
        if (target == nullptr) {
            return; // held until an adopter is ready, or the hold timeout
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
        const int r = target->channel()->send(adopt);
        if (r == 0) {
            target->countAdopted();
            ++counters_.adopted;
            if (spdlog::should_log(spdlog::level::debug)) { // describe() formats a string
                spdlog::debug("{}: connection {} from pid {} adopted by {}", service_, held.id, held.from,
                              target->describe());
            }
            held.hangup.reset();
            unstore(held);
            held_.pop_front(); // our copies close with `adopt`
            release(1);
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
                if (auto t = clock_.startTimer(kRetryAfter, [this] {
                        retryTimer_.reset();
                        deliver();
                    })) {
                    retryTimer_ = std::move(*t);
                }
            }
            return;
        }
        target->channel()->fail(static_cast<std::uint32_t>(-r),
                                std::string("cannot send ADOPT: ") + errnoText(-r));
    }
    holdTimer_.reset();
}

void HandoffBroker::expire()
{
    holdTimer_.reset();
    const Duration now = clock_.now();
    while (!held_.empty() && now - held_.front()->since >= holdTimeout_) {
        const HeldConnection &oldest = *held_.front();
        if (std::string note; expiredLog_.allow(note)) {
            spdlog::warn("{}: connection {} from pid {} was not adopted within {}, closing it{}", service_,
                         oldest.id, oldest.from, formatDuration(holdTimeout_), note);
        }
        ++counters_.expired;
        unstore(oldest);
        held_.pop_front();
        release(1);
    }
    if (held_.empty()) {
        return;
    }
    if (auto t = clock_.startTimer(held_.front()->since + holdTimeout_ - now, [this] { expire(); })) {
        holdTimer_ = std::move(*t);
    }
}

void HandoffBroker::watchHangup(HeldConnection &held)
{
    const HeldConnection *raw = &held;
    // EPOLLRDHUP: the client closed while nobody was serving it.
    if (auto watch = loop_.addIo(held.fd.borrow(), EPOLLRDHUP, [this, raw](std::uint32_t) {
            ++counters_.hungUp;
            drop(raw);
        })) {
        held.hangup = std::move(*watch);
    }
}

std::vector<std::unique_ptr<HeldConnection>> HandoffBroker::takeAll()
{
    std::vector<std::unique_ptr<HeldConnection>> taken;
    taken.reserve(held_.size());
    for (auto &held : held_) {
        held->hangup.reset();
        unstore(*held);
        held->storedAs.clear();
        taken.push_back(std::move(held));
    }
    held_.clear();
    release(taken.size());
    holdTimer_.reset();
    retryTimer_.reset();
    return taken;
}

Result<void> HandoffBroker::hold(std::unique_ptr<HeldConnection> held, Duration remaining,
                                 std::span<const ListenerAddress> listeners)
{
    if (held->stateSize > limits_.stateLimit) {
        return Error{EMSGSIZE, "state of " + std::to_string(held->stateSize) +
                                   " bytes is over the limit of " + std::to_string(limits_.stateLimit) +
                                   " ([supervisor.limits] state_size)"};
    }
    if (held_.size() >= limits_.heldLimitPerService || limits_.heldTotal >= limits_.heldLimit) {
        return Error{ENOBUFS, "over the held connections limit ([supervisor.limits] held_connections, "
                              "held_connections_per_service)"};
    }
    if (auto checked = checkHandedConnection(held->fd.borrow(), listeners); !checked) {
        return checked.error();
    }
    // Its remaining hold, counted from now: `since` as if held here all along.
    held->since = clock_.now() - (holdTimeout_ - std::clamp(remaining, Duration::zero(), holdTimeout_));
    held->parked = true;
    watchHangup(*held);
    if (limits_.store != nullptr && held->storedAs.empty()) {
        limits_.store->put(service_, *held);
    }
    const auto at =
        std::find_if(held_.begin(), held_.end(), [&](const auto &h) { return h->since > held->since; });
    held_.insert(at, std::move(held));
    ++limits_.heldTotal;
    ++counters_.handed;
    expire(); // re-arms the timer for the oldest
    deliver();
    return {};
}

void HandoffBroker::drop(const HeldConnection *held)
{
    const auto it =
        std::find_if(held_.begin(), held_.end(), [held](const auto &h) { return h.get() == held; });
    if (it == held_.end()) {
        return;
    }
    spdlog::debug("{}: the client of held connection {} went away", service_, held->id);
    unstore(**it);
    held_.erase(it); // destroys the source that called us: allowed
    release(1);
    if (held_.empty()) {
        holdTimer_.reset();
    }
}

} // namespace fdsup
