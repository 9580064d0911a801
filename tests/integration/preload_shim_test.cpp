// The preload shim run by hand against real, unmodified servers: the test is the socket activator
// (LISTEN_FDS).
#include <algorithm>
#include <cerrno>
#include <csignal>
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
using ::testing::Not;
using ::testing::StartsWith;

// The pids of the "child PID" lines of a log.
std::vector<pid_t> childPids(const std::string &log)
{
    std::vector<pid_t> pids;
    std::istringstream lines(log);
    for (std::string line; std::getline(lines, line);) {
        if (line.starts_with("child ")) {
            pids.push_back(std::stoi(line.substr(6)));
        }
    }
    return pids;
}

// Whether pid sits in accept4() (x86_64 syscall 288): a sibling that lost
// the race on the blocking shared listener would, until the next connection.
bool inAccept4(pid_t pid)
{
    return readFile("/proc/" + std::to_string(pid) + "/syscall").starts_with("288 ");
}

TEST_F(PreloadTest, PythonHttpServerServesFromTheActivatorsListener)
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

// Every rule on a claimed fd, from C: errno kept, the views, the shared socket untouched.
TEST_F(PreloadTest, TheInterposersSeenFromC)
{
    TestListener l = tcpListener(33);
    auto probe = run({requireEnv("FDSUP_TEST_PRELOAD_PROBE"), std::to_string(l.port)}, l);
    ASSERT_TRUE(probe->waitForLog("waiting", kEventDeadline)) << probe->log();
    EXPECT_FALSE(sharedNonBlocking(l)) << "the app's F_SETFL reached the shared listener";
    EXPECT_EQ(listenQueue(l.port).backlog, 33);
    UniqueFd c = connectTcp(l.port);
    ASSERT_TRUE(c);
    EXPECT_EQ(readAll(c.borrow(), kEventDeadline), "probe\n");
    auto status = probe->wait(kEventDeadline);
    ASSERT_TRUE(status);
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << probe->log();
    EXPECT_THAT(probe->log(), HasSubstr("done, 0 failure(s)"));
    EXPECT_THAT(probe->log(), Not(HasSubstr("FAIL")));
    // After its shutdown() and close(), the listener is still the test's, working.
    UniqueFd again = connectTcp(l.port);
    ASSERT_TRUE(again);
    EXPECT_TRUE(acceptOwn(l));
}

TEST_F(PreloadTest, NodeSetsItsOwnNonBlockingViewOnly)
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

TEST_F(PreloadTest, RedisServerAnswersOverRawResp)
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

TEST_F(PreloadTest, UnixServerThatUnlinksItsPathKeepsTheSocketFile)
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

TEST_F(PreloadTest, ShutdownAndCloseByTheAppLeaveTheListenerWorking)
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

TEST_F(PreloadTest, AnAddressThatMatchesNothingBindsNormally)
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

TEST_F(PreloadTest, AnIpv6SocketBindingTheMappedAddressGetsTheIpv4Listener)
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

TEST_F(PreloadTest, ATypeMismatchFailsLoudly)
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

TEST_F(PreloadTest, AnExecdChildClaimsNothing)
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

TEST_F(PreloadTest, AServerThatClosesEveryFdAtStartStillGetsItsListener)
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

TEST_F(PreloadTest, ADaemonisingServerGetsItsListener)
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

// The shared listener is blocking; the siblings' sockets are non-blocking
// views. Woken together by select(), they race for each connection: the
// losers must get EAGAIN, not block in accept4() on the shared listener.
TEST_F(PreloadTest, PreforkedSiblingsNeverBlockInANonBlockingAccept)
{
    TestListener l = tcpListener(128);
    const std::string script = R"(
import os, select, socket, sys
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
s.setblocking(False)
d = s.dup()
for i in range(4):
    if os.fork() == 0:
        # One write(2) per line: print() writes its pieces separately, and
        # four children interleaved them ("child 7974child\n 7976").
        os.write(1, b"child %d\n" % os.getpid())
        while True:
            select.select([d], [], [])
            try:
                c, _ = d.accept()
            except BlockingIOError:
                continue
            c.setblocking(True)
            c.sendall(b"worker %d" % os.getpid())
            c.close()
os.wait()
)";
    auto server = run({kPython, "-c", script, std::to_string(l.port)}, l);
    std::vector<pid_t> children;
    ASSERT_TRUE(waitUntil([&] {
        children = childPids(server->log());
        return children.size() == 4;
    })) << server->log();
    // One connection at a time: each wakes all four.
    for (int i = 0; i < 40; ++i) {
        UniqueFd c = connectTcp(l.port);
        ASSERT_TRUE(c) << i;
        EXPECT_THAT(readAll(c.borrow(), kEventDeadline), StartsWith("worker ")) << i;
    }
    for (pid_t child : children) {
        EXPECT_TRUE(waitUntil([&] { return !inAccept4(child); }))
            << "child " << child << " blocked in accept4()";
    }
    EXPECT_FALSE(sharedNonBlocking(l));
}

// The same race from C, without an interpreter between the wake-up and the
// accept: eight children poll() and accept at once. (The window between the
// readiness check and accept4() is microseconds: a shim without the lock
// passed the 200 connections too; the lock itself is proven first.)
TEST_F(PreloadTest, EightCSiblingsRacingForEachConnectionNeverBlock)
{
    TestListener l = tcpListener(128);
    auto probe = run({requireEnv("FDSUP_TEST_PRELOAD_PROBE"), "race", std::to_string(l.port)}, l, {}, "race");
    std::vector<pid_t> children;
    ASSERT_TRUE(waitUntil([&] {
        children = childPids(probe->log());
        return children.size() == 8;
    })) << probe->log();
    // The exclusion is a POSIX record lock on the listener: while the test
    // (another process) holds it, a woken child waits in fcntl(F_SETLKW)
    // (syscall 72) instead of accepting.
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    ASSERT_EQ(fcntl(l.fd.get(), F_SETLKW, &lock), 0);
    UniqueFd first = connectTcp(l.port);
    ASSERT_TRUE(first);
    auto inFcntl = [](pid_t pid) {
        return readFile("/proc/" + std::to_string(pid) + "/syscall").starts_with("72 ");
    };
    EXPECT_TRUE(waitUntil([&] { return std::any_of(children.begin(), children.end(), inFcntl); }))
        << "no child waits for the accept lock";
    pollfd answered{first.get(), POLLIN, 0};
    EXPECT_EQ(poll(&answered, 1, 0), 0) << "a child accepted while another process held the lock";
    lock.l_type = F_UNLCK;
    ASSERT_EQ(fcntl(l.fd.get(), F_SETLK, &lock), 0);
    EXPECT_EQ(readAll(first.borrow(), kEventDeadline), "raced\n");
    for (int i = 0; i < 200; ++i) {
        UniqueFd c = connectTcp(l.port);
        ASSERT_TRUE(c) << i;
        ASSERT_EQ(readAll(c.borrow(), kEventDeadline), "raced\n") << i;
    }
    for (pid_t child : children) {
        EXPECT_TRUE(waitUntil([&] { return !inAccept4(child); }))
            << "child " << child << " blocked in accept4()";
    }
}

TEST_F(PreloadTest, ThreadsBlockedInAcceptEachGetConnections)
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

TEST_F(PreloadTest, TheMapGivesAListenerToAnotherAddress)
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

TEST_F(PreloadTest, UnderSystemdSocketActivateWithTheWrapper)
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

TEST_F(PreloadTest, TheWrapperRefusesWhatItCannotWrap)
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
