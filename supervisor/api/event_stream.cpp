// The daemon's events as JSON objects, and the clients following them: sent, filtered, dropped when unread.
#include "api/event_stream.hpp"

#include <algorithm>
#include <array>
#include <ctime>
#include <utility>

#include <fmt/format.h>

namespace fdsup {

using Json = nlohmann::json;

namespace events {
namespace {

constexpr std::int64_t kUsecPerSec = 1'000'000;

Json base(std::int64_t usec, std::string_view event, const std::string *service)
{
    return Json{{"time", rfc3339(usec)},
                {"event", event},
                {"service", service != nullptr ? Json(*service) : Json(nullptr)}};
}

const char *instanceEventName(InstanceEvent::Kind kind)
{
    switch (kind) {
    case InstanceEvent::Kind::Started:
        return "instance-started";
    case InstanceEvent::Kind::Ready:
        return "instance-ready";
    case InstanceEvent::Kind::Exited:
        return "instance-exited";
    }
    return "instance-unknown";
}

Json rolloutBase(std::int64_t usec, std::string_view event, const RolloutRecord &record)
{
    Json json = base(usec, event, &record.service);
    json["rollout"] = record.id;
    json["from_generation"] = record.fromGeneration;
    json["to_generation"] = record.toGeneration;
    return json;
}

} // namespace

std::string rfc3339(std::int64_t realtimeUsec)
{
    // Floor division: a time before 1970 still has microseconds in [0, 1e6).
    std::int64_t seconds = realtimeUsec / kUsecPerSec;
    std::int64_t micros = realtimeUsec % kUsecPerSec;
    if (micros < 0) {
        micros += kUsecPerSec;
        --seconds;
    }
    const auto t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    std::array<char, 32> date{};
    const std::size_t n = std::strftime(date.data(), date.size(), "%Y-%m-%dT%H:%M:%S", &tm);
    return fmt::format("{}.{:06d}Z", std::string_view(date.data(), n), micros);
}

Json serviceState(std::int64_t usec, const std::string &service, ServiceState state,
                  std::optional<ServiceState> previous, const std::string &reason)
{
    Json json = base(usec, "service-state", &service);
    json["state"] = serviceStateName(state);
    json["previous"] = previous ? Json(serviceStateName(*previous)) : Json(nullptr);
    if (state == ServiceState::Failed) {
        json["reason"] = reason;
    }
    return json;
}

Json serviceRemoved(std::int64_t usec, const std::string &service)
{
    return base(usec, "service-removed", &service);
}

Json instance(std::int64_t usec, const std::string &service, const InstanceEvent &event)
{
    Json json = base(usec, instanceEventName(event.kind), &service);
    json["index"] = event.slot;
    json["instance"] = event.id;
    json["pid"] = event.pid;
    json["generation"] = event.generation;
    if (event.kind == InstanceEvent::Kind::Exited) {
        json["status"] = event.exit;
        json["cause"] = endCauseName(event.cause);
        json["failure"] = event.failure;
        json["killed"] = event.killed;
    }
    return json;
}

Json rolloutStep(std::int64_t usec, const RolloutRecord &record, const std::string &message, bool began)
{
    Json json = rolloutBase(usec, began ? "rollout-began" : "rollout-progress", record);
    if (began) {
        json["batch"] = record.options.batch;
        json["order"] = rolloutOrderName(record.options.order);
    }
    json["message"] = message;
    return json;
}

Json rolloutFinished(std::int64_t usec, const RolloutRecord &record)
{
    Json json = rolloutBase(usec, "rollout-finished", record);
    json["result"] = rolloutStateName(record.state);
    json["reason"] = record.reason.empty() ? Json(nullptr) : Json(record.reason);
    json["duration_usec"] = std::chrono::duration_cast<std::chrono::microseconds>(record.duration).count();
    return json;
}

Json reloadBegun(std::int64_t usec, const std::string &file)
{
    Json json = base(usec, "reload-begun", nullptr);
    json["file"] = file;
    return json;
}

Json reloadFinished(std::int64_t usec, const ReloadOutcome &outcome)
{
    Json json = base(usec, "reload-finished", nullptr);
    json["file"] = outcome.file;
    json["result"] = reloadOutcomeName(outcome.kind);
    json["changes"] = outcome.changes.size();
    return json;
}

Json daemon(std::int64_t usec, std::string_view event)
{
    return base(usec, event, nullptr);
}

Json dropped(const Json &next, std::uint64_t count)
{
    Json json{{"time", next.value("time", "")}, {"event", "dropped"}, {"service", nullptr}};
    json["count"] = count;
    return json;
}

} // namespace events

void EventStream::follow(std::unique_ptr<EventSink> sink, std::optional<std::string> service)
{
    // Followers that left are also forgotten here, not only when an event
    // comes: clients coming and going on a quiet daemon leave nothing behind.
    std::erase_if(followers_, [](const Follower &f) { return f.sink->gone(); });
    followers_.push_back(Follower{std::move(sink), std::move(service)});
}

void EventStream::publish(const Json &event)
{
    std::erase_if(followers_, [](const Follower &f) { return f.sink->gone(); });
    const auto service = event.find("service");
    for (auto &follower : followers_) {
        // fdsupd's own events (service null) go to every follower.
        if (follower.service && service != event.end() && service->is_string() &&
            *service != *follower.service) {
            continue;
        }
        if (follower.sink->backlog() > kMaxBacklog) {
            ++follower.dropped;
            continue;
        }
        if (follower.dropped > 0) {
            follower.sink->send(events::dropped(event, follower.dropped));
            follower.dropped = 0;
        }
        follower.sink->send(event);
    }
}

void EventStream::endAll(const Json &event)
{
    for (auto &follower : std::exchange(followers_, {})) {
        if (!follower.sink->gone()) {
            follower.sink->end(event);
        }
    }
}

EventStream::StateChange EventStream::stateSeen(const std::string &service, ServiceState state)
{
    const auto [it, inserted] = states_.try_emplace(service, state);
    if (inserted) {
        return StateChange{true, std::nullopt};
    }
    if (it->second == state) {
        return StateChange{};
    }
    return StateChange{true, std::exchange(it->second, state)};
}

bool EventStream::rolloutBegins(const std::string &service, std::uint64_t rollout)
{
    auto &last = rollouts_[service];
    return std::exchange(last, std::max(last, rollout)) < rollout;
}

void EventStream::forget(const std::string &service)
{
    states_.erase(service);
    rollouts_.erase(service);
}

} // namespace fdsup
