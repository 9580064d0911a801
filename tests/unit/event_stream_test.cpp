// The Events stream: each event's JSON, the filter by service, and a slow client's dropped events.
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "api/event_stream.hpp"

namespace fdsup {
namespace {

using Json = nlohmann::json;

// 2026-12-06T23:15:02Z and 123 microseconds.
constexpr std::int64_t kUsec = 1'796'598'902'000'123;

TEST(Events, TimeIsRfc3339InUtcWithMicroseconds)
{
    EXPECT_EQ(events::rfc3339(kUsec), "2026-12-06T23:15:02.000123Z");
    EXPECT_EQ(events::rfc3339(0), "1970-01-01T00:00:00.000000Z");
    EXPECT_EQ(events::rfc3339(-1), "1969-12-31T23:59:59.999999Z");
}

TEST(Events, InstanceExitedSaysPidStatusCauseAndWhetherItWasKilled)
{
    const InstanceEvent exited{InstanceEvent::Kind::Exited, 2,     17,  4242, 3, "killed by SIGKILL",
                               EndCause::Drained,           false, true};
    const Json json = events::instance(kUsec, "web", exited);
    EXPECT_EQ(json, (Json{{"time", "2026-12-06T23:15:02.000123Z"},
                          {"event", "instance-exited"},
                          {"service", "web"},
                          {"index", 2},
                          {"instance", 17},
                          {"pid", 4242},
                          {"generation", 3},
                          {"status", "killed by SIGKILL"},
                          {"cause", "drained"},
                          {"failure", false},
                          {"killed", true}}));
    InstanceEvent becameReady;
    becameReady.kind = InstanceEvent::Kind::Ready;
    becameReady.pid = 4300;
    const Json ready = events::instance(kUsec, "web", becameReady);
    EXPECT_EQ(ready["event"], "instance-ready");
    EXPECT_FALSE(ready.contains("status"));
}

TEST(Events, ServiceStateNamesThePreviousOneAndWhyItFailed)
{
    Json json = events::serviceState(kUsec, "web", ServiceState::Failed, ServiceState::Running, "gave up");
    EXPECT_EQ(json["event"], "service-state");
    EXPECT_EQ(json["state"], "failed");
    EXPECT_EQ(json["previous"], "running");
    EXPECT_EQ(json["reason"], "gave up");
    json = events::serviceState(kUsec, "web", ServiceState::Running, std::nullopt, "");
    EXPECT_TRUE(json["previous"].is_null());
    EXPECT_FALSE(json.contains("reason"));
}

TEST(Events, RolloutsAndReloadsSayTheirResult)
{
    RolloutRecord record;
    record.id = 7;
    record.service = "web";
    record.fromGeneration = 1;
    record.toGeneration = 2;
    record.options.batch = 2;
    record.state = RolloutState::Succeeded;
    record.duration = std::chrono::milliseconds(1500);
    const Json began = events::rolloutStep(kUsec, record, "rollout 7: generation 1 -> 2", true);
    EXPECT_EQ(began["event"], "rollout-began");
    EXPECT_EQ(began["rollout"], 7);
    EXPECT_EQ(began["batch"], 2);
    EXPECT_EQ(began["order"], "start-first");
    EXPECT_EQ(events::rolloutStep(kUsec, record, "step", false)["event"], "rollout-progress");
    const Json finished = events::rolloutFinished(kUsec, record);
    EXPECT_EQ(finished["result"], "succeeded");
    EXPECT_EQ(finished["duration_usec"], 1'500'000);
    EXPECT_TRUE(finished["reason"].is_null());

    ReloadOutcome outcome{ReloadOutcome::Kind::Refused, "/etc/fdsupd.toml", {}, {"busy"}, {}};
    const Json reload = events::reloadFinished(kUsec, outcome);
    EXPECT_EQ(reload["event"], "reload-finished");
    EXPECT_TRUE(reload["service"].is_null());
    EXPECT_EQ(reload["result"], "refused");
    EXPECT_EQ(reload["file"], "/etc/fdsupd.toml");
}

// A client as the stream sees it: what it was sent, and how much it left unread.
struct Client {
    std::vector<Json> got;
    std::size_t backlog = 0;
    bool gone = false;
    bool ended = false;
};

class Sink final : public EventSink {
public:
    explicit Sink(Client &client) : client_(client) {}
    [[nodiscard]] bool gone() const override { return client_.gone; }
    [[nodiscard]] std::size_t backlog() const override { return client_.backlog; }
    void send(const Json &event) override { client_.got.push_back(event); }
    void end(const Json &event) override
    {
        client_.got.push_back(event);
        client_.ended = true;
    }

private:
    Client &client_;
};

Json event(const char *name, const char *service)
{
    return Json{
        {"time", events::rfc3339(kUsec)}, {"event", name}, {"service", service ? Json(service) : Json()}};
}

TEST(EventStream, AServiceFilterStillSeesFdsupdsOwnEvents)
{
    EventStream stream;
    Client all;
    Client web;
    stream.follow(std::make_unique<Sink>(all), std::nullopt);
    stream.follow(std::make_unique<Sink>(web), "web");
    stream.publish(event("instance-ready", "web"));
    stream.publish(event("instance-ready", "api"));
    stream.publish(events::reloadBegun(kUsec, "f.toml"));
    ASSERT_EQ(all.got.size(), 3U);
    ASSERT_EQ(web.got.size(), 2U);
    EXPECT_EQ(web.got[0]["service"], "web");
    EXPECT_EQ(web.got[1]["event"], "reload-begun");
}

TEST(EventStream, ASlowClientMissesEventsAndIsToldHowMany)
{
    EventStream stream;
    Client slow;
    stream.follow(std::make_unique<Sink>(slow), std::nullopt);
    stream.publish(event("one", "web"));
    slow.backlog = EventStream::kMaxBacklog + 1;
    stream.publish(event("two", "web"));
    stream.publish(event("three", "web"));
    ASSERT_EQ(slow.got.size(), 1U); // nothing more is queued for it
    slow.backlog = 0;               // it caught up
    stream.publish(event("four", "web"));
    ASSERT_EQ(slow.got.size(), 3U);
    EXPECT_EQ(slow.got[1]["event"], "dropped");
    EXPECT_EQ(slow.got[1]["count"], 2);
    EXPECT_EQ(slow.got[1]["time"], slow.got[2]["time"]);
    EXPECT_EQ(slow.got[2]["event"], "four");
}

TEST(EventStream, GoneClientsAreForgottenAndTheEndReachesTheRest)
{
    EventStream stream;
    Client gone;
    Client stays;
    stream.follow(std::make_unique<Sink>(gone), std::nullopt);
    stream.follow(std::make_unique<Sink>(stays), std::nullopt);
    gone.gone = true;
    stream.publish(event("one", "web"));
    EXPECT_TRUE(gone.got.empty());
    stream.endAll(events::daemon(kUsec, "shutdown-done"));
    EXPECT_TRUE(stays.ended);
    EXPECT_FALSE(gone.ended);
    EXPECT_TRUE(stream.empty());
}

TEST(EventStream, ClientsThatLeftAreForgottenWhenTheNextOneComesEvenWithoutEvents)
{
    EventStream stream;
    Client left;
    stream.follow(std::make_unique<Sink>(left), std::nullopt);
    stream.follow(std::make_unique<Sink>(left), "web");
    EXPECT_EQ(stream.followers(), 2U);
    left.gone = true;
    Client next;
    stream.follow(std::make_unique<Sink>(next), std::nullopt);
    EXPECT_EQ(stream.followers(), 1U);
}

TEST(EventStream, StatesAndRolloutsAreReportedOnceWhenTheyChange)
{
    EventStream stream;
    const auto first = stream.stateSeen("web", ServiceState::Starting);
    EXPECT_TRUE(first.changed);
    EXPECT_FALSE(first.previous.has_value()); // not known before
    EXPECT_FALSE(stream.stateSeen("web", ServiceState::Starting).changed);
    const auto changed = stream.stateSeen("web", ServiceState::Running);
    EXPECT_TRUE(changed.changed);
    EXPECT_EQ(changed.previous, ServiceState::Starting);
    EXPECT_TRUE(stream.rolloutBegins("web", 1));
    EXPECT_FALSE(stream.rolloutBegins("web", 1));
    EXPECT_TRUE(stream.rolloutBegins("web", 2));
    stream.forget("web");
    EXPECT_TRUE(stream.rolloutBegins("web", 1)); // a service of that name added again
}

} // namespace
} // namespace fdsup
