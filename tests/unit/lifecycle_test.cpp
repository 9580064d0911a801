// The instance lifecycle, walked as a table: every state × every event, without a process.
#include <csignal>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <sys/wait.h>

#include <gtest/gtest.h>

#include "model/lifecycle.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using Kind = LifecycleEvent::Kind;
using S = InstanceState;

constexpr S kStates[] = {S::Launching, S::Starting, S::Ready, S::Draining, S::Stopping, S::Exited, S::Failed};
constexpr Kind kEvents[] = {Kind::ExecSucceeded,
                            Kind::ExecFailed,
                            Kind::ReadyNotify,
                            Kind::ReadyChannel,
                            Kind::ReadyBound,
                            Kind::Deadline,
                            Kind::WatchdogExpired,
                            Kind::WatchdogTrigger,
                            Kind::WatchdogPing,
                            Kind::WorkerStopping,
                            Kind::Stop,
                            Kind::Drain,
                            Kind::ExtendTimeout,
                            Kind::Exited};
static_assert(std::size(kStates) == kInstanceStates);
static_assert(std::size(kEvents) == kLifecycleEvents);

LifecycleParams params(config::Readiness ready = config::Readiness::Notify)
{
    LifecycleParams p;
    p.ready = ready;
    p.startTimeout = 5s;
    p.readyTimeout = 30s;
    p.stopTimeout = 10s;
    p.drainTimeout = 20s;
    p.stopSignal = SIGTERM;
    p.watchdogTimeout = 2s;
    return p;
}

LifecycleEvent event(Kind kind, ExitStatus exit = {CLD_EXITED, 1})
{
    LifecycleEvent e;
    e.kind = kind;
    e.detail = "setuid 33: Operation not permitted";
    e.extend = 7s;
    e.exit = exit;
    return e;
}

// A state as it is really reached: draining and stopping instances were told to.
Lifecycle in(S state)
{
    Lifecycle l;
    l.state = state;
    if (state == S::Draining) {
        l.ending.cause = EndCause::Drained;
    } else if (state == S::Stopping) {
        l.ending.cause = EndCause::Stopped;
    }
    return l;
}

// "starting: deadline=arm:30s exec", or "ignored".
std::string summary(const Transition &t)
{
    if (t.ignored) {
        return "ignored";
    }
    const LifecycleActions &a = t.actions;
    std::string s = lifecycleStateName(t.next.state);
    s += ":";
    switch (a.deadline) {
    case LifecycleActions::Deadline::Keep:
        break;
    case LifecycleActions::Deadline::Arm:
        s += " deadline=arm:" + formatDuration(a.deadlineAfter);
        break;
    case LifecycleActions::Deadline::Cancel:
        s += " deadline=cancel";
        break;
    }
    switch (a.watchdog) {
    case LifecycleActions::Watchdog::Keep:
        break;
    case LifecycleActions::Watchdog::Start:
        s += " watchdog=start";
        break;
    case LifecycleActions::Watchdog::Rearm:
        s += " watchdog=rearm";
        break;
    case LifecycleActions::Watchdog::Stop:
        s += " watchdog=stop";
        break;
    }
    if (a.signal) {
        s += " signal=" + config::signalName(*a.signal);
    }
    s += a.drain ? " drain" : "";
    s += a.execConfirmed ? " exec" : "";
    s += a.becameReady ? " ready" : "";
    s += a.ended ? " ended" : "";
    if (t.next.ending.cause != EndCause::None) {
        s += std::string(" ending=") + endCauseName(t.next.ending.cause);
    }
    return s;
}

// The whole table for ready = "notify", a watchdog of 2s, and an exit with
// status 1. Every state × every event must have its row.
const std::map<std::pair<S, Kind>, std::string> &table()
{
    static const std::map<std::pair<S, Kind>, std::string> rows{
        // Forked, exec not confirmed.
        {{S::Launching, Kind::ExecSucceeded}, "starting: deadline=arm:30s exec"},
        {{S::Launching, Kind::ExecFailed}, "launching: ending=exec-failed"},
        {{S::Launching, Kind::ReadyNotify}, "ready: deadline=cancel watchdog=start exec ready"},
        {{S::Launching, Kind::ReadyChannel}, "starting: deadline=arm:30s exec"},
        {{S::Launching, Kind::ReadyBound}, "starting: deadline=arm:30s exec"},
        {{S::Launching, Kind::Deadline},
         "stopping: deadline=arm:10s watchdog=stop signal=SIGKILL ending=start-timeout"},
        {{S::Launching, Kind::WatchdogExpired}, "ignored"},
        {{S::Launching, Kind::WatchdogTrigger}, "ignored"},
        {{S::Launching, Kind::WatchdogPing}, "ignored"},
        {{S::Launching, Kind::WorkerStopping},
         "stopping: deadline=arm:10s watchdog=stop ending=worker-stopping"},
        {{S::Launching, Kind::Stop},
         "stopping: deadline=arm:10s watchdog=stop signal=SIGTERM ending=stopped"},
        {{S::Launching, Kind::Drain}, "draining: deadline=arm:20s watchdog=stop drain ending=drained"},
        {{S::Launching, Kind::ExtendTimeout}, "launching: deadline=arm:7s"},
        {{S::Launching, Kind::Exited}, "failed: deadline=cancel watchdog=stop ended"},
        // Exec'd, waiting for READY=1.
        {{S::Starting, Kind::ExecSucceeded}, "ignored"},
        {{S::Starting, Kind::ExecFailed}, "starting: ending=exec-failed"},
        {{S::Starting, Kind::ReadyNotify}, "ready: deadline=cancel watchdog=start exec ready"},
        {{S::Starting, Kind::ReadyChannel}, "ignored"},
        {{S::Starting, Kind::ReadyBound}, "ignored"},
        {{S::Starting, Kind::Deadline},
         "stopping: deadline=arm:10s watchdog=stop signal=SIGKILL ending=ready-timeout"},
        {{S::Starting, Kind::WatchdogExpired}, "ignored"},
        {{S::Starting, Kind::WatchdogTrigger}, "ignored"},
        {{S::Starting, Kind::WatchdogPing}, "ignored"},
        {{S::Starting, Kind::WorkerStopping},
         "stopping: deadline=arm:10s watchdog=stop ending=worker-stopping"},
        {{S::Starting, Kind::Stop}, "stopping: deadline=arm:10s watchdog=stop signal=SIGTERM ending=stopped"},
        {{S::Starting, Kind::Drain}, "draining: deadline=arm:20s watchdog=stop drain ending=drained"},
        {{S::Starting, Kind::ExtendTimeout}, "starting: deadline=arm:7s"},
        {{S::Starting, Kind::Exited}, "failed: deadline=cancel watchdog=stop ended"},
        // Serving.
        {{S::Ready, Kind::ExecSucceeded}, "ignored"},
        {{S::Ready, Kind::ExecFailed}, "ready: ending=exec-failed"},
        {{S::Ready, Kind::ReadyNotify}, "ignored"},
        {{S::Ready, Kind::ReadyChannel}, "ignored"},
        {{S::Ready, Kind::ReadyBound}, "ignored"},
        {{S::Ready, Kind::Deadline}, "ignored"},
        {{S::Ready, Kind::WatchdogExpired},
         "stopping: deadline=arm:10s watchdog=stop signal=SIGABRT ending=watchdog"},
        {{S::Ready, Kind::WatchdogTrigger},
         "stopping: deadline=arm:10s watchdog=stop signal=SIGABRT ending=watchdog"},
        {{S::Ready, Kind::WatchdogPing}, "ready: watchdog=rearm"},
        {{S::Ready, Kind::WorkerStopping}, "stopping: deadline=arm:10s watchdog=stop ending=worker-stopping"},
        {{S::Ready, Kind::Stop}, "stopping: deadline=arm:10s watchdog=stop signal=SIGTERM ending=stopped"},
        {{S::Ready, Kind::Drain}, "draining: deadline=arm:20s watchdog=stop drain ending=drained"},
        {{S::Ready, Kind::ExtendTimeout}, "ignored"},
        {{S::Ready, Kind::Exited}, "failed: deadline=cancel watchdog=stop ended"},
        // Told to finish: only time and the exit matter; its exit is expected.
        {{S::Draining, Kind::ExecSucceeded}, "ignored"},
        {{S::Draining, Kind::ExecFailed}, "draining: ending=exec-failed"},
        {{S::Draining, Kind::ReadyNotify}, "ignored"},
        {{S::Draining, Kind::ReadyChannel}, "ignored"},
        {{S::Draining, Kind::ReadyBound}, "ignored"},
        {{S::Draining, Kind::Deadline}, "stopping: deadline=arm:10s signal=SIGKILL ending=drained"},
        {{S::Draining, Kind::WatchdogExpired}, "ignored"},
        {{S::Draining, Kind::WatchdogTrigger}, "ignored"},
        {{S::Draining, Kind::WatchdogPing}, "ignored"},
        {{S::Draining, Kind::WorkerStopping}, "ignored"},
        {{S::Draining, Kind::Stop}, "ignored"},
        {{S::Draining, Kind::Drain}, "ignored"},
        {{S::Draining, Kind::ExtendTimeout}, "draining: deadline=arm:7s ending=drained"},
        {{S::Draining, Kind::Exited}, "exited: deadline=cancel watchdog=stop ended ending=drained"},
        // Told to stop.
        {{S::Stopping, Kind::ExecSucceeded}, "ignored"},
        {{S::Stopping, Kind::ExecFailed}, "stopping: ending=exec-failed"},
        {{S::Stopping, Kind::ReadyNotify}, "ignored"},
        {{S::Stopping, Kind::ReadyChannel}, "ignored"},
        {{S::Stopping, Kind::ReadyBound}, "ignored"},
        {{S::Stopping, Kind::Deadline}, "stopping: signal=SIGKILL ending=stopped"},
        {{S::Stopping, Kind::WatchdogExpired}, "ignored"},
        {{S::Stopping, Kind::WatchdogTrigger}, "ignored"},
        {{S::Stopping, Kind::WatchdogPing}, "ignored"},
        {{S::Stopping, Kind::WorkerStopping}, "ignored"},
        {{S::Stopping, Kind::Stop}, "ignored"},
        {{S::Stopping, Kind::Drain}, "ignored"},
        {{S::Stopping, Kind::ExtendTimeout}, "stopping: deadline=arm:7s ending=stopped"},
        {{S::Stopping, Kind::Exited}, "exited: deadline=cancel watchdog=stop ended ending=stopped"},
    };
    return rows;
}

TEST(Lifecycle, EveryStateAndEventIsDecidedAsTheTableSays)
{
    int walked = 0;
    for (const S state : kStates) {
        for (const Kind kind : kEvents) {
            SCOPED_TRACE(std::string(lifecycleStateName(state)) + " × " + lifecycleEventName(kind));
            const Transition t = transition(in(state), event(kind), params());
            ++walked;
            if (isFinal(state)) {
                // Nothing reaches a process that is gone.
                EXPECT_EQ(summary(t), "ignored");
                continue;
            }
            const auto row = table().find({state, kind});
            ASSERT_NE(row, table().end()) << "no row in the table";
            EXPECT_EQ(summary(t), row->second);
            if (!t.ignored && t.next.state != state) {
                // Leaving a state always decides its deadline: none survives into the next.
                EXPECT_NE(t.actions.deadline, LifecycleActions::Deadline::Keep) << summary(t);
            }
        }
    }
    EXPECT_EQ(walked, static_cast<int>(kInstanceStates * kLifecycleEvents));
}

TEST(Lifecycle, ReadinessComesTheWayTheServiceSays)
{
    using R = config::Readiness;
    // started: exec is enough, and READY=1 before the status pipe's EOF too.
    EXPECT_EQ(summary(transition(in(S::Launching), event(Kind::ExecSucceeded), params(R::Started))),
              "ready: deadline=cancel watchdog=start exec ready");
    EXPECT_EQ(summary(transition(in(S::Launching), event(Kind::ReadyNotify), params(R::Started))),
              "ready: deadline=cancel watchdog=start exec ready");
    // channel: READY=1 on the notify socket proves exec, not readiness.
    EXPECT_EQ(summary(transition(in(S::Launching), event(Kind::ReadyNotify), params(R::Channel))),
              "starting: deadline=arm:30s exec");
    EXPECT_EQ(summary(transition(in(S::Starting), event(Kind::ReadyNotify), params(R::Channel))), "ignored");
    EXPECT_EQ(summary(transition(in(S::Starting), event(Kind::ReadyChannel), params(R::Channel))),
              "ready: deadline=cancel watchdog=start exec ready");
    EXPECT_EQ(summary(transition(in(S::Launching), event(Kind::ReadyChannel), params(R::Channel))),
              "ready: deadline=cancel watchdog=start exec ready");
}

TEST(Lifecycle, BoundReadinessComesFromTheShimClaimingEveryListener)
{
    using R = config::Readiness;
    // READY=1 or READY on a channel is not what a wrapped server is asked for.
    EXPECT_EQ(summary(transition(in(S::Starting), event(Kind::ReadyNotify), params(R::Bound))), "ignored");
    EXPECT_EQ(summary(transition(in(S::Starting), event(Kind::ReadyBound), params(R::Bound))),
              "ready: deadline=cancel watchdog=start exec ready");
    // Binding proves exec even before the status pipe's EOF is read.
    EXPECT_EQ(summary(transition(in(S::Launching), event(Kind::ReadyBound), params(R::Bound))),
              "ready: deadline=cancel watchdog=start exec ready");
    EXPECT_EQ(summary(transition(in(S::Launching), event(Kind::ExecSucceeded), params(R::Bound))),
              "starting: deadline=arm:30s exec");
    EXPECT_EQ(summary(transition(in(S::Starting), event(Kind::Deadline), params(R::Bound))),
              "stopping: deadline=arm:10s watchdog=stop signal=SIGKILL ending=ready-timeout");
}

TEST(Lifecycle, EveryDeadlineSendsTheKillSignal)
{
    LifecycleParams p = params();
    p.killSignal = SIGQUIT;
    EXPECT_EQ(summary(transition(in(S::Launching), event(Kind::Deadline), p)),
              "stopping: deadline=arm:10s watchdog=stop signal=SIGQUIT ending=start-timeout");
    EXPECT_EQ(summary(transition(in(S::Starting), event(Kind::Deadline), p)),
              "stopping: deadline=arm:10s watchdog=stop signal=SIGQUIT ending=ready-timeout");
    EXPECT_EQ(summary(transition(in(S::Draining), event(Kind::Deadline), p)),
              "stopping: deadline=arm:10s signal=SIGQUIT ending=drained");
    EXPECT_EQ(summary(transition(in(S::Stopping), event(Kind::Deadline), p)),
              "stopping: signal=SIGQUIT ending=stopped");
}

TEST(Lifecycle, WithoutAWatchdogNoneStarts)
{
    LifecycleParams p = params();
    p.watchdogTimeout = Duration::zero();
    EXPECT_EQ(summary(transition(in(S::Starting), event(Kind::ReadyNotify), p)),
              "ready: deadline=cancel exec ready");
}

TEST(Lifecycle, HowAnExitCountsDependsOnWhyItStopped)
{
    const ExitStatus clean{CLD_EXITED, 0};
    const ExitStatus status1{CLD_EXITED, 1};
    const ExitStatus killed{CLD_KILLED, SIGKILL};
    const auto after = [](EndCause cause, const ExitStatus &exit) {
        Lifecycle l;
        l.state = S::Stopping;
        l.ending.cause = cause;
        return transition(l, event(Kind::Exited, exit), params()).next.state;
    };
    // Nobody asked, or the worker said STOPPING=1: its exit status decides.
    EXPECT_EQ(after(EndCause::None, clean), S::Exited);
    EXPECT_EQ(after(EndCause::None, status1), S::Failed);
    EXPECT_EQ(after(EndCause::WorkerStopping, clean), S::Exited);
    EXPECT_EQ(after(EndCause::WorkerStopping, killed), S::Failed);
    // fdsupd asked: whatever it exits with is expected.
    EXPECT_EQ(after(EndCause::Stopped, killed), S::Exited);
    EXPECT_EQ(after(EndCause::Drained, status1), S::Exited);
    // A failure stays one even if the process exits cleanly afterwards.
    EXPECT_EQ(after(EndCause::ReadyTimeout, clean), S::Failed);
    EXPECT_EQ(after(EndCause::Watchdog, clean), S::Failed);
    EXPECT_EQ(after(EndCause::ExecFailed, clean), S::Failed);
}

TEST(Lifecycle, TheFirstFailureIsWhatTheInstanceIsRememberedFor)
{
    Lifecycle l = in(S::Starting);
    l = transition(l, event(Kind::Deadline), params()).next;
    EXPECT_EQ(l.ending.cause, EndCause::ReadyTimeout);
    EXPECT_EQ(l.ending.detail, "did not become ready within 30s");
    // A late exec report does not hide why it was killed.
    l = transition(l, event(Kind::ExecFailed), params()).next;
    EXPECT_EQ(l.ending.cause, EndCause::ReadyTimeout);
    // An operator's stop does not either (and means nothing while stopping).
    EXPECT_TRUE(transition(l, event(Kind::Stop), params()).ignored);
    // But a failure does replace a request: it is the more important fact.
    Lifecycle stopped = in(S::Stopping);
    stopped = transition(stopped, event(Kind::ExecFailed), params()).next;
    EXPECT_EQ(stopped.ending.cause, EndCause::ExecFailed);
    EXPECT_EQ(stopped.ending.detail, "setuid 33: Operation not permitted");
}

TEST(Lifecycle, TheDetailsNameTheLimitThatWasMissed)
{
    EXPECT_EQ(transition(in(S::Launching), event(Kind::Deadline), params()).next.ending.detail,
              "did not start (exec) within 5s");
    EXPECT_EQ(transition(in(S::Ready), event(Kind::WatchdogExpired), params()).next.ending.detail,
              "watchdog timeout: no WATCHDOG=1 within 2s");
}

TEST(Lifecycle, AWholeLifeFromLaunchToExit)
{
    const std::vector<std::pair<Kind, S>> life{
        {Kind::ExecSucceeded, S::Starting}, {Kind::ReadyNotify, S::Ready}, {Kind::WatchdogPing, S::Ready},
        {Kind::Drain, S::Draining},         {Kind::Deadline, S::Stopping}, {Kind::Exited, S::Exited},
    };
    Lifecycle l;
    for (const auto &[kind, expected] : life) {
        const Transition t = transition(l, event(kind, {CLD_KILLED, SIGKILL}), params());
        ASSERT_FALSE(t.ignored) << lifecycleEventName(kind);
        l = t.next;
        EXPECT_EQ(l.state, expected) << lifecycleEventName(kind);
    }
    EXPECT_EQ(l.ending.cause, EndCause::Drained);
}

TEST(Lifecycle, ExitsAreDescribedForPeople)
{
    EXPECT_EQ(describeExit({CLD_EXITED, 3}), "exited with status 3");
    EXPECT_EQ(describeExit({CLD_KILLED, SIGKILL}), "killed by SIGKILL");
    EXPECT_EQ(describeExit({CLD_DUMPED, SIGABRT}), "killed by SIGABRT (core dumped)");
    EXPECT_FALSE(exitIsFailure({CLD_EXITED, 0}));
    EXPECT_TRUE(exitIsFailure({CLD_KILLED, SIGTERM}));
    EXPECT_STREQ(instanceStateName(S::Launching), "starting");
    EXPECT_STREQ(lifecycleStateName(S::Launching), "launching");
}

} // namespace
} // namespace fdsup
