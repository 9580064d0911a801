// The restart policy as a pure function: what happens to a slot whose worker exited.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "common/units.hpp"
#include "config/config.hpp"
#include "model/lifecycle.hpp"

namespace fdsup {

// One slot's history: what status shows for it and what the policy decides on.
struct SlotHistory {
    unsigned restarts = 0;
    unsigned consecutiveFailures = 0;
    bool done = false;       // exited cleanly and the policy does not restart it
    bool lastFailed = false; // the last exit counted as a failure
    std::string lastExit;    // "exited with status 1"
    std::string lastError;   // why it failed, when fdsupd knows better than the exit status

    friend bool operator==(const SlotHistory &, const SlotHistory &) = default;
};

struct RestartDecision {
    enum class Kind : std::uint8_t {
        Restart, // after `delay`
        Done,    // exited cleanly and the policy does not restart it
        GiveUp,  // the service failed: `reason`
    };
    Kind kind = Kind::Restart;
    Duration delay{};
    std::string reason;
};

// The exited worker of slot `slotName` ("web[0]") ran `readyFor` after it
// got ready; `failure` says whether its exit counts as one. Decides by
// restart ("always", "on-failure", "never"), the start limit
// (start_limit_burst automatic restarts within start_limit_interval: more
// gives up) and the backoff (restart_delay doubled per consecutive failure,
// capped at restart_delay_max; a worker that stayed ready for
// restart_delay_max starts the backoff again). Updates the slot's counters
// and `recent` (the times of recent automatic restarts) as it decides.
RestartDecision decideRestart(const config::ServiceConfig &config, const std::string &slotName,
                              SlotHistory &slot, std::deque<Duration> &recent, Duration now,
                              Duration readyFor, bool failure);

// Why a slot was restarted automatically (fdsup_restarts_total's `cause`,
// docs/metrics.md). An operator's restart is a rollout, not one of these.
enum class RestartCause : std::uint8_t {
    Exit,         // exited with a non-zero status
    Signal,       // killed by a signal nobody sent on fdsupd's behalf
    CleanExit,    // exited with status 0 (restart = "always")
    SpawnFailed,  // fdsupd could not start it (or exec failed)
    StartTimeout, // no exec within start_timeout
    ReadyTimeout, // not ready within ready_timeout
    Watchdog,     // no WATCHDOG=1 in time, or WATCHDOG=trigger
};
inline constexpr std::size_t kRestartCauses = 7;
// "exit", "signal", "clean_exit", "spawn_failed", "start_timeout", "ready_timeout", "watchdog".
const char *restartCauseName(RestartCause cause);
// The cause of a restart after an instance ended as `ending` says with `exit`.
RestartCause restartCauseOf(EndCause ending, const ExitStatus &exit);

} // namespace fdsup
