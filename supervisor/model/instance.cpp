// One worker process: its pidfd, pipes, timers and worker channel, driven by its lifecycle.
#include "model/instance.hpp"

#include <cerrno>
#include <csignal>

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace fdsup {
namespace {

using Kind = LifecycleEvent::Kind;

int pidfdSendSignal(BorrowedFd pidfd, int sig)
{
    return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0));
}

LifecycleEvent eventOf(Kind kind)
{
    LifecycleEvent event;
    event.kind = kind;
    return event;
}

} // namespace

Instance::Instance(InstanceOwner &owner, EventLoop &loop, Clock &clock, unsigned slot, std::uint64_t id,
                   InstanceRole role, std::shared_ptr<const Profile> profile)
    : owner_(owner), loop_(loop), clock_(clock), slot_(slot), id_(id), role_(role),
      profile_(std::move(profile)), watchdogTimeout_(profile_->config.watchdogTimeout),
      output_(loop, [this](bool isStderr, std::string_view line) {
          owner_.onInstanceOutput(*this, isStderr, line);
      })
{}

Instance::~Instance() = default;

std::string Instance::describe() const
{
    return config().name + "[" + std::to_string(slot_) + "] (pid " + std::to_string(pid()) + ")";
}

Result<void> Instance::spawn(const SpawnRequest &request)
{
    startedAt_ = since_ = clock_.now();
    auto spawned = spawnWorker(request);
    if (!spawned) {
        return spawned.error();
    }
    setPid(spawned->pid);
    spawnPid_ = spawned->pid;
    pidfd_ = std::move(spawned->pidfd);
    statusPipe_ = std::move(spawned->statusPipe);
    auto child = loop_.addChild(pidfd_.borrow(), [this](const siginfo_t &info) { onChildExit(info); });
    if (!child) {
        // Without a child source fdsupd would never learn of the exit: kill
        // it now rather than hold an unsupervised process.
        pidfdSendSignal(pidfd_.borrow(), SIGKILL);
        siginfo_t ignored{};
        waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &ignored, WEXITED);
        return child.error();
    }
    childSource_ = std::move(*child);
    if (statusPipe_) {
        if (auto s = loop_.addIo(statusPipe_.borrow(), EPOLLIN, [this](std::uint32_t) { onStatusPipe(); })) {
            statusSource_ = std::move(*s);
        }
    }
    output_.watch(std::move(spawned->stdoutPipe), std::move(spawned->stderrPipe));
    arm(deadline_, config().startTimeout, Kind::Deadline);
    const LogScope scope(logSubject());
    spdlog::info("Started {}[{}] generation {} as pid {}", config().name, slot_, generation(), pid());
    return {};
}

void Instance::stop()
{
    deliver(eventOf(Kind::Stop));
}

void Instance::drain()
{
    deliver(eventOf(Kind::Drain));
}

void Instance::channelReady(const std::string &status)
{
    if (!status.empty()) {
        status_ = status;
    }
    deliver(eventOf(Kind::ReadyChannel));
}

void Instance::bound()
{
    deliver(eventOf(Kind::ReadyBound));
}

void Instance::onNotify(const NotifyMessage &message)
{
    if (message.status) {
        status_ = message.status;
    }
    if (message.errnoValue) {
        errno_ = message.errnoValue;
    }
    if (message.watchdogUsec && *message.watchdogUsec > 0) {
        watchdogTimeout_ = Duration(static_cast<Duration::rep>(*message.watchdogUsec));
    }
    // One datagram may carry several assignments; each is an event, in the
    // order systemd applies them. The instance may end on none of them (only
    // its exit ends it), so it is still here after each.
    if (message.extendTimeoutUsec) {
        LifecycleEvent extend = eventOf(Kind::ExtendTimeout);
        extend.extend = Duration(static_cast<Duration::rep>(*message.extendTimeoutUsec));
        deliver(extend);
    }
    if (message.ready) {
        deliver(eventOf(Kind::ReadyNotify));
    }
    if (message.watchdog) {
        deliver(eventOf(Kind::WatchdogPing));
    }
    if (message.watchdogTrigger) {
        deliver(eventOf(Kind::WatchdogTrigger));
        return;
    }
    if (message.stopping) {
        deliver(eventOf(Kind::WorkerStopping));
    }
}

void Instance::onStatusPipe()
{
    SpawnFailure failure;
    const int r = readSpawnStatus(statusPipe_.borrow(), failure);
    if (r == -EAGAIN || r == -EINTR) {
        return;
    }
    statusSource_.reset();
    statusPipe_.reset();
    if (r != 1) {
        deliver(eventOf(Kind::ExecSucceeded));
        return;
    }
    SpawnRequest shown;
    shown.executable = profile_->executable;
    shown.workingDirectory = config().workingDirectory;
    if (profile_->credentials.uid) {
        shown.uid = profile_->credentials.uid;
    }
    LifecycleEvent failed = eventOf(Kind::ExecFailed);
    failed.detail = describeSpawnFailure(shown, failure);
    deliver(failed);
}

void Instance::onChildExit(const siginfo_t &info)
{
    if (statusPipe_) {
        // The exec report may still be in the pipe when the exit arrives first.
        onStatusPipe();
    }
    if (followsDaemon(info)) {
        awaitDaemon(info);
        return;
    }
    output_.drain();
    if (channel() != nullptr) {
        // Its exit may be seen before the handoffs it sent just before dying:
        // they are the worker's to give, so they are taken first.
        channel()->readPending(-1);
    }
    if (config().killMode == config::KillMode::ProcessGroup) {
        // Whatever the worker left running in its group goes with it.
        kill(-pid(), SIGKILL); // a followed daemon's own group, after setsid()
        if (followed_) {
            kill(-spawnPid_, SIGKILL); // and the started process's group
        }
    }
    LifecycleEvent exited = eventOf(Kind::Exited);
    exited.exit = ExitStatus{info.si_code, info.si_status};
    deliver(exited); // the owner destroys the instance
}

bool Instance::followsDaemon(const siginfo_t &info) const
{
    // systemd's Type=forking: only a successful exit while starting (or
    // ready at exec) means "I daemonised"; a drain or stop is an ending.
    const InstanceState s = state();
    return config().pidFile && !followed_ && !pidFileWatch_ && info.si_code == CLD_EXITED &&
           info.si_status == 0 &&
           (s == InstanceState::Launching || s == InstanceState::Starting || s == InstanceState::Ready);
}

void Instance::awaitDaemon(const siginfo_t &info)
{
    const LogScope scope(logSubject());
    output_.drain();
    // The daemon may still be in the started process's group: no group kill here.
    spawnPidfd_ = std::move(pidfd_);
    childSource_.reset();
    // Reaped here: its child source is gone, and its pid is still this
    // instance's (so the orphan reaper leaves it alone) until the daemon is followed.
    siginfo_t reaped{};
    (void)waitid(P_PIDFD, static_cast<id_t>(spawnPidfd_.get()), &reaped, WEXITED | WNOHANG);
    spdlog::info("{}[{}] (pid {}) exited: reading {} for its daemon", config().name, slot_, pid(),
                 *config().pidFile);
    pidFileWatch_ = PidFileWatch::start(
        loop_, clock_, *config().pidFile, config().name, slot_, generation(), config().startTimeout,
        [this, info](Result<pid_t> pid) { onDaemonPid(std::move(pid), info); });
}

void Instance::onDaemonPid(Result<pid_t> pid, const siginfo_t &info)
{
    const LogScope scope(logSubject());
    pidFileWatch_.reset();
    UniqueFd pidfd;
    if (pid) {
        pidfd = UniqueFd(static_cast<int>(syscall(SYS_pidfd_open, *pid, 0)));
    }
    auto child = pidfd ? loop_.addChild(pidfd.borrow(), [this](const siginfo_t &exit) { onChildExit(exit); })
                       : Result<EventSource>(Error{ESRCH, "cannot open the daemon's pidfd"});
    if (!pid || !child) {
        const Error &error = !pid ? pid.error() : child.error();
        spdlog::error("{}[{}]: cannot follow the daemon: {}", config().name, slot_, error.message);
        LifecycleEvent failed = eventOf(Kind::ExecFailed);
        failed.detail = error.message;
        deliver(failed);
        LifecycleEvent exited = eventOf(Kind::Exited);
        exited.exit = ExitStatus{info.si_code, info.si_status};
        deliver(exited); // the owner destroys the instance
        return;
    }
    followed_ = true;
    setPid(*pid);
    pidfd_ = std::move(pidfd);
    childSource_ = std::move(*child);
    spdlog::info("{}[{}]: following daemon pid {} from {}", config().name, slot_, *pid, *config().pidFile);
    owner_.onInstanceChanged(*this);
}

void Instance::deliver(const LifecycleEvent &event)
{
    // What it logs, and what its owner logs about the event (its exit, a restart).
    const LogScope scope(logSubject());
    const InstanceState before = lifecycle_.state;
    const Transition t = transition(lifecycle_, event, LifecycleParams::of(config(), watchdogTimeout_));
    if (t.ignored) {
        return;
    }
    lifecycle_ = t.next;
    if (lifecycle_.state != before) {
        since_ = clock_.now();
    }
    if (event.kind == LifecycleEvent::Kind::Deadline &&
        (before == InstanceState::Draining || before == InstanceState::Stopping)) {
        killedLeaving_ = true;
    }
    log(event, before, t);
    carryOut(event, before, t);
}

void Instance::carryOut(const LifecycleEvent &event, InstanceState before, const Transition &t)
{
    const LifecycleActions &a = t.actions;
    if (a.execConfirmed) {
        statusSource_.reset();
        statusPipe_.reset();
    }
    switch (a.watchdog) {
    case LifecycleActions::Watchdog::Keep:
        break;
    case LifecycleActions::Watchdog::Start:
        arm(watchdog_, watchdogTimeout_, Kind::WatchdogExpired);
        break;
    case LifecycleActions::Watchdog::Rearm:
        if (watchdog_) {
            watchdog_.rearm(watchdogTimeout_);
        }
        break;
    case LifecycleActions::Watchdog::Stop:
        watchdog_.reset();
        break;
    }
    switch (a.deadline) {
    case LifecycleActions::Deadline::Keep:
        break;
    case LifecycleActions::Deadline::Arm:
        arm(deadline_, a.deadlineAfter, Kind::Deadline);
        break;
    case LifecycleActions::Deadline::Cancel:
        deadline_.reset();
        break;
    }
    if (a.signal) {
        signal(*a.signal);
    }
    if (a.drain && !owner_.sendDrain(*this)) {
        signal(config().drainSignal);
    }
    if (a.ended) {
        owner_.onInstanceEnded(*this, event.exit); // `this` is gone from here on
        return;
    }
    if (a.becameReady) {
        readyAt_ = clock_.now();
        owner_.onInstanceReady(*this);
        return;
    }
    if (lifecycle_.state != before) {
        owner_.onInstanceChanged(*this);
    }
}

void Instance::log(const LifecycleEvent &event, InstanceState before, const Transition &t) const
{
    const std::string who = config().name + "[" + std::to_string(slot_) + "]";
    const int p = pid();
    switch (event.kind) {
    case Kind::ExecFailed:
        spdlog::error("Failed to start {}: {}", who, event.detail);
        return;
    case Kind::Deadline:
        if (before == InstanceState::Launching || before == InstanceState::Starting) {
            spdlog::error("{} (pid {}) {}, killing it", who, p, t.next.ending.detail);
        } else if (before == InstanceState::Draining) {
            spdlog::warn("{} (pid {}) did not finish draining within {}, killing it", who, p,
                         formatDuration(config().drainTimeout));
        } else {
            spdlog::warn("{} (pid {}) did not stop within {}, killing it", who, p,
                         formatDuration(config().stopTimeout));
        }
        return;
    case Kind::WatchdogExpired:
    case Kind::WatchdogTrigger:
        spdlog::error("{} (pid {}): {}, aborting it", who, p, t.next.ending.detail);
        return;
    case Kind::Stop:
        spdlog::info("Stopping {} (pid {}) with {}", who, p, config::signalName(config().stopSignal));
        return;
    case Kind::ExecSucceeded:
    case Kind::ReadyNotify:
    case Kind::ReadyChannel:
    case Kind::ReadyBound:
        if (t.actions.becameReady) {
            spdlog::info("{} (pid {}) is ready", who, p);
        }
        return;
    case Kind::Drain:
    case Kind::WatchdogPing:
    case Kind::WorkerStopping:
    case Kind::ExtendTimeout:
    case Kind::Exited:
        return; // draining is logged once its way is known; the exit by the service
    }
}

void Instance::arm(Timer &timer, Duration after, Kind fires)
{
    if (after == Duration::max()) {
        timer.reset();
        return;
    }
    if (timer) {
        timer.rearm(after);
        return;
    }
    if (auto t = clock_.startTimer(after, [this, fires] { deliver(eventOf(fires)); })) {
        timer = std::move(*t);
    }
}

void Instance::signal(int sig)
{
    const LogScope scope(logSubject());
    if (config().killMode == config::KillMode::ProcessGroup) {
        // The worker leads its own process group (setpgid in the child); a
        // followed daemon leads its own (setsid) or stayed in the started one.
        const pid_t group = followed_ ? getpgid(pid()) : pid();
        if (group > 1 && group != getpgrp() && kill(-group, sig) == 0) {
            return;
        }
    }
    if (pidfdSendSignal(pidfd_.borrow(), sig) < 0 && errno != ESRCH) {
        spdlog::warn("Failed to send {} to {}: {}", config::signalName(sig), describe(), errnoText(errno));
    }
}

} // namespace fdsup
