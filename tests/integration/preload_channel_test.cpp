// The preload shim's fdsupd path (FDSUP_PRELOAD): the test plays fdsupd's preload socket with the real
// channel codec.
#include <cerrno>
#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/channel.hpp"
#include "shim_process.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class PreloadChannel : public ::testing::Test {
protected:
    PreloadChannel()
    {
        name_ = "fdsup-test-" + std::to_string(getpid()) + "-" + std::to_string(counter_++) + "-preload";
        socket_ = UniqueFd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
        sockaddr_un sun{};
        sun.sun_family = AF_UNIX;
        std::memcpy(sun.sun_path + 1, name_.data(), name_.size());
        auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name_.size());
        EXPECT_EQ(bind(socket_.get(), reinterpret_cast<sockaddr *>(&sun), len), 0);
        EXPECT_EQ(listen(socket_.get(), 4), 0);
    }

    std::unique_ptr<ShimProcess> runHttpServer(const TestListener &l)
    {
        writeFile(tmp_ / "index.html", "from fdsupd's listener\n");
        ShimOptions options;
        options.env = {"FDSUP_PRELOAD=@" + name_, "FDSUP_DRAIN_SIGNAL=15",
                       "FDSUP_DRAIN_TIMEOUT_USEC=5000000"};
        return std::make_unique<ShimProcess>(
            std::vector<std::string>{kPython, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                                     tmp_.path().string(), std::to_string(l.port)},
            options, tmp_ / "server.log");
    }

    UniqueFd acceptShim()
    {
        pollfd p{socket_.get(), POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kEventDeadline).count())) <= 0) {
            return {};
        }
        return UniqueFd(accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    }

    static ChannelMessage receive(const UniqueFd &conn)
    {
        ChannelMessage msg;
        pollfd p{conn.get(), POLLIN, 0};
        EXPECT_GT(poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kEventDeadline).count())), 0);
        EXPECT_EQ(recvChannelMessage(conn.borrow(), msg), 0);
        return msg;
    }

    static inline int counter_ = 0;
    TempDir tmp_;
    std::string name_;
    UniqueFd socket_;
};

TEST_F(PreloadChannel, HelloWelcomeListenersClaimed)
{
    TestListener l = tcpListener(42);
    auto server = runHttpServer(l);
    UniqueFd conn = acceptShim();
    ASSERT_TRUE(conn) << server->log();
    ucred cred{};
    socklen_t len = sizeof(cred);
    ASSERT_EQ(getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
    EXPECT_EQ(cred.pid, server->pid());

    ChannelMessage hello = receive(conn);
    ASSERT_EQ(hello.type, ChannelType::Hello);
    EXPECT_EQ(hello.capabilities, kChannelCapListeners | kChannelCapPreload);
    ChannelMessage welcome;
    welcome.type = ChannelType::Welcome;
    welcome.instance = 1;
    welcome.generation = 1;
    welcome.capabilities = kChannelCapListeners | kChannelCapPreload;
    welcome.service = "files";
    ASSERT_EQ(sendChannelMessage(conn.borrow(), welcome), 0);

    ASSERT_EQ(receive(conn).type, ChannelType::ListenersRequest);
    ChannelMessage listeners;
    listeners.type = ChannelType::Listeners;
    listeners.names = {"http"};
    listeners.fds.push_back(l.fd.dup());
    ASSERT_EQ(sendChannelMessage(conn.borrow(), listeners), 0);

    ChannelMessage claimed = receive(conn);
    ASSERT_EQ(claimed.type, ChannelType::Claimed);
    EXPECT_THAT(claimed.names, ElementsAre("http"));
    std::string response = httpGet(l.port, "/index.html", kEventDeadline);
    EXPECT_THAT(response, StartsWith("HTTP/1.0 200"));
    EXPECT_THAT(response, HasSubstr("from fdsupd's listener"));
    EXPECT_EQ(listenQueue(l.port).backlog, 42);

    // The connection stays open for the life of the process: it ends when the server does.
    server->signal(SIGTERM);
    auto status = server->wait(kEventDeadline);
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM);
    char byte = 0;
    EXPECT_EQ(recv(conn.get(), &byte, 1, 0), 0);
}

TEST_F(PreloadChannel, RejectLeavesBindToLibcWithOneLine)
{
    TestListener l = tcpListener();
    auto server = runHttpServer(l);
    UniqueFd conn = acceptShim();
    ASSERT_TRUE(conn);
    ASSERT_EQ(receive(conn).type, ChannelType::Hello);
    ChannelMessage reject;
    reject.type = ChannelType::Reject;
    reject.code = EACCES;
    reject.text = "pid " + std::to_string(server->pid()) + " is not a process of service files";
    ASSERT_EQ(sendChannelMessage(conn.borrow(), reject), 0);
    conn.reset();
    // bind() went to libc: the port is the test's, so http.server fails to start.
    auto status = server->wait(kEventDeadline);
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) != 0);
    EXPECT_THAT(server->log(), HasSubstr("fdsup-preload"));
    EXPECT_THAT(server->log(),
                HasSubstr("fdsup-preload: cannot get the listeners from fdsupd at @" + name_ + ": REJECT"));
    EXPECT_THAT(server->log(), HasSubstr("is not a process of service files"));
    EXPECT_THAT(server->log(), HasSubstr("Address already in use"));
}

TEST_F(PreloadChannel, NoFdsupdListeningIsOneLineAndLibc)
{
    socket_.reset(); // nothing at the address
    TestListener l = tcpListener();
    auto server = runHttpServer(l);
    auto status = server->wait(kEventDeadline);
    ASSERT_TRUE(status);
    EXPECT_THAT(server->log(), HasSubstr("fdsup-preload: cannot get the listeners from fdsupd at @" + name_ +
                                         ": Connection refused"));
}

// The lazy connection: a server that closes every fd and forks before it
// binds connects from the child, at its first bind(); CLAIMED is cumulative.
TEST_F(PreloadChannel, ADaemonThatClosedEveryFdClaimsTwoListenersOneByOne)
{
    TestListener web = tcpListener();
    TestListener admin = tcpListener();
    const std::string script = R"(
import os, socket, sys
os.closerange(3, 65536)
if os.fork():
    os._exit(0)
socks = []
for port in sys.argv[1:]:
    s = socket.socket()
    s.bind(("127.0.0.1", int(port)))
    s.listen()
    socks.append(s)
for s in socks:
    c, _ = s.accept()
    c.sendall(b"port %d" % s.getsockname()[1])
    c.close()
)";
    ShimOptions options;
    options.env = {"FDSUP_PRELOAD=@" + name_};
    ShimProcess server({kPython, "-c", script, std::to_string(web.port), std::to_string(admin.port)}, options,
                       tmp_ / "daemon.log");
    UniqueFd conn = acceptShim();
    ASSERT_TRUE(conn) << server.log();
    ucred cred{};
    socklen_t len = sizeof(cred);
    ASSERT_EQ(getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len), 0);
    EXPECT_NE(cred.pid, server.pid()) << "the parent connected: not lazily, at the child's bind()";
    ASSERT_EQ(receive(conn).type, ChannelType::Hello);
    ChannelMessage welcome;
    welcome.type = ChannelType::Welcome;
    welcome.capabilities = kChannelCapListeners | kChannelCapPreload;
    welcome.service = "app";
    ASSERT_EQ(sendChannelMessage(conn.borrow(), welcome), 0);
    ASSERT_EQ(receive(conn).type, ChannelType::ListenersRequest);
    ChannelMessage listeners;
    listeners.type = ChannelType::Listeners;
    listeners.names = {"web", "admin"};
    listeners.fds.push_back(web.fd.dup());
    listeners.fds.push_back(admin.fd.dup());
    ASSERT_EQ(sendChannelMessage(conn.borrow(), listeners), 0);
    ChannelMessage first = receive(conn);
    ASSERT_EQ(first.type, ChannelType::Claimed);
    EXPECT_THAT(first.names, ElementsAre("web"));
    ChannelMessage second = receive(conn);
    ASSERT_EQ(second.type, ChannelType::Claimed);
    EXPECT_THAT(second.names, ElementsAre("web", "admin"));
    for (const auto *l : {&web, &admin}) {
        UniqueFd c = connectTcp(l->port);
        ASSERT_TRUE(c);
        EXPECT_EQ(readAll(c.borrow(), kEventDeadline), "port " + std::to_string(l->port)) << server.log();
    }
}

} // namespace
} // namespace fdsup::test
