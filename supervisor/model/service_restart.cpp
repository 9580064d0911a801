// A service's slot when its instance ends: the slot's history, the restart policy's decision, the restart
// timer, giving up.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "model/service.hpp"

namespace fdsup {

void Service::onInstanceEnded(Instance &instance, const ExitStatus &exit)
{
    const LogScope scope(instance.logSubject());
    const std::string how = describeExit(exit);
    const unsigned slot = instance.slot();
    const pid_t pid = instance.pid();
    const std::uint64_t id = instance.id();
    // Kept by value: the instance is destroyed by remove() below.
    const EndCause cause = instance.ending().cause;
    std::string detail = isFailure(cause) ? instance.ending().detail : std::string();
    if (cause == EndCause::ReadyTimeout) {
        detail += unadopted(instance); // ready = "bound": which listener it never took, and why
    }
    killedLeavingTotal_ += instance.killedLeaving() ? 1 : 0;
    InstanceEvent exited = instanceEventOf(InstanceEvent::Kind::Exited, instance);
    exited.exit = how;
    exited.cause = cause;
    exited.failure = instance.state() == InstanceState::Failed;
    exited.killed = instance.killedLeaving();
    observer_.instanceEvent(*this, exited);
    const InstanceRole role = slot < slots_.size() ? instance.role() : InstanceRole::Retiring;
    switch (role) {
    case InstanceRole::Candidate: {
        // "did not become ready within 2s (killed by SIGKILL)", "exited with
        // status 1 before it was ready".
        const bool wasReady = instance.readyAt().has_value();
        const std::string why = isFailure(cause)
                                    ? detail + " (" + how + ")"
                                    : how + (wasReady ? " after it was ready, before the rollout completed"
                                                      : " before it was ready");
        remove(instance);
        rollouts_.candidateEnded(id, slot, pid, why);
        break;
    }
    case InstanceRole::Retiring:
        // Drained or stopped for good: expected, and nothing to restart.
        spdlog::info("{}[{}] (pid {}) {}", name(), slot, pid, how);
        remove(instance);
        rollouts_.advance();
        break;
    case InstanceRole::Primary: {
        const bool failure = instance.state() == InstanceState::Failed;
        const Duration readyFor =
            instance.readyAt() ? context_.clock.now() - *instance.readyAt() : Duration::zero();
        SlotHistory &history = slots_[slot];
        history.lastExit = how;
        history.lastError = detail;
        history.lastFailed = failure;
        if (failure) {
            spdlog::warn("{}[{}] (pid {}) {}{}", name(), slot, pid, how,
                         history.lastError.empty() ? "" : " (" + history.lastError + ")");
        } else {
            spdlog::info("{}[{}] (pid {}) {}", name(), slot, pid, how);
        }
        remove(instance);
        if (active_ && cause != EndCause::Stopped) {
            scheduleRestart(slot, readyFor, failure, restartCauseOf(cause, exit));
        }
        rollouts_.advance();
        break;
    }
    }
    changed();
}

void Service::scheduleRestart(unsigned slot, Duration readyFor, bool failure, RestartCause cause)
{
    const LogScope scope(LogSubject{name(), slot, 0, generation()});
    if (!active_ || failed_ || slot >= slots_.size()) {
        return;
    }
    const Duration now = context_.clock.now();
    const RestartDecision decision = decideRestart(config(), name() + "[" + std::to_string(slot) + "]",
                                                   slots_[slot], restartTimes_, now, readyFor, failure);
    switch (decision.kind) {
    case RestartDecision::Kind::Done:
        if (std::all_of(slots_.begin(), slots_.end(), [](const SlotHistory &s) { return s.done; })) {
            active_ = false; // every worker finished its job: the service is stopped
        }
        return;
    case RestartDecision::Kind::GiveUp:
        giveUp(decision.reason);
        return;
    case RestartDecision::Kind::Restart:
        break;
    }
    ++restartsTotal_;
    ++restartsByCause_.at(static_cast<std::size_t>(cause));
    spdlog::info("Restarting {}[{}] in {}", name(), slot, formatDuration(decision.delay));
    auto timer = context_.clock.startTimer(decision.delay, [this, slot] {
        restartTimers_.at(slot).reset();
        // A rollout may have filled the slot meanwhile.
        const bool taken = std::any_of(instances_.begin(), instances_.end(), [slot](const auto &p) {
            return p->slot() == slot && p->role() != InstanceRole::Retiring;
        });
        if (active_ && !failed_ && !taken) {
            (void)spawn(slot, profile_, InstanceRole::Primary);
            changed();
        }
    });
    if (!timer) {
        giveUp("cannot schedule a restart: " + timer.error().message);
        return;
    }
    restartTimers_[slot] = std::move(*timer);
}

void Service::giveUp(std::string reason)
{
    const LogScope scope(LogSubject{name(), std::nullopt, 0, generation()});
    failed_ = true;
    failedReason_ = std::move(reason);
    for (auto &timer : restartTimers_) {
        timer.reset();
    }
    spdlog::error("Service '{}' failed: {}", name(), failedReason_);
    changed();
}

} // namespace fdsup
