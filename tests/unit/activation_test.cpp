// The activation socket: admission by credentials, refusals a worker can read, limits, reaping, its file.
#include <cerrno>
#include <filesystem>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "loop_driver.hpp"
#include "model/activation.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;

class FakeHost final : public ActivationHost {
public:
    FakeHost()
    {
        auto profile = std::make_shared<Profile>();
        profile->config.name = "web";
        profile->generation = 3;
        profile_ = std::move(profile);
    }
    [[nodiscard]] const Profile &activeProfile() const override { return *profile_; }
    [[nodiscard]] bool admitting() const override { return admitting_; }
    std::uint64_t nextWorkerId() override { return nextId_++; }
    void onExternalMessage(ChannelPeer & /*peer*/, ChannelMessage &&message) override
    {
        messages.push_back(message.type);
    }
    void onExternalClosed(ChannelPeer & /*peer*/, const std::string &why) override { closed.push_back(why); }
    void onExternalDropped(ChannelPeer & /*peer*/, const std::string &why) override
    {
        dropped.push_back(why);
    }
    void onExternalReady(ExternalWorker & /*worker*/) override { ++ready; }
    void onExternalsChanged() override { ++changes; }

    bool admitting_ = true;
    std::vector<ChannelType> messages;
    std::vector<std::string> closed;
    std::vector<std::string> dropped;
    int ready = 0;
    int changes = 0;

private:
    std::shared_ptr<const Profile> profile_;
    std::uint64_t nextId_ = 100;
};

class ActivationTest : public ::testing::Test {
protected:
    ActivationTest()
    {
        auto loop = EventLoop::create();
        EXPECT_TRUE(loop);
        loop_ = std::move(*loop);
    }
    std::unique_ptr<ActivationSocket> open()
    {
        auto socket = ActivationSocket::open(*loop_, path_.string(), host_);
        EXPECT_TRUE(socket) << socket.error().message;
        return socket ? std::move(*socket) : nullptr;
    }
    // A worker connecting and sending HELLO, as activate_channel_connect() does.
    UniqueFd join()
    {
        UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        const std::string p = path_.string();
        std::copy(p.begin(), p.end(), a.sun_path);
        EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr *>(&a), sizeof a), 0) << errnoText(errno);
        ChannelMessage hello;
        hello.type = ChannelType::Hello;
        hello.capabilities = kChannelCapAdopt;
        EXPECT_EQ(sendChannelMessage(fd.borrow(), hello), 0);
        return fd;
    }
    bool runUntil(const std::function<bool()> &done) { return test::runLoopUntil(*loop_, done, 10s); }
    // Runs fdsupd's side until the worker has something to read.
    bool runUntilReadable(const UniqueFd &worker)
    {
        return runUntil([&] {
            pollfd p{worker.get(), POLLIN, 0};
            return poll(&p, 1, 0) == 1;
        });
    }

    std::unique_ptr<EventLoop> loop_;
    test::TempDir dir_;
    std::filesystem::path path_ = dir_ / "activate.sock";
    FakeHost host_;
};

TEST_F(ActivationTest, AWorkerOfAnAllowedUserJoinsAndIsHeard)
{
    auto socket = open();
    struct stat st {};
    ASSERT_EQ(lstat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0666U) << "credentials decide, not the file mode";
    UniqueFd worker = join();
    ASSERT_TRUE(runUntil([&] { return !host_.messages.empty(); }));
    ASSERT_EQ(socket->workers().size(), 1U);
    const ExternalWorker &joined = *socket->workers()[0];
    EXPECT_EQ(joined.id(), 100U);
    EXPECT_EQ(joined.pid(), getpid());
    EXPECT_EQ(joined.uid(), getuid());
    EXPECT_EQ(joined.peerGeneration(), 3U) << "an external worker works for the current generation";
    EXPECT_EQ(joined.describe(), "web external worker 100 (pid " + std::to_string(getpid()) + ", uid " +
                                     std::to_string(getuid()) + ")");
    EXPECT_EQ(host_.messages[0], ChannelType::Hello);
    EXPECT_EQ(host_.changes, 1);
}

TEST_F(ActivationTest, AStoppedServiceTurnsWorkersAwayAndTheyCanReadWhy)
{
    auto socket = open();
    host_.admitting_ = false;
    UniqueFd worker = join();
    ASSERT_TRUE(runUntilReadable(worker));
    ChannelMessage reject;
    ASSERT_EQ(recvChannelMessage(worker.borrow(), reject), 0);
    EXPECT_EQ(reject.type, ChannelType::Reject);
    EXPECT_EQ(reject.code, static_cast<std::uint32_t>(ESHUTDOWN));
    EXPECT_EQ(reject.text, "service 'web' is stopped");
    EXPECT_TRUE(socket->workers().empty());
    // Its HELLO arrived; fdsupd then closes its side.
    ASSERT_TRUE(runUntil([&] {
        pollfd hup{worker.get(), POLLIN, 0};
        ChannelMessage m;
        return poll(&hup, 1, 0) == 1 && recvChannelMessage(worker.borrow(), m) == -ECONNRESET;
    }));
}

TEST_F(ActivationTest, PastTheLimitWorkersAreToldTheServiceIsFull)
{
    auto socket = open();
    std::vector<UniqueFd> workers;
    for (std::size_t i = 0; i < ActivationSocket::kMaxWorkers; ++i) {
        workers.push_back(join());
    }
    ASSERT_TRUE(runUntil([&] { return socket->workers().size() == ActivationSocket::kMaxWorkers; }));
    UniqueFd one = join();
    ASSERT_TRUE(runUntilReadable(one));
    ChannelMessage reject;
    ASSERT_EQ(recvChannelMessage(one.borrow(), reject), 0);
    EXPECT_EQ(reject.code, static_cast<std::uint32_t>(EUSERS));
}

TEST_F(ActivationTest, AWorkerThatHangsUpIsForgotten)
{
    auto socket = open();
    UniqueFd worker = join();
    ASSERT_TRUE(runUntil([&] { return socket->workers().size() == 1; }));
    worker.reset();
    ASSERT_TRUE(runUntil([&] { return socket->workers().empty(); }));
    EXPECT_EQ(host_.closed.size(), 1U);
    EXPECT_EQ(host_.changes, 2);
}

TEST_F(ActivationTest, ClosingAllTellsEveryWorkerToFinish)
{
    auto socket = open();
    UniqueFd worker = join();
    ASSERT_TRUE(runUntil([&] { return socket->workers().size() == 1; }));
    socket->closeAll("the service was stopped");
    EXPECT_TRUE(socket->workers().empty());
    ChannelMessage m;
    // Its HELLO was read; what is left is the end of the channel.
    ASSERT_TRUE(runUntilReadable(worker));
    EXPECT_EQ(recvChannelMessage(worker.borrow(), m), -ECONNRESET);
}

TEST_F(ActivationTest, TheSocketFileGoesWithItUnlessSomeoneReplacedIt)
{
    {
        auto socket = open();
    }
    EXPECT_FALSE(std::filesystem::exists(path_));
    auto socket = open();
    std::filesystem::remove(path_);
    test::writeFile(path_, "not ours");
    socket.reset();
    EXPECT_EQ(test::readFile(path_), "not ours");
}

TEST_F(ActivationTest, ExternalWorkersAdoptOnceReadyAndStopAdoptingOnceTheyHandOver)
{
    auto socket = open();
    UniqueFd worker = join();
    ASSERT_TRUE(runUntil([&] { return socket->workers().size() == 1; }));
    ExternalWorker &external = *socket->workers()[0];
    EXPECT_FALSE(external.adopting());
    external.channelReady("serving");
    EXPECT_TRUE(external.adopting());
    EXPECT_EQ(external.status(), std::optional<std::string>("serving"));
    EXPECT_EQ(host_.ready, 1);
    external.channelReady("");
    EXPECT_EQ(host_.ready, 1) << "READY counts once";
    external.handedOver();
    EXPECT_TRUE(external.draining());
    EXPECT_FALSE(external.adopting()) << "its connections must not come straight back";
}

} // namespace
} // namespace fdsup
