// Notifications to fdsupd's own manager (systemd): non-blocking, so a slow manager never stalls the daemon.
#pragma once

#include <cstddef>
#include <list>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/fd.hpp"
#include "io/event_loop.hpp"

namespace fdsup {

// sd_notify() blocks in sendmsg() when the manager's queue is full; a
// supervisor must not. This sends with MSG_DONTWAIT. Once attached to the
// loop, what must arrive (READY=1, RELOADING=1, STOPPING=1, FDSTORE=,
// FDSTOREREMOVE=) and is refused because the manager's queue is full waits
// in an outbox, in order, with its own copies of the descriptors, and is
// sent when the socket is writable again (EPOLLOUT: a connected datagram
// socket is writable once its peer's queue has room). STATUS= waits as the
// latest line only; WATCHDOG=1 (send()) is best effort. An FDSTORE= still
// waiting when its name is removed is dropped with the removal.
class ManagerNotifier {
public:
    // At most this many messages wait; past it a message is refused
    // (-ENOBUFS) and the caller logs it.
    static constexpr std::size_t kMaxPending = 16384;

    // Reads NOTIFY_SOCKET (path or @abstract); without it every send is a no-op.
    ManagerNotifier();
    [[nodiscard]] bool enabled() const { return fd_.isValid(); }
    // From now on, messages the manager's full queue refuses wait in the
    // outbox instead of failing with -EAGAIN.
    void attach(EventLoop &loop) { loop_ = &loop; }
    // Messages waiting for room in the manager's queue.
    [[nodiscard]] std::size_t pending() const { return outbox_.size(); }
    // Best effort, never queued (WATCHDOG=1). Returns 0, or -errno
    // (-EAGAIN: the manager's queue was full).
    int send(std::string_view message);
    // The same with descriptors attached (SCM_RIGHTS, at most 253); they
    // stay owned by the caller.
    int send(std::string_view message, std::span<const BorrowedFd> fds);
    // Sends STATUS=text only when it differs from the last one sent.
    void status(const std::string &text);

    // The manager protocol (docs/systemd.md). ready() is the one place
    // READY=1 is sent: at start, after every reload and after a re-exec has
    // restored the daemon; MAINPID= goes with it so the manager follows
    // this process whatever started it, and STATUS= with the line given.
    int ready(const std::string &status);
    // RELOADING=1 with MONOTONIC_USEC= (CLOCK_MONOTONIC now), which
    // Type=notify-reload (systemd 253+) requires; ready() ends the reload.
    int reloading();
    // STOPPING=1 with STATUS=.
    int stopping(const std::string &status);
    // FDSTORE=1, FDNAME=name, FDPOLL=0: the manager keeps the descriptors
    // for the next start if the unit sets FileDescriptorStoreMax= (no
    // answer either way: a refusal is only in the manager's own log).
    int store(std::string_view name, std::span<const BorrowedFd> fds);
    // FDSTOREREMOVE=1, FDNAME=name: the manager closes what it keeps under name.
    int removeStored(std::string_view name);

private:
    struct Message {
        std::string text;
        std::vector<UniqueFd> fds; // copies, closed once sent
        std::string storedName;    // FDSTORE=: the name stored
        std::string status;        // STATUS= it carries, recorded once sent
    };
    // Sends now or, attached, queues (0); -errno otherwise.
    int deliver(Message message, std::span<const BorrowedFd> fds = {});
    int sendNow(const Message &message, std::span<const BorrowedFd> fds);
    int sendNow(const Message &message);
    int armWritable();
    void flush();
    void sent(const Message &message);

    UniqueFd fd_;
    std::string lastStatus_;
    std::string pendingStatus_; // a STATUS= line to send once the outbox drains
    EventLoop *loop_ = nullptr;
    std::list<Message> outbox_;
    // The FDSTORE= waiting in outbox_, by name (a removal finds it at once).
    std::unordered_map<std::string, std::list<Message>::iterator> waitingStores_;
    EventSource writable_;         // while the outbox is not empty
    std::set<std::string> stored_; // names stored by this process, not removed since
};

} // namespace fdsup
