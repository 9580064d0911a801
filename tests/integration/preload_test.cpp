// The preload shim run by hand against real, unmodified servers: the test is the socket activator
// (LISTEN_FDS).
#include <cerrno>
#include <csignal>
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
using ::testing::Not;
using ::testing::StartsWith;

const std::string kPython = "/usr/bin/python3"; // Debian's, not a pyenv shim script

class Preload : public ::testing::Test {
protected:
    std::filesystem::path logPath(const std::string &name) const { return tmp_ / (name + ".log"); }

    // A server on listener l (fd 3), with the shim.
    std::unique_ptr<ShimProcess> run(const std::vector<std::string> &argv, const TestListener &l,
                                     std::vector<std::string> env = {}, const std::string &name = "server")
    {
        ShimOptions options;
        options.listeners = {l.fd.get()};
        options.env = std::move(env);
        return std::make_unique<ShimProcess>(argv, options, logPath(name));
    }

    // The test's own accept on its listener: proves the listener still works.
    static UniqueFd acceptOwn(const TestListener &l)
    {
        pollfd p{l.fd.get(), POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kEventDeadline).count())) <= 0) {
            return {};
        }
        return UniqueFd(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    }

    static bool sharedNonBlocking(const TestListener &l)
    {
        return (fcntl(l.fd.get(), F_GETFL) & O_NONBLOCK) != 0;
    }

    TempDir tmp_;
};

TEST_F(Preload, PythonHttpServerServesFromTheActivatorsListener)
{
    writeFile(tmp_ / "index.html", "hello from the shim\n");
    TestListener l = tcpListener(77);
    auto server = run({kPython, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                       tmp_.path().string(), std::to_string(l.port)},
                      l);
    // Without the shim its bind() fails with EADDRINUSE: our listener holds the port.
    std::string response = httpGet(l.port, "/index.html", kEventDeadline);
    EXPECT_THAT(response, StartsWith("HTTP/1.0 200"));
    EXPECT_THAT(response, HasSubstr("hello from the shim"));
    EXPECT_THAT(server->log(), HasSubstr("listener 'fd3'"));
    // http.server calls listen(5): fdsupd's (here the test's) backlog stays.
    EXPECT_THAT(server->log(), HasSubstr("kept fdsupd's backlog"));
    EXPECT_EQ(listenQueue(l.port).backlog, 77);
    EXPECT_FALSE(sharedNonBlocking(l));
}

TEST_F(Preload, NodeSetsItsOwnNonBlockingViewOnly)
{
    TestListener l = tcpListener(61);
    auto server = run({"/usr/bin/node", "-e",
                       "require('http').createServer((q, r) => r.end('node says hi')).listen(" +
                           std::to_string(l.port) + ", '127.0.0.1')"},
                      l);
    EXPECT_THAT(httpGet(l.port, "/", kEventDeadline), HasSubstr("node says hi"));
    // libuv made its socket non-blocking and uses epoll + accept4: the shared
    // flag is still clear, and several requests work (the accept emulation).
    EXPECT_FALSE(sharedNonBlocking(l));
    for (int i = 0; i < 5; ++i) {
        EXPECT_THAT(httpGet(l.port, "/", kEventDeadline), HasSubstr("node says hi")) << i;
    }
    EXPECT_EQ(listenQueue(l.port).backlog, 61);
    EXPECT_THAT(server->log(), HasSubstr("listener 'fd3'"));
}

TEST_F(Preload, RedisServerAnswersOverRawResp)
{
    TestListener l = tcpListener(55);
    auto server = run({"/usr/bin/redis-server", "--port", std::to_string(l.port), "--bind", "127.0.0.1",
                       "--save", "", "--appendonly", "no", "--dir", tmp_.path().string()},
                      l);
    UniqueFd c = connectTcp(l.port);
    ASSERT_TRUE(c);
    sendAll(c.borrow(), "PING\r\nSET shim works\r\nGET shim\r\nQUIT\r\n");
    EXPECT_EQ(readAll(c.borrow(), kEventDeadline), "+PONG\r\n+OK\r\n$5\r\nworks\r\n+OK\r\n");
    EXPECT_FALSE(sharedNonBlocking(l)) << "redis set O_NONBLOCK on the shared listener";
    EXPECT_EQ(listenQueue(l.port).backlog, 55);
    EXPECT_THAT(server->log(), HasSubstr("listener 'fd3'"));
}

TEST_F(Preload, UnixServerThatUnlinksItsPathKeepsTheSocketFile)
{
    auto path = tmp_ / "app.sock";
    TestListener l = unixListener(path);
    struct stat before {};
    ASSERT_EQ(stat(path.c_str(), &before), 0);
    const std::string script = R"(
import os, socketserver, sys
path = sys.argv[1]
os.unlink(path)
class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        self.wfile.write(b"echo:" + self.rfile.readline())
server = socketserver.UnixStreamServer(path, Echo)
os.chmod(path, 0o600)
print("serving", flush=True)
server.serve_forever()
)";
    auto server = run({kPython, "-c", script, path.string()}, l);
    ASSERT_TRUE(server->waitForLog("serving", kEventDeadline)) << server->log();
    UniqueFd c = connectUnix(path);
    ASSERT_TRUE(c);
    sendAll(c.borrow(), "ping\n");
    EXPECT_EQ(readAll(c.borrow(), kEventDeadline), "echo:ping\n");
    struct stat after {};
    ASSERT_EQ(stat(path.c_str(), &after), 0) << "the app's unlink() removed the activator's socket file";
    EXPECT_EQ(after.st_ino, before.st_ino);
    EXPECT_EQ(after.st_mode, before.st_mode) << "the app's chmod() reached the socket file";
    EXPECT_THAT(server->log(), HasSubstr("socket file: left alone"));
}

TEST_F(Preload, ShutdownAndCloseByTheAppLeaveTheListenerWorking)
{
    TestListener l = tcpListener();
    const std::string script = R"(
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1)
c, _ = s.accept()
c.sendall(b"hi")
c.close()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.shutdown(socket.SHUT_RDWR)
s.close()
print("closed", flush=True)
sys.stdin.read()
)";
    auto server = run({kPython, "-c", script, std::to_string(l.port)}, l);
    UniqueFd c = connectTcp(l.port);
    ASSERT_TRUE(c);
    EXPECT_EQ(readAll(c.borrow(), kEventDeadline), "hi");
    ASSERT_TRUE(server->waitForLog("closed", kEventDeadline)) << server->log();
    // The shared listener is still open and listening: the test accepts on it.
    UniqueFd again = connectTcp(l.port);
    ASSERT_TRUE(again) << "connection refused: the app's shutdown reached the shared listener";
    UniqueFd own = acceptOwn(l);
    EXPECT_TRUE(own);
    EXPECT_THAT(server->log(), HasSubstr("shutdown(3) on a claimed listener: not passed on"));
    EXPECT_THAT(server->log(), HasSubstr("ignored: fdsupd's configuration decides"));
}

TEST_F(Preload, AnAddressThatMatchesNothingBindsNormally)
{
    TestListener l = tcpListener();
    const std::string script = R"(
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print("own port", s.getsockname()[1], flush=True)
)";
    auto server = run({kPython, "-c", script}, l);
    auto status = server->wait(kEventDeadline);
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << server->log();
    EXPECT_THAT(server->log(), HasSubstr("own port"));
    EXPECT_THAT(server->log(), Not(HasSubstr("own port " + std::to_string(l.port) + "\n")));
    EXPECT_THAT(server->log(), HasSubstr("no listener, libc binds it"));
}

TEST_F(Preload, AnIpv6SocketBindingTheMappedAddressGetsTheIpv4Listener)
{
    TestListener l = tcpListener();
    const std::string script = R"(
import socket, sys
s = socket.socket(socket.AF_INET6)
s.bind(("::ffff:127.0.0.1", int(sys.argv[1])))
s.listen()
c, peer = s.accept()
c.sendall(("mapped peer %s" % (peer[0],)).encode())
c.close()
)";
    auto server = run({kPython, "-c", script, std::to_string(l.port)}, l);
    UniqueFd c = connectTcp(l.port);
    ASSERT_TRUE(c);
    // accept() returns the listener's sockaddr_in: python reads its family from it.
    EXPECT_EQ(readAll(c.borrow(), kEventDeadline), "mapped peer 127.0.0.1") << server->log();
}

TEST_F(Preload, ATypeMismatchFailsLoudly)
{
    TestListener l = tcpListener();
    const std::string script = R"(
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    print("bound")
except OSError as e:
    print("errno", e.errno, flush=True)
)";
    auto server = run({kPython, "-c", script, std::to_string(l.port)}, l);
    ASSERT_TRUE(server->wait(kEventDeadline));
    EXPECT_THAT(server->log(), HasSubstr("errno " + std::to_string(EPROTOTYPE)));
    EXPECT_THAT(server->log(),
                HasSubstr("refused: a datagram socket cannot have listener 'fd3', a stream socket"));
}

TEST_F(Preload, AnExecdChildClaimsNothing)
{
    TestListener l = tcpListener();
    const std::string script = R"(
import os, socket, subprocess, sys
port = int(sys.argv[1])
s = socket.socket()
s.bind(("127.0.0.1", port))
s.listen()
child = """
import os, socket, sys
print("child env:", sorted(k for k in os.environ if k.startswith(("LD_PRELOAD", "LISTEN_", "FDSUP_PRELOAD", "FDSUP_DRAIN"))))
t = socket.socket()
try:
    t.bind(("127.0.0.1", int(sys.argv[1])))
    print("child bound")
except OSError as e:
    print("child errno", e.errno)
"""
print(subprocess.run([sys.executable, "-c", child, str(port)], capture_output=True, text=True).stdout, flush=True)
)";
    auto server = run({kPython, "-c", script, std::to_string(l.port)}, l);
    ASSERT_TRUE(server->wait(kEventDeadline));
    EXPECT_THAT(server->log(), HasSubstr("child env: []"));
    EXPECT_THAT(server->log(), HasSubstr("child errno " + std::to_string(EADDRINUSE)));
}

TEST_F(Preload, AServerThatClosesEveryFdAtStartStillGetsItsListener)
{
    TestListener l = tcpListener();
    const std::string script = R"(
import os, socket, sys
os.closerange(3, 65536)
for name in os.listdir("/proc/self/fd"):
    try:
        os.close(int(name)) if int(name) > 2 else None
    except OSError:
        pass
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
c, _ = s.accept()
c.sendall(b"still here")
c.close()
)";
    auto server = run({kPython, "-c", script, std::to_string(l.port)}, l);
    UniqueFd c = connectTcp(l.port);
    ASSERT_TRUE(c);
    EXPECT_EQ(readAll(c.borrow(), kEventDeadline), "still here") << server->log();
    EXPECT_THAT(server->log(), HasSubstr("skipped the shim's"));
}

TEST_F(Preload, ADaemonisingServerGetsItsListener)
{
    TestListener l = tcpListener();
    // Double fork: the grandchild binds, after both its parents are gone.
    const std::string script = R"(
import os, socket, sys
if os.fork():
    os._exit(0)
os.setpgrp() if False else None
if os.fork():
    os._exit(0)
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
while True:
    c, _ = s.accept()
    c.sendall(b"daemon %d" % os.getpid())
    c.close()
)";
    auto server = run({kPython, "-c", script, std::to_string(l.port)}, l);
    ASSERT_TRUE(server->wait(kEventDeadline)); // the first parent exits at once
    UniqueFd c = connectTcp(l.port);
    ASSERT_TRUE(c);
    EXPECT_THAT(readAll(c.borrow(), kEventDeadline), StartsWith("daemon "));
}

// python3 -m http.server dies at once on SIGTERM; with the shim, the request
// in flight completes, a connection made during the drain stays in the
// shared backlog, then the process dies of its own SIGTERM.
TEST_F(Preload, DrainCompletesTheRequestInFlightThenDiesOfSigterm)
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
TEST_F(Preload, RedisDrainsThenRunsItsOwnSigtermHandler)
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
TEST_F(Preload, AForkingServersChildFinishesItsRequestOnDrain)
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

TEST_F(Preload, ASecondDrainSignalRunsTheAppsDispositionAtOnce)
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

TEST_F(Preload, PreforkedSiblingsShareTheListenerWithTheirOwnNonBlockingView)
{
    TestListener l = tcpListener(128);
    // Four children select() on a non-blocking dup of the claimed socket and
    // race for every connection: the losers get EAGAIN, nobody blocks.
    const std::string script = R"(
import os, select, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
s.setblocking(False)
d = s.dup()
for i in range(4):
    if os.fork() == 0:
        while True:
            select.select([d], [], [])
            try:
                c, _ = d.accept()
            except BlockingIOError:
                continue
            c.setblocking(True)
            c.sendall(b"worker %d" % os.getpid())
            c.close()
print("forked", flush=True)
os.wait()
)";
    auto server = run({kPython, "-c", script, std::to_string(l.port)}, l);
    ASSERT_TRUE(server->waitForLog("forked", kEventDeadline)) << server->log();
    std::vector<UniqueFd> clients;
    for (int i = 0; i < 40; ++i) {
        clients.push_back(connectTcp(l.port));
        ASSERT_TRUE(clients.back()) << i;
    }
    for (auto &c : clients) {
        EXPECT_THAT(readAll(c.borrow(), kEventDeadline), StartsWith("worker "));
    }
    EXPECT_FALSE(sharedNonBlocking(l));
}

TEST_F(Preload, ThreadsBlockedInAcceptEachGetConnections)
{
    TestListener l = tcpListener(128);
    // Eight threads in a blocking accept() on the same claimed socket.
    const std::string script = R"(
import socket, sys, threading
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
def serve():
    while True:
        c, _ = s.accept()
        c.sendall(b"thread %d" % threading.get_ident())
        c.close()
threads = [threading.Thread(target=serve) for _ in range(8)]
for t in threads:
    t.start()
print("started", flush=True)
)";
    auto server = run({kPython, "-c", script, std::to_string(l.port)}, l);
    ASSERT_TRUE(server->waitForLog("started", kEventDeadline)) << server->log();
    std::vector<UniqueFd> clients;
    for (int i = 0; i < 64; ++i) {
        clients.push_back(connectTcp(l.port));
        ASSERT_TRUE(clients.back()) << i;
    }
    for (auto &c : clients) {
        EXPECT_THAT(readAll(c.borrow(), kEventDeadline), StartsWith("thread "));
    }
}

TEST_F(Preload, TheMapGivesAListenerToAnotherAddress)
{
    TestListener l = tcpListener();
    // The app binds port 1; the map sends that address to the activator's listener.
    const std::string script = R"(
import socket
s = socket.socket()
s.bind(("127.0.0.1", 1))
s.listen()
c, _ = s.accept()
c.sendall(b"mapped")
c.close()
)";
    ShimOptions options;
    options.listeners = {l.fd.get()};
    options.preload = false;
    options.env = {"LISTEN_FDNAMES=web"};
    ShimProcess server({requireEnv("FDSUP_TEST_PRELOAD_WRAPPER"), "--debug", "--map", "web=tcp://127.0.0.1:1",
                        "--", kPython, "-c", script},
                       options, logPath("mapped"));
    UniqueFd c = connectTcp(l.port);
    ASSERT_TRUE(c);
    EXPECT_EQ(readAll(c.borrow(), kEventDeadline), "mapped") << server.log();
    EXPECT_THAT(server.log(), HasSubstr("bind(3, 127.0.0.1:1): listener 'web'"));
}

TEST_F(Preload, WithoutTheShimHttpServerDiesAtOnceOnSigterm)
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

TEST_F(Preload, UnderSystemdSocketActivateWithTheWrapper)
{
    writeFile(tmp_ / "index.html", "via systemd-socket-activate\n");
    // systemd-socket-activate binds the port itself: take a free one.
    auto probe = tcpListener();
    std::uint16_t port = probe.port;
    probe.fd.reset();
    ShimOptions options;
    options.preload = false; // fdsup-preload sets LD_PRELOAD
    options.debug = false;
    std::string address = "127.0.0.1:" + std::to_string(port);
    ShimProcess activator({"/usr/bin/systemd-socket-activate", "-l", address, "-E", "PYTHONUNBUFFERED=1",
                           requireEnv("FDSUP_TEST_PRELOAD_WRAPPER"), "--debug", "--", kPython, "-m",
                           "http.server", "--bind", "127.0.0.1", "--directory", tmp_.path().string(),
                           std::to_string(port)},
                          options, logPath("activator"));
    std::string response;
    ASSERT_TRUE(
        waitUntil([&] { return !(response = httpGet(port, "/index.html", kEventDeadline)).empty(); }));
    EXPECT_THAT(response, HasSubstr("via systemd-socket-activate"));
    EXPECT_THAT(activator.log(), HasSubstr("bind(3, 127.0.0.1:" + std::to_string(port) + "): listener"));
}

TEST_F(Preload, TheWrapperRefusesWhatItCannotWrap)
{
    // A static binary (Debian's ldconfig is one): LD_PRELOAD would be ignored.
    auto r = runProcess({requireEnv("FDSUP_TEST_PRELOAD_WRAPPER"), "--", "/sbin/ldconfig", "--help"});
    EXPECT_EQ(r.exitCode, 126);
    EXPECT_THAT(r.err, HasSubstr("statically linked"));
    r = runProcess({requireEnv("FDSUP_TEST_PRELOAD_WRAPPER"), "--", "/usr/bin/su", "--help"});
    EXPECT_EQ(r.exitCode, 126);
    EXPECT_THAT(r.err, HasSubstr("setuid"));
    // File capabilities (setcap needs CAP_SETFCAP: CI runs as root).
    std::filesystem::copy_file("/bin/true", tmp_ / "captrue");
    auto setcap = runProcess({"/sbin/setcap", "cap_net_bind_service+ep", (tmp_ / "captrue").string()});
    ASSERT_EQ(setcap.exitCode, 0) << setcap.err;
    r = runProcess({requireEnv("FDSUP_TEST_PRELOAD_WRAPPER"), "--", (tmp_ / "captrue").string()});
    EXPECT_EQ(r.exitCode, 126);
    EXPECT_THAT(r.err, HasSubstr("file capabilities"));
    r = runProcess(
        {requireEnv("FDSUP_TEST_PRELOAD_WRAPPER"), "--map", "web=tcp://nohost:80", "--", "/bin/true"});
    EXPECT_EQ(r.exitCode, 2);
    EXPECT_THAT(r.err, HasSubstr("does not resolve host names"));
    r = runProcess({requireEnv("FDSUP_TEST_PRELOAD_WRAPPER"), "/bin/true"});
    EXPECT_EQ(r.exitCode, 2);
}

} // namespace
} // namespace fdsup::test
