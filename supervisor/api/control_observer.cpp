// The control API as the daemon's observer: the long calls (start, stop, scale, restart with wait,
// cancel, logs with follow) answered when the daemon's events say they are done; the Events stream
// fed; the access policy replaced on reload.
#include <algorithm>
#include <cerrno>

#include "api/control_api.hpp"
#include "api/render.hpp"

namespace fdsup {
namespace {

using Json = nlohmann::json;

} // namespace

void ControlApi::serviceChanged(Service &service)
{
    checkImports();
    reexecProgress();
    const ServiceState state = service.state();
    if (const auto seen = events_.stateSeen(service.name(), state); seen.changed && !events_.empty()) {
        events_.publish(events::serviceState(realtimeUsec(), service.name(), state, seen.previous,
                                             service.failedReason()));
    }
    for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->call->answered()) {
            it = waiters_.erase(it);
            continue;
        }
        if (it->service != service.name()) {
            ++it;
            continue;
        }
        bool reached = false;
        switch (it->goal) {
        case Waiter::Goal::Running:
            reached = state == ServiceState::Running;
            break;
        case Waiter::Goal::Stopped:
            reached = state == ServiceState::Stopped;
            break;
        case Waiter::Goal::Settled:
            // Scale: every new instance ready, every removed one gone (a
            // stopped service only records the number).
            reached = service.settled() && !service.rollouts().active() &&
                      (state == ServiceState::Running || state == ServiceState::Stopped);
            break;
        }
        bool finished = true;
        if (reached) {
            Json reply{{"service", service.name()}, {"state", serviceStateName(state)}};
            if (it->goal == Waiter::Goal::Settled) {
                reply["instances"] = service.wanted();
            }
            it->call->reply(std::move(reply));
        } else if (it->goal != Waiter::Goal::Stopped && state == ServiceState::Failed) {
            it->call->fail(varlink::kErrorServiceFailed,
                           {{"service", service.name()}, {"reason", service.failedReason()}});
        } else if (it->goal != Waiter::Goal::Stopped && !service.active() && state == ServiceState::Stopped) {
            // Stopped by someone else meanwhile: it will not get there.
            it->call->fail(varlink::kErrorServiceFailed,
                           {{"service", service.name()}, {"reason", "the service was stopped"}});
        } else {
            finished = false;
        }
        it = finished ? waiters_.erase(it) : std::next(it);
    }
}

void ControlApi::rolloutEvent(Service &service, const Rollout &rollout, const std::string &event)
{
    // The record is built only for someone waiting for progress: most
    // events have nobody, and a record lists every step.
    std::optional<Json> record;
    if (const bool began = events_.rolloutBegins(service.name(), rollout.id()); !events_.empty()) {
        events_.publish(events::rolloutStep(realtimeUsec(), rollout.record(), event, began));
    }
    for (auto it = rolloutWaiters_.begin(); it != rolloutWaiters_.end();) {
        if (it->call->answered()) {
            it = rolloutWaiters_.erase(it);
            continue;
        }
        if (it->service == service.name() && (it->rollout == 0 || it->rollout == rollout.id())) {
            it->rollout = rollout.id();
            if (it->progress) {
                if (!record) {
                    record = render::rollout(rollout.record());
                }
                it->call->reply({{"rollout", *record}, {"event", event}}, true);
            }
        }
        ++it;
    }
}

void ControlApi::rolloutFinished(Service &service, const RolloutRecord &record)
{
    reexecProgress();
    if (!events_.empty()) {
        events_.publish(events::rolloutFinished(realtimeUsec(), record));
    }
    const Json rollout = render::rollout(record);
    for (auto it = rolloutWaiters_.begin(); it != rolloutWaiters_.end();) {
        if (it->call->answered()) {
            it = rolloutWaiters_.erase(it);
            continue;
        }
        if (it->service != service.name() || (it->rollout != 0 && it->rollout != record.id)) {
            ++it;
            continue;
        }
        if (it->cancel || record.state == RolloutState::Succeeded) {
            it->call->reply({{"rollout", rollout}});
        } else {
            it->call->fail(varlink::kErrorRolloutFailed, {{"service", service.name()}, {"rollout", rollout}});
        }
        it = rolloutWaiters_.erase(it);
    }
}

void ControlApi::queuedBegan(Service &service, std::uint64_t ticket, std::uint64_t id)
{
    const auto it = std::find_if(queuedWaiters_.begin(), queuedWaiters_.end(), [&](const QueuedWaiter &q) {
        return q.service == service.name() && q.ticket == ticket;
    });
    if (it == queuedWaiters_.end()) {
        return; // nobody waits for it (queued without wait): it is still wanted
    }
    if (!it->call->answered()) {
        rolloutWaiters_.push_back(RolloutWaiter{it->call, it->service, id, it->progress, false});
    }
    queuedWaiters_.erase(it);
}

void ControlApi::queuedEnded(Service &service, std::uint64_t ticket, const Error &why)
{
    const auto it = std::find_if(queuedWaiters_.begin(), queuedWaiters_.end(), [&](const QueuedWaiter &q) {
        return q.service == service.name() && q.ticket == ticket;
    });
    if (it == queuedWaiters_.end()) {
        return;
    }
    const QueuedWaiter queued = *it;
    queuedWaiters_.erase(it);
    if (queued.call->answered()) {
        return;
    }
    if (why.code == ECANCELED) {
        queued.call->fail(
            varlink::kErrorRolloutFailed,
            {{"service", service.name()},
             {"rollout", render::queuedRollout(service, queued.options, "cancelled", why.message)}});
    } else {
        queued.call->fail(varlink::kErrorServiceFailed,
                          {{"service", service.name()}, {"reason", why.message}});
    }
}

void ControlApi::outputLine(Service &service, const LogLine &line)
{
    std::erase_if(followers_, [](const Follower &f) { return f.call->done(); });
    for (const auto &follower : followers_) {
        if (follower.service == service.name()) {
            follower.call->reply({{"lines", Json::array({render::logLine(line)})}}, true);
        }
    }
}

void ControlApi::accessChanged(const config::SupervisorConfig &supervisor)
{
    // Each call is checked against the policy of the moment it arrives, on
    // open connections too; who may connect applies to new connections.
    access_ = resolveAccessPolicy(supervisor);
    server_->setAccess(access_.uids(), access_.gids());
}

void ControlApi::serviceRemoved(const std::string &name)
{
    events_.forget(name);
    if (!events_.empty()) {
        events_.publish(events::serviceRemoved(realtimeUsec(), name));
    }
    for (const auto &follower : followers_) {
        if (follower.service == name && !follower.call->done()) {
            follower.call->reply({{"lines", Json::array()}});
        }
    }
    std::erase_if(followers_, [&](const Follower &f) { return f.service == name; });
}

void ControlApi::shutdownBegun()
{
    if (!events_.empty()) {
        events_.publish(events::daemon(realtimeUsec(), "shutdown-begun"));
    }
    for (const auto &queued : queuedWaiters_) {
        if (!queued.call->answered()) {
            queued.call->fail(varlink::kErrorShuttingDown);
        }
    }
    queuedWaiters_.clear();
}

void ControlApi::shutdownDone()
{
    for (const auto &follower : followers_) {
        if (!follower.call->done()) {
            follower.call->reply({{"lines", Json::array()}});
        }
    }
    followers_.clear();
    events_.endAll(events::daemon(realtimeUsec(), "shutdown-done"));
}

} // namespace fdsup
