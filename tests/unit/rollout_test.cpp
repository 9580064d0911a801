// Rollouts driven through a fake service and a fake clock: every path of a rollout in milliseconds.
#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fake_clock.hpp"
#include "model/rollout.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Phase = RolloutStep::Phase;

std::shared_ptr<const Profile> profileOf(unsigned generation, unsigned instances)
{
    auto profile = std::make_shared<Profile>();
    profile->generation = generation;
    profile->config.name = "web";
    profile->config.instances = instances;
    return profile;
}

// The service as a rollout sees it: instances are records whose state the
// test sets, as the real service's lifecycle would.
class FakeService final : public RolloutHost {
public:
    struct Fake {
        std::uint64_t id = 0;
        unsigned slot = 0;
        unsigned generation = 0;
        bool candidate = false;
        bool retiring = false;
        InstanceState state = InstanceState::Launching;
    };

    FakeService(unsigned instances, test::FakeClock &clock)
        : clock_(clock), rollouts(*this, clock), profile_(profileOf(1, instances))
    {
        shape_.slots = instances;
        shape_.active = true;
        for (unsigned i = 0; i < instances; ++i) {
            spawnReady(i, 1);
        }
    }

private:
    test::FakeClock &clock_; // before what uses it

public:
    Rollouts rollouts;
    std::vector<std::string> log;    // what the rollout asked of the service
    std::vector<std::string> events; // its progress
    std::vector<RolloutRecord> finished;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> began; // ticket, id
    std::vector<std::pair<std::uint64_t, std::string>> ended;   // ticket, why
    bool failStarts = false;
    std::size_t mostAlive = 0;

    // ---- what the real service's instances would report ----
    void ready(std::uint64_t id)
    {
        at(id).state = InstanceState::Ready;
        rollouts.advance();
    }
    // The process is gone: a candidate fails the rollout, others just go.
    void exit(std::uint64_t id, const std::string &why = "exited with status 1 before it was ready")
    {
        const Fake gone = at(id);
        instances_.erase(id);
        if (gone.candidate) {
            rollouts.candidateEnded(id, gone.slot, pidOf(id), why);
        } else {
            rollouts.advance();
        }
    }
    [[nodiscard]] std::vector<std::uint64_t> candidates() const
    {
        return where([](const Fake &f) { return f.candidate; });
    }
    [[nodiscard]] std::vector<std::uint64_t> leaving() const
    {
        return where([](const Fake &f) {
            return f.state == InstanceState::Draining || f.state == InstanceState::Stopping;
        });
    }
    [[nodiscard]] std::vector<unsigned> generations() const
    {
        std::vector<unsigned> out;
        for (const auto &[id, f] : instances_) {
            out.push_back(f.generation);
        }
        return out;
    }
    [[nodiscard]] std::size_t alive() const { return instances_.size(); }
    Fake &at(std::uint64_t id) { return instances_.at(id); }
    [[nodiscard]] unsigned currentGeneration() const { return profile_->generation; }
    [[nodiscard]] const ServiceShape &state() const { return shape_; }
    void stopService() { shape_.active = false; }

    // ---- RolloutHost ----
    [[nodiscard]] const std::string &serviceName() const override { return name_; }
    [[nodiscard]] std::optional<InstanceView> primaryOf(unsigned slot) const override
    {
        for (const auto &[id, f] : instances_) {
            if (f.slot == slot && !f.candidate && !f.retiring) {
                return view(f);
            }
        }
        return std::nullopt;
    }
    [[nodiscard]] std::optional<InstanceView> find(std::uint64_t id) const override
    {
        const auto it = instances_.find(id);
        return it == instances_.end() ? std::nullopt : std::optional(view(it->second));
    }
    Result<InstanceView> start(unsigned slot, const std::shared_ptr<const Profile> &profile,
                               bool candidate) override
    {
        log.push_back("start " + std::to_string(slot) + " g" + std::to_string(profile->generation) +
                      (candidate ? " candidate" : ""));
        if (failStarts) {
            return Error{ENOENT, "exec /app: No such file or directory"};
        }
        const Fake &f = add(slot, profile->generation, candidate, InstanceState::Launching);
        return view(f);
    }
    void drain(std::uint64_t id) override
    {
        log.push_back("drain " + std::to_string(id));
        at(id).retiring = true;
        at(id).state = InstanceState::Draining;
    }
    void stop(std::uint64_t id) override
    {
        log.push_back("stop " + std::to_string(id));
        Fake &f = at(id);
        f.candidate = false;
        f.retiring = true;
        if (f.state != InstanceState::Draining) {
            f.state = InstanceState::Stopping;
        }
    }
    [[nodiscard]] std::string drainHow(std::uint64_t /*id*/) const override { return "with SIGTERM"; }
    [[nodiscard]] ServiceShape shape() const override { return shape_; }
    void reshape(const ServiceShape &shape) override { shape_ = shape; }
    void claim(unsigned slot) override { log.push_back("claim " + std::to_string(slot)); }
    [[nodiscard]] bool slotDone(unsigned /*slot*/) const override { return false; }
    void commit(const std::shared_ptr<const Profile> &to) override
    {
        log.push_back("commit g" + std::to_string(to->generation));
        profile_ = to;
        shape_.slots = to->config.instances;
        for (auto &[id, f] : instances_) {
            f.candidate = false;
        }
    }
    Result<std::shared_ptr<const Profile>> restartProfile() override
    {
        return profileOf(nextGeneration_++, shape_.slots);
    }
    [[nodiscard]] std::shared_ptr<const Profile> currentProfile() const override { return profile_; }
    [[nodiscard]] std::vector<std::string> lastOutputOf(pid_t pid, std::size_t /*lines*/) const override
    {
        return {"pid " + std::to_string(pid) + " says goodbye"};
    }
    void rolloutEvent(const Rollout & /*rollout*/, const std::string &event) override
    {
        events.push_back(event);
    }
    void rolloutFinished(const RolloutRecord &record) override { finished.push_back(record); }
    void queuedBegan(std::uint64_t ticket, std::uint64_t id) override
    {
        began.emplace_back(ticket, id);
        events.push_back("queued " + std::to_string(ticket) + " began as " + std::to_string(id));
    }
    void queuedEnded(std::uint64_t ticket, const Error &why) override
    {
        ended.emplace_back(ticket, why.message);
    }

    static pid_t pidOf(std::uint64_t id) { return static_cast<pid_t>(1000 + id); }

private:
    static InstanceView view(const Fake &f) { return InstanceView{f.id, pidOf(f.id), f.state}; }
    Fake &add(unsigned slot, unsigned generation, bool candidate, InstanceState state)
    {
        const std::uint64_t id = nextId_++;
        Fake &f = instances_[id];
        f = Fake{id, slot, generation, candidate, false, state};
        mostAlive = std::max(mostAlive, instances_.size());
        return f;
    }
    void spawnReady(unsigned slot, unsigned generation)
    {
        add(slot, generation, false, InstanceState::Ready);
    }
    template <typename Pred>
    std::vector<std::uint64_t> where(Pred pred) const
    {
        std::vector<std::uint64_t> out;
        for (const auto &[id, f] : instances_) {
            if (pred(f)) {
                out.push_back(id);
            }
        }
        return out;
    }

    std::string name_ = "web";
    std::shared_ptr<const Profile> profile_;
    ServiceShape shape_;
    std::map<std::uint64_t, Fake> instances_;
    std::uint64_t nextId_ = 1;
    unsigned nextGeneration_ = 2;
};

class RolloutTest : public ::testing::Test {
protected:
    test::FakeClock clock_;

    static RolloutOptions options(config::RolloutOrder order, unsigned batch = 1,
                                  Duration timeout = Duration::max())
    {
        return RolloutOptions{batch, order, timeout};
    }
    static std::uint64_t restart(FakeService &service, const RolloutOptions &o, bool queue = false)
    {
        auto begun = service.rollouts.request(nullptr, o, queue);
        EXPECT_TRUE(begun) << begun.error().message;
        return begun ? (begun->id != 0 ? begun->id : begun->ticket) : 0;
    }
    // Readies every candidate and retires every leaving instance, until the
    // rollout in progress (if any) moves no more.
    static void runToEnd(FakeService &service)
    {
        while (service.rollouts.active()) {
            const auto candidates = service.candidates();
            const auto leaving = service.leaving();
            bool moved = false;
            for (const auto id : candidates) {
                if (service.at(id).state != InstanceState::Ready) {
                    service.ready(id);
                    moved = true;
                }
            }
            for (const auto id : leaving) {
                service.exit(id);
                moved = true;
            }
            if (!moved) {
                ADD_FAILURE() << "the rollout is stuck";
                return;
            }
        }
    }
};

TEST_F(RolloutTest, StartFirstReplacesEachSlotOnlyOnceItsReplacementIsReady)
{
    FakeService web(2, clock_);
    const auto id = restart(web, options(config::RolloutOrder::StartFirst));
    EXPECT_EQ(id, 1U);
    EXPECT_THAT(web.log, ElementsAre("claim 0", "start 0 g2 candidate"));
    ASSERT_EQ(web.candidates().size(), 1U);
    const auto first = web.candidates()[0];
    EXPECT_TRUE(web.leaving().empty()) << "nothing drains before its replacement is ready";
    web.ready(first);
    ASSERT_EQ(web.leaving().size(), 1U);
    EXPECT_EQ(web.log.back(), "drain 1");
    web.exit(web.leaving()[0]);
    // Slot 1 only now: the batch before it is completely done.
    EXPECT_EQ(web.log.back(), "start 1 g2 candidate");
    runToEnd(web);
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Succeeded);
    EXPECT_EQ(web.currentGeneration(), 2U);
    EXPECT_THAT(web.generations(), ElementsAre(2U, 2U));
    EXPECT_LE(web.mostAlive, 2U + 1U) << "at most instances + batch processes";
    EXPECT_THAT(web.events.front(),
                HasSubstr("rollout 1: generation 1 -> 2, 2 instances, batch 1, start-first"));
    EXPECT_THAT(web.events.back(), HasSubstr("rollout 1 succeeded: generation 2 serves 2 instances"));
    for (const auto &step : web.finished[0].steps) {
        EXPECT_EQ(step.phase, Phase::Done);
    }
}

TEST_F(RolloutTest, StopFirstDrainsTheOldInstanceBeforeStartingItsReplacement)
{
    FakeService web(2, clock_);
    restart(web, options(config::RolloutOrder::StopFirst));
    EXPECT_THAT(web.log, ElementsAre("claim 0", "drain 1"));
    EXPECT_THAT(web.events.back(),
                HasSubstr("web[0]: draining old pid 1001 with SIGTERM before starting its replacement"));
    EXPECT_TRUE(web.candidates().empty());
    web.exit(1);
    EXPECT_EQ(web.log.back(), "start 0 g2 candidate");
    runToEnd(web);
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Succeeded);
    EXPECT_LE(web.mostAlive, 2U) << "stop-first never runs more than the instances";
}

TEST_F(RolloutTest, ABatchBeginsOnlyWhenThePreviousOneIsCompletelyDone)
{
    FakeService web(4, clock_);
    restart(web, options(config::RolloutOrder::StartFirst, 2));
    EXPECT_EQ(web.candidates().size(), 2U);
    const auto batch = web.candidates();
    web.ready(batch[0]);
    web.ready(batch[1]);
    ASSERT_EQ(web.leaving().size(), 2U);
    web.exit(web.leaving()[0]);
    EXPECT_EQ(web.candidates().size(), 2U) << "one old instance of the batch is still draining";
    web.exit(web.leaving()[0]);
    EXPECT_EQ(web.candidates().size(), 4U) << "the second batch began";
    runToEnd(web);
    EXPECT_EQ(web.finished.at(0).state, RolloutState::Succeeded);
    EXPECT_LE(web.mostAlive, 4U + 2U);
}

TEST_F(RolloutTest, ACandidateThatCrashesFailsTheRolloutAndTheOldGenerationServes)
{
    FakeService web(2, clock_);
    restart(web, options(config::RolloutOrder::StartFirst));
    const auto candidate = web.candidates().at(0);
    web.exit(candidate, "exited with status 1 before it was ready");
    ASSERT_EQ(web.finished.size(), 1U);
    const RolloutRecord &r = web.finished[0];
    EXPECT_EQ(r.state, RolloutState::Failed);
    EXPECT_EQ(r.reason, "web[0] (pid 1003, generation 2) exited with status 1 before it was ready");
    ASSERT_TRUE(r.failure.has_value());
    EXPECT_EQ(r.failure->index, 0U);
    EXPECT_EQ(r.failure->pid, 1003);
    EXPECT_THAT(r.failure->output, ElementsAre("pid 1003 says goodbye"));
    EXPECT_EQ(r.steps[0].phase, Phase::Failed);
    EXPECT_EQ(r.steps[1].phase, Phase::Pending);
    EXPECT_EQ(web.currentGeneration(), 1U);
    EXPECT_THAT(web.generations(), ElementsAre(1U, 1U));
    EXPECT_TRUE(web.leaving().empty()) << "the old generation is untouched";
}

TEST_F(RolloutTest, ACandidateThatMissesItsReadyDeadlineIsRolledBackWithTheRestOfItsBatch)
{
    FakeService web(2, clock_);
    restart(web, options(config::RolloutOrder::StartFirst, 2));
    const auto batch = web.candidates();
    ASSERT_EQ(batch.size(), 2U);
    // Its lifecycle killed it at ready_timeout; the other is stopped by the rollback.
    web.exit(batch[0], "did not become ready within 2s (killed by SIGKILL)");
    EXPECT_EQ(web.log.back(), "stop " + std::to_string(batch[1]));
    EXPECT_TRUE(web.finished.empty()) << "done once the stopped replacement is gone";
    EXPECT_EQ(web.rollouts.current()->state(), RolloutState::RollingBack);
    web.exit(batch[1]);
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Failed);
    EXPECT_THAT(web.finished[0].reason, HasSubstr("did not become ready within 2s"));
    EXPECT_EQ(web.finished[0].steps[1].phase, Phase::RolledBack);
}

TEST_F(RolloutTest, AStopFirstRollbackRestartsTheOldGenerationInTheDrainedSlot)
{
    FakeService web(2, clock_);
    restart(web, options(config::RolloutOrder::StopFirst));
    web.exit(1); // the old instance of slot 0 drained away
    const auto candidate = web.candidates().at(0);
    web.exit(candidate);
    EXPECT_EQ(web.log.back(), "start 0 g1");
    EXPECT_THAT(web.events.back(), HasSubstr("web[0]: started pid"));
    EXPECT_THAT(web.events.back(), HasSubstr("(generation 1) again"));
    EXPECT_TRUE(web.finished.empty()) << "done once the restored instance is ready";
    const auto restored = web.primaryOf(0)->id;
    web.ready(restored);
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Failed);
    EXPECT_THAT(web.generations(), ElementsAre(1U, 1U));
    EXPECT_EQ(web.state().slots, 2U);
}

TEST_F(RolloutTest, ARollbackWhoseRestoredInstanceFailsStillEnds)
{
    FakeService web(1, clock_);
    restart(web, options(config::RolloutOrder::StopFirst));
    web.exit(1);
    web.exit(web.candidates().at(0));
    const auto restored = web.primaryOf(0)->id;
    // The restored instance fails too: the service's restart policy deals
    // with it as with any instance; the rollback is over.
    web.exit(restored);
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Failed);
    EXPECT_FALSE(web.rollouts.active());
}

TEST_F(RolloutTest, ACandidateThatCannotEvenBeStartedFailsTheRollout)
{
    FakeService web(1, clock_);
    web.failStarts = true;
    restart(web, options(config::RolloutOrder::StartFirst));
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Failed);
    EXPECT_EQ(web.finished[0].reason,
              "web[0] (generation 2) could not be started: exec /app: No such file or directory");
    EXPECT_EQ(web.finished[0].failure->pid, 0);
}

TEST_F(RolloutTest, CancelStopsTheReplacementsAndKeepsTheOldGeneration)
{
    FakeService web(2, clock_);
    restart(web, options(config::RolloutOrder::StartFirst));
    const auto candidate = web.candidates().at(0);
    EXPECT_TRUE(web.rollouts.cancel("cancelled by uid 0 (pid 42)"));
    EXPECT_EQ(web.log.back(), "stop " + std::to_string(candidate));
    // Cancelling again while it rolls back changes nothing.
    EXPECT_TRUE(web.rollouts.cancel("again"));
    EXPECT_EQ(web.rollouts.current()->record().reason, "cancelled by uid 0 (pid 42)");
    web.exit(candidate);
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Cancelled);
    EXPECT_EQ(web.finished[0].reason, "cancelled by uid 0 (pid 42)");
    EXPECT_THAT(web.generations(), ElementsAre(1U, 1U));
}

TEST_F(RolloutTest, TheRolloutDeadlineRollsBack)
{
    FakeService web(2, clock_);
    restart(web, options(config::RolloutOrder::StartFirst, 1, 500ms));
    clock_.advance(499ms);
    EXPECT_TRUE(web.finished.empty());
    clock_.advance(1ms);
    EXPECT_THAT(web.events,
                ::testing::Contains(HasSubstr("failed: the rollout did not complete within 500ms")));
    web.exit(web.candidates().empty() ? web.leaving().at(0) : web.candidates().at(0));
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Failed);
    EXPECT_EQ(clock_.armed(), 0U) << "no timer outlives the rollout";
}

TEST_F(RolloutTest, ASecondRestartIsRefusedUnlessItAsksToQueue)
{
    FakeService web(1, clock_);
    restart(web, options(config::RolloutOrder::StartFirst));
    const auto refused = web.rollouts.request(nullptr, options(config::RolloutOrder::StartFirst), false);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, EBUSY);
    EXPECT_EQ(refused.error().message, "rollout 1 of service 'web' is in progress");
}

TEST_F(RolloutTest, TheQueueHasALimit)
{
    FakeService web(1, clock_);
    restart(web, options(config::RolloutOrder::StartFirst));
    for (std::size_t i = 0; i < Rollouts::kMaxQueued; ++i) {
        ASSERT_TRUE(web.rollouts.request(nullptr, options(config::RolloutOrder::StartFirst), true)) << i;
    }
    const auto refused = web.rollouts.request(nullptr, options(config::RolloutOrder::StartFirst), true);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, EBUSY);
    EXPECT_EQ(refused.error().message, "64 restarts of service 'web' are queued already (the limit)");
    EXPECT_EQ(web.rollouts.queued(), Rollouts::kMaxQueued);
}

TEST_F(RolloutTest, AQueuedRestartBeginsWhenTheOneBeforeItFinishes)
{
    FakeService web(1, clock_);
    restart(web, options(config::RolloutOrder::StartFirst));
    const auto ticket = restart(web, options(config::RolloutOrder::StartFirst), true);
    EXPECT_EQ(web.rollouts.queued(), 1U);
    EXPECT_TRUE(web.began.empty());
    web.ready(web.candidates().at(0));
    web.exit(web.leaving().at(0));
    // The first succeeded; the queued one began at once as rollout 2, and
    // was announced before its first event.
    ASSERT_EQ(web.finished.size(), 1U);
    ASSERT_EQ(web.began.size(), 1U);
    EXPECT_EQ(web.began[0], std::make_pair(ticket, std::uint64_t{2}));
    const auto announced = std::find(web.events.begin(), web.events.end(), "queued 1 began as 2");
    ASSERT_NE(announced, web.events.end());
    EXPECT_THAT(*std::next(announced), HasSubstr("rollout 2: generation 2 -> 3"));
    runToEnd(web);
    ASSERT_EQ(web.finished.size(), 2U);
    EXPECT_EQ(web.finished[1].state, RolloutState::Succeeded);
    EXPECT_EQ(web.currentGeneration(), 3U);
}

TEST_F(RolloutTest, CancellingAlsoDropsTheRestartsQueuedBehind)
{
    FakeService web(1, clock_);
    restart(web, options(config::RolloutOrder::StartFirst));
    const auto ticket = restart(web, options(config::RolloutOrder::StartFirst), true);
    web.rollouts.cancel("cancelled by uid 0 (pid 42)");
    ASSERT_EQ(web.ended.size(), 1U);
    EXPECT_EQ(web.ended[0].first, ticket);
    EXPECT_EQ(web.ended[0].second, "cancelled by uid 0 (pid 42) before it began");
    web.exit(web.candidates().empty() ? web.leaving().at(0) : web.candidates().at(0));
    EXPECT_TRUE(web.began.empty()) << "a dropped restart never begins";
    EXPECT_FALSE(web.rollouts.active());
}

TEST_F(RolloutTest, StoppingTheServiceMidRolloutEndsItAtOnce)
{
    FakeService web(2, clock_);
    restart(web, options(config::RolloutOrder::StartFirst, 1, 10s));
    restart(web, options(config::RolloutOrder::StartFirst), true);
    const auto candidate = web.candidates().at(0);
    web.rollouts.abort("the service was stopped");
    EXPECT_FALSE(web.rollouts.active());
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Cancelled);
    EXPECT_EQ(web.finished[0].reason, "the service was stopped");
    EXPECT_TRUE(web.at(candidate).retiring) << "its replacement goes with the service";
    EXPECT_EQ(web.ended.size(), 1U) << "the queued restart is dropped";
    EXPECT_EQ(clock_.armed(), 0U);
}

TEST_F(RolloutTest, AGenerationWithFewerInstancesOnlyDrainsTheSlotsItDoesNotHave)
{
    FakeService web(3, clock_);
    ASSERT_TRUE(web.rollouts.request(profileOf(2, 1), options(config::RolloutOrder::StartFirst), false));
    runToEnd(web);
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Succeeded);
    EXPECT_THAT(web.generations(), ElementsAre(2U));
    EXPECT_EQ(web.state().slots, 1U);
    EXPECT_THAT(web.events,
                ::testing::Contains(HasSubstr("web[2]: draining pid 1003 (not in generation 2)")));
}

TEST_F(RolloutTest, AGenerationWithMoreInstancesStartsTheNewSlots)
{
    FakeService web(1, clock_);
    ASSERT_TRUE(web.rollouts.request(profileOf(2, 3), options(config::RolloutOrder::StopFirst, 3), false));
    EXPECT_EQ(web.state().slots, 3U) << "the slots exist while the rollout runs";
    runToEnd(web);
    EXPECT_EQ(web.finished.at(0).state, RolloutState::Succeeded);
    EXPECT_THAT(web.generations(), ElementsAre(2U, 2U, 2U));
}

TEST_F(RolloutTest, AStoppedServiceIsStartedAsTheNewGenerationAndStoppedAgainOnFailure)
{
    FakeService web(0, clock_);
    web.reshape(ServiceShape{2, false, true, "gave up"});
    ASSERT_TRUE(web.rollouts.request(profileOf(2, 2), options(config::RolloutOrder::StartFirst, 2), false));
    EXPECT_TRUE(web.state().active);
    EXPECT_FALSE(web.state().failed);
    const auto batch = web.candidates();
    ASSERT_EQ(batch.size(), 2U);
    web.exit(batch[0]);
    web.exit(batch[1]);
    ASSERT_EQ(web.finished.size(), 1U);
    EXPECT_EQ(web.finished[0].state, RolloutState::Failed);
    // What it was before: failed, with its reason, and nothing restored.
    EXPECT_FALSE(web.state().active);
    EXPECT_TRUE(web.state().failed);
    EXPECT_EQ(web.state().failedReason, "gave up");
    EXPECT_EQ(web.alive(), 0U);
}

TEST_F(RolloutTest, TheRecordOfARunningRolloutShowsItsProgress)
{
    FakeService web(2, clock_);
    restart(web, options(config::RolloutOrder::StartFirst));
    clock_.advance(250ms);
    const RolloutRecord r = web.rollouts.current()->record();
    EXPECT_EQ(r.state, RolloutState::Running);
    EXPECT_EQ(r.duration, 250ms);
    EXPECT_EQ(r.fromGeneration, 1U);
    EXPECT_EQ(r.toGeneration, 2U);
    ASSERT_EQ(r.steps.size(), 2U);
    EXPECT_EQ(r.steps[0].phase, Phase::Starting);
    EXPECT_EQ(r.steps[0].oldPid, 1001);
    EXPECT_EQ(r.steps[1].phase, Phase::Pending);
}

} // namespace
} // namespace fdsup
