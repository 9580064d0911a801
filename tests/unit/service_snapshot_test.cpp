// A service across a re-exec: what blocks one, and snapshot -> restore with real worker processes.
#include <csignal>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fake_clock.hpp"
#include "loop_driver.hpp"
#include "model/service.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class Recorder final : public ServiceObserver {
public:
    void serviceChanged(Service & /*service*/) override {}
    void rolloutEvent(Service & /*service*/, const Rollout & /*rollout*/,
                      const std::string & /*event*/) override
    {}
    void rolloutFinished(Service & /*service*/, const RolloutRecord & /*record*/) override {}
    void queuedBegan(Service & /*service*/, std::uint64_t /*ticket*/, std::uint64_t /*id*/) override {}
    void queuedEnded(Service & /*service*/, std::uint64_t /*ticket*/, const Error & /*why*/) override {}
    void outputLine(Service & /*service*/, const LogLine & /*line*/) override {}
};

config::ServiceConfig sleepers()
{
    config::ServiceConfig config;
    config.name = "web";
    config.command = {"/bin/sh", "-c", "echo started; exec sleep 1000"};
    config.instances = 2;
    config.ready = config::Readiness::Started;
    config.restartDelay = 100ms;
    config.restartDelayMax = 1s;
    return config;
}

// Every descriptor of a snapshot, replaced by map(fd).
template <class Map>
void remap(ServiceSnapshot &s, Map &&map)
{
    eachServiceFd(s, [&](int &fd) {
        if (fd >= 0) {
            fd = map(fd);
        }
    });
}

// The snapshot with every descriptor duplicated, as exec keeps them for the
// new image; original maps each copy back.
ServiceSnapshot duplicated(const ServiceSnapshot &snapshot, std::map<int, int> &original)
{
    ServiceSnapshot copy = snapshot;
    remap(copy, [&](int fd) {
        const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
        original[dup] = fd;
        return dup;
    });
    return copy;
}

class ServiceSnapshotTest : public ::testing::Test {
protected:
    ServiceSnapshotTest()
    {
        auto loop = EventLoop::create();
        EXPECT_TRUE(loop);
        loop_ = std::move(*loop);
        context_ = std::make_unique<ServiceContext>(
            ServiceContext{*loop_,
                           clock_,
                           sockets_,
                           "fdsupd-test/" + std::to_string(getpid()) + "/snapshot",
                           config::ResourceLimit{RLIMIT_NOFILE, 1024, 1024},
                           1,
                           HandoffLimits{},
                           {}});
        auto service = Service::create(*context_, sleepers(), recorder_);
        EXPECT_TRUE(service) << service.error().message;
        service_ = std::move(*service);
    }
    ~ServiceSnapshotTest() override
    {
        service_->stop();
        EXPECT_TRUE(until([&] { return service_->liveInstances() == 0; })) << "its workers did not stop";
    }
    bool until(const std::function<bool()> &done) { return test::runLoopUntil(*loop_, done, 20s); }
    bool running()
    {
        return until([&] { return service_->state() == ServiceState::Running; });
    }
    // Kills slot 0's worker and waits until the service replaced it.
    void crashAndRecover()
    {
        const pid_t pid = service_->instances().front()->pid();
        ASSERT_EQ(::kill(pid, SIGKILL), 0);
        ASSERT_TRUE(until([&] { return service_->liveInstances() == 1; }));
        clock_.advance(100ms);
        ASSERT_TRUE(running());
    }

    std::unique_ptr<EventLoop> loop_;
    test::FakeClock clock_;
    SocketSet sockets_;
    std::unique_ptr<ServiceContext> context_;
    Recorder recorder_;
    std::unique_ptr<Service> service_;
};

TEST_F(ServiceSnapshotTest, ARunningServiceSurvivesSnapshotAndRestore)
{
    service_->start();
    ASSERT_TRUE(running());
    // Each worker said it started before one is killed: the output is then exact.
    ASSERT_TRUE(until([&] { return service_->output().size() == 2; }));
    crashAndRecover();
    EXPECT_EQ(service_->busyReason(), "");
    ServiceSnapshot before = service_->snapshot();
    ASSERT_EQ(before.instances.size(), 2U);
    EXPECT_EQ(before.restartsTotal, 1U);
    EXPECT_EQ(before.slots.at(0).lastExit, "killed by SIGKILL");
    ASSERT_TRUE(until([&] { return service_->output().size() == 3; })); // 2 + 1 after the crash
    before = service_->snapshot();
    EXPECT_EQ(before.output.at(0).text, "started");

    // The new image works on the descriptors exec kept: copies here, since
    // the old service closes its own when it goes.
    std::map<int, int> original;
    ServiceSnapshot copy = duplicated(before, original);
    service_.reset(); // its workers live on
    context_->nextInstanceId = 1;
    auto restored = Service::restore(*context_, sleepers(), copy, recorder_);
    ASSERT_TRUE(restored) << restored.error().message;
    service_ = std::move(*restored);

    ServiceSnapshot again = service_->snapshot();
    remap(again, [&](int fd) { return original.at(fd); });
    EXPECT_EQ(again, before);
    EXPECT_EQ(service_->state(), ServiceState::Running);
    EXPECT_EQ(context_->nextInstanceId, before.instances.back().id + 1);

    // Still supervised: the restored service sees its adopted worker die and restarts it.
    crashAndRecover();
    EXPECT_EQ(service_->restartsTotal(), 2U);
}

TEST_F(ServiceSnapshotTest, TransitionsAreWaitedForAndNamed)
{
    service_->start();
    ASSERT_TRUE(running());
    const pid_t pid = service_->instances().front()->pid();
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    ASSERT_TRUE(until([&] { return service_->liveInstances() == 1; }));
    EXPECT_EQ(service_->busyReason(), "service 'web': a restart of web[0] is pending");
    clock_.advance(100ms);
    ASSERT_TRUE(running());

    ASSERT_TRUE(service_->rollOut(nullptr, RolloutOptions{}, false));
    EXPECT_THAT(service_->busyReason(), HasSubstr("service 'web': rollout 1 in progress"));
    ASSERT_TRUE(until([&] { return !service_->rollouts().active() && service_->settled(); }));
    EXPECT_EQ(service_->busyReason(), "");

    service_->stop();
    ASSERT_TRUE(until([&] { return service_->liveInstances() < 2; }));
    if (service_->liveInstances() > 0) {
        EXPECT_THAT(service_->busyReason(), HasSubstr("is stopping"));
    }
}

// A SOCK_SEQPACKET connection to `path`, as an external worker makes one.
UniqueFd connectSeqpacket(const std::filesystem::path &path)
{
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr *>(&address), sizeof(address)) < 0) {
        ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
    }
    return fd;
}

bool hungUp(const UniqueFd &fd)
{
    pollfd p{fd.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLIN)) != 0;
}

TEST_F(ServiceSnapshotTest, AnActivationSocketAndItsExternalWorkersAreCarried)
{
    test::TempDir dir;
    const auto path = dir / "web.activation";
    config::ServiceConfig config = sleepers();
    config.activationSocket = path.string();
    service_.reset();
    auto created = Service::create(*context_, config, recorder_);
    ASSERT_TRUE(created) << created.error().message;
    service_ = std::move(*created);
    service_->start();
    ASSERT_TRUE(running());
    const UniqueFd first = connectSeqpacket(path);
    const UniqueFd second = connectSeqpacket(path);
    ASSERT_TRUE(until([&] { return service_->externalWorkers().size() == 2; }));
    EXPECT_EQ(service_->busyReason(), "");
    const ServiceSnapshot before = service_->snapshot();
    ASSERT_TRUE(before.activation);
    ASSERT_EQ(before.activation->workers.size(), 2U);
    EXPECT_EQ(before.activation->workers.at(0).pid, getpid());

    std::map<int, int> original;
    ServiceSnapshot copy = duplicated(before, original);
    // The old image's service goes. exec runs no destructor, this one
    // removes the socket file it bound: a second link keeps that file.
    const auto kept = dir / "kept";
    std::filesystem::create_hard_link(path, kept);
    service_.reset();
    ASSERT_FALSE(std::filesystem::exists(path));
    std::filesystem::rename(kept, path);
    auto restored = Service::restore(*context_, config, copy, recorder_);
    ASSERT_TRUE(restored) << restored.error().message;
    service_ = std::move(*restored);
    ServiceSnapshot again = service_->snapshot();
    remap(again, [&](int fd) { return original.at(fd); });
    EXPECT_EQ(again.activation, before.activation);
    EXPECT_GT(context_->nextInstanceId, before.activation->workers.back().id);
    EXPECT_FALSE(hungUp(first));
    EXPECT_FALSE(hungUp(second));

    // Still accepting, and the file goes with the restored service.
    const UniqueFd third = connectSeqpacket(path);
    ASSERT_TRUE(until([&] { return service_->externalWorkers().size() == 3; }));
    service_->stop();
    ASSERT_TRUE(until([&] { return service_->liveInstances() == 0; }));
    EXPECT_TRUE(hungUp(first));
    service_.reset();
    EXPECT_FALSE(std::filesystem::exists(path));
    auto fresh = Service::create(*context_, sleepers(), recorder_);
    ASSERT_TRUE(fresh) << fresh.error().message;
    service_ = std::move(*fresh);
}

TEST_F(ServiceSnapshotTest, AnActivationSocketBoundElsewhereIsRefused)
{
    test::TempDir dir;
    config::ServiceConfig config = sleepers();
    config.activationSocket = (dir / "web.activation").string();
    service_.reset();
    auto created = Service::create(*context_, config, recorder_);
    ASSERT_TRUE(created) << created.error().message;
    service_ = std::move(*created);
    ServiceSnapshot copy = service_->snapshot();
    remap(copy, [&](int fd) { return ::fcntl(fd, F_DUPFD_CLOEXEC, 3); });
    config.activationSocket = (dir / "other.activation").string();
    service_.reset();
    auto restored = Service::restore(*context_, config, copy, recorder_);
    ASSERT_FALSE(restored);
    EXPECT_THAT(restored.error().message,
                HasSubstr("activation_socket: the socket passed for unix-seqpacket:" +
                          (dir / "other.activation").string() + " is bound to '" +
                          (dir / "web.activation").string() + "'"));
    auto fresh = Service::create(*context_, sleepers(), recorder_);
    ASSERT_TRUE(fresh) << fresh.error().message;
    service_ = std::move(*fresh);
}

TEST_F(ServiceSnapshotTest, ARestoreWithABadDescriptorFailsAndNamesTheService)
{
    service_->start();
    ASSERT_TRUE(running());
    ServiceSnapshot copy = service_->snapshot();
    // /dev/null where the notify socket should be.
    copy.notifyFd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (auto &i : copy.instances) {
        i.pidfd = i.stdoutFd = i.stderrFd = i.channelFd = -1;
    }
    copy.instances.clear();
    auto restored = Service::restore(*context_, sleepers(), copy, recorder_);
    ASSERT_FALSE(restored);
    EXPECT_THAT(restored.error().message, HasSubstr("Service 'web': "));
    EXPECT_THAT(restored.error().message, HasSubstr("Failed to inspect the notify socket fd"));
}

} // namespace
} // namespace fdsup
