// The daemon's events as JSON objects, and the clients following them (Events, docs/control-api.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/reload.hpp"
#include "model/rollout.hpp"
#include "model/service.hpp"

namespace fdsup {

// One event each: {"time": RFC 3339 UTC with microseconds, "event": NAME,
// "service": NAME or null, ...}. Pure: the time is given.
namespace events {
// "2026-12-06T23:15:02.000123Z"
std::string rfc3339(std::int64_t realtimeUsec);
nlohmann::json serviceState(std::int64_t usec, const std::string &service, ServiceState state,
                            std::optional<ServiceState> previous, const std::string &reason);
// A reload removed the service.
nlohmann::json serviceRemoved(std::int64_t usec, const std::string &service);
nlohmann::json instance(std::int64_t usec, const std::string &service, const InstanceEvent &event);
// rollout-began (the rollout's first step) or rollout-progress.
nlohmann::json rolloutStep(std::int64_t usec, const RolloutRecord &record, const std::string &message,
                           bool began);
nlohmann::json rolloutFinished(std::int64_t usec, const RolloutRecord &record);
nlohmann::json reloadBegun(std::int64_t usec, const std::string &file);
nlohmann::json reloadFinished(std::int64_t usec, const ReloadOutcome &outcome);
// fdsupd's own: "reexec", "shutdown-begun", "shutdown-done".
nlohmann::json daemon(std::int64_t usec, std::string_view event);
// `count` events were not sent to this client because it read too slowly;
// sent just before `next`, with its time.
nlohmann::json dropped(const nlohmann::json &next, std::uint64_t count);
} // namespace events

// A client following events: what the stream needs of its connection.
class EventSink {
public:
    EventSink() = default;
    EventSink(const EventSink &) = delete;
    EventSink &operator=(const EventSink &) = delete;
    virtual ~EventSink() = default;
    // The client went away (or its call was finished).
    [[nodiscard]] virtual bool gone() const = 0;
    // Bytes written for it that it has not read yet.
    [[nodiscard]] virtual std::size_t backlog() const = 0;
    virtual void send(const nlohmann::json &event) = 0;
    // The last reply: the stream ends with this event.
    virtual void end(const nlohmann::json &event) = 0;
};

// The followers, and what the stream remembers to tell a change from a
// repetition (the last state of each service, the rollouts already begun).
// A follower that leaves more than kMaxBacklog unread misses events instead
// of growing fdsupd's memory: they are counted, and a "dropped" event with
// the count comes before the next event it gets.
class EventStream {
public:
    static constexpr std::size_t kMaxBacklog = std::size_t{1} << 20;

    // Events of every service (no filter), or of one and fdsupd's own.
    void follow(std::unique_ptr<EventSink> sink, std::optional<std::string> service);
    [[nodiscard]] bool empty() const { return followers_.empty(); }
    [[nodiscard]] std::size_t followers() const { return followers_.size(); }
    void publish(const nlohmann::json &event);
    // Sends the event as the last reply to everyone and forgets them.
    void endAll(const nlohmann::json &event);

    // The service's state was seen: whether it changed (or was not known
    // yet), and the one before (none when not known).
    struct StateChange {
        bool changed = false;
        std::optional<ServiceState> previous;
    };
    StateChange stateSeen(const std::string &service, ServiceState state);
    // The rollout's first event (began) or a later one.
    bool rolloutBegins(const std::string &service, std::uint64_t rollout);
    void forget(const std::string &service);

private:
    struct Follower {
        std::unique_ptr<EventSink> sink;
        std::optional<std::string> service;
        std::uint64_t dropped = 0;
    };
    std::vector<Follower> followers_;
    std::map<std::string, ServiceState> states_;
    std::map<std::string, std::uint64_t> rollouts_;
};

} // namespace fdsup
