// fdsupd as a child subreaper: daemonised servers stay its children, and orphans nobody follows are reaped.
#include "io/orphan_reaper.hpp"

#include <cerrno>

#include <sys/prctl.h>
#include <sys/wait.h>

#include <spdlog/spdlog.h>

namespace fdsup {

Result<std::unique_ptr<OrphanReaper>> OrphanReaper::start(EventLoop &loop, Supervised supervised)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
        return errnoError(errno, "Failed to become a child subreaper");
    }
    std::unique_ptr<OrphanReaper> reaper(new OrphanReaper(loop, std::move(supervised)));
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
    for (;;) {
        // Peek first (WNOWAIT): no descriptor is opened and nothing is
        // taken from an instance, whose own process is reaped by its pidfd's
        // child source with its exit status.
        siginfo_t info{};
        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0 || info.si_pid == 0) {
            return reaped;
        }
        const pid_t pid = info.si_pid;
        if (supervised_(pid)) {
            // Its child source reaps it in this iteration; the zombies
            // behind it are looked at once it has.
            recheckLater();
            return reaped;
        }
        siginfo_t done{};
        if (waitid(P_PID, static_cast<id_t>(pid), &done, WEXITED | WNOHANG) < 0 || done.si_pid != pid) {
            return reaped;
        }
        spdlog::debug("Reaped pid {}, a process left behind by a worker (status {})", pid, done.si_status);
        ++reaped;
    }
}

void OrphanReaper::recheckLater()
{
    if (recheck_) {
        return;
    }
    if (auto timer = loop_.addTimer(kRecheck, [this] {
            recheck_.reset();
            (void)reap();
        })) {
        recheck_ = std::move(*timer);
    }
}

} // namespace fdsup
