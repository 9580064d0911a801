// fdsupd as a child subreaper: daemonised servers stay its children, and orphans nobody follows are reaped.
#include "io/orphan_reaper.hpp"

#include <cerrno>

#include <sys/prctl.h>
#include <sys/wait.h>

#include <spdlog/spdlog.h>

#include "io/proc.hpp"

namespace fdsup {

Result<std::unique_ptr<OrphanReaper>> OrphanReaper::start(EventLoop &loop, Supervised supervised)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        return errnoError(errno, "Failed to become a child subreaper");
    }
    std::unique_ptr<OrphanReaper> reaper(new OrphanReaper(std::move(supervised)));
    OrphanReaper *self = reaper.get();
    auto signal = loop.addSignal(SIGCHLD, [self](const signalfd_siginfo &) { (void)self->reap(); });
    if (!signal) {
        prctl(PR_SET_CHILD_SUBREAPER, 0);
        return signal.error();
    }
    reaper->signal_ = std::move(*signal);
    return reaper;
}

OrphanReaper::~OrphanReaper()
{
    prctl(PR_SET_CHILD_SUBREAPER, 0);
}

int OrphanReaper::reap()
{
    int reaped = 0;
    for (const pid_t pid : ownChildren()) {
        // An instance's own process is reaped by its pidfd's child source,
        // with its exit status: never taken from it here.
        if (supervised_(pid)) {
            continue;
        }
        siginfo_t info{};
        if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG) == 0 && info.si_pid == pid) {
            spdlog::debug("Reaped pid {}, a process left behind by a worker (status {})", pid,
                          info.si_status);
            ++reaped;
        }
    }
    return reaped;
}

} // namespace fdsup
