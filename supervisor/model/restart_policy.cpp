// The restart policy as a pure function: what happens to a slot whose worker exited.
#include "model/restart_policy.hpp"

#include <algorithm>

#include <sys/wait.h>

namespace fdsup {

RestartDecision decideRestart(const config::ServiceConfig &config, const std::string &slotName,
                              SlotHistory &slot, std::deque<Duration> &recent, Duration now,
                              Duration readyFor, bool failure)
{
    using Kind = RestartDecision::Kind;
    if (readyFor >= config.restartDelayMax) {
        // It ran long enough to count as healthy: back off from the start again.
        slot.consecutiveFailures = 0;
    }
    const std::string &last = slot.lastError.empty() ? slot.lastExit : slot.lastError;
    const bool restart = config.restart == config::RestartPolicy::Always ||
                         (config.restart == config::RestartPolicy::OnFailure && failure);
    if (!restart) {
        if (failure) {
            // Nothing will bring it back: say so rather than look "starting".
            return {Kind::GiveUp, {}, slotName + " " + last + " (restart = never)"};
        }
        slot.done = true;
        return {Kind::Done, {}, {}};
    }
    recent.push_back(now);
    while (!recent.empty() && now - recent.front() > config.startLimitInterval) {
        recent.pop_front();
    }
    if (recent.size() > config.startLimitBurst) {
        return {Kind::GiveUp,
                {},
                "restarted " + std::to_string(recent.size() - 1) + " times within " +
                    formatDuration(config.startLimitInterval) +
                    " (start_limit_burst = " + std::to_string(config.startLimitBurst) + "); last: " + last};
    }
    Duration delay = config.restartDelay;
    for (unsigned i = 0; i < slot.consecutiveFailures && delay < config.restartDelayMax; ++i) {
        delay *= 2;
    }
    delay = std::min(delay, config.restartDelayMax);
    slot.consecutiveFailures = failure ? slot.consecutiveFailures + 1 : 0;
    ++slot.restarts;
    return {Kind::Restart, delay, {}};
}

const char *restartCauseName(RestartCause cause)
{
    switch (cause) {
    case RestartCause::Exit:
        return "exit";
    case RestartCause::Signal:
        return "signal";
    case RestartCause::CleanExit:
        return "clean_exit";
    case RestartCause::SpawnFailed:
        return "spawn_failed";
    case RestartCause::StartTimeout:
        return "start_timeout";
    case RestartCause::ReadyTimeout:
        return "ready_timeout";
    case RestartCause::Watchdog:
        return "watchdog";
    }
    return "unknown";
}

RestartCause restartCauseOf(EndCause ending, const ExitStatus &exit)
{
    switch (ending) {
    case EndCause::ExecFailed:
        return RestartCause::SpawnFailed;
    case EndCause::StartTimeout:
        return RestartCause::StartTimeout;
    case EndCause::ReadyTimeout:
        return RestartCause::ReadyTimeout;
    case EndCause::Watchdog:
        return RestartCause::Watchdog;
    case EndCause::None:
    case EndCause::Stopped:
    case EndCause::Drained:
    case EndCause::WorkerStopping:
        break;
    }
    if (exit.code != CLD_EXITED) {
        return RestartCause::Signal;
    }
    return exit.status == 0 ? RestartCause::CleanExit : RestartCause::Exit;
}

} // namespace fdsup
