// libactivate's examples with no supervisor at all (--listen ADDR): they bind
// their own port, serve, and on SIGTERM drain politely: stop accepting,
// answer what was received (the last answer says "Connection: close"), close
// idle keep-alive connections, exit 0. The same drain under fdsupd with
// `handoff = false`. Real processes, real sockets on loopback.
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kRequest = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

void sendAll(BorrowedFd fd, std::string_view data)
{
    while (!data.empty()) {
        const ssize_t n = send(fd.get(), data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        ASSERT_GT(n, 0) << "send: " << std::strerror(errno);
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

// Everything the server sends until it closes; how it closed: "EOF", or the recv() error.
struct Received {
    std::string data;
    std::string end;
};

// Reads until the server closes the connection (connectLoopback's 10 s receive timeout bounds it).
Received readToClose(BorrowedFd fd)
{
    Received r;
    char buffer[4096];
    for (;;) {
        const ssize_t n = recv(fd.get(), buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            r.end = n == 0 ? "EOF" : std::strerror(errno);
            return r;
        }
        r.data.append(buffer, static_cast<std::size_t>(n));
    }
}

// Reads exactly n bytes (or fewer if the connection ends).
std::string readExactly(BorrowedFd fd, std::size_t n)
{
    std::string out;
    char buffer[4096];
    while (out.size() < n) {
        const ssize_t r = recv(fd.get(), buffer, std::min(sizeof buffer, n - out.size()), 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            break;
        }
        out.append(buffer, static_cast<std::size_t>(r));
    }
    return out;
}

// One whole response of http-keepalive (its bodies are short: headers, then Content-Length bytes).
std::string readResponse(BorrowedFd fd)
{
    std::string data = readExactly(fd, 1);
    while (data.find("\r\n\r\n") == std::string::npos) {
        const std::string more = readExactly(fd, 1);
        if (more.empty()) {
            return data;
        }
        data += more;
    }
    const auto at = data.find("Content-Length: ");
    if (at == std::string::npos) {
        return data;
    }
    const std::size_t length = std::stoul(data.substr(at + 16));
    return data + readExactly(fd, length);
}

class ListenExample : public ::testing::Test {
protected:
    // Starts the example named by the environment variable with --listen addr;
    // returns once it serves, with port_ the port it bound.
    void start(const char *binaryEnv, const std::string &addr)
    {
        server_ = std::make_unique<BackgroundProcess>(
            std::vector<std::string>{requireEnv(binaryEnv), "--listen", addr}, dir_ / "server.log");
        ASSERT_TRUE(waitUntil([&] {
            return server_->log().find("ready: serving 1 listener") != std::string::npos;
        })) << server_->log();
        const std::string log = server_->log();
        const auto at = log.find("(port ");
        ASSERT_NE(at, std::string::npos) << log;
        port_ = std::stoi(log.substr(at + 6));
        ASSERT_GT(port_, 0) << log;
    }

    // SIGTERM, then returns once the server says it is finishing.
    void terminate()
    {
        server_->signal(SIGTERM);
        ASSERT_TRUE(waitUntil([&] { return server_->log().find("SIGTERM: finishing") != std::string::npos; }))
            << server_->log();
    }

    TempDir dir_;
    std::unique_ptr<BackgroundProcess> server_;
    int port_ = 0;
};

TEST_F(ListenExample, HttpKeepAliveServesItsOwnPortAndExitsCleanlyOnSigterm)
{
    ASSERT_NO_FATAL_FAILURE(start("FDSUP_TEST_HTTP_KEEPALIVE", "127.0.0.1:0"));
    UniqueFd idle = connectLoopback(port_);
    sendAll(idle.borrow(), kRequest);
    const std::string first = readResponse(idle.borrow());
    EXPECT_THAT(first, HasSubstr("HTTP/1.1 200 OK\r\n"));
    EXPECT_THAT(first, HasSubstr("Connection: keep-alive\r\n"));
    EXPECT_THAT(first, HasSubstr("\"pid\":" + std::to_string(server_->pid())));

    ASSERT_NO_FATAL_FAILURE(terminate());
    // The idle keep-alive connection is closed in order (FIN, not a reset), and nothing more is sent.
    const Received rest = readToClose(idle.borrow());
    EXPECT_EQ(rest.end, "EOF");
    EXPECT_EQ(rest.data, "");
    EXPECT_EQ(server_->wait(kEventDeadline), std::optional<int>(0)) << server_->log();
    EXPECT_THAT(server_->log(), HasSubstr("started: 1 listener from --listen, no channel"));
    EXPECT_FALSE(loopbackAccepts(port_)) << "the listener outlived the server";
}

TEST_F(ListenExample, HttpKeepAliveListensOnIpv6)
{
    ASSERT_NO_FATAL_FAILURE(start("FDSUP_TEST_HTTP_KEEPALIVE", "[::1]:0"));
    UniqueFd fd(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(static_cast<std::uint16_t>(port_));
    a.sin6_addr = in6addr_loopback;
    ASSERT_EQ(connect(fd.get(), reinterpret_cast<const sockaddr *>(&a), sizeof a), 0) << std::strerror(errno);
    const timeval timeout{10, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    sendAll(fd.borrow(), "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const Received r = readToClose(fd.borrow());
    EXPECT_THAT(r.data, HasSubstr("HTTP/1.1 200 OK\r\n"));
    EXPECT_EQ(r.end, "EOF");
    server_->signal(SIGTERM);
    EXPECT_EQ(server_->wait(kEventDeadline), std::optional<int>(0)) << server_->log();
}

TEST_F(ListenExample, ARequestReceivedBeforeSigtermIsAnsweredWithConnectionClose)
{
    ASSERT_NO_FATAL_FAILURE(start("FDSUP_TEST_HTTP_KEEPALIVE", "127.0.0.1:0"));
    UniqueFd busy = connectLoopback(port_);
    sendAll(busy.borrow(),
            kRequest); // accepted and served: the connection is the server's, not in the backlog
    EXPECT_THAT(readResponse(busy.borrow()), HasSubstr("Connection: keep-alive\r\n"));
    sendAll(busy.borrow(), "GET / HTTP/1.1\r\nHost: x\r\n"); // half a request: still pending at SIGTERM

    ASSERT_NO_FATAL_FAILURE(terminate());
    EXPECT_FALSE(loopbackAccepts(port_)) << "still accepting after SIGTERM";
    sendAll(busy.borrow(), "\r\n");
    const Received last = readToClose(busy.borrow());
    EXPECT_THAT(last.data, ::testing::StartsWith("HTTP/1.1 200 OK\r\n"));
    EXPECT_THAT(last.data, HasSubstr("Connection: close\r\n"));
    EXPECT_EQ(last.data.find("HTTP/1.1", 1), std::string::npos) << "more than one response: " << last.data;
    EXPECT_EQ(last.end, "EOF");
    EXPECT_EQ(server_->wait(kEventDeadline), std::optional<int>(0)) << server_->log();
}

// The sockets of process pid (its /proc/PID/fd entries "socket:[...]").
std::size_t socketsOf(pid_t pid)
{
    std::size_t n = 0;
    for (const auto &[fd, target] : openFds(pid)) {
        n += target.starts_with("socket:") ? 1 : 0;
    }
    return n;
}

TEST_F(ListenExample, AConnectionAcceptedBeforeSigtermGetsItsFirstRequestAnswered)
{
    ASSERT_NO_FATAL_FAILURE(start("FDSUP_TEST_HTTP_KEEPALIVE", "127.0.0.1:0"));
    const std::size_t before = socketsOf(server_->pid());
    UniqueFd fresh = connectLoopback(port_);
    // Accepted (not in the backlog, which closes with the listener), and nothing sent yet: not idle.
    ASSERT_TRUE(waitUntil([&] { return socketsOf(server_->pid()) > before; })) << server_->log();

    ASSERT_NO_FATAL_FAILURE(terminate());
    sendAll(fresh.borrow(), kRequest);
    const Received r = readToClose(fresh.borrow());
    EXPECT_THAT(r.data, ::testing::StartsWith("HTTP/1.1 200 OK\r\n"));
    EXPECT_THAT(r.data, HasSubstr("Connection: close\r\n"));
    EXPECT_EQ(r.end, "EOF");
    EXPECT_EQ(server_->wait(kEventDeadline), std::optional<int>(0)) << server_->log();
}

TEST_F(ListenExample, SeqnumEchoFinishesAHalfNumberOnSigtermThenCloses)
{
    ASSERT_NO_FATAL_FAILURE(start("FDSUP_TEST_SEQNUM_ECHO", "127.0.0.1:0"));
    UniqueFd stream = connectLoopback(port_);
    const std::string one("\0\0\0\1", 4);
    sendAll(stream.borrow(), one);
    EXPECT_EQ(readExactly(stream.borrow(), 4), one);
    sendAll(stream.borrow(), std::string("\0\0", 2)); // half of number 2

    ASSERT_NO_FATAL_FAILURE(terminate());
    sendAll(stream.borrow(), std::string("\0\2", 2));
    const Received rest = readToClose(stream.borrow());
    EXPECT_EQ(rest.data, std::string("\0\0\0\2", 4));
    EXPECT_EQ(rest.end, "EOF");
    EXPECT_EQ(server_->wait(kEventDeadline), std::optional<int>(0)) << server_->log();
}

TEST(ListenExampleArguments, BadAddressesAreRefusedWithTheReason)
{
    const std::string binary = requireEnv("FDSUP_TEST_HTTP_KEEPALIVE");
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
        {{"--listen", "127.0.0.1"}, "no port"},
        {{"--listen", "localhost:8080"}, "not an IPv4 address (host names are not resolved)"},
        {{"--listen", "[::1]:70000"}, "the port is not a number from 0 to 65535"},
        {{"--listen", "::1:8080"}, "not an IPv4 address"},
        {{"--listen"}, "--listen needs an ADDR"},
        {{"--connect", "@x", "--listen", "127.0.0.1:0"}, "--connect and --listen exclude each other"},
    };
    for (const auto &[args, why] : cases) {
        std::vector<std::string> argv{binary};
        argv.insert(argv.end(), args.begin(), args.end());
        const ProcessResult r = runProcess(argv);
        EXPECT_EQ(r.exitCode, 2) << ::testing::PrintToString(args) << r.err;
        EXPECT_THAT(r.err, HasSubstr(why)) << ::testing::PrintToString(args);
        EXPECT_THAT(r.err, HasSubstr("usage:")) << ::testing::PrintToString(args);
    }
}

TEST(ListenExampleArguments, APortInUseIsRefusedAtStart)
{
    UniqueFd taken(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = loopbackAddress(0);
    ASSERT_EQ(bind(taken.get(), reinterpret_cast<const sockaddr *>(&a), sizeof a), 0);
    ASSERT_EQ(listen(taken.get(), 1), 0);
    socklen_t len = sizeof a;
    getsockname(taken.get(), reinterpret_cast<sockaddr *>(&a), &len);
    const std::string addr = "127.0.0.1:" + std::to_string(ntohs(a.sin_port));
    const ProcessResult r = runProcess({requireEnv("FDSUP_TEST_SEQNUM_ECHO"), "--listen", addr});
    EXPECT_EQ(r.exitCode, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr("cannot listen on " + addr + ": Address already in use"));
}

// The same polite drain is what fdsupd's rollout of a service without handoff gets (SIGTERM).
class PoliteDrainUnderFdsupd : public DaemonTest<> {};

TEST_F(PoliteDrainUnderFdsupd, WithoutHandoffARestartAnswersThePendingRequestWithConnectionClose)
{
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"
[service.web]
command = [")" + requireEnv("FDSUP_TEST_HTTP_KEEPALIVE") +
                                  R"("]
sockets = ["web"]
ready = "channel"
handoff = false
drain_timeout = "30s"
)",
                              why))
        << why;
    ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    const int port = fdsupd_.port("web");
    UniqueFd idle = connectLoopback(port);
    sendAll(idle.borrow(), kRequest);
    EXPECT_THAT(readResponse(idle.borrow()), HasSubstr("\"generation\":\"1\""));
    UniqueFd busy = connectLoopback(port);
    sendAll(busy.borrow(), kRequest);
    EXPECT_THAT(readResponse(busy.borrow()), HasSubstr("Connection: keep-alive\r\n"));
    sendAll(busy.borrow(), "GET / HTTP/1.1\r\nHost: x\r\n"); // half a request at the drain

    auto restart = std::async(std::launch::async, [&] {
        return fdsupd_.fdsupctl({"restart", "--wait", "web"});
    });
    EXPECT_TRUE(waitUntil([&] {
        return fdsupd_.log().find("SIGTERM: finishing 2 connections") != std::string::npos;
    })) << fdsupd_.log();
    const Received closed = readToClose(idle.borrow());
    EXPECT_EQ(closed.end, "EOF");
    EXPECT_EQ(closed.data, "");
    sendAll(busy.borrow(), "\r\n");
    const Received last = readToClose(busy.borrow());
    EXPECT_THAT(last.data, ::testing::StartsWith("HTTP/1.1 200 OK\r\n"));
    EXPECT_THAT(last.data, HasSubstr("Connection: close\r\n"));
    EXPECT_THAT(last.data, HasSubstr("\"generation\":\"1\""));
    EXPECT_EQ(last.end, "EOF");
    const ProcessResult restarted = restart.get();
    EXPECT_EQ(restarted.exitCode, 0) << restarted.out << restarted.err;

    UniqueFd next = connectLoopback(port);
    sendAll(next.borrow(), kRequest);
    EXPECT_THAT(readResponse(next.borrow()), HasSubstr("\"generation\":\"2\""));
    next.reset();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
