// The preload shim's drain against real servers run by hand: the request in flight completes, nothing new is
// accepted, then the server's own signal behaviour runs.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "shim_process.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// python3 -m http.server dies at once on SIGTERM; with the shim, the request
// in flight completes, a connection made during the drain stays in the
// shared backlog, then the process dies of its own SIGTERM.
TEST_F(PreloadTest, DrainCompletesTheRequestInFlightThenDiesOfSigterm)
{
    writeFile(tmp_ / "index.html", "drained\n");
    TestListener l = tcpListener();
    auto server = run({kPython, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                       tmp_.path().string(), std::to_string(l.port)},
                      l, {"FDSUP_DRAIN_TIMEOUT_USEC=60000000"});
    EXPECT_THAT(httpGet(l.port, "/index.html", kEventDeadline), HasSubstr("drained"));
    // A slow client: accepted, its request line sent, the rest not yet.
    UniqueFd slow = connectTcp(l.port);
    ASSERT_TRUE(slow);
    sendAll(slow.borrow(), "GET /index.html HTTP/1.0\r\n");
    ASSERT_TRUE(waitUntil([&] { return listenQueue(l.port).queued == 0; }))
        << "the slow client was not accepted";
    server->signal(SIGTERM);
    ASSERT_TRUE(server->waitForLog("no longer accepts", kEventDeadline)) << server->log();
    UniqueFd late = connectTcp(l.port);
    ASSERT_TRUE(late);
    sendAll(late.borrow(), "GET /late HTTP/1.0\r\n\r\n");
    EXPECT_FALSE(server->wait(0ms)) << "it died before the request in flight completed";
    sendAll(slow.borrow(), "Host: 127.0.0.1\r\n\r\n");
    std::string response = readAll(slow.borrow(), kEventDeadline);
    EXPECT_THAT(response, StartsWith("HTTP/1.0 200"));
    EXPECT_THAT(response, HasSubstr("drained"));
    auto status = server->wait(kEventDeadline);
    ASSERT_TRUE(status) << server->log();
    EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM) << "status " << *status;
    // The late connection was never accepted by the drained server: it is
    // still in the shared backlog, for a sibling or a replacement.
    UniqueFd own = acceptOwn(l);
    ASSERT_TRUE(own);
    EXPECT_THAT(readAll(own.borrow(), 2s), StartsWith("GET /late"));
}

// redis-server has its own SIGTERM handler (a clean shutdown) and uses epoll:
// during the drain it keeps serving the connection it has, accepts no new
// one, and its own handler runs once that connection is closed.
TEST_F(PreloadTest, RedisDrainsThenRunsItsOwnSigtermHandler)
{
    TestListener l = tcpListener();
    auto server = run({"/usr/bin/redis-server", "--port", std::to_string(l.port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--dir", tmp_.path().string()},
                      l, {"FDSUP_DRAIN_TIMEOUT_USEC=600000000"});
    UniqueFd a = connectTcp(l.port);
    ASSERT_TRUE(a);
    sendAll(a.borrow(), "PING\r\n");
    char buf[64] = {};
    ASSERT_EQ(recv(a.get(), buf, sizeof(buf), 0), 7);
    EXPECT_STREQ(buf, "+PONG\r\n");
    server->signal(SIGTERM);
    ASSERT_TRUE(server->waitForLog("no longer accepts", kEventDeadline)) << server->log();
    UniqueFd late = connectTcp(l.port);
    ASSERT_TRUE(late);
    sendAll(late.borrow(), "PING\r\n");
    sendAll(a.borrow(), "SET during drain\r\nGET during\r\nQUIT\r\n");
    EXPECT_EQ(readAll(a.borrow(), kEventDeadline), "+OK\r\n$5\r\ndrain\r\n+OK\r\n");
    auto status = server->wait(kEventDeadline);
    ASSERT_TRUE(status) << server->log();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status << "\n"
                                                                 << server->log();
    EXPECT_THAT(server->log(), HasSubstr("Received SIGTERM"));
    UniqueFd own = acceptOwn(l);
    ASSERT_TRUE(own);
    EXPECT_EQ(readAll(own.borrow(), 2s), "PING\r\n");
}

// socketserver.ForkingTCPServer: the parent accepts, a child serves. The
// drain signal reaches the whole group: the parent stops accepting and dies
// of it at once (its copy of the connection is closed); the child, which
// inherited the connection, finishes the request first.
TEST_F(PreloadTest, AForkingServersChildFinishesItsRequestOnDrain)
{
    TestListener l = tcpListener();
    const std::string script = R"(
import socketserver, sys
class Slow(socketserver.StreamRequestHandler):
    def handle(self):
        print("handling", flush=True)
        self.wfile.write(b"done " + self.rfile.readline())
socketserver.ForkingTCPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
)";
    auto server =
        run({kPython, "-c", script, std::to_string(l.port)}, l, {"FDSUP_DRAIN_TIMEOUT_USEC=600000000"});
    UniqueFd slow = connectTcp(l.port);
    ASSERT_TRUE(slow);
    ASSERT_TRUE(server->waitForLog("handling", kEventDeadline)) << server->log();
    server->signalGroup(SIGTERM);
    // The parent's line: the child drains (and logs) too.
    std::string parentDrained =
        "fdsup-preload[" + std::to_string(server->pid()) + "]: drain: fd 3 no longer accepts";
    ASSERT_TRUE(server->waitForLog(parentDrained, kEventDeadline)) << server->log();
    UniqueFd late = connectTcp(l.port);
    ASSERT_TRUE(late);
    auto status = server->wait(kEventDeadline);
    ASSERT_TRUE(status) << server->log();
    EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM) << "status " << *status;
    sendAll(slow.borrow(), "request\n");
    EXPECT_EQ(readAll(slow.borrow(), kEventDeadline), "done request\n") << server->log();
    UniqueFd own = acceptOwn(l);
    EXPECT_TRUE(own);
}

TEST_F(PreloadTest, ASecondDrainSignalRunsTheAppsDispositionAtOnce)
{
    writeFile(tmp_ / "index.html", "x\n");
    TestListener l = tcpListener();
    auto server = run({kPython, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                       tmp_.path().string(), std::to_string(l.port)},
                      l, {"FDSUP_DRAIN_TIMEOUT_USEC=600000000"});
    UniqueFd slow = connectTcp(l.port);
    ASSERT_TRUE(slow);
    sendAll(slow.borrow(), "GET /index.html HTTP/1.0\r\n");
    ASSERT_TRUE(waitUntil([&] { return listenQueue(l.port).queued == 0; }));
    server->signal(SIGTERM);
    ASSERT_TRUE(server->waitForLog("no longer accepts", kEventDeadline)) << server->log();
    server->signal(SIGTERM);
    auto status = server->wait(kEventDeadline);
    ASSERT_TRUE(status) << "a second SIGTERM waited for the drain (10 minutes)";
    EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM);
}

TEST_F(PreloadTest, WithoutTheShimHttpServerDiesAtOnceOnSigterm)
{
    // The control: the same server binding its own port loses the request in flight.
    writeFile(tmp_ / "index.html", "x\n");
    auto probe = tcpListener();
    std::uint16_t port = probe.port;
    probe.fd.reset();
    ShimOptions options;
    options.preload = false;
    ShimProcess server({kPython, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                        tmp_.path().string(), std::to_string(port)},
                       options, logPath("control"));
    UniqueFd slow;
    ASSERT_TRUE(waitUntil([&] { return (slow = connectTcp(port)).isValid(); }));
    sendAll(slow.borrow(), "GET /index.html HTTP/1.0\r\n");
    server.signal(SIGTERM);
    auto status = server.wait(kEventDeadline);
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM);
    sendAll(slow.borrow(), "\r\n");
    EXPECT_EQ(readAll(slow.borrow(), 2s), "");
}

// The inode of the file registered for target fd in epoll set epfd of pid
// (/proc/PID/fdinfo/EPFD: "tfd: N events: ... ino:HEX ..."), 0 when none.
ino_t epollTargetInode(pid_t pid, int epfd, int fd)
{
    std::istringstream lines(readFile("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(epfd)));
    for (std::string line; std::getline(lines, line);) {
        int tfd = -1;
        auto at = line.find("ino:");
        if (std::sscanf(line.c_str(), "tfd: %d", &tfd) == 1 && tfd == fd && at != std::string::npos) {
            return static_cast<ino_t>(std::stoull(line.substr(at + 4), nullptr, 16));
        }
    }
    return 0;
}

// An epoll registration follows the file description, which fdsupd keeps
// open: the drain takes the listener out of the app's epoll set before the
// swap (else the set keeps firing for the shared listener) and puts the
// never-ready fd back in its place.
TEST_F(PreloadTest, TheDrainTakesTheListenerOutOfTheAppsEpollSet)
{
    TestListener l = tcpListener();
    auto probe = run({requireEnv("FDSUP_TEST_PRELOAD_PROBE"), "epoll", std::to_string(l.port)}, l,
                     {"FDSUP_DRAIN_TIMEOUT_USEC=600000000"}, "epoll");
    int epfd = -1;
    int fd = -1;
    ASSERT_TRUE(waitUntil([&] {
        std::string log = probe->log();
        auto at = log.find("epoll ");
        return at != std::string::npos &&
               std::sscanf(log.c_str() + at, "epoll %d listener %d\n", &epfd, &fd) == 2;
    })) << probe->log();
    ino_t listener = fileId(l.fd.borrow()).ino;
    EXPECT_EQ(epollTargetInode(probe->pid(), epfd, fd), listener);
    UniqueFd held = connectTcp(l.port); // accepted and kept open: the drain waits for it
    ASSERT_TRUE(held);
    ASSERT_TRUE(probe->waitForLog("accepted", kEventDeadline)) << probe->log();
    probe->signal(SIGTERM);
    ASSERT_TRUE(probe->waitForLog("no longer accepts", kEventDeadline)) << probe->log();
    ino_t now = epollTargetInode(probe->pid(), epfd, fd);
    EXPECT_NE(now, 0U) << "the app's fd is no longer in its epoll set: its EPOLL_CTL_DEL would fail";
    EXPECT_NE(now, listener) << "the shared listener is still in the app's epoll set";
    UniqueFd late = connectTcp(l.port);
    ASSERT_TRUE(late);
    EXPECT_TRUE(acceptOwn(l)) << "the drained app took the late connection";
}

// fclose() closes the connection inside libc, past the interposed close():
// the drain sees it closed by its identity (fstat), not by counting closes.
TEST_F(PreloadTest, TheDrainSeesAConnectionClosedByFclose)
{
    TestListener l = tcpListener();
    auto probe = run({requireEnv("FDSUP_TEST_PRELOAD_PROBE"), "fclose", std::to_string(l.port)}, l,
                     {"FDSUP_DRAIN_TIMEOUT_USEC=600000000"}, "fclose");
    UniqueFd c = connectTcp(l.port);
    ASSERT_TRUE(c);
    ASSERT_TRUE(probe->waitForLog("accepted", kEventDeadline)) << probe->log();
    probe->signal(SIGTERM);
    ASSERT_TRUE(probe->waitForLog("no longer accepts", kEventDeadline)) << probe->log();
    EXPECT_FALSE(probe->wait(0ms)) << "it died with its connection open";
    sendAll(c.borrow(), "hello\n");
    EXPECT_EQ(readAll(c.borrow(), kEventDeadline), "bye\n");
    auto status = probe->wait(kEventDeadline);
    ASSERT_TRUE(status) << "the drain did not see the fclose()d connection closed\n" << probe->log();
    EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGTERM);
    EXPECT_THAT(probe->log(), HasSubstr("fclosed"));
    EXPECT_THAT(probe->log(), HasSubstr("drain: every connection closed"));
}

} // namespace
} // namespace fdsup::test
