// A service wired to real processes (/bin/sleep), a real event loop for I/O and a fake clock for its timers.
#include <algorithm>
#include <csignal>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fake_clock.hpp"
#include "loop_driver.hpp"
#include "model/service.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class Recorder final : public ServiceObserver {
public:
    void serviceChanged(Service & /*service*/) override { ++changes; }
    void rolloutEvent(Service & /*service*/, const Rollout & /*rollout*/, const std::string &event) override
    {
        events.push_back(event);
    }
    void rolloutFinished(Service & /*service*/, const RolloutRecord &record) override
    {
        finished.push_back(record);
    }
    void queuedBegan(Service & /*service*/, std::uint64_t /*ticket*/, std::uint64_t /*id*/) override {}
    void queuedEnded(Service & /*service*/, std::uint64_t /*ticket*/, const Error & /*why*/) override {}
    void outputLine(Service & /*service*/, const LogLine &line) override { lines.emplace_back(line.text); }

    int changes = 0;
    std::vector<std::string> events;
    std::vector<RolloutRecord> finished;
    std::vector<std::string> lines;
};

config::ServiceConfig sleeper(unsigned instances)
{
    config::ServiceConfig config;
    config.name = "web";
    config.command = {"/bin/sleep", "1000"};
    config.instances = instances;
    config.ready = config::Readiness::Started;
    config.restartDelay = 100ms;
    config.restartDelayMax = 1s;
    return config;
}

class ServiceTest : public ::testing::Test {
protected:
    ServiceTest()
    {
        auto loop = EventLoop::create();
        EXPECT_TRUE(loop);
        loop_ = std::move(*loop);
        context_ = std::make_unique<ServiceContext>(
            ServiceContext{*loop_,
                           clock_,
                           sockets_,
                           "fdsupd-test/" + std::to_string(getpid()) + "/" + std::to_string(serial_++),
                           config::ResourceLimit{RLIMIT_NOFILE, 1024, 1024},
                           1,
                           HandoffLimits{},
                           {}});
    }
    ~ServiceTest() override
    {
        if (service_) {
            service_->stop();
            EXPECT_TRUE(until([&] { return service_->liveInstances() == 0; })) << "its workers did not stop";
        }
    }

    Service &create(const config::ServiceConfig &config)
    {
        auto service = Service::create(*context_, config, recorder_);
        EXPECT_TRUE(service) << service.error().message;
        service_ = std::move(*service);
        return *service_;
    }
    bool until(const std::function<bool()> &done) { return test::runLoopUntil(*loop_, done, 20s); }
    std::vector<pid_t> pids() const
    {
        std::vector<pid_t> out;
        for (const auto &instance : service_->instances()) {
            out.push_back(instance->pid());
        }
        return out;
    }
    bool running()
    {
        return until([&] { return service_->state() == ServiceState::Running; });
    }

    static inline int serial_ = 0;
    std::unique_ptr<EventLoop> loop_;
    test::FakeClock clock_;
    SocketSet sockets_;
    std::unique_ptr<ServiceContext> context_;
    Recorder recorder_;
    std::unique_ptr<Service> service_;
};

TEST_F(ServiceTest, StartsEverySlotAndRunsOnceEachIsReady)
{
    Service &web = create(sleeper(2));
    EXPECT_EQ(web.state(), ServiceState::Stopped);
    web.start();
    ASSERT_TRUE(running());
    EXPECT_EQ(pids().size(), 2U);
    for (const auto &instance : web.instances()) {
        EXPECT_EQ(instance->state(), InstanceState::Ready);
        EXPECT_EQ(instance->role(), InstanceRole::Primary);
    }
}

TEST_F(ServiceTest, ACrashIsRestartedAfterItsBackoff)
{
    Service &web = create(sleeper(1));
    web.start();
    ASSERT_TRUE(running());
    const pid_t first = pids().at(0);
    ASSERT_EQ(kill(first, SIGKILL), 0);
    ASSERT_TRUE(until([&] { return web.liveInstances() == 0; }));
    EXPECT_EQ(web.slots()[0].lastExit, "killed by SIGKILL");
    EXPECT_TRUE(web.slots()[0].lastFailed);
    EXPECT_EQ(web.state(), ServiceState::Starting);
    // restart_delay on the service's clock: nothing happens before it.
    clock_.advance(99ms);
    EXPECT_EQ(web.liveInstances(), 0U);
    clock_.advance(1ms);
    ASSERT_EQ(web.liveInstances(), 1U);
    ASSERT_TRUE(running());
    EXPECT_NE(pids().at(0), first);
    EXPECT_EQ(web.slots()[0].restarts, 1U);
    EXPECT_EQ(web.restartsTotal(), 1U);
}

TEST_F(ServiceTest, AnInstanceThatMissesItsStartDeadlineIsKilledAndCountsAsAFailure)
{
    config::ServiceConfig config = sleeper(1);
    config.ready = config::Readiness::Notify; // /bin/sleep never says READY=1
    config.readyTimeout = 2s;
    Service &web = create(config);
    web.start();
    ASSERT_TRUE(until([&] { return web.instances().at(0)->state() == InstanceState::Starting; }));
    clock_.advance(2s);
    ASSERT_TRUE(until([&] { return web.liveInstances() == 0; }));
    EXPECT_EQ(web.slots()[0].lastError, "did not become ready within 2s");
    EXPECT_EQ(web.slots()[0].lastExit, "killed by SIGKILL");
}

TEST_F(ServiceTest, ScaleIsRefusedWhileARolloutRunsAndAppliesAfter)
{
    Service &web = create(sleeper(2));
    web.start();
    ASSERT_TRUE(running());
    const auto begun = web.rollOut(nullptr, RolloutOptions{}, false);
    ASSERT_TRUE(begun) << begun.error().message;
    const auto refused = web.scale(3);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, EBUSY);
    EXPECT_EQ(web.wanted(), 2U);
    ASSERT_TRUE(until([&] { return !web.rollouts().active(); }));
    ASSERT_EQ(recorder_.finished.size(), 1U);
    EXPECT_EQ(recorder_.finished[0].state, RolloutState::Succeeded);
    EXPECT_EQ(web.generation(), 2U);
    ASSERT_TRUE(web.scale(3));
    ASSERT_TRUE(until([&] { return web.settled() && web.state() == ServiceState::Running; }));
    EXPECT_EQ(pids().size(), 3U);
}

TEST_F(ServiceTest, GenerationsAreNeverReusedAfterAFailedRollout)
{
    Service &web = create(sleeper(1));
    web.start();
    ASSERT_TRUE(running());
    config::ServiceConfig broken = sleeper(1);
    broken.command = {"/bin/false"};
    broken.ready = config::Readiness::Notify; // it exits before it could be ready
    auto target = web.prepare(broken);
    ASSERT_TRUE(target) << target.error().message;
    EXPECT_EQ((*target)->generation, 2U);
    ASSERT_TRUE(web.rollOut(*target, RolloutOptions{}, false));
    ASSERT_TRUE(until([&] { return !web.rollouts().active(); }));
    ASSERT_EQ(recorder_.finished.size(), 1U);
    EXPECT_EQ(recorder_.finished[0].state, RolloutState::Failed);
    EXPECT_THAT(recorder_.finished[0].reason, HasSubstr("exited with status 1"));
    EXPECT_EQ(web.generation(), 1U);
    // The next rollout is generation 3: 2 named the failed one.
    ASSERT_TRUE(web.rollOut(nullptr, RolloutOptions{}, false));
    ASSERT_TRUE(until([&] { return !web.rollouts().active(); }));
    EXPECT_EQ(web.generation(), 3U);
}

TEST_F(ServiceTest, ABuildThatNeverGetsReadyIsKilledAtItsDeadlineAndRolledBack)
{
    Service &web = create(sleeper(4));
    web.start();
    ASSERT_TRUE(running());
    const std::vector<pid_t> before = pids();
    config::ServiceConfig hanging = sleeper(4);
    hanging.ready = config::Readiness::Notify; // /bin/sleep never says READY=1
    hanging.readyTimeout = 2s;
    auto target = web.prepare(hanging);
    ASSERT_TRUE(target);
    RolloutOptions options;
    options.batch = 2;
    ASSERT_TRUE(web.rollOut(*target, options, false));
    ASSERT_TRUE(until([&] {
        return std::count_if(web.instances().begin(), web.instances().end(),
                             [](const auto &i) { return i->state() == InstanceState::Starting; }) == 2;
    }));
    clock_.advance(2s);
    ASSERT_TRUE(until([&] { return !web.rollouts().active(); }));
    ASSERT_EQ(recorder_.finished.size(), 1U);
    const RolloutRecord &r = recorder_.finished[0];
    EXPECT_EQ(r.state, RolloutState::Failed);
    EXPECT_THAT(r.reason, HasSubstr("did not become ready within 2s (killed by SIGKILL)"));
    for (const auto &step : r.steps) {
        EXPECT_NE(step.phase, RolloutStep::Phase::Done);
    }
    EXPECT_EQ(pids(), before) << "the old generation is untouched";
    EXPECT_EQ(web.state(), ServiceState::Running);
    // A fixed build rolls out as generation 3.
    ASSERT_TRUE(web.rollOut(nullptr, RolloutOptions{}, false));
    ASSERT_TRUE(until([&] { return !web.rollouts().active(); }));
    EXPECT_EQ(recorder_.finished.back().state, RolloutState::Succeeded);
    EXPECT_EQ(web.generation(), 3U);
}

TEST_F(ServiceTest, StoppingMidRolloutEndsItAndEveryInstance)
{
    Service &web = create(sleeper(2));
    web.start();
    ASSERT_TRUE(running());
    ASSERT_TRUE(web.rollOut(nullptr, RolloutOptions{}, false));
    web.stop();
    ASSERT_EQ(recorder_.finished.size(), 1U);
    EXPECT_EQ(recorder_.finished[0].state, RolloutState::Cancelled);
    EXPECT_EQ(recorder_.finished[0].reason, "the service was stopped");
    ASSERT_TRUE(until([&] { return web.liveInstances() == 0; }));
    EXPECT_EQ(web.state(), ServiceState::Stopped);
    EXPECT_EQ(web.wanted(), 2U) << "the slots are what they were before the rollout";
}

TEST_F(ServiceTest, ANotificationFromAProcessThatIsNotAnInstanceIsDropped)
{
    Service &web = create(sleeper(1));
    web.start();
    ASSERT_TRUE(running());
    UniqueFd sender(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const std::string name = web.notify().socketPath().substr(1); // abstract: "@..."
    std::copy(name.begin(), name.end(), a.sun_path + 1);
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    ASSERT_EQ(connect(sender.get(), reinterpret_cast<sockaddr *>(&a), length), 0);
    ASSERT_EQ(send(sender.get(), "STOPPING=1", 10, 0), 10);
    ASSERT_TRUE(until([&] { return web.notify().dropped() == 1; }));
    EXPECT_EQ(web.instances().at(0)->state(), InstanceState::Ready) << "a stranger has no say";
}

} // namespace
} // namespace fdsup
