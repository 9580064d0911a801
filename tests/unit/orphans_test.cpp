// Unit tests for orphaned workers: whose a holder is (pure), and stopping processes fdsupd did not start.
#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fake_clock.hpp"
#include "io/proc_net.hpp"
#include "loop_driver.hpp"
#include "model/orphans.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

const std::vector<std::string> kServices = {"web", "api"};
const std::string kControl = "/run/fdsupd/control.sock";

HolderInfo holder(std::optional<std::vector<std::string>> environment)
{
    return HolderInfo{4242, "/usr/bin/app", std::move(environment), "Permission denied"};
}

TEST(JudgeHolder, AWorkerOfOursIsAnOrphanOfItsService)
{
    const auto verdict = judgeHolder(
        holder({{"PATH=/bin", "FDSUP_SERVICE=api", "FDSUP_SUPERVISOR=" + kControl, "FDSUP_INSTANCE=1"}}),
        kServices, kControl);
    EXPECT_EQ(verdict.service, "api");
    EXPECT_EQ(verdict.refusal, "");
}

TEST(JudgeHolder, RefusesWhatItCannotProveIsOurs)
{
    struct Case {
        std::optional<std::vector<std::string>> environment;
        std::string why;
    };
    const std::vector<Case> cases = {
        {std::nullopt, "its environment cannot be read (Permission denied)"},
        {std::vector<std::string>{"PATH=/bin"}, "it is not an fdsupd worker (no FDSUP_SERVICE"},
        {std::vector<std::string>{"FDSUP_SERVICE=web"}, "no FDSUP_SUPERVISOR in its environment"},
        {std::vector<std::string>{"FDSUP_SERVICE=web", "FDSUP_SUPERVISOR=/run/other.sock"},
         "a worker of another fdsupd (FDSUP_SUPERVISOR=/run/other.sock, this one is " +
             kControl.substr(0, 4)},
        {std::vector<std::string>{"FDSUP_SERVICE=mail", "FDSUP_SUPERVISOR=" + kControl},
         "a worker of service 'mail', which this configuration does not have"},
        // A prefix is not a name.
        {std::vector<std::string>{"FDSUP_SERVICE_X=web", "FDSUP_SUPERVISOR=" + kControl}, "no FDSUP_SERVICE"},
    };
    for (const auto &c : cases) {
        const auto verdict = judgeHolder(holder(c.environment), kServices, kControl);
        EXPECT_EQ(verdict.service, "");
        EXPECT_THAT(verdict.refusal, HasSubstr(c.why));
    }
}

// Real processes in their own process groups (setsid), as workers are; the
// test is their parent, so it reaps what OrphanedWorkers only watches.
class OrphanedWorkersTest : public ::testing::Test {
protected:
    OrphanedWorkersTest()
    {
        auto loop = EventLoop::create();
        EXPECT_TRUE(loop);
        loop_ = std::move(*loop);
        orphans_ = std::make_unique<OrphanedWorkers>(*loop_, clock_, "web", [this] { ++changes_; });
        config_.name = "web";
        config_.stopSignal = SIGTERM;
        config_.stopTimeout = 10s;
    }

    // Once it leads its own group.
    std::unique_ptr<test::BackgroundProcess> spawn(const std::string &script)
    {
        auto process = std::make_unique<test::BackgroundProcess>(
            std::vector<std::string>{"/usr/bin/setsid", "/bin/sh", "-c", script}, dir_ / "orphan.log");
        const pid_t pid = process->pid();
        EXPECT_TRUE(test::waitUntil([pid] { return getpgid(pid) == pid || getpgid(pid) < 0; }));
        return process;
    }

    bool gone()
    {
        return test::runLoopUntil(*loop_, [this] { return orphans_->empty(); });
    }

    test::TempDir dir_;
    test::FakeClock clock_;
    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<OrphanedWorkers> orphans_;
    config::ServiceConfig config_;
    int changes_ = 0;
};

TEST_F(OrphanedWorkersTest, TheStopSignalGoesToTheWholeGroupAndExitsAreSeenByPidfd)
{
    // A worker and a child of it in its group; the worker waits for it.
    auto worker = spawn("sleep 1000 & wait");
    ASSERT_TRUE(orphans_->add(worker->pid(), worker->pid(), "sh"));
    EXPECT_FALSE(orphans_->retiring());
    EXPECT_EQ(orphans_->orphans().size(), 1U);

    orphans_->retire(config_, "replaced");
    EXPECT_TRUE(orphans_->retiring());
    EXPECT_EQ(orphans_->stopSignal(), SIGTERM);
    ASSERT_TRUE(gone());
    EXPECT_EQ(changes_, 1);
    EXPECT_EQ(worker->wait(test::kEventDeadline), -SIGTERM);
    EXPECT_EQ(clock_.armed(), 0U) << "no SIGKILL pending once every orphan is gone";
    const pid_t group = worker->pid();
    EXPECT_TRUE(test::waitUntil([group] { return processGroupMembers(group).empty(); }))
        << "the worker's child got the signal too";
}

TEST_F(OrphanedWorkersTest, SigkillAtStopTimeoutForOneThatIgnoresTheStopSignal)
{
    const auto trapped = dir_ / "trapped";
    auto worker = spawn("trap '' TERM; touch " + trapped.string() + "; exec sleep 1000");
    ASSERT_TRUE(test::waitUntil([&] { return std::filesystem::exists(trapped); }));
    ASSERT_TRUE(orphans_->add(worker->pid(), worker->pid(), "sh"));

    orphans_->retire(config_, "replaced");
    orphans_->retire(config_, "again"); // once only
    EXPECT_EQ(clock_.armed(), 1U);
    EXPECT_FALSE(worker->wait(0ms)) << "it ignores SIGTERM";
    EXPECT_FALSE(orphans_->empty());

    clock_.advance(config_.stopTimeout);
    ASSERT_TRUE(gone());
    EXPECT_EQ(worker->wait(test::kEventDeadline), -SIGKILL);
}

TEST_F(OrphanedWorkersTest, KillModeMainSignalsTheProcessAlone)
{
    config_.killMode = config::KillMode::Main;
    const auto pidFile = dir_ / "child.pid";
    // The worker's child ignores nothing but is not signalled with "main":
    // it outlives the worker.
    auto worker = spawn("sleep 1000 & echo $! > " + pidFile.string() + "; wait");
    ASSERT_TRUE(test::waitUntil(
        [&] { return std::filesystem::exists(pidFile) && test::readFile(pidFile).ends_with("\n"); }));
    const pid_t child = std::stoi(test::readFile(pidFile));
    ASSERT_TRUE(orphans_->add(worker->pid(), worker->pid(), "sh"));

    orphans_->retire(config_, "replaced");
    ASSERT_TRUE(gone());
    EXPECT_EQ(worker->wait(test::kEventDeadline), -SIGTERM);
    EXPECT_EQ(kill(child, 0), 0) << "the group was not signalled";
    kill(child, SIGKILL);
}

TEST_F(OrphanedWorkersTest, AProcessAlreadyGoneIsNotAdded)
{
    auto worker = spawn("exit 0");
    ASSERT_EQ(worker->wait(test::kEventDeadline), 0);
    EXPECT_FALSE(orphans_->add(worker->pid(), worker->pid(), "sh"));
    EXPECT_TRUE(orphans_->empty());
    orphans_->retire(config_, "nothing to do");
    EXPECT_FALSE(orphans_->retiring());
}

} // namespace
} // namespace fdsup
