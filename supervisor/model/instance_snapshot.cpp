// An instance across fdsupd's re-exec: its snapshot, and taking it back in the new image.
#include <sys/epoll.h>

#include <spdlog/spdlog.h>

#include "model/instance.hpp"

namespace fdsup {
namespace {

std::int64_t usec(Duration d)
{
    return static_cast<std::int64_t>(d.count());
}

} // namespace

std::string Instance::busyReason() const
{
    const std::string who =
        config().name + "[" + std::to_string(slot_) + "] (pid " + std::to_string(pid()) + ")";
    if (state() != InstanceState::Ready) {
        return who + " is " + lifecycleStateName(state());
    }
    if (role_ != InstanceRole::Primary) {
        return who + " is a rollout's candidate or retiring";
    }
    if (statusPipe_) {
        return who + " is reading its exec status";
    }
    if (pidFileWatch_) {
        // Once found, the daemon is followed through its pidfd and carried.
        return who + " is waiting for its pid_file";
    }
    return {};
}

InstanceSnapshot Instance::snapshot() const
{
    InstanceSnapshot s;
    s.id = id_;
    s.slot = slot_;
    s.generation = generation();
    s.role = "primary";
    s.state = "ready";
    s.sinceUsec = usec(since_);
    s.startedAtUsec = usec(startedAt_);
    if (readyAt_) {
        s.readyAtUsec = usec(*readyAt_);
    }
    s.status = status_;
    s.errnoValue = errno_;
    s.watchdogUsec = usec(watchdogTimeout_);
    s.pid = pid();
    s.pidfd = pidfd_.get();
    s.stdoutFd = output_.stdoutFd().get();
    s.stderrFd = output_.stderrFd().get();
    if (const WorkerChannel *ch = channel(); ch != nullptr && ch->isOpen()) {
        s.channelFd = ch->fd().get();
        s.welcomed = ch->welcomed;
        s.capabilities = ch->capabilities;
    }
    s.followed = followed_;
    s.spawnPid = spawnPid_;
    return s;
}

Result<void> Instance::restore(const InstanceSnapshot &s)
{
    // Owned first: whatever fails below, nothing is left open.
    pidfd_.reset(s.pidfd);
    UniqueFd out(s.stdoutFd);
    UniqueFd err(s.stderrFd);
    setPid(s.pid);
    spawnPid_ = s.spawnPid > 0 ? s.spawnPid : s.pid;
    followed_ = s.followed;
    lifecycle_.state = InstanceState::Ready;
    since_ = Duration(s.sinceUsec);
    startedAt_ = Duration(s.startedAtUsec);
    if (s.readyAtUsec) {
        readyAt_ = Duration(*s.readyAtUsec);
    }
    status_ = s.status;
    errno_ = s.errnoValue;
    watchdogTimeout_ = Duration(s.watchdogUsec);
    auto child = loop_.addChild(pidfd_.borrow(), [this](const siginfo_t &info) { onChildExit(info); });
    if (!child) {
        return Error{child.error().code, describe() + ": " + child.error().message};
    }
    childSource_ = std::move(*child);
    output_.watch(std::move(out), std::move(err));
    if (watchdogTimeout_ > Duration::zero()) {
        // The last ping's time is not carried: the worker gets a full interval.
        arm(watchdog_, watchdogTimeout_, LifecycleEvent::Kind::WatchdogExpired);
    }
    spdlog::info("Adopted {} generation {} across re-exec{}", describe(), generation(),
                 followed_ ? ", following the daemon of " + config().pidFile.value_or("") : "");
    return {};
}

} // namespace fdsup
