// The preload socket: admission by process tree and uid with real processes, the protocol with the real
// codec, claims per instance, the adoption report.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include <linux/close_range.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "core/scm.hpp"
#include "fake_clock.hpp"
#include "loop_driver.hpp"
#include "model/channel_session.hpp"
#include "model/handoff_broker.hpp"
#include "model/preload.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using testing::HasSubstr;

constexpr const char *kConfig = R"(
[socket.web]
listen = "tcp://127.0.0.1:0"
[socket.admin]
listen = "tcp://127.0.0.1:0"
[service.web]
command = ["/bin/true"]
sockets = ["web", "admin"]
wrap = "preload"
)";

// The shim's process, or an unrelated one: connected to the preload socket
// by a real process of a real tree, its connection passed back to the test.
struct Process {
    pid_t top = 0;       // the process the test forked (an instance's main process)
    pid_t connector = 0; // the process that connected (SO_PEERCRED)
    UniqueFd fd;         // the connection
    UniqueFd hold;       // closing it ends the processes
};

enum class Shape { Self, Child, Orphan };

[[noreturn]] void connectAndPass(const std::string &address, int passTo, int hold)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, address.data() + 1, address.size() - 1);
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&a), length) < 0) {
        _exit(10);
    }
    const pid_t self = getpid();
    const BorrowedFd fds[] = {fd.borrow()};
    if (sendFds(BorrowedFd(passTo), std::as_bytes(std::span(&self, 1)), fds) < 0) {
        _exit(11);
    }
    char c = 0;
    (void)read(hold, &c, 1); // until the test closes the write end
    _exit(0);
}

// In a forked child: only the two descriptors it uses stay open, so that no
// other test process holds another tree's `hold` pipe open.
void keepOnly(int a, int b)
{
    const auto [low, high] = std::minmax(a, b);
    close_range(3, static_cast<unsigned>(low) - 1, 0);
    close_range(static_cast<unsigned>(low) + 1, static_cast<unsigned>(high) - 1, 0);
    close_range(static_cast<unsigned>(high) + 1, ~0U, 0);
}

Process startTree(const std::string &address, Shape shape)
{
    int pass[2];
    int hold[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pass), 0);
    EXPECT_EQ(pipe2(hold, O_CLOEXEC), 0);
    const pid_t top = fork();
    if (top == 0) {
        keepOnly(pass[1], hold[0]);
        setpgid(0, 0); // as fdsupd's spawn does
        if (shape == Shape::Self) {
            connectAndPass(address, pass[1], hold[0]);
        }
        if (fork() == 0) {
            connectAndPass(address, pass[1], hold[0]);
        }
        if (shape == Shape::Orphan) {
            _exit(0); // its child is reparented to the test, a child subreaper
        }
        char c = 0;
        (void)read(hold[0], &c, 1);
        while (wait(nullptr) > 0) {
        }
        _exit(0);
    }
    close(pass[1]);
    close(hold[0]);
    UniqueFd from(pass[0]);
    Process p;
    p.top = top;
    p.hold = UniqueFd(hold[1]);
    pollfd ready{from.get(), POLLIN, 0};
    EXPECT_EQ(poll(&ready, 1, static_cast<int>(test::kEventDeadline.count())), 1);
    Message message;
    EXPECT_EQ(recvFds(from.borrow(), message), 0);
    if (message.fds.size() == 1 && message.payload.size() == sizeof(pid_t)) {
        std::memcpy(&p.connector, message.payload.data(), sizeof(pid_t));
        p.fd = std::move(message.fds[0]);
    }
    return p;
}

void endTree(Process &p)
{
    p.hold.reset();
    waitpid(p.top, nullptr, 0);
    if (p.connector != p.top) {
        waitpid(p.connector, nullptr, __WALL); // an orphan is the test's child now; others are not
    }
}

class FakeHost final : public PreloadHost {
public:
    FakeHost(const SocketSet &sockets, EventLoop &loop, Clock &clock)
        : broker_(loop, clock, limits_, "web", [](const std::function<void(ChannelPeer &)> &) {}),
          session_("web", sockets, 65536, broker_)
    {}
    [[nodiscard]] const std::string &preloadService() const override { return name_; }
    [[nodiscard]] bool preloadAdmitting() const override { return admitting; }
    [[nodiscard]] std::vector<PreloadOwner> preloadOwners() const override { return owners; }
    void onPreloadMessage(ChannelPeer &peer, ChannelMessage &&message) override
    {
        session_.onMessage(peer, std::move(message));
    }
    void onPreloadClosed(ChannelPeer & /*peer*/, const std::string &why) override { closed.push_back(why); }
    void onPreloadDropped(ChannelPeer & /*peer*/, const std::string &why) override { dropped.push_back(why); }
    void onPreloadBound(std::uint64_t instance) override { bound.push_back(instance); }

    bool admitting = true;
    std::vector<PreloadOwner> owners;
    std::vector<std::string> closed;
    std::vector<std::string> dropped;
    std::vector<std::uint64_t> bound;

private:
    std::string name_ = "web";
    HandoffLimits limits_;
    HandoffBroker broker_;
    ChannelSession session_;
};

std::shared_ptr<const Profile> profileFor(const config::ServiceConfig &config, std::optional<uid_t> uid)
{
    auto profile = std::make_shared<Profile>();
    profile->config = config;
    profile->generation = 7;
    profile->credentials.uid = uid;
    return profile;
}

class PreloadTest : public ::testing::Test {
protected:
    PreloadTest()
    {
        auto loop = EventLoop::create();
        EXPECT_TRUE(loop);
        loop_ = std::move(*loop);
        auto loaded = config::loadConfigString(kConfig, "test.toml", "/");
        EXPECT_TRUE(loaded.config);
        config_ = *loaded.config;
        auto sockets = SocketSet::open(config_, InheritedFds{});
        EXPECT_TRUE(sockets);
        sockets_ = std::move(*sockets);
        host_ = std::make_unique<FakeHost>(sockets_, *loop_, clock_);
        auto socket = PreloadSocket::open(*loop_, clock_, address_, *host_);
        EXPECT_TRUE(socket) << socket.error().message;
        socket_ = std::move(*socket);
    }
    ~PreloadTest() override { prctl(PR_SET_CHILD_SUBREAPER, 0); }

    // The instance whose main process is `main`, tracked as fdsupd does at spawn.
    void own(pid_t main, std::optional<uid_t> uid = std::nullopt)
    {
        host_->owners.push_back(PreloadOwner{42, 2, main, main, profileFor(config_.services[0], uid)});
        socket_->track(42, "web[2] (pid " + std::to_string(main) + ")", {"web", "admin"}, 5s);
    }
    bool until(const std::function<bool()> &done) { return test::runLoopUntil(*loop_, done); }
    // HELLO, then fdsupd's answer.
    ChannelMessage hello(const UniqueFd &fd)
    {
        ChannelMessage hello;
        hello.type = ChannelType::Hello;
        hello.capabilities = kChannelCapListeners | kChannelCapPreload | kChannelCapHandoff;
        EXPECT_EQ(sendChannelMessage(fd.borrow(), hello), 0);
        return answer(fd);
    }
    ChannelMessage answer(const UniqueFd &fd)
    {
        ChannelMessage m;
        EXPECT_TRUE(until([&] {
            pollfd p{fd.get(), POLLIN, 0};
            return poll(&p, 1, 0) == 1;
        }));
        EXPECT_EQ(recvChannelMessage(fd.borrow(), m), 0);
        return m;
    }

    std::unique_ptr<EventLoop> loop_;
    test::FakeClock clock_;
    config::Config config_;
    SocketSet sockets_;
    std::unique_ptr<FakeHost> host_;
    std::string address_ = "@fdsup-test-" + std::to_string(getpid()) + "-preload-web";
    std::unique_ptr<PreloadSocket> socket_;
};

TEST_F(PreloadTest, TheInstancesOwnProcessIsWelcomedWithItsSlotAndGeneration)
{
    Process p = startTree(address_, Shape::Self);
    own(p.top);
    const ChannelMessage welcome = hello(p.fd);
    EXPECT_EQ(welcome.type, ChannelType::Welcome);
    EXPECT_EQ(welcome.instance, 2U);
    EXPECT_EQ(welcome.generation, 7U);
    EXPECT_EQ(welcome.capabilities, kChannelCapListeners | kChannelCapPreload)
        << "no handoff for a wrapped server";
    EXPECT_EQ(socket_->adoption(42)->connections, 1U);
    endTree(p);
}

TEST_F(PreloadTest, AChildOfTheInstanceGetsTheServicesListenersInOrderAndClaimsThem)
{
    Process p = startTree(address_, Shape::Child);
    own(p.top);
    ASSERT_NE(p.connector, p.top);
    ASSERT_EQ(hello(p.fd).type, ChannelType::Welcome);
    ChannelMessage request;
    request.type = ChannelType::ListenersRequest;
    ASSERT_EQ(sendChannelMessage(p.fd.borrow(), request), 0);
    ChannelMessage listeners = answer(p.fd);
    ASSERT_EQ(listeners.type, ChannelType::Listeners);
    ASSERT_EQ(listeners.names, (std::vector<std::string>{"web", "admin"}));
    ASSERT_EQ(listeners.fds.size(), 2U);
    for (std::size_t i = 0; i < 2; ++i) {
        struct stat given {};
        struct stat held {};
        fstat(listeners.fds[i].get(), &given);
        fstat(sockets_.find(listeners.names[i])->fds[0].get(), &held);
        EXPECT_EQ(given.st_ino, held.st_ino) << "the very socket fdsupd holds";
    }

    ChannelMessage claimed;
    claimed.type = ChannelType::Claimed;
    claimed.names = {"web"};
    ASSERT_EQ(sendChannelMessage(p.fd.borrow(), claimed), 0);
    ASSERT_TRUE(until([&] { return socket_->adoption(42)->claimedBy.size() == 1; }));
    EXPECT_EQ(socket_->adoption(42)->claimedBy.at("web"), p.connector);
    EXPECT_TRUE(host_->bound.empty()) << "'admin' is not claimed yet";
    claimed.names = {"web", "admin", "nonsense"};
    ASSERT_EQ(sendChannelMessage(p.fd.borrow(), claimed), 0);
    ASSERT_TRUE(until([&] { return !host_->bound.empty(); }));
    EXPECT_EQ(host_->bound, std::vector<std::uint64_t>{42});
    EXPECT_EQ(socket_->adoption(42)->claimedBy.size(), 2U);
    endTree(p);
}

TEST_F(PreloadTest, ADaemonReparentedToFdsupdIsKnownByItsProcessGroup)
{
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    Process p = startTree(address_, Shape::Orphan);
    waitpid(p.top, nullptr, 0); // the instance's first process exited, as a daemon's parent does
    own(p.top);
    ASSERT_EQ(hello(p.fd).type, ChannelType::Welcome);
    p.top = p.connector;
    endTree(p);
}

TEST_F(PreloadTest, AStrangerIsRejectedWithEaccesAndCanReadWhy)
{
    Process owner = startTree(address_, Shape::Self);
    own(owner.top);
    Process stranger = startTree(address_, Shape::Child);
    const ChannelMessage reject = hello(stranger.fd);
    EXPECT_EQ(reject.type, ChannelType::Reject);
    EXPECT_EQ(reject.code, static_cast<std::uint32_t>(EACCES));
    EXPECT_EQ(reject.text, "pid " + std::to_string(stranger.connector) + " is not a process of service web");
    endTree(stranger);
    endTree(owner);
}

TEST_F(PreloadTest, AProcessOfTheInstanceWithAnotherUidIsRejected)
{
    Process p = startTree(address_, Shape::Self);
    own(p.top, getuid() + 4242);
    const ChannelMessage reject = hello(p.fd);
    EXPECT_EQ(reject.type, ChannelType::Reject);
    EXPECT_EQ(reject.code, static_cast<std::uint32_t>(EACCES));
    EXPECT_THAT(reject.text, HasSubstr("runs as uid " + std::to_string(getuid())));
    endTree(p);
}

TEST_F(PreloadTest, AStoppedServiceSaysEshutdown)
{
    Process p = startTree(address_, Shape::Self);
    own(p.top);
    host_->admitting = false;
    const ChannelMessage reject = hello(p.fd);
    EXPECT_EQ(reject.type, ChannelType::Reject);
    EXPECT_EQ(reject.code, static_cast<std::uint32_t>(ESHUTDOWN));
    endTree(p);
}

TEST_F(PreloadTest, TheDeadlineTurnsPendingIntoNotAdopted)
{
    Process p = startTree(address_, Shape::Self);
    own(p.top);
    const Adoption &adoption = *socket_->adoption(42);
    auto before = adoptionReport({"web"}, adoption, std::nullopt, std::nullopt);
    EXPECT_TRUE(before[0].pending);
    EXPECT_EQ(before[0].reason, "waiting: the shim has not connected yet");
    clock_.advance(5s);
    EXPECT_TRUE(adoption.deadlinePassed);
    auto after = adoptionReport({"web"}, adoption, std::nullopt, std::nullopt);
    EXPECT_FALSE(after[0].pending);
    EXPECT_THAT(after[0].reason, HasSubstr("the shim never connected"));
    ASSERT_EQ(hello(p.fd).type, ChannelType::Welcome);
    auto connected = adoptionReport({"web"}, adoption, std::nullopt, std::nullopt);
    EXPECT_EQ(connected[0].reason, "the shim connected but the program never bound listener 'web'");
    endTree(p);
}

TEST(AdoptionReport, SaysWhatItKnowsFirst)
{
    Adoption adoption;
    adoption.claimedBy["web"] = 77;
    auto report = adoptionReport({"web", "admin"}, adoption, std::string("/x is statically linked"),
                                 std::string("/lib/shim.so"));
    EXPECT_EQ(report[0].adoptedBy, 77);
    EXPECT_EQ(report[1].adoptedBy, 0);
    EXPECT_FALSE(report[1].pending) << "a static program will never claim it";
    EXPECT_EQ(report[1].reason, "/x is statically linked");
    report = adoptionReport({"admin"}, adoption, std::nullopt, std::string("/lib/shim.so"));
    EXPECT_EQ(report[0].reason, "the preload library /lib/shim.so does not exist");
}

} // namespace
} // namespace fdsup
