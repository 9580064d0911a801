// The handoff broker: holds the connections draining workers hand over and gives each to a ready adopter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <sys/types.h>

#include "core/channel.hpp"
#include "core/fd.hpp"
#include "io/clock.hpp"
#include "io/event_loop.hpp"
#include "io/handoff_check.hpp"
#include "io/log_limit.hpp"
#include "model/channel_peer.hpp"

namespace fdsup {

struct HeldConnection;

// Where held connections are also kept so that they outlive fdsupd (the
// manager's descriptor store: daemon/held_store.hpp). put() is called when a
// broker begins to hold one not stored yet (it sets `storedAs`), remove()
// when one it stored leaves the broker: adopted, expired, hung up or taken
// out (transfer). A broker destroyed with connections held removes nothing:
// that is what the store is for.
class HeldConnectionStore {
public:
    virtual void put(const std::string &service, HeldConnection &held) = 0;
    virtual void remove(const HeldConnection &held) = 0;

protected:
    ~HeldConnectionStore() = default;
};

// What every service's broker shares: the connections held by all of them
// together and the limits ([supervisor.limits]), and the store, if any.
struct HandoffLimits {
    std::size_t heldTotal = 0;
    std::size_t heldLimit = 65536;
    std::size_t heldLimitPerService = 16384;
    std::uint64_t stateLimit = std::uint64_t{64} * 1024;
    HeldConnectionStore *store = nullptr;
};

// A connection a draining worker handed over, waiting for a ready adopter.
struct HeldConnection {
    std::uint64_t id = 0; // chosen by the worker that handed it over
    UniqueFd fd;
    std::uint32_t stateFlags = 0;
    std::uint64_t stateSize = 0;
    std::vector<std::byte> state; // inline
    UniqueFd stateMemfd;          // or sealed in a memfd
    pid_t from = 0;
    unsigned fromGeneration = 0;
    bool fromExternal = false;
    Duration since{};
    EventSource hangup;   // the client went away while held
    std::string storedAs; // its FDNAME in the manager's descriptor store, if stored
    // Watched for a hang-up, stored, and under the hold timer: done only for
    // a connection still held once accept() has tried to deliver it, so that
    // one an adopter takes at once costs none of it (docs/handoff.md, "Performance").
    bool parked = false;
};

struct HandoffCounters {
    std::uint64_t handed = 0;  // accepted from workers
    std::uint64_t adopted = 0; // given to adopters
    std::uint64_t expired = 0; // closed at handoff_timeout
    std::uint64_t hungUp = 0;  // the client closed while held
    std::uint64_t refused = 0; // refused (not ours, over a limit...)

    friend bool operator==(const HandoffCounters &, const HandoffCounters &) = default;
};

// Contract (docs/handoff.md):
// - A HANDOFF is answered with HANDOFF_RESULT: 0 when held, else a
//   specific errno (EPERM handoff not enabled or not this service's
//   connection, EMSGSIZE state over state_size, ENOBUFS a held limit,
//   ENOTSOCK/EPROTOTYPE/EOPNOTSUPP/ENOTCONN not a connection); a refusal
//   closes what came with it and the worker keeps its channel.
// - Held connections go, in the order handed over, to the adopter of the
//   newest generation that was given the fewest so far; a full adopter
//   channel is retried after kRetryAfter, never waited on.
// - A connection nobody adopts within the hold timeout is closed (expired);
//   one whose client hangs up while held is closed at once (hung up).
// - The held count is charged to HandoffLimits::heldTotal while held and
//   given back on every path, including the broker's destruction.
class HandoffBroker {
public:
    // How soon a delivery to a full channel is tried again.
    static constexpr Duration kRetryAfter = std::chrono::milliseconds(20);
    // Calls its argument for every peer that might adopt (asked at each
    // delivery: the set changes).
    using PeerVisitor = std::function<void(const std::function<void(ChannelPeer &)> &)>;

    HandoffBroker(EventLoop &loop, Clock &clock, HandoffLimits &limits, std::string service,
                  PeerVisitor peers);
    ~HandoffBroker();
    HandoffBroker(const HandoffBroker &) = delete;
    HandoffBroker &operator=(const HandoffBroker &) = delete;

    // handoff_timeout of the service's current generation.
    void setHoldTimeout(Duration timeout) { holdTimeout_ = timeout; }
    [[nodiscard]] Duration holdTimeout() const { return holdTimeout_; }
    // A HANDOFF from peer; `listeners` are the addresses of the listeners of
    // the peer's own configuration: the connection must come from one.
    void accept(ChannelPeer &peer, ChannelMessage &message, std::span<const ListenerAddress> listeners);
    // Gives what is held to adopters; call when one may have become ready.
    void deliver();

    [[nodiscard]] const std::deque<std::unique_ptr<HeldConnection>> &held() const { return held_; }

    // Transfer (docs/transfer.md). takeAll(): every held connection, in the
    // order handed over, out of this broker (counts given back, timers and
    // hang-up watches dropped). hold(): one another broker held, with
    // `remaining` of its hold (at most this broker's hold timeout), on the
    // checks of a worker's HANDOFF but handoff being enabled (the caller's);
    // refused, and closed, with the reason.
    std::vector<std::unique_ptr<HeldConnection>> takeAll();
    Result<void> hold(std::unique_ptr<HeldConnection> held, Duration remaining,
                      std::span<const ListenerAddress> listeners);
    [[nodiscard]] const HandoffCounters &counters() const { return counters_; }
    // Re-exec: the counters of the previous image (nothing is held then).
    void restoreCounters(const HandoffCounters &counters) { counters_ = counters; }

private:
    void refuse(ChannelPeer &peer, std::uint64_t id, int code, const std::string &why);
    void expire();
    void drop(const HeldConnection *held);
    void watchHangup(HeldConnection &held);
    void park();
    void release(std::size_t count);
    void unstore(const HeldConnection &held);

    EventLoop &loop_;
    Clock &clock_;
    HandoffLimits &limits_;
    std::string service_;
    PeerVisitor peers_;
    Duration holdTimeout_ = std::chrono::seconds(30);
    std::deque<std::unique_ptr<HeldConnection>> held_;
    HandoffCounters counters_;
    Timer holdTimer_;  // the oldest held connection's hold timeout
    Timer retryTimer_; // an adopter's channel was full
    // A worker decides how many handoffs are refused (16,384 at once, then
    // 2,048/s), and a hold timeout can close as many at once: a few lines a time.
    LogLimit refusedLog_;
    LogLimit expiredLog_;
};

} // namespace fdsup
