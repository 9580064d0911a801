// fdsupd as a child subreaper: daemonised servers stay its children, and orphans nobody follows are reaped.
#pragma once

#include <functional>
#include <memory>

#include <sys/types.h>

#include "common/result.hpp"
#include "io/event_loop.hpp"

namespace fdsup {

// Makes fdsupd a child subreaper (PR_SET_CHILD_SUBREAPER), so that a
// server's daemon, whose parents exit, is reparented to fdsupd rather than
// pid 1 and can be followed (pid_file) and signalled. On every SIGCHLD the
// children that exited and that `supervised` does not claim (not a live
// instance's main process: those are reaped through their pidfds) are
// reaped, so no zombie stays: peeked at with waitid(WNOWAIT), so a SIGCHLD
// costs no descriptor; when an instance's zombie is first in line, the rest
// are looked at kRecheck later, once its child source reaped it. Ends being
// a subreaper when destroyed.
class OrphanReaper {
public:
    using Supervised = std::function<bool(pid_t)>;
    static constexpr Duration kRecheck = std::chrono::milliseconds(10);
    static Result<std::unique_ptr<OrphanReaper>> start(EventLoop &loop, Supervised supervised);
    ~OrphanReaper();
    OrphanReaper(const OrphanReaper &) = delete;
    OrphanReaper &operator=(const OrphanReaper &) = delete;

    // Reaps now; also what SIGCHLD runs. Returns how many were reaped.
    int reap();

private:
    OrphanReaper(EventLoop &loop, Supervised supervised) : loop_(loop), supervised_(std::move(supervised)) {}
    void recheckLater();

    EventLoop &loop_;
    Supervised supervised_;
    EventSource signal_;
    EventSource recheck_;
};

} // namespace fdsup
