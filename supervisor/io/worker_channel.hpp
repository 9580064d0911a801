// fdsupd's end of a worker channel (docs/worker-channel.md): reads, checks
// and rate-limits what the worker sends; sends without ever blocking.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "common/result.hpp"
#include "core/channel.hpp"
#include "core/fd.hpp"
#include "io/event_loop.hpp"

namespace fdsup {

class WorkerChannel {
public:
    using MessageHandler = std::function<void(ChannelMessage &&message)>;
    // The channel is closed: the worker hung up, or broke the protocol (then
    // it was sent ERROR first). `why` is for the log.
    using CloseHandler = std::function<void(const std::string &why)>;
    // A message was dropped and the channel kept (an empty datagram: SEQPACKET
    // reads it as 0 bytes, like the end; the worker may not have meant to
    // close). `why` is for the log, which the handler rate-limits.
    using DropHandler = std::function<void(const std::string &why)>;

    // Messages a worker may send in a burst, and per second after it; beyond
    // them it gets ERROR (EBUSY) and the channel is closed.
    static constexpr double kBurst = 4096;
    static constexpr double kPerSecond = 2048;
    // HANDOFF messages have an allowance of their own, as large as the
    // connections one service may hold (held_connections_per_service's
    // default): a drain hands everything over at once, as fast as fdsupd
    // takes it, and the faster fdsupd is, the less the allowance refills
    // meanwhile. Then 2048/s, as for the rest.
    static constexpr double kHandoffBurst = 16384;
    // Messages read per wake-up, so one worker cannot starve the loop.
    static constexpr int kReadsPerWakeup = 64;

    // Creates the socket pair; `workerEnd` receives the end the worker
    // inherits (blocking, CLOEXEC: spawn clears CLOEXEC in the child).
    static Result<std::unique_ptr<WorkerChannel>> create(EventLoop &loop, UniqueFd &workerEnd,
                                                         MessageHandler onMessage, CloseHandler onClose);
    // Serves a connected SEQPACKET socket: an external worker's connection
    // to the activation socket (non-blocking, CLOEXEC).
    static Result<std::unique_ptr<WorkerChannel>> adopt(EventLoop &loop, UniqueFd fd,
                                                        MessageHandler onMessage, CloseHandler onClose);
    ~WorkerChannel();
    WorkerChannel(const WorkerChannel &) = delete;
    WorkerChannel &operator=(const WorkerChannel &) = delete;

    [[nodiscard]] bool isOpen() const { return static_cast<bool>(fd_); }
    // The socket, for a re-exec snapshot.
    [[nodiscard]] BorrowedFd fd() const { return fd_.borrow(); }
    // Sends a message (seq is filled in). 0, or -errno: -EAGAIN when the
    // worker's queue is full (nothing sent), -EPIPE when it is gone...
    int send(ChannelMessage &message);
    // Sends a message that must not be lost to a full queue (HANDOFF_RESULT:
    // the worker waits for it). When the worker's queue is full it waits
    // here, in order, and nothing more is read from the worker until it is
    // sent: a worker that hands over faster than it reads the answers is
    // slowed down instead of losing one. A gone worker loses it.
    void sendInOrder(ChannelMessage message);
    // Sends ERROR {code, reason} (best effort) and closes; the close handler runs.
    void fail(std::uint32_t code, const std::string &reason);
    // Reads what the worker sent and fdsupd has not read yet, up to `limit`
    // messages (then the loop comes back for the rest). When a worker has
    // exited, what is still queued (handoffs sent just before it died) must
    // be read before the channel goes: call it with no limit.
    void readPending(int limit = kReadsPerWakeup);
    // Closes without a word (after REJECT, or when the worker hung up); the
    // close handler runs. Neither handler may destroy the channel.
    void close(const std::string &why);
    // Told of each message dropped with the channel kept; without one they
    // are dropped silently.
    void setDropHandler(DropHandler onDrop) { onDrop_ = std::move(onDrop); }

    // Which call of readPending() the message being handled came from,
    // unique among every channel's: what is worked out once for the
    // messages of one read (listener addresses) is keyed on it.
    [[nodiscard]] std::uint64_t batch() const { return batch_; }

    // Set once WELCOME was sent: the version and what was granted.
    bool welcomed = false;
    std::uint32_t capabilities = 0;
    // Set by fail(): fdsupd closed the channel over an error (the message it
    // refused is dropped), not the worker.
    bool failed = false;

private:
    WorkerChannel(EventLoop &loop, UniqueFd fd, MessageHandler onMessage, CloseHandler onClose);
    bool takeToken(ChannelType type);
    void failFlooding();
    void onIo(std::uint32_t revents);
    // Sends what waits in pending_; false while some still waits.
    bool flush();

    EventLoop &loop_;
    UniqueFd fd_;
    EventSource source_;
    MessageHandler onMessage_;
    CloseHandler onClose_;
    DropHandler onDrop_;
    std::uint32_t seq_ = 0;
    double tokens_ = kBurst;
    double handoffTokens_ = kHandoffBurst;
    std::uint64_t batch_ = 0;
    std::deque<ChannelMessage> pending_; // sendInOrder() messages waiting for room
    static inline std::uint64_t lastBatch_ = 0;
    Duration refilled_{};
};

} // namespace fdsup
