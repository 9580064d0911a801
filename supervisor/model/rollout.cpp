// Rollouts: a service moves to a new generation batch by batch, with a readiness gate and a deadline
// at every step, and rolls back on failure (docs/rollouts.md).
#include "model/rollout.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>

#include <spdlog/spdlog.h>

namespace fdsup {
namespace {

using Phase = RolloutStep::Phase;

// How many of a failed replacement's last output lines the result carries.
constexpr std::size_t kFailureOutputLines = 10;

bool inProgress(Phase phase)
{
    return phase == Phase::DrainingOld || phase == Phase::Starting || phase == Phase::Ready ||
           phase == Phase::Retiring;
}

bool leaving(InstanceState state)
{
    return state == InstanceState::Draining || state == InstanceState::Stopping;
}

bool starting(InstanceState state)
{
    return state == InstanceState::Launching || state == InstanceState::Starting;
}

std::string plural(unsigned n, const char *word)
{
    return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

} // namespace

const char *rolloutStateName(RolloutState state)
{
    switch (state) {
    case RolloutState::Running:
        return "running";
    case RolloutState::RollingBack:
        return "rolling-back";
    case RolloutState::Succeeded:
        return "succeeded";
    case RolloutState::Failed:
        return "failed";
    case RolloutState::Cancelled:
        return "cancelled";
    }
    return "unknown";
}

const char *rolloutOrderName(config::RolloutOrder order)
{
    return order == config::RolloutOrder::StartFirst ? "start-first" : "stop-first";
}

const char *rolloutPhaseName(Phase phase)
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

Rollout::Rollout(RolloutHost &host, Clock &clock, std::uint64_t id, std::shared_ptr<const Profile> from,
                 std::shared_ptr<const Profile> to, const RolloutOptions &options)
    : host_(host), clock_(clock), id_(id), from_(std::move(from)), to_(std::move(to)), options_(options)
{
    options_.batch = std::max(1U, options.batch);
}

std::string Rollout::slotName(unsigned index) const
{
    return host_.serviceName() + "[" + std::to_string(index) + "]";
}

std::string Rollout::label(unsigned index, pid_t pid, unsigned generation) const
{
    return slotName(index) + " (pid " + std::to_string(pid) + ", generation " + std::to_string(generation) +
           ")";
}

RolloutRecord Rollout::record() const
{
    RolloutRecord r;
    r.id = id_;
    r.service = host_.serviceName();
    r.fromGeneration = from_->generation;
    r.toGeneration = to_->generation;
    r.options = options_;
    r.state = state_;
    r.reason = reason_;
    r.failure = failure_;
    r.startedRealtimeUsec = startedRealtimeUsec_;
    r.duration = (finished() ? finishedAt_ : clock_.now()) - startedAt_;
    r.steps = steps_;
    return r;
}

void Rollout::begin()
{
    startedRealtimeUsec_ = realtimeUsec();
    startedAt_ = clock_.now();
    before_ = host_.shape();
    fromInstances_ = before_.active ? before_.slots : 0;
    toInstances_ = to_->config.instances;
    const unsigned steps = std::max(fromInstances_, toInstances_);
    for (unsigned i = 0; i < steps; ++i) {
        steps_.push_back(RolloutStep{i, Phase::Pending, 0, 0, 0, 0, {}});
    }
    // A stopped or failed service comes up as the new generation.
    ServiceShape up = before_;
    up.slots = std::max(before_.slots, steps);
    up.active = true;
    up.failed = false;
    up.failedReason.clear();
    host_.reshape(up);
    event("rollout " + std::to_string(id_) + ": generation " + std::to_string(from_->generation) + " -> " +
          std::to_string(to_->generation) + ", " + plural(toInstances_, "instance") + ", batch " +
          std::to_string(options_.batch) + ", " + rolloutOrderName(options_.order));
    advance();
}

void Rollout::advance()
{
    if (advancing_) {
        again_ = true;
        return;
    }
    advancing_ = true;
    do {
        again_ = false;
        if (!finished()) {
            step();
        }
    } while (again_);
    advancing_ = false;
}

void Rollout::step()
{
    if (state_ == RolloutState::RollingBack) {
        // Done once every replacement it stopped is gone and every old
        // instance it started again is ready (or has failed as usual).
        const bool waiting = std::any_of(stopped_.begin(), stopped_.end(),
                                         [this](auto id) { return host_.find(id).has_value(); }) ||
                             std::any_of(restored_.begin(), restored_.end(), [this](auto id) {
                                 const auto i = host_.find(id);
                                 return i && starting(i->state);
                             });
        if (!waiting) {
            state_ = finalState_;
            finish();
        }
        return;
    }
    bool busy = false;
    for (auto &step : steps_) {
        if (step.phase == Phase::DrainingOld && !host_.find(step.oldId)) {
            event(slotName(step.index) + ": old pid " + std::to_string(step.oldPid) + " exited");
            if (step.index < toInstances_) {
                startReplacement(step);
                if (state_ != RolloutState::Running) {
                    return;
                }
            } else {
                step.phase = Phase::Done;
            }
        }
        if (step.phase == Phase::Starting) {
            const auto replacement = host_.find(step.newId);
            if (replacement && replacement->state == InstanceState::Ready) {
                step.phase = Phase::Ready;
                event(label(step.index, step.newPid, to_->generation) + " is ready");
            }
        }
        if (step.phase == Phase::Ready) {
            const auto old = host_.find(step.oldId);
            if (options_.order == config::RolloutOrder::StartFirst && old) {
                step.phase = Phase::Retiring;
                if (!leaving(old->state)) {
                    event(slotName(step.index) + ": draining old pid " + std::to_string(step.oldPid) + " " +
                          host_.drainHow(step.oldId));
                    host_.drain(step.oldId);
                }
            } else {
                step.phase = Phase::Done;
            }
        }
        if (step.phase == Phase::Retiring && !host_.find(step.oldId)) {
            step.phase = Phase::Done;
            event(slotName(step.index) + ": old pid " + std::to_string(step.oldPid) + " exited");
        }
        busy = busy || inProgress(step.phase);
    }
    if (busy) {
        return;
    }
    unsigned begun = 0;
    for (auto &step : steps_) {
        if (step.phase != Phase::Pending) {
            continue;
        }
        if (begun == options_.batch) {
            break;
        }
        ++begun;
        beginStep(step);
        if (state_ != RolloutState::Running) {
            return;
        }
    }
    if (begun == 0) {
        commit();
        return;
    }
    again_ = true; // steps that were done at once let the next batch begin
}

void Rollout::beginStep(RolloutStep &step)
{
    host_.claim(step.index);
    const auto old = host_.primaryOf(step.index);
    if (old) {
        step.oldId = old->id;
        step.oldPid = old->pid;
    }
    if (step.index >= toInstances_) {
        // The new generation has fewer instances: this one only goes.
        if (!old) {
            step.phase = Phase::Done;
            return;
        }
        step.phase = Phase::Retiring;
        event(slotName(step.index) + ": draining pid " + std::to_string(step.oldPid) +
              " (not in generation " + std::to_string(to_->generation) + ")");
        host_.drain(step.oldId);
        return;
    }
    if (options_.order == config::RolloutOrder::StopFirst && old) {
        // The listener stays open in fdsupd: new connections wait in the
        // kernel's accept queue until the replacement accepts them.
        step.phase = Phase::DrainingOld;
        event(slotName(step.index) + ": draining old pid " + std::to_string(step.oldPid) + " " +
              host_.drainHow(step.oldId) + " before starting its replacement");
        host_.drain(step.oldId);
        return;
    }
    startReplacement(step);
}

void Rollout::startReplacement(RolloutStep &step)
{
    auto replacement = host_.start(step.index, to_, true);
    if (!replacement) {
        const std::string &why = replacement.error().message;
        step.phase = Phase::Failed;
        step.reason = why;
        fail(RolloutState::Failed,
             slotName(step.index) + " (generation " + std::to_string(to_->generation) +
                 ") could not be started: " + why,
             RolloutFailure{step.index, 0, to_->generation, why, {}});
        return;
    }
    step.phase = Phase::Starting;
    step.newId = replacement->id;
    step.newPid = replacement->pid;
    event(slotName(step.index) + ": started pid " + std::to_string(step.newPid) + " (generation " +
          std::to_string(to_->generation) + ")");
}

void Rollout::commit()
{
    host_.commit(to_);
    state_ = RolloutState::Succeeded;
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.now() - startedAt_);
    event("rollout " + std::to_string(id_) + " succeeded: generation " + std::to_string(to_->generation) +
          " serves " + plural(toInstances_, "instance") + " after " + formatDuration(took));
    finish();
}

void Rollout::candidateEnded(std::uint64_t id, unsigned slot, pid_t pid, const std::string &why)
{
    RolloutFailure failure{slot, pid, to_->generation, why, host_.lastOutputOf(pid, kFailureOutputLines)};
    spdlog::warn("{} (pid {}) {}", slotName(slot), pid, why);
    for (auto &step : steps_) {
        if (step.newId == id) {
            step.phase = Phase::Failed;
            step.reason = why;
        }
    }
    if (state_ == RolloutState::Running) {
        fail(RolloutState::Failed, label(slot, pid, to_->generation) + " " + why, std::move(failure));
    }
    advance();
}

bool Rollout::cancel(const std::string &reason)
{
    if (state_ != RolloutState::Running) {
        return false;
    }
    fail(RolloutState::Cancelled, reason, std::nullopt);
    advance();
    return true;
}

void Rollout::timeOut()
{
    if (state_ != RolloutState::Running) {
        return;
    }
    fail(RolloutState::Failed, "the rollout did not complete within " + formatDuration(options_.timeout),
         std::nullopt);
    advance();
}

void Rollout::fail(RolloutState final, std::string reason, std::optional<RolloutFailure> failure)
{
    state_ = RolloutState::RollingBack;
    finalState_ = final;
    reason_ = std::move(reason);
    failure_ = std::move(failure);
    event("rollout " + std::to_string(id_) +
          (final == RolloutState::Cancelled ? " cancelled: " : " failed: ") + reason_ +
          "; rolling back to generation " + std::to_string(from_->generation));
    // The replacements go; the old generation is what serves.
    for (auto &step : steps_) {
        if (step.newId == 0 || !host_.find(step.newId)) {
            continue;
        }
        stopped_.push_back(step.newId);
        if (step.phase != Phase::Failed) {
            step.phase = Phase::RolledBack;
        }
        host_.stop(step.newId);
    }
    host_.reshape(before_);
    // Slots whose old instance was already drained get one again, of the old
    // generation, as an ordinary instance (restarted by its policy if it fails).
    if (before_.active && !before_.failed) {
        for (unsigned i = 0; i < fromInstances_ && i < before_.slots; ++i) {
            if (host_.slotDone(i) || host_.primaryOf(i)) {
                continue;
            }
            if (auto restored = host_.start(i, from_, false)) {
                restored_.push_back(restored->id);
                event(slotName(i) + ": started pid " + std::to_string(restored->pid) + " (generation " +
                      std::to_string(from_->generation) + ") again");
            }
        }
    }
    again_ = true;
}

void Rollout::abort(const std::string &reason)
{
    for (const auto &step : steps_) {
        if (step.newId != 0 && host_.find(step.newId)) {
            host_.stop(step.newId);
        }
    }
    ServiceShape shape = host_.shape();
    shape.slots = before_.slots;
    host_.reshape(shape);
    state_ = RolloutState::Cancelled;
    reason_ = reason;
    finish();
}

void Rollout::finish()
{
    finishedAt_ = clock_.now();
    spdlog::info("Rollout {} of {} {}{}", id_, host_.serviceName(), rolloutStateName(state_),
                 reason_.empty() ? "" : ": " + reason_);
}

void Rollout::event(const std::string &text)
{
    spdlog::info("{}", text);
    host_.rolloutEvent(*this, text);
}

Result<Rollouts::Begun> Rollouts::request(std::shared_ptr<const Profile> target,
                                          const RolloutOptions &options, bool queue)
{
    if (current_ || !queue_.empty()) {
        if (!queue || target) {
            return Error{EBUSY, "rollout " + std::to_string(currentId()) + " of service '" +
                                    host_.serviceName() + "' is in progress"};
        }
        if (queue_.size() >= kMaxQueued) {
            return Error{EBUSY, std::to_string(queue_.size()) + " restarts of service '" +
                                    host_.serviceName() + "' are queued already (the limit)"};
        }
        queue_.push_back(Queued{++tickets_, options});
        return Begun{0, queue_.back().ticket};
    }
    auto id = start(std::move(target), options, 0);
    if (!id) {
        return id.error();
    }
    settle();
    return Begun{*id, 0};
}

void RolloutCounters::finished(const RolloutRecord &record)
{
    switch (record.state) {
    case RolloutState::Succeeded:
        ++succeeded;
        break;
    case RolloutState::Failed:
        ++rolledBack;
        break;
    case RolloutState::Cancelled:
        ++cancelled;
        break;
    case RolloutState::Running:
    case RolloutState::RollingBack:
        return; // not finished: never recorded
    }
    const double seconds = std::chrono::duration<double>(record.duration).count();
    durationSeconds += seconds;
    std::size_t bucket = 0;
    while (bucket < kDurationBuckets.size() && seconds > kDurationBuckets.at(bucket)) {
        ++bucket;
    }
    ++durations.at(bucket);
}

Result<std::uint64_t> Rollouts::start(std::shared_ptr<const Profile> target, const RolloutOptions &options,
                                      std::uint64_t ticket)
{
    if (!target) {
        auto made = host_.restartProfile();
        if (!made) {
            return made.error();
        }
        target = std::move(*made);
    }
    current_ = std::make_unique<Rollout>(host_, clock_, ++serial_, host_.currentProfile(), std::move(target),
                                         options);
    const std::uint64_t id = current_->id();
    if (ticket != 0) {
        // Before its first event, so that whoever waits for it sees them all.
        host_.queuedBegan(ticket, id);
    }
    if (options.timeout != Duration::max()) {
        if (auto t = clock_.startTimer(options.timeout, [this] {
                deadline_.reset();
                if (current_) {
                    current_->timeOut();
                }
                settle();
            })) {
            deadline_ = std::move(*t);
        }
    }
    ++counters_.started;
    current_->begin();
    return id;
}

void Rollouts::settle()
{
    if (settling_) {
        return;
    }
    settling_ = true;
    while (current_ && current_->finished()) {
        deadline_.reset();
        last_ = current_->record();
        current_.reset();
        counters_.finished(*last_);
        host_.rolloutFinished(*last_);
        while (!current_ && !queue_.empty()) {
            const Queued next = queue_.front();
            queue_.pop_front();
            if (auto id = start(nullptr, next.options, next.ticket); !id) {
                spdlog::error("Cannot restart {}: {}", host_.serviceName(), id.error().message);
                host_.queuedEnded(next.ticket, id.error());
            }
        }
    }
    settling_ = false;
}

void Rollouts::dropQueue(const std::string &reason)
{
    std::deque<Queued> dropped;
    dropped.swap(queue_);
    for (const auto &queued : dropped) {
        host_.queuedEnded(queued.ticket, Error{ECANCELED, reason + " before it began"});
    }
}

bool Rollouts::cancel(const std::string &reason)
{
    if (!current_) {
        return false;
    }
    // Restarts queued behind it are cancelled too: they would undo the cancel.
    dropQueue(reason);
    current_->cancel(reason);
    settle();
    return true;
}

void Rollouts::abort(const std::string &reason)
{
    dropQueue(reason);
    if (current_) {
        current_->abort(reason);
        settle();
    }
}

void Rollouts::advance()
{
    if (current_) {
        current_->advance();
        settle();
    }
}

void Rollouts::candidateEnded(std::uint64_t id, unsigned slot, pid_t pid, const std::string &why)
{
    if (current_) {
        current_->candidateEnded(id, slot, pid, why);
        settle();
    }
}

} // namespace fdsup
