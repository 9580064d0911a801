// The lifecycle of one worker instance as a pure function: state × event → state + actions.
#include "model/lifecycle.hpp"

#include <csignal>

#include <sys/wait.h>

namespace fdsup {
namespace {

using Kind = LifecycleEvent::Kind;
using Deadline = LifecycleActions::Deadline;
using Watchdog = LifecycleActions::Watchdog;

// The first failure is what the instance is remembered for: a later
// request to stop it does not hide it.
void endWith(Lifecycle &lifecycle, EndCause cause, std::string detail = {})
{
    if (!isFailure(lifecycle.ending.cause)) {
        lifecycle.ending = Ending{cause, std::move(detail)};
    }
}

Transition ignored(const Lifecycle &now)
{
    return Transition{now, {}, true};
}

Transition armed(Lifecycle next, Duration after)
{
    Transition t{std::move(next), {}, false};
    t.actions.deadline = after == Duration::max() ? Deadline::Cancel : Deadline::Arm;
    t.actions.deadlineAfter = after;
    return t;
}

Transition ready(const Lifecycle &now, const LifecycleParams &params)
{
    Lifecycle next = now;
    next.state = InstanceState::Ready;
    Transition t{std::move(next), {}, false};
    t.actions.deadline = Deadline::Cancel;
    t.actions.watchdog = params.watchdogTimeout > Duration::zero() ? Watchdog::Start : Watchdog::Keep;
    t.actions.execConfirmed = true;
    t.actions.becameReady = true;
    return t;
}

// Exec is proven; ready unless readiness is still to be reported another way.
Transition execDone(const Lifecycle &now, const LifecycleParams &params, bool readyNow)
{
    if (readyNow) {
        return ready(now, params);
    }
    Lifecycle next = now;
    next.state = InstanceState::Starting;
    Transition t = armed(std::move(next), params.readyTimeout);
    t.actions.execConfirmed = true;
    return t;
}

// A deadline or the watchdog decided: the instance failed and is killed,
// with stop_timeout guarding against a process stuck in the kernel.
Transition fail(const Lifecycle &now, const LifecycleParams &params, EndCause cause, std::string detail,
                int sig)
{
    Lifecycle next = now;
    next.state = InstanceState::Stopping;
    endWith(next, cause, std::move(detail));
    Transition t = armed(std::move(next), params.stopTimeout);
    t.actions.signal = sig;
    t.actions.watchdog = Watchdog::Stop;
    return t;
}

Transition stopping(const Lifecycle &now, const LifecycleParams &params, EndCause cause,
                    std::optional<int> sig)
{
    Lifecycle next = now;
    next.state = InstanceState::Stopping;
    endWith(next, cause);
    Transition t = armed(std::move(next), params.stopTimeout);
    t.actions.signal = sig;
    t.actions.watchdog = Watchdog::Stop;
    return t;
}

Transition draining(const Lifecycle &now, const LifecycleParams &params)
{
    Lifecycle next = now;
    next.state = InstanceState::Draining;
    endWith(next, EndCause::Drained);
    Transition t = armed(std::move(next), params.drainTimeout);
    t.actions.drain = true;
    t.actions.watchdog = Watchdog::Stop;
    return t;
}

Transition exited(const Lifecycle &now, const ExitStatus &exit)
{
    Lifecycle next = now;
    const EndCause cause = now.ending.cause;
    next.state = isFailure(cause) || (!isExpected(cause) && exitIsFailure(exit)) ? InstanceState::Failed
                                                                                 : InstanceState::Exited;
    Transition t{std::move(next), {}, false};
    t.actions.deadline = Deadline::Cancel;
    t.actions.watchdog = Watchdog::Stop;
    t.actions.ended = true;
    return t;
}

Transition execFailed(const Lifecycle &now, const LifecycleEvent &event)
{
    // The child _exits right after reporting; its exit ends the instance.
    Lifecycle next = now;
    endWith(next, EndCause::ExecFailed, event.detail);
    return Transition{std::move(next), {}, false};
}

// Launching and Starting: waiting for exec, then for readiness.
Transition fromStarting(const Lifecycle &now, const LifecycleEvent &event, const LifecycleParams &params)
{
    const bool launching = now.state == InstanceState::Launching;
    switch (event.kind) {
    case Kind::ExecSucceeded:
        return launching ? execDone(now, params, params.ready == config::Readiness::Started) : ignored(now);
    case Kind::ExecFailed:
        return execFailed(now, event);
    case Kind::ReadyNotify:
        // READY=1 proves exec succeeded even if the status pipe's EOF is
        // still queued behind the datagram.
        if (params.ready == config::Readiness::Notify ||
            (launching && params.ready == config::Readiness::Started)) {
            return ready(now, params);
        }
        return launching ? execDone(now, params, false) : ignored(now);
    case Kind::ReadyChannel:
        if (params.ready == config::Readiness::Channel ||
            (launching && params.ready == config::Readiness::Started)) {
            return ready(now, params);
        }
        return launching ? execDone(now, params, false) : ignored(now);
    case Kind::ReadyBound:
        // Only a running program binds: it proves exec like READY=1.
        if (params.ready == config::Readiness::Bound ||
            (launching && params.ready == config::Readiness::Started)) {
            return ready(now, params);
        }
        return launching ? execDone(now, params, false) : ignored(now);
    case Kind::Deadline:
        return launching ? fail(now, params, EndCause::StartTimeout,
                                "did not start (exec) within " + formatDuration(params.startTimeout),
                                params.killSignal)
                         : fail(now, params, EndCause::ReadyTimeout,
                                "did not become ready within " + formatDuration(params.readyTimeout),
                                params.killSignal);
    case Kind::WatchdogExpired:
    case Kind::WatchdogTrigger:
    case Kind::WatchdogPing:
        return ignored(now);
    case Kind::WorkerStopping:
        return stopping(now, params, EndCause::WorkerStopping, std::nullopt);
    case Kind::Stop:
        return stopping(now, params, EndCause::Stopped, params.stopSignal);
    case Kind::Drain:
        return draining(now, params);
    case Kind::ExtendTimeout:
        return armed(now, event.extend);
    case Kind::Exited:
        return exited(now, event.exit);
    }
    return ignored(now);
}

Transition fromReady(const Lifecycle &now, const LifecycleEvent &event, const LifecycleParams &params)
{
    switch (event.kind) {
    case Kind::ExecFailed:
        return execFailed(now, event);
    case Kind::ExecSucceeded:
    case Kind::ReadyNotify:
    case Kind::ReadyChannel:
    case Kind::ReadyBound:
    case Kind::Deadline:
    case Kind::ExtendTimeout:
        return ignored(now);
    case Kind::WatchdogExpired:
    case Kind::WatchdogTrigger:
        // SIGABRT, as systemd does, so a hung worker leaves a core dump.
        return fail(now, params, EndCause::Watchdog,
                    "watchdog timeout: no WATCHDOG=1 within " + formatDuration(params.watchdogTimeout),
                    SIGABRT);
    case Kind::WatchdogPing: {
        Transition t{now, {}, false};
        t.actions.watchdog = Watchdog::Rearm;
        return t;
    }
    case Kind::WorkerStopping:
        return stopping(now, params, EndCause::WorkerStopping, std::nullopt);
    case Kind::Stop:
        return stopping(now, params, EndCause::Stopped, params.stopSignal);
    case Kind::Drain:
        return draining(now, params);
    case Kind::Exited:
        return exited(now, event.exit);
    }
    return ignored(now);
}

// Draining and Stopping: on its way out; only time and the exit matter.
Transition fromLeaving(const Lifecycle &now, const LifecycleEvent &event, const LifecycleParams &params)
{
    switch (event.kind) {
    case Kind::ExecFailed:
        return execFailed(now, event);
    case Kind::Deadline:
        if (now.state == InstanceState::Draining) {
            // It had its chance to finish: killed, as expected as its drain.
            Lifecycle next = now;
            next.state = InstanceState::Stopping;
            Transition t = armed(std::move(next), params.stopTimeout);
            t.actions.signal = params.killSignal;
            return t;
        }
        {
            // The kill signal once; a process it cannot end is stuck in the kernel.
            Transition t{now, {}, false};
            t.actions.signal = params.killSignal;
            return t;
        }
    case Kind::ExtendTimeout:
        return armed(now, event.extend);
    case Kind::Exited:
        return exited(now, event.exit);
    case Kind::ExecSucceeded:
    case Kind::ReadyNotify:
    case Kind::ReadyChannel:
    case Kind::ReadyBound:
    case Kind::WatchdogExpired:
    case Kind::WatchdogTrigger:
    case Kind::WatchdogPing:
    case Kind::WorkerStopping:
    case Kind::Stop:
    case Kind::Drain:
        return ignored(now);
    }
    return ignored(now);
}

} // namespace

const char *instanceStateName(InstanceState state)
{
    switch (state) {
    case InstanceState::Launching:
    case InstanceState::Starting:
        return "starting";
    case InstanceState::Ready:
        return "ready";
    case InstanceState::Draining:
        return "draining";
    case InstanceState::Stopping:
        return "stopping";
    case InstanceState::Exited:
        return "exited";
    case InstanceState::Failed:
        return "failed";
    }
    return "unknown";
}

const char *lifecycleStateName(InstanceState state)
{
    return state == InstanceState::Launching ? "launching" : instanceStateName(state);
}

const char *lifecycleEventName(LifecycleEvent::Kind kind)
{
    switch (kind) {
    case Kind::ExecSucceeded:
        return "exec-succeeded";
    case Kind::ExecFailed:
        return "exec-failed";
    case Kind::ReadyNotify:
        return "ready-notify";
    case Kind::ReadyChannel:
        return "ready-channel";
    case Kind::ReadyBound:
        return "ready-bound";
    case Kind::Deadline:
        return "deadline";
    case Kind::WatchdogExpired:
        return "watchdog-expired";
    case Kind::WatchdogTrigger:
        return "watchdog-trigger";
    case Kind::WatchdogPing:
        return "watchdog-ping";
    case Kind::WorkerStopping:
        return "worker-stopping";
    case Kind::Stop:
        return "stop";
    case Kind::Drain:
        return "drain";
    case Kind::ExtendTimeout:
        return "extend-timeout";
    case Kind::Exited:
        return "exited";
    }
    return "unknown";
}

const char *endCauseName(EndCause cause)
{
    switch (cause) {
    case EndCause::None:
        return "none";
    case EndCause::Stopped:
        return "stopped";
    case EndCause::Drained:
        return "drained";
    case EndCause::WorkerStopping:
        return "worker-stopping";
    case EndCause::ExecFailed:
        return "exec-failed";
    case EndCause::StartTimeout:
        return "start-timeout";
    case EndCause::ReadyTimeout:
        return "ready-timeout";
    case EndCause::Watchdog:
        return "watchdog";
    }
    return "unknown";
}

bool isFailure(EndCause cause)
{
    switch (cause) {
    case EndCause::ExecFailed:
    case EndCause::StartTimeout:
    case EndCause::ReadyTimeout:
    case EndCause::Watchdog:
        return true;
    case EndCause::None:
    case EndCause::Stopped:
    case EndCause::Drained:
    case EndCause::WorkerStopping:
        return false;
    }
    return false;
}

bool isExpected(EndCause cause)
{
    return cause == EndCause::Stopped || cause == EndCause::Drained;
}

std::string describeExit(const ExitStatus &exit)
{
    switch (exit.code) {
    case CLD_EXITED:
        return "exited with status " + std::to_string(exit.status);
    case CLD_KILLED:
        return "killed by " + config::signalName(exit.status);
    case CLD_DUMPED:
        return "killed by " + config::signalName(exit.status) + " (core dumped)";
    default:
        return "ended (code " + std::to_string(exit.code) + ")";
    }
}

bool exitIsFailure(const ExitStatus &exit)
{
    return exit.code != CLD_EXITED || exit.status != 0;
}

LifecycleParams LifecycleParams::of(const config::ServiceConfig &config, Duration watchdogTimeout)
{
    LifecycleParams params;
    params.ready = config.ready;
    params.startTimeout = config.startTimeout;
    params.readyTimeout = config.readyTimeout;
    params.stopTimeout = config.stopTimeout;
    params.drainTimeout = config.drainTimeout;
    params.stopSignal = config.stopSignal;
    params.killSignal = config.killSignal;
    params.watchdogTimeout = watchdogTimeout;
    return params;
}

Transition transition(const Lifecycle &now, const LifecycleEvent &event, const LifecycleParams &params)
{
    switch (now.state) {
    case InstanceState::Launching:
    case InstanceState::Starting:
        return fromStarting(now, event, params);
    case InstanceState::Ready:
        return fromReady(now, event, params);
    case InstanceState::Draining:
    case InstanceState::Stopping:
        return fromLeaving(now, event, params);
    case InstanceState::Exited:
    case InstanceState::Failed:
        return ignored(now);
    }
    return ignored(now);
}

} // namespace fdsup
