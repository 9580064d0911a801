// Rollouts: a service moves to a new generation batch by batch, with a
// readiness gate and a deadline at every step, and rolls back on failure.
// See docs/rollouts.md.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "model/rollout_state.hpp"
#include "model/service.hpp"

namespace fdsup {
namespace {

using Phase = Service::RolloutStep::Phase;

// How many of a failed replacement's last output lines the result carries.
constexpr std::size_t kFailureOutputLines = 10;

const char *phaseName(Phase phase)
{
    switch (phase) {
    case Phase::Pending:
        return "pending";
    case Phase::DrainingOld:
        return "draining-old";
    case Phase::Starting:
        return "starting";
    case Phase::Ready:
        return "ready";
    case Phase::Retiring:
        return "retiring";
    case Phase::Done:
        return "done";
    case Phase::Failed:
        return "failed";
    case Phase::RolledBack:
        return "rolled-back";
    }
    return "unknown";
}

bool inProgress(Phase phase)
{
    return phase == Phase::DrainingOld || phase == Phase::Starting || phase == Phase::Ready ||
           phase == Phase::Retiring;
}

nlohmann::json pidOrNull(pid_t pid)
{
    return pid > 0 ? nlohmann::json(pid) : nlohmann::json();
}

} // namespace

std::string Service::label(unsigned index, pid_t pid, unsigned generation) const
{
    return name() + "[" + std::to_string(index) + "] (pid " + std::to_string(pid) + ", generation " +
           std::to_string(generation) + ")";
}

Result<std::shared_ptr<const Profile>> Service::prepare(const config::ServiceConfig &config) const
{
    return makeProfile(config, nextGeneration_);
}

bool Service::usesSocket(std::string_view socket) const
{
    const auto uses = [&](const Profile &p) {
        return std::find(p.config.sockets.begin(), p.config.sockets.end(), socket) != p.config.sockets.end();
    };
    return uses(*profile_) || (rollout_ && uses(*rollout_->to)) ||
           std::any_of(instances_.begin(), instances_.end(),
                       [&](const auto &i) { return uses(*i->profile_); });
}

Result<std::uint64_t> Service::restart(const RolloutOptions &options)
{
    // The same configuration, started again: whatever the command now points
    // at on disk is the new build. A runtime `scale` is kept.
    config::ServiceConfig next = profile_->config;
    next.instances = wanted();
    auto target = makeProfile(next, nextGeneration_);
    if (!target) {
        return target.error();
    }
    return beginRollout(std::move(*target), options);
}

std::uint64_t Service::beginRollout(std::shared_ptr<const Profile> target, const RolloutOptions &options)
{
    auto rollout = std::make_unique<Rollout>();
    Rollout &r = *rollout;
    r.id = ++rolloutSerial_;
    r.from = profile_;
    r.to = std::move(target);
    nextGeneration_ = std::max(nextGeneration_, r.to->generation + 1);
    r.options = options;
    r.options.batch = std::max(1U, options.batch);
    r.startedRealtimeUsec = realtimeUsec();
    r.startedAt = context_.loop.now();
    r.wasActive = active_;
    r.wasFailed = failed_;
    r.wasFailedReason = failedReason_;
    r.fromSlots = wanted();
    r.fromInstances = active_ ? wanted() : 0;
    r.toInstances = r.to->config.instances;
    const unsigned steps = std::max(r.fromInstances, r.toInstances);
    for (unsigned i = 0; i < steps; ++i) {
        RolloutStep step;
        step.index = i;
        r.steps.push_back(step);
    }
    if (slots_.size() < steps) {
        slots_.resize(steps);
    }
    // A stopped or failed service comes up as the new generation.
    active_ = true;
    failed_ = false;
    failedReason_.clear();
    if (options.timeout != Duration::max()) {
        if (auto t = context_.loop.addTimer(options.timeout, [this] {
                if (rollout_ && rollout_->state == RolloutState::Running) {
                    failRollout(RolloutState::Failed,
                                "the rollout did not complete within " +
                                    formatDuration(rollout_->options.timeout),
                                std::nullopt);
                    advanceRollout();
                }
            })) {
            r.deadline = std::move(*t);
        }
    }
    rollout_ = std::move(rollout);
    rolloutEvent("rollout " + std::to_string(r.id) + ": generation " + std::to_string(r.from->generation) +
                 " -> " + std::to_string(r.to->generation) + ", " + std::to_string(r.toInstances) +
                 " instance" + (r.toInstances == 1 ? "" : "s") + ", batch " +
                 std::to_string(r.options.batch) + ", " +
                 (r.options.order == config::RolloutOrder::StartFirst ? "start-first" : "stop-first"));
    const std::uint64_t id = r.id;
    advanceRollout();
    changed();
    return id;
}

bool Service::cancelRollout(const std::string &reason)
{
    if (!rollout_) {
        return false;
    }
    if (rollout_->state == RolloutState::Running) {
        failRollout(RolloutState::Cancelled, reason, std::nullopt);
        advanceRollout();
        changed();
    }
    return true;
}

std::uint64_t Service::rolloutId() const
{
    return rollout_ ? rollout_->id : 0;
}

nlohmann::json Service::rolloutJson() const
{
    return rollout_ ? rolloutToJson(*rollout_) : lastRollout_;
}

void Service::advanceRollout()
{
    if (advancing_) {
        advanceAgain_ = true;
        return;
    }
    advancing_ = true;
    do {
        advanceAgain_ = false;
        if (rollout_) {
            stepRollout();
        }
    } while (advanceAgain_);
    advancing_ = false;
}

void Service::stepRollout()
{
    Rollout &r = *rollout_;
    if (r.state == RolloutState::RollingBack) {
        // Done once every replacement it stopped is gone and every old
        // instance it started again is ready (or has failed as usual).
        const bool waiting = std::any_of(r.stopped.begin(), r.stopped.end(),
                                         [this](auto id) { return findById(id) != nullptr; }) ||
                             std::any_of(r.restored.begin(), r.restored.end(), [this](auto id) {
                                 const Instance *i = findById(id);
                                 return i != nullptr && i->state_ == InstanceState::Starting;
                             });
        if (!waiting) {
            r.state = r.finalState;
            finishRollout();
        }
        return;
    }
    if (r.state != RolloutState::Running) {
        return;
    }
    bool busy = false;
    for (auto &step : r.steps) {
        if (step.phase == Phase::DrainingOld && findById(step.oldId) == nullptr) {
            rolloutEvent(name() + "[" + std::to_string(step.index) + "]: old pid " +
                         std::to_string(step.oldPid) + " exited");
            if (step.index < r.toInstances) {
                startReplacement(step);
                if (r.state != RolloutState::Running) {
                    return;
                }
            } else {
                step.phase = Phase::Done;
            }
        }
        if (step.phase == Phase::Starting) {
            const Instance *replacement = findById(step.newId);
            if (replacement != nullptr && replacement->state_ == InstanceState::Ready) {
                step.phase = Phase::Ready;
                rolloutEvent(label(step.index, step.newPid, r.to->generation) + " is ready");
            }
        }
        if (step.phase == Phase::Ready) {
            Instance *old = findById(step.oldId);
            if (r.options.order == config::RolloutOrder::StartFirst && old != nullptr) {
                step.phase = Phase::Retiring;
                if (old->state_ != InstanceState::Draining && old->state_ != InstanceState::Stopping) {
                    rolloutEvent(name() + "[" + std::to_string(step.index) + "]: draining old pid " +
                                 std::to_string(step.oldPid) + " " + drainHow(*old));
                    drainInstance(*old);
                }
            } else {
                step.phase = Phase::Done;
            }
        }
        if (step.phase == Phase::Retiring && findById(step.oldId) == nullptr) {
            step.phase = Phase::Done;
            rolloutEvent(name() + "[" + std::to_string(step.index) + "]: old pid " +
                         std::to_string(step.oldPid) + " exited");
        }
        busy = busy || inProgress(step.phase);
    }
    if (busy) {
        return;
    }
    unsigned begun = 0;
    for (auto &step : r.steps) {
        if (step.phase != Phase::Pending) {
            continue;
        }
        if (begun == r.options.batch) {
            break;
        }
        ++begun;
        beginStep(step);
        if (!rollout_ || r.state != RolloutState::Running) {
            return;
        }
    }
    if (begun == 0) {
        commitRollout();
        return;
    }
    advanceAgain_ = true; // steps that were done at once let the next batch begin
}

void Service::beginStep(RolloutStep &step)
{
    Rollout &r = *rollout_;
    slots_.at(step.index).restartTimer.reset(); // the rollout fills the slot now
    Instance *old = primaryOf(step.index);
    if (old != nullptr) {
        step.oldId = old->id_;
        step.oldPid = old->pid_;
    }
    if (step.index >= r.toInstances) {
        // The new generation has fewer instances: this one only goes.
        if (old == nullptr) {
            step.phase = Phase::Done;
            return;
        }
        step.phase = Phase::Retiring;
        rolloutEvent(name() + "[" + std::to_string(step.index) + "]: draining pid " +
                     std::to_string(step.oldPid) + " (not in generation " + std::to_string(r.to->generation) +
                     ")");
        drainInstance(*old);
        return;
    }
    if (r.options.order == config::RolloutOrder::StopFirst && old != nullptr) {
        // The listener stays open in fdsupd: new connections wait in the
        // kernel's accept queue until the replacement accepts them.
        step.phase = Phase::DrainingOld;
        rolloutEvent(name() + "[" + std::to_string(step.index) + "]: draining old pid " +
                     std::to_string(step.oldPid) + " " + drainHow(*old) + " before starting its replacement");
        drainInstance(*old);
        return;
    }
    startReplacement(step);
}

void Service::startReplacement(RolloutStep &step)
{
    Rollout &r = *rollout_;
    Instance *replacement = spawnInstance(step.index, r.to, true);
    if (replacement == nullptr) {
        step.phase = Phase::Failed;
        step.reason = lastSpawnError_;
        failRollout(RolloutState::Failed,
                    name() + "[" + std::to_string(step.index) + "] (generation " +
                        std::to_string(r.to->generation) + ") could not be started: " + lastSpawnError_,
                    RolloutFailure{step.index, 0, r.to->generation, lastSpawnError_, {}});
        return;
    }
    step.phase = Phase::Starting;
    step.newId = replacement->id_;
    step.newPid = replacement->pid_;
    rolloutEvent(name() + "[" + std::to_string(step.index) + "]: started pid " + std::to_string(step.newPid) +
                 " (generation " + std::to_string(r.to->generation) + ")");
}

void Service::commitRollout()
{
    Rollout &r = *rollout_;
    profile_ = r.to;
    slots_.resize(r.toInstances);
    for (auto &instance : instances_) {
        instance->candidate_ = false;
    }
    r.state = RolloutState::Succeeded;
    r.deadline.reset();
    const auto took = context_.loop.now() - r.startedAt;
    rolloutEvent("rollout " + std::to_string(r.id) + " succeeded: generation " +
                 std::to_string(r.to->generation) + " serves " + std::to_string(r.toInstances) + " instance" +
                 (r.toInstances == 1 ? "" : "s") + " after " +
                 formatDuration(std::chrono::duration_cast<std::chrono::milliseconds>(took)));
    finishRollout();
}

void Service::onRolloutInstanceExit(Instance &instance, const std::string &how)
{
    Rollout &r = *rollout_;
    const unsigned index = instance.slot_;
    const pid_t pid = instance.pid_;
    const bool wasReady = instance.readyAt_ > Duration::zero();
    // "did not become ready within 2s (killed by SIGKILL)", "exited with
    // status 1 before it was ready".
    std::string why =
        instance.error_.empty()
            ? how + (wasReady ? " after it was ready, before the rollout completed" : " before it was ready")
            : instance.error_ + " (" + how + ")";
    RolloutFailure failure{index, pid, instance.profile_->generation, why,
                           outputOf(pid, kFailureOutputLines)};
    spdlog::warn("{}[{}] (pid {}) {}", name(), index, pid, why);
    for (auto &step : r.steps) {
        if (step.newId == instance.id_) {
            step.phase = Phase::Failed;
            step.reason = why;
        }
    }
    remove(instance);
    if (r.state == RolloutState::Running) {
        failRollout(RolloutState::Failed, label(index, pid, r.to->generation) + " " + why,
                    std::move(failure));
    }
    advanceRollout();
}

void Service::failRollout(RolloutState final, std::string reason, std::optional<RolloutFailure> failure)
{
    Rollout &r = *rollout_;
    r.state = RolloutState::RollingBack;
    r.finalState = final;
    r.reason = std::move(reason);
    r.failure = std::move(failure);
    r.deadline.reset();
    rolloutEvent("rollout " + std::to_string(r.id) +
                 (final == RolloutState::Cancelled ? " cancelled: " : " failed: ") + r.reason +
                 "; rolling back to generation " + std::to_string(r.from->generation));
    // The replacements go; the old generation is what serves.
    for (auto &instance : instances_) {
        if (!instance->candidate_) {
            continue;
        }
        instance->candidate_ = false;
        instance->retiring_ = true;
        r.stopped.push_back(instance->id_);
        for (auto &step : r.steps) {
            if (step.newId == instance->id_ && step.phase != Phase::Failed) {
                step.phase = Phase::RolledBack;
            }
        }
        if (instance->state_ != InstanceState::Stopping && instance->state_ != InstanceState::Draining) {
            stopInstance(*instance);
        }
    }
    active_ = r.wasActive;
    failed_ = r.wasFailed;
    failedReason_ = r.wasFailedReason;
    slots_.resize(r.fromSlots);
    // Slots whose old instance was already drained get one again, of the old
    // generation, as an ordinary instance (restarted by its policy if it fails).
    if (active_ && !failed_) {
        for (unsigned i = 0; i < r.fromInstances && i < slots_.size(); ++i) {
            if (slots_[i].done || primaryOf(i) != nullptr) {
                continue;
            }
            if (Instance *restored = spawnInstance(i)) {
                r.restored.push_back(restored->id_);
                rolloutEvent(name() + "[" + std::to_string(i) + "]: started pid " +
                             std::to_string(restored->pid_) + " (generation " +
                             std::to_string(r.from->generation) + ") again");
            }
        }
    }
    advanceAgain_ = true;
}

void Service::abortRollout(const std::string &reason)
{
    Rollout &r = *rollout_;
    for (auto &instance : instances_) {
        instance->candidate_ = false;
    }
    slots_.resize(r.fromSlots);
    r.state = RolloutState::Cancelled;
    r.reason = reason;
    r.deadline.reset();
    finishRollout();
}

void Service::finishRollout()
{
    nlohmann::json record = rolloutToJson(*rollout_);
    lastRollout_ = record;
    const std::unique_ptr<Rollout> done = std::move(rollout_);
    spdlog::info("Rollout {} of {} {}{}", done->id, name(), rolloutStateName(done->state),
                 done->reason.empty() ? "" : ": " + done->reason);
    if (onRollout_) {
        onRollout_(
            *this, done->id, [&record] { return record; }, std::string(), true);
    }
    changed();
}

void Service::rolloutEvent(const std::string &event)
{
    spdlog::info("{}", event);
    if (onRollout_) {
        onRollout_(
            *this, rollout_->id, [this] { return rolloutToJson(*rollout_); }, event, false);
    }
}

nlohmann::json Service::rolloutToJson(const Rollout &r) const
{
    nlohmann::json steps = nlohmann::json::array();
    for (const auto &step : r.steps) {
        steps.push_back({{"index", step.index},
                         {"phase", phaseName(step.phase)},
                         {"old_pid", pidOrNull(step.oldPid)},
                         {"new_pid", pidOrNull(step.newPid)},
                         {"reason", step.reason.empty() ? nlohmann::json() : nlohmann::json(step.reason)}});
    }
    return {
        {"id", r.id},
        {"service", name()},
        {"from_generation", r.from->generation},
        {"to_generation", r.to->generation},
        {"order", r.options.order == config::RolloutOrder::StartFirst ? "start-first" : "stop-first"},
        {"batch", r.options.batch},
        {"state", rolloutStateName(r.state)},
        {"reason", r.reason.empty() ? nlohmann::json() : nlohmann::json(r.reason)},
        {"failure", r.failure ? nlohmann::json{{"index", r.failure->index},
                                               {"pid", pidOrNull(r.failure->pid)},
                                               {"generation", r.failure->generation},
                                               {"reason", r.failure->reason},
                                               {"output", r.failure->output}}
                              : nlohmann::json()},
        {"started_usec", r.startedRealtimeUsec},
        {"duration_usec", (context_.loop.now() - r.startedAt).count()},
        {"steps", steps},
    };
}

} // namespace fdsup
