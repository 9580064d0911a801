// The restart policy: backoff, the start limit and what each restart setting does, without a process.
#include <deque>
#include <string>

#include <gtest/gtest.h>

#include "model/restart_policy.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using Kind = RestartDecision::Kind;

config::ServiceConfig configWith(config::RestartPolicy restart)
{
    config::ServiceConfig config;
    config.restart = restart;
    config.restartDelay = 100ms;
    config.restartDelayMax = 1s;
    config.startLimitBurst = 5;
    config.startLimitInterval = 10s;
    return config;
}

class RestartPolicyTest : public ::testing::Test {
protected:
    RestartDecision exit(bool failure, Duration readyFor = Duration::zero())
    {
        return decideRestart(config_, "web[0]", slot_, recent_, now_, readyFor, failure);
    }

    config::ServiceConfig config_ = configWith(config::RestartPolicy::OnFailure);
    SlotHistory slot_;
    std::deque<Duration> recent_;
    Duration now_ = 1000s;
};

TEST_F(RestartPolicyTest, FailuresBackOffExponentiallyUpToTheMaximum)
{
    const Duration expected[] = {100ms, 200ms, 400ms, 800ms, 1s, 1s};
    for (const Duration delay : expected) {
        const RestartDecision d = exit(true);
        ASSERT_EQ(d.kind, Kind::Restart);
        EXPECT_EQ(d.delay, delay);
        now_ += 3s; // spread out: the start limit is not what this is about
    }
    EXPECT_EQ(slot_.restarts, 6U);
    EXPECT_EQ(slot_.consecutiveFailures, 6U);
}

TEST_F(RestartPolicyTest, AWorkerThatStayedReadyLongEnoughStartsTheBackoffAgain)
{
    exit(true);
    now_ += 3s;
    exit(true);
    now_ += 3s;
    EXPECT_EQ(exit(true).delay, 400ms);
    now_ += 3s;
    // Ready for restart_delay_max: it counts as healthy.
    EXPECT_EQ(exit(true, 1s).delay, 100ms);
}

TEST_F(RestartPolicyTest, ACleanExitIsNotRestartedOnFailureButIsWithAlways)
{
    const RestartDecision onFailure = exit(false);
    EXPECT_EQ(onFailure.kind, Kind::Done);
    EXPECT_TRUE(slot_.done);

    config_ = configWith(config::RestartPolicy::Always);
    slot_ = SlotHistory{};
    const RestartDecision always = exit(false);
    EXPECT_EQ(always.kind, Kind::Restart);
    EXPECT_EQ(always.delay, 100ms);
    EXPECT_EQ(slot_.consecutiveFailures, 0U) << "a clean exit is not a failure to back off from";
}

TEST_F(RestartPolicyTest, NeverRestartingAFailureFailsTheServiceSayingWhy)
{
    config_ = configWith(config::RestartPolicy::Never);
    slot_.lastExit = "exited with status 3";
    const RestartDecision d = exit(true);
    EXPECT_EQ(d.kind, Kind::GiveUp);
    EXPECT_EQ(d.reason, "web[0] exited with status 3 (restart = never)");
    slot_.lastError = "did not become ready within 2s";
    EXPECT_EQ(exit(true).reason, "web[0] did not become ready within 2s (restart = never)");
    EXPECT_EQ(exit(false).kind, Kind::Done);
}

TEST_F(RestartPolicyTest, MoreThanTheBurstWithinTheIntervalGivesUp)
{
    slot_.lastExit = "killed by SIGSEGV";
    for (int i = 0; i < 5; ++i) {
        ASSERT_EQ(exit(true).kind, Kind::Restart) << i;
        now_ += 1s;
    }
    const RestartDecision d = exit(true);
    EXPECT_EQ(d.kind, Kind::GiveUp);
    EXPECT_EQ(d.reason, "restarted 5 times within 10s (start_limit_burst = 5); last: killed by SIGSEGV");
}

TEST_F(RestartPolicyTest, RestartsOutsideTheIntervalDoNotCount)
{
    for (int i = 0; i < 20; ++i) {
        ASSERT_EQ(exit(true).kind, Kind::Restart) << i;
        now_ += 3s; // at most 4 within any 10s
    }
    EXPECT_LE(recent_.size(), 4U);
}

} // namespace
} // namespace fdsup
