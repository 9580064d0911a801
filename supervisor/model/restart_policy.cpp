// The restart policy as a pure function: what happens to a slot whose worker exited.
#include "model/restart_policy.hpp"

#include <algorithm>

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

} // namespace fdsup
