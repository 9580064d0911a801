// Floods and hostile clients against a real fdsupd: everyone else keeps being served, a few log lines,
// nothing leaked.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using SteadyClock = std::chrono::steady_clock;

// fdsupd's LogLimit (supervisor/io/log_limit.hpp): 5 lines per 10 s per source.
constexpr int kLogBurst = 5;
constexpr auto kLogInterval = 10s;

// A notify flooder run by fdsupd as a service, so that it has the real
// NOTIFY_SOCKET and its datagrams carry its real credentials. It sends every
// kind of bad datagram, stores descriptors far past the store's limit
// (1024), removes them, reports "flooded PID" and then sends garbage until
// it is stopped.
constexpr const char *kNotifyFlooder = R"PY(
import array, errno, os, resource, select, signal, socket, sys, time

signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # descriptors in flight count against it
address = os.environ["NOTIFY_SOCKET"]
if address.startswith("@"):
    address = "\0" + address[1:]
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.connect(address)
null = os.open("/dev/null", os.O_RDONLY)
# An edge each time a datagram's buffer is freed: when fdsupd takes one of
# ours off its queue (what ETOOMANYREFS waits for), and when a refused
# sendmsg drops the one it had made (cleared before waiting).
taken = select.epoll()
taken.register(notify.fileno(), select.EPOLLOUT | select.EPOLLET)
refused = 0
RETRY_BUDGET = 60.0  # seconds one datagram may wait for fdsupd to read what is in flight (kEventDeadline)

def send(text, fds=0):
    global refused
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [null] * fds).tobytes())] if fds else []
    deadline = time.monotonic() + RETRY_BUDGET
    while True:
        try:
            notify.sendmsg([text], ancillary)
            return
        except OSError as e:
            if e.errno != errno.ETOOMANYREFS:  # too many descriptors in flight: fdsupd reads them soon
                raise
        refused += 1
        left = deadline - time.monotonic()
        if left <= 0:  # fdsupd stopped reading: say so, do not spin on
            why = b"failed: ETOOMANYREFS for %d s, fdsupd never read the descriptors in flight" % RETRY_BUDGET
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(why, sys.argv[1])
            sys.exit(why.decode())
        # Until fdsupd takes a datagram; at most 50 ms at a time, as the
        # descriptors in flight may be another process's of the same user,
        # or fdsupd's take may have been cleared with our own refusal's edge.
        taken.poll(0)
        taken.poll(min(left, 0.05))

send(b"READY=1")
for _ in range(2000):
    send(b"a line without an equals sign")
for _ in range(200):
    send(b"STATUS=" + b"x" * 8000)            # over 4096 bytes
for _ in range(200):
    send(b"READY=1\0")                          # a NUL byte
for _ in range(50):
    send(b"FDSTORE=1\nFDNAME=flood", 100)       # 5000 descriptors, the store takes 1024
for _ in range(100):
    send(b"STATUS=many descriptors", 253)       # descriptors with a message that takes none
for _ in range(100):
    send(b"garbage", 253)                       # descriptors with a malformed message
send(b"FDSTOREREMOVE=1\nFDNAME=flood")
report = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
report.sendto(b"flooded %d" % os.getpid(), sys.argv[1])
while True:
    send(b"garbage, until stopped")
)PY";

// Lines of text that contain needle.
int countLines(const std::string &text, const std::string &needle)
{
    std::istringstream in(text);
    std::string line;
    int n = 0;
    while (std::getline(in, line)) {
        n += line.find(needle) != std::string::npos ? 1 : 0;
    }
    return n;
}

// The most lines one LogLimit lets through since `since`.
int logBound(SteadyClock::time_point since)
{
    const auto windows = (SteadyClock::now() - since) / kLogInterval + 1;
    return kLogBurst * static_cast<int>(windows);
}

// VmHWM (peak resident set) of a process, in KiB.
long peakRssKibOf(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with("VmHWM:")) {
            return std::strtol(line.c_str() + 6, nullptr, 10);
        }
    }
    return -1;
}

// One HTTP/1.1 keep-alive request on fd; the body, or "" when the connection failed.
std::string httpGet(BorrowedFd fd)
{
    const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
        return "";
    }
    std::string in;
    char buffer[4096];
    for (;;) {
        const auto end = in.find("\r\n\r\n");
        if (end != std::string::npos) {
            const auto at = in.find("Content-Length: ");
            const std::size_t length = at == std::string::npos ? 0 : std::stoul(in.substr(at + 16));
            if (in.size() >= end + 4 + length) {
                return in.substr(end + 4, length) + " "; // never empty on success
            }
        }
        const ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0); // 10 s timeout (connectLoopback)
        if (n <= 0) {
            return "";
        }
        in.append(buffer, static_cast<std::size_t>(n));
    }
}

class Floods : public DaemonTest<> {
protected:
    // fdsupd with `web` (http-keepalive on the worker channel with handoff:
    // the held connection), `good` (sd-worker serving HTTP: the other
    // service) and `extra` (the abuser, with instances = 0 until scaled).
    void startDaemon(const std::string &extra, const std::string &limits = "")
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + "\n[supervisor.limits]\n" + limits +
                                      channelWebService(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE"), 1) + R"(
[socket.other]
listen = "tcp://127.0.0.1:0"

[service.good]
command = )" + fdsupd_.workerCommand("serve") +
                                      R"(
sockets = ["other"]
)" + extra,
                                  why))
            << why;
        held_ = connectLoopback(fdsupd_.port("web"));
        ASSERT_NE(httpGet(held_.borrow()), "") << "the held connection was not served at first";
        baseline_ = countFdsOf(fdsupd_.pid());
    }

    // What must hold during and after every abuse: the other service answers
    // a real client, the control socket answers fdsupctl, and a restart of
    // the handoff service hands the held keep-alive connection to the new
    // instance, which answers it.
    void expectEveryoneElseServed()
    {
        const auto curl = runProcess({"/usr/bin/curl", "-sS", "--max-time", "10",
                                      "http://127.0.0.1:" + std::to_string(fdsupd_.port("other")) + "/"});
        EXPECT_EQ(curl.exitCode, 0) << curl.err;
        const auto status = fdsupd_.fdsupctl({"status"});
        EXPECT_EQ(status.exitCode, 0) << status.err;
        const auto restart = fdsupd_.fdsupctl({"restart", "web", "--wait"});
        EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err;
        EXPECT_NE(httpGet(held_.borrow()), "") << "the held connection was lost in the restart";
    }

    // fdsupd's descriptors come back to what it had before the abuse.
    void expectFdsBack()
    {
        int now = 0;
        EXPECT_TRUE(waitUntil([&] { return (now = countFdsOf(fdsupd_.pid())) <= baseline_; }))
            << "fdsupd holds " << now << " descriptors, " << baseline_ << " before";
    }

    void call(const std::string &method, nlohmann::json parameters)
    {
        const auto reply = fdsupd_.call("io.fdsup.Manager." + method, std::move(parameters));
        ASSERT_EQ(reply.error, "") << method << ": " << reply.parameters.dump();
    }

    const SteadyClock::time_point started_ = SteadyClock::now();
    UniqueFd held_;
    int baseline_ = 0;
};

TEST_F(Floods, NotifyFloodIsDroppedLoggedAFewLinesATimeAndLeavesNothing)
{
    writeFile(fdsupd_.dir() / "flooder.py", kNotifyFlooder);
    ASSERT_NO_FATAL_FAILURE(startDaemon(R"(
[service.flood]
command = ["/usr/bin/python3", )" + quoted((fdsupd_.dir() / "flooder.py").string()) +
                                        ", " + quoted(fdsupd_.reportPath()) + R"(]
instances = 0
ready = "notify"
restart = "never"
)"));
    call("Start", {{"service", "flood"}}); // running, with no instance yet
    call("Scale", {{"service", "flood"}, {"instances", 1}});
    const auto flooded = fdsupd_.reports().waitFor(
        [](const std::string &m) { return m.starts_with("flooded ") || m.starts_with("failed: "); },
        kEventDeadline + 10s); // the flooder's own deadline is kEventDeadline
    ASSERT_TRUE(flooded.has_value()) << "the flooder never got through its floods";
    ASSERT_TRUE(flooded->starts_with("flooded ")) << *flooded;

    // While it still floods (garbage until stopped).
    expectEveryoneElseServed();
    const auto flood = fdsupd_.status("flood");
    EXPECT_GE(flood.at("notify_dropped").get<long>(), 2000 + 200 + 200 + 100) << flood.dump();
    EXPECT_TRUE(flood.at("fdstore").empty()) << flood.dump();
    call("Stop", {{"service", "flood"}});
    expectFdsBack();

    // Thousands of refusals; a few lines.
    const std::string log = fdsupd_.log();
    const int dropped = countLines(log, "Dropped notify datagram");
    const int full = countLines(log, "descriptor store is full");
    std::cout << "notify flood: " << flood.at("notify_dropped") << " datagrams dropped, " << dropped
              << " lines logged; " << full << " lines for the full store\n";
    EXPECT_GE(dropped, 1);
    EXPECT_LE(dropped, logBound(started_));
    EXPECT_GE(full, 1);
    EXPECT_LE(full, logBound(started_));
    const int stray = countLines(log, "sent without FDSTORE=1"); // debug, as the harness runs fdsupd
    EXPECT_GE(stray, 1);
    EXPECT_LE(stray, logBound(started_));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// A worker abusing its channel, and the ERROR fdsupd must answer (reported by the worker).
struct ChannelAbuse {
    const char *mode;
    const char *answer;
    const char *logged; // the reason in fdsupd's "channel closed" line
};

class ChannelFloods : public Floods, public ::testing::WithParamInterface<ChannelAbuse> {};

TEST_P(ChannelFloods, TheChannelIsClosedWithOneLineAndEveryoneElseIsServed)
{
    const ChannelAbuse abuse = GetParam();
    ASSERT_NO_FATAL_FAILURE(startDaemon(R"(
[socket.bad]
listen = "tcp://127.0.0.1:0"

[service.bad]
command = [)" + quoted(requireEnv("FDSUP_TEST_HOSTILE_WORKER")) +
                                        ", " + quoted(abuse.mode) + ", " + quoted(fdsupd_.reportPath()) + R"(]
sockets = ["bad"]
instances = 0
ready = "channel"
handoff = true
restart = "never"
stop_timeout = "5s"
)"));
    call("Start", {{"service", "bad"}}); // running, with no instance yet
    call("Scale", {{"service", "bad"}, {"instances", 1}});
    const auto answer = fdsupd_.reports().waitFor(
        [](const std::string &m) {
            return m.starts_with("error ") || m.starts_with("closed") || m.starts_with("timeout ");
        },
        kEventDeadline);
    ASSERT_TRUE(answer.has_value()) << "the hostile worker reported nothing";
    EXPECT_THAT(*answer, HasSubstr(abuse.answer));

    expectEveryoneElseServed();
    call("Stop", {{"service", "bad"}});
    expectFdsBack();
    const std::string log = fdsupd_.log();
    EXPECT_EQ(countLines(log, std::string("channel closed: ") + abuse.logged), 1)
        << "one line for the channel fdsupd closed";
    if (std::string(abuse.mode) == "handoff-flood") {
        // Past the HANDOFF burst: every one of them refused (a pipe), a few lines.
        const auto answers = std::stol(answer->substr(answer->find(" after ") + 7));
        std::cout << "handoff flood: " << answers << " refused before EBUSY, "
                  << countLines(log, "handoff of connection") << " lines logged\n";
        EXPECT_GE(answers, 16384);
        EXPECT_GE(countLines(log, "handoff of connection"), 1);
        EXPECT_LE(countLines(log, "handoff of connection"), logBound(started_));
    }
    EXPECT_EQ(fdsupd_.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Abuses, ChannelFloods,
                         ::testing::Values(ChannelAbuse{"garbage", "error 74", "malformed message"},
                                           ChannelAbuse{"flood", "error 16", "more than 2048 messages"},
                                           ChannelAbuse{"oversized", "error 74", "malformed message"},
                                           ChannelAbuse{"fd-on-ready", "error 74", "malformed message"},
                                           ChannelAbuse{"handoff-flood", "error 16",
                                                        "more than 2048 messages"}),
                         [](const auto &param) {
                             std::string name = param.param.mode;
                             std::erase(name, '-');
                             return name;
                         });

// ---- control clients ----

// A raw connection to the control socket (blocking), for what fdsupctl never sends.
UniqueFd rawControl(const std::string &path)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.copy(addr.sun_path, sizeof addr.sun_path - 1);
    if (!fd || connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0) {
        throw std::runtime_error("connect " + path + ": " + std::strerror(errno));
    }
    const timeval timeout{10, 0}; // a reply nobody sends for 10 s is a failure
    (void)setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    return fd;
}

// Sends data until done or the socket fails; the bytes sent.
std::size_t sendUpTo(BorrowedFd fd, std::string_view data)
{
    std::size_t sent = 0;
    while (sent < data.size()) {
        const ssize_t n = ::send(fd.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        sent += static_cast<std::size_t>(n);
    }
    return sent;
}

// Replies up to and including the next NUL; "" at EOF or after 10 s.
std::string readReply(BorrowedFd fd)
{
    std::string reply;
    char c = 0;
    while (::recv(fd.get(), &c, 1, 0) == 1) {
        if (c == '\0') {
            return reply;
        }
        reply += c;
    }
    return "";
}

// Whether fdsupd closed the connection (EOF once what it sent is read).
bool closedByPeer(BorrowedFd fd)
{
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return true;
        }
        if (n < 0 && errno != EINTR) {
            return false; // the 10 s timeout: still open
        }
    }
}

using ControlFloods = Floods;

TEST_F(ControlFloods, GarbageInvalidJsonAndAHundredMegabytesAreRefusedAndMemoryStaysBounded)
{
    ASSERT_NO_FATAL_FAILURE(startDaemon(""));
    const std::string path = fdsupd_.controlPath();
    {
        // 10,000 malformed requests on one connection, pipelined: each gets
        // InvalidRequest, the connection stays usable, and fdsupd logs none
        // of them above debug.
        UniqueFd fd = rawControl(path);
        std::thread writer([&] {
            for (int i = 0; i < 5000; ++i) {
                sendUpTo(fd.borrow(), std::string("\x01\xfe garbage \xff", 12) + '\0');
                sendUpTo(fd.borrow(), std::string("{\"method\": \"io.fdsup.Manager.Status\", ") + '\0');
            }
        });
        int invalid = 0;
        for (int i = 0; i < 10000; ++i) {
            const std::string reply = readReply(fd.borrow());
            invalid += reply.find("io.fdsup.Manager.InvalidRequest") != std::string::npos ? 1 : 0;
        }
        writer.join();
        EXPECT_EQ(invalid, 10000);
        sendUpTo(fd.borrow(), std::string("{\"method\":\"io.fdsup.Manager.Status\"}") + '\0');
        EXPECT_THAT(readReply(fd.borrow()), HasSubstr("\"services\""));
    }
    {
        // Half a request, then gone.
        UniqueFd fd = rawControl(path);
        sendUpTo(fd.borrow(), "{\"method\":\"io.fdsup.Manager.Sta");
    }
    const long peakBefore = peakRssKibOf(fdsupd_.pid());
    {
        // 100 MB in one request: RequestTooLarge once the 1 MiB limit is
        // passed, then the connection is closed under the sender.
        UniqueFd fd = rawControl(path);
        const std::string head = "{\"method\":\"io.fdsup.Manager.Status\",\"parameters\":{\"x\":\"";
        const std::string chunk(std::size_t{1} << 20, 'a');
        std::size_t sent = sendUpTo(fd.borrow(), head);
        for (int i = 0; i < 100 && sent == head.size() + static_cast<std::size_t>(i) * chunk.size(); ++i) {
            sent += sendUpTo(fd.borrow(), chunk);
        }
        EXPECT_LT(sent, std::size_t{100} << 20) << "fdsupd read all of it";
        EXPECT_THAT(readReply(fd.borrow()), HasSubstr("io.fdsup.Manager.RequestTooLarge"));
        EXPECT_TRUE(closedByPeer(fd.borrow()));
    }
    // Generous: the limit is 1 MiB; a copy of the request would be 100 MiB.
    const long peakAfter = peakRssKibOf(fdsupd_.pid());
    std::cout << "100 MB request: fdsupd's VmHWM " << peakBefore << " -> " << peakAfter << " KiB\n";
    EXPECT_LT(peakAfter - peakBefore, 32 * 1024) << "VmHWM " << peakBefore << " -> " << peakAfter << " KiB";

    expectEveryoneElseServed();
    expectFdsBack();
    const std::string log = fdsupd_.log();
    // Debug only (the client is told), and a few lines a time: the harness runs fdsupd at debug level.
    EXPECT_GE(countLines(log, "Invalid control request"), 1);
    EXPECT_LE(countLines(log, "Invalid control request"), logBound(started_));
    EXPECT_EQ(countLines(log, "exceeds 1048576 bytes"), 1);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(ControlFloods, TenThousandConnectionsAreClosedAndIdleOnesTimeOutSoTheOperatorGetsIn)
{
    // Our own descriptor limit: 10,000 connections and then some.
    rlimit limit{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
    const rlimit saved = limit;
    ASSERT_GE(limit.rlim_max, 11000U) << "the hard RLIMIT_NOFILE is too low for this test";
    limit.rlim_cur = std::max<rlim_t>(limit.rlim_cur, 11000);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);
    ASSERT_NO_FATAL_FAILURE(startDaemon("", "control_idle_timeout = \"3s\"\n"));
    {
        std::vector<UniqueFd> clients;
        clients.reserve(10000);
        for (int i = 0; i < 10000; ++i) {
            clients.push_back(rawControl(fdsupd_.controlPath()));
        }
        // Past control_clients (64), each is closed at once; the 64 that got
        // in send nothing, and are closed at control_idle_timeout. Then the
        // operator gets in, while this test still holds all 10,000.
        const auto status = [&] {
            return fdsupd_.fdsupctl({"status"}).exitCode == 0;
        };
        EXPECT_TRUE(waitUntil(status)) << "the operator never got in";
        int closed = 0;
        for (const auto &fd : clients) {
            closed += closedByPeer(fd.borrow()) ? 1 : 0;
        }
        EXPECT_EQ(closed, 10000);
        expectEveryoneElseServed();
        expectFdsBack();
    }
    const std::string log = fdsupd_.log();
    const int refused = countLines(log, "too many clients (limit 64)");
    std::cout << "10,000 connections: " << refused << " lines for the refused ones\n";
    EXPECT_GE(refused, 1);
    EXPECT_LE(refused, logBound(started_)) << "one line per refused connection floods the log";
    const int idle = countLines(log, "sent no request in 3s");
    EXPECT_GE(idle, 1);
    EXPECT_LE(idle, logBound(started_));
    EXPECT_EQ(fdsupd_.stop(), 0);
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

TEST_F(ControlFloods, ClientsHangingUpMidReplyOrNeverReadingLeaveNothingBehind)
{
    ASSERT_NO_FATAL_FAILURE(startDaemon(""));
    const std::string path = fdsupd_.controlPath();
    {
        // A rollout asked to wait, its client gone at once: it completes anyway.
        UniqueFd fd = rawControl(path);
        sendUpTo(fd.borrow(),
                 std::string(
                     R"({"method":"io.fdsup.Manager.Restart","parameters":{"service":"web","wait":true}})") +
                     '\0');
    }
    {
        // Logs --follow: the first reply read, then gone.
        UniqueFd fd = rawControl(path);
        sendUpTo(
            fd.borrow(),
            std::string(R"({"method":"io.fdsup.Manager.Logs","parameters":{"service":"good","follow":true},)"
                        R"("more":true})") +
                '\0');
        EXPECT_THAT(readReply(fd.borrow()), HasSubstr("\"continues\":true"));
    }
    EXPECT_TRUE(waitUntil([&] {
        const auto reply = fdsupd_.call("io.fdsup.Manager.RolloutStatus", {{"service", "web"}});
        const auto &rollout = reply.parameters.value("rollout", nlohmann::json());
        return rollout.is_object() && rollout.value("state", "") == "succeeded";
    })) << "the rollout whose client went away did not complete";
    const long peakBefore = peakRssKibOf(fdsupd_.pid());
    {
        // A client that asks and never reads: dropped past 16 MiB of unread replies.
        UniqueFd fd = rawControl(path);
        const std::string ask = std::string(R"({"method":"org.varlink.service.GetInterfaceDescription",)"
                                            R"("parameters":{"interface":"io.fdsup.Manager"}})") +
                                '\0';
        std::string asks;
        for (int i = 0; i < 100000; ++i) {
            asks += ask;
        }
        EXPECT_LT(sendUpTo(fd.borrow(), asks), asks.size())
            << "fdsupd kept answering a client that never reads";
    }
    const long peakAfter = peakRssKibOf(fdsupd_.pid());
    std::cout << "a client that never reads: fdsupd's VmHWM " << peakBefore << " -> " << peakAfter
              << " KiB\n";
#ifdef __SANITIZE_ADDRESS__
    // Under ASan freed blocks stay in its quarantine (256 MiB by default) and
    // every block has redzones: the peak there measures ASan, not fdsupd.
    constexpr long kPeakGrowthKib = 512 * 1024;
#else
    // What is queued for it is capped at 16 MiB (ControlOptions::maxOutput),
    // plus one reply (a few KiB) and the heap's slack: a buffer that grew by
    // doubling reached 32 MiB, and copied itself on the way.
    constexpr long kPeakGrowthKib = 16 * 1024 + 4 * 1024;
#endif
    EXPECT_LT(peakAfter - peakBefore, kPeakGrowthKib)
        << "VmHWM " << peakBefore << " -> " << peakAfter << " KiB";

    expectEveryoneElseServed();
    expectFdsBack();
    EXPECT_EQ(countLines(fdsupd_.log(), "does not read its replies"), 1);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
