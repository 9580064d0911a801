// A service as its rollouts see it: starting one, cancelling it, and the RolloutHost they drive it through.
#include <algorithm>

#include "model/service.hpp"

namespace fdsup {

Result<Rollouts::Begun> Service::rollOut(std::shared_ptr<const Profile> target, const RolloutOptions &options,
                                         bool queue)
{
    if (target) {
        nextGeneration_ = std::max(nextGeneration_, target->generation + 1);
    }
    auto begun = rollouts_.request(std::move(target), options, queue);
    changed();
    return begun;
}

bool Service::cancelRollout(const std::string &reason)
{
    const bool cancelled = rollouts_.cancel(reason);
    if (cancelled) {
        changed();
    }
    return cancelled;
}

// ---- RolloutHost ----

std::optional<InstanceView> Service::primaryOf(unsigned slot) const
{
    const Instance *instance = primaryInstance(slot);
    return instance != nullptr ? std::optional(viewOf(*instance)) : std::nullopt;
}

std::optional<InstanceView> Service::find(std::uint64_t id) const
{
    const Instance *instance = findInstance(id);
    return instance != nullptr ? std::optional(viewOf(*instance)) : std::nullopt;
}

Result<InstanceView> Service::start(unsigned slot, const std::shared_ptr<const Profile> &profile,
                                    bool candidate)
{
    return spawn(slot, profile, candidate ? InstanceRole::Candidate : InstanceRole::Primary);
}

void Service::drain(std::uint64_t id)
{
    if (Instance *instance = findInstance(id)) {
        instance->setRole(InstanceRole::Retiring);
        instance->drain();
    }
}

void Service::stop(std::uint64_t id)
{
    if (Instance *instance = findInstance(id)) {
        instance->setRole(InstanceRole::Retiring);
        instance->stop();
    }
}

std::string Service::drainHow(std::uint64_t id) const
{
    const Instance *instance = findInstance(id);
    if (instance != nullptr && instance->granted(kChannelCapHandoff)) {
        return "over its channel";
    }
    return "with " +
           config::signalName(instance != nullptr ? instance->config().drainSignal : config().drainSignal);
}

ServiceShape Service::shape() const
{
    return ServiceShape{wanted(), active_, failed_, failedReason_};
}

void Service::resizeSlots(unsigned count)
{
    slots_.resize(count);
    restartTimers_.resize(count);
}

void Service::reshape(const ServiceShape &shape)
{
    resizeSlots(shape.slots);
    active_ = shape.active;
    failed_ = shape.failed;
    failedReason_ = shape.failedReason;
}

void Service::claim(unsigned slot)
{
    if (slot < restartTimers_.size()) {
        restartTimers_[slot].reset();
    }
}

bool Service::slotDone(unsigned slot) const
{
    return slot < slots_.size() && slots_[slot].done;
}

void Service::commit(const std::shared_ptr<const Profile> &to)
{
    profile_ = to;
    resizeSlots(to->config.instances);
    for (const auto &instance : instances_) {
        if (instance->role() == InstanceRole::Candidate) {
            instance->setRole(InstanceRole::Primary);
        }
    }
    broker_.setHoldTimeout(to->config.handoffTimeout);
}

Result<std::shared_ptr<const Profile>> Service::restartProfile()
{
    // The same configuration, started again: whatever the command now points
    // at on disk is the new build. A runtime `scale` is kept.
    config::ServiceConfig next = profile_->config;
    next.instances = wanted();
    auto target = makeProfile(next, nextGeneration_, context_.preloadLibrary);
    if (target) {
        ++nextGeneration_;
    }
    return target;
}

std::vector<std::string> Service::lastOutputOf(pid_t pid, std::size_t lines) const
{
    return output_.lastLinesOf(pid, lines);
}

void Service::rolloutEvent(const Rollout &rollout, const std::string &event)
{
    observer_.rolloutEvent(*this, rollout, event);
}

void Service::rolloutFinished(const RolloutRecord &record)
{
    observer_.rolloutFinished(*this, record);
    changed();
}

void Service::queuedBegan(std::uint64_t ticket, std::uint64_t id)
{
    observer_.queuedBegan(*this, ticket, id);
}

void Service::queuedEnded(std::uint64_t ticket, const Error &why)
{
    observer_.queuedEnded(*this, ticket, why);
}

} // namespace fdsup
