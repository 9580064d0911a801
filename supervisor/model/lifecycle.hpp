// The lifecycle of one worker instance as a pure function: state × event → state + actions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/units.hpp"
#include "config/config.hpp"

namespace fdsup {

// Every state but the final ones has a deadline:
//   Launching  forked, exec not confirmed yet        start_timeout
//   Starting   exec'd, not ready yet                 ready_timeout
//   Ready      serving                               the watchdog, when set
//   Draining   told to finish (replaced, scaled away) drain_timeout, then SIGKILL
//   Stopping   told to stop, or stopping on its own  stop_timeout, then SIGKILL
//   Exited     gone: exited cleanly, or as expected  final
//   Failed     gone: a failure                       final
// The diagram is in docs/architecture.md.
enum class InstanceState : std::uint8_t { Launching, Starting, Ready, Draining, Stopping, Exited, Failed };
inline constexpr std::size_t kInstanceStates = 7;

// The name status and people see: Launching and Starting are both "starting".
const char *instanceStateName(InstanceState state);
// The name of the state itself ("launching"), for tests and debugging.
const char *lifecycleStateName(InstanceState state);
[[nodiscard]] constexpr bool isFinal(InstanceState state)
{
    return state == InstanceState::Exited || state == InstanceState::Failed;
}

// Why an instance stops, once it is known: data, not a set of flags.
enum class EndCause : std::uint8_t {
    None,           // nobody asked: its exit status decides
    Stopped,        // fdsupd stopped it (an operator's stop, a rollback)
    Drained,        // fdsupd drained it (replaced or scaled away)
    WorkerStopping, // it said STOPPING=1: its exit status decides
    ExecFailed,     // a step between fork and exec failed
    StartTimeout,   // no exec within start_timeout
    ReadyTimeout,   // not ready within ready_timeout
    Watchdog,       // no WATCHDOG=1 within the watchdog timeout, or WATCHDOG=trigger
};
// Its name in events ("ready-timeout"; "none" when the exit status decides).
const char *endCauseName(EndCause cause);
// A failure whatever the exit status says.
[[nodiscard]] bool isFailure(EndCause cause);
// Asked for by fdsupd: a non-zero exit status is not a failure.
[[nodiscard]] bool isExpected(EndCause cause);

struct Ending {
    EndCause cause = EndCause::None;
    std::string detail; // for failures: what happened ("did not become ready within 2s")
};

// How a process ended, as waitid() reports it (si_code, si_status).
struct ExitStatus {
    int code = 0;   // CLD_EXITED, CLD_KILLED, CLD_DUMPED
    int status = 0; // the exit status, or the signal
};
// "exited with status 1", "killed by SIGKILL (core dumped)".
std::string describeExit(const ExitStatus &exit);
[[nodiscard]] bool exitIsFailure(const ExitStatus &exit);

struct LifecycleEvent {
    enum class Kind : std::uint8_t {
        ExecSucceeded,   // the status pipe reached EOF
        ExecFailed,      // the status pipe reported a failed step (detail)
        ReadyNotify,     // READY=1 on the notify socket
        ReadyChannel,    // READY on the worker channel
        ReadyBound,      // a wrapped instance's processes claimed every listener (CLAIMED)
        Deadline,        // the current state's deadline passed
        WatchdogExpired, // no WATCHDOG=1 within the watchdog timeout
        WatchdogTrigger, // WATCHDOG=trigger
        WatchdogPing,    // WATCHDOG=1
        WorkerStopping,  // STOPPING=1
        Stop,            // fdsupd stops it (stop_signal)
        Drain,           // fdsupd drains it (DRAIN over the channel, or drain_signal)
        ExtendTimeout,   // EXTEND_TIMEOUT_USEC= (extend)
        Exited,          // the process is gone (exit)
    };
    Kind kind = Kind::ExecSucceeded;
    std::string detail; // ExecFailed
    Duration extend{};  // ExtendTimeout
    ExitStatus exit;    // Exited
};
inline constexpr std::size_t kLifecycleEvents = 14;
const char *lifecycleEventName(LifecycleEvent::Kind kind);

// What the lifecycle depends on: the instance's configuration, and its
// watchdog timeout (WATCHDOG_USEC= may change it at run time).
struct LifecycleParams {
    config::Readiness ready = config::Readiness::Notify;
    Duration startTimeout{};
    Duration readyTimeout{};
    Duration stopTimeout{};
    Duration drainTimeout{};
    int stopSignal = 0;
    int killSignal = 9;         // SIGKILL unless kill_signal says otherwise
    Duration watchdogTimeout{}; // zero: none

    static LifecycleParams of(const config::ServiceConfig &config, Duration watchdogTimeout);
};

struct Lifecycle {
    InstanceState state = InstanceState::Launching;
    Ending ending;
};

// What the I/O layer (Instance) carries out after a transition.
struct LifecycleActions {
    enum class Deadline : std::uint8_t { Keep, Arm, Cancel };
    enum class Watchdog : std::uint8_t { Keep, Start, Rearm, Stop };
    Deadline deadline = Deadline::Keep;
    Duration deadlineAfter{}; // with Arm: from now (Duration::max(): none, same as Cancel)
    Watchdog watchdog = Watchdog::Keep;
    std::optional<int> signal;  // sent to the worker (its process group under kill_mode = "process-group")
    bool drain = false;         // DRAIN over its channel when it joined for handoff, else drain_signal
    bool execConfirmed = false; // exec is known to have succeeded: stop reading the status pipe
    bool becameReady = false;
    bool ended = false; // a final state was reached: the owner reaps the instance
};

struct Transition {
    Lifecycle next;
    LifecycleActions actions;
    bool ignored = false; // the event means nothing in this state
};

// The whole lifecycle. Never fails: an event that means nothing in a state
// leaves it as it is (ignored). Written as exhaustive switches, so a new
// state or event does not compile until every case is decided.
Transition transition(const Lifecycle &now, const LifecycleEvent &event, const LifecycleParams &params);

} // namespace fdsup
