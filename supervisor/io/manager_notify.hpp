// Notifications to fdsupd's own manager (systemd): non-blocking, so a slow manager never stalls the daemon.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "core/fd.hpp"

namespace fdsup {

// sd_notify() blocks in sendmsg() when the manager's queue is full; a
// supervisor must not. This sends with MSG_DONTWAIT and drops what does not
// fit (logged): STATUS= is best effort, and READY=1/STOPPING=1 are sent
// once, when the queue is empty in practice.
class ManagerNotifier {
public:
    // Reads NOTIFY_SOCKET (path or @abstract); without it every send is a no-op.
    ManagerNotifier();
    [[nodiscard]] bool enabled() const { return fd_.isValid(); }
    // Returns 0, or -errno (-EAGAIN: the manager's queue was full).
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
    UniqueFd fd_;
    std::string lastStatus_;
};

} // namespace fdsup
