// Crash recovery without systemd: kill -9 of fdsupd under load, a new fdsupd takes the listeners over.
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "http_load.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

constexpr int kInstances = 2;

// Pidfds of processes that are not the test's children (a killed fdsupd's
// workers): whether each exited, and SIGKILL for those left when the test
// ends, so that a failing test leaves no worker behind.
class Watched {
public:
    explicit Watched(const std::set<pid_t> &pids)
    {
        for (const pid_t pid : pids) {
            UniqueFd fd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
            if (!fd) {
                throw std::runtime_error("pidfd_open " + std::to_string(pid));
            }
            fds_.emplace(pid, std::move(fd));
        }
    }
    ~Watched()
    {
        for (const auto &[pid, fd] : fds_) {
            (void)syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0);
        }
    }
    Watched(const Watched &) = delete;
    Watched &operator=(const Watched &) = delete;

    [[nodiscard]] bool exited(pid_t pid) const
    {
        pollfd pfd{fds_.at(pid).get(), POLLIN, 0};
        return poll(&pfd, 1, 0) == 1;
    }
    [[nodiscard]] bool allExited() const
    {
        return std::all_of(fds_.begin(), fds_.end(),
                           [this](const auto &entry) { return exited(entry.first); });
    }
    // Waits on the pidfds themselves (no polling of /proc).
    bool waitAllExited(std::chrono::milliseconds deadline) const
    {
        const auto until = std::chrono::steady_clock::now() + deadline;
        for (const auto &[pid, fd] : fds_) {
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                until - std::chrono::steady_clock::now());
            pollfd pfd{fd.get(), POLLIN, 0};
            if (poll(&pfd, 1, static_cast<int>(std::max(left.count(), 0L))) != 1) {
                return false;
            }
        }
        return true;
    }

private:
    std::map<pid_t, UniqueFd> fds_;
};

class Recovery : public DaemonTest<> {
protected:
    // A fixed port: the second fdsupd must find the first one's address in use.
    std::string config(const std::string &mode = "serve")
    {
        if (wrapped_) {
            return wrappedConfig();
        }
        if (keepAlive_) {
            // The handoff example on the worker channel: its channel dies
            // with fdsupd, and it serves on without one until signalled.
            return fdsupd_.supervisorTable() +
                   "[socket.web]\nlisten = \"tcp://127.0.0.1:" + std::to_string(port_) +
                   "\"\n\n[service.web]\ncommand = [" + Json(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE")).dump() +
                   "]\nsockets = [\"web\"]\ninstances = " + std::to_string(kInstances) +
                   "\nready = \"channel\"\nhandoff = true\ndrain_timeout = \"10s\"\nstop_timeout = \"10s\"\n";
        }
        writeFile(fdsupd_.dir() / "mode", mode + "\n");
        return fdsupd_.supervisorTable() +
               "[socket.web]\nlisten = \"tcp://127.0.0.1:" + std::to_string(port_) + "\"\n" +
               (reusePort_ ? "reuse_port = true\n" : "") + "\n[service.web]\ncommand = " +
               fdsupd_.workerCommand("serve", {"--mode-file", (fdsupd_.dir() / "mode").string()}) +
               "\nsockets = [\"web\"]\nready = \"notify\"\ninstances = " + std::to_string(kInstances) +
               "\nready_timeout = \"2s\"\nstop_timeout = \"10s\"\n";
    }

    // An unmodified python3 http.server under the real preload shim: it holds
    // the shim's dup() of the listener, at a number of its own. It logs
    // every request: to fdsupd's own stderr (output = "inherit"), which
    // outlives fdsupd, where a pipe to the dead fdsupd (output = "log")
    // would fail every request with EPIPE (docs/fdsupd.md).
    // The page it serves is written once, before the first server starts:
    // rewritten for the second fdsupd (truncated, then written) while the
    // orphans serve it, an answer could get the old size's headers and then
    // read an empty file: cut after its headers, a failure of the test's own making.
    std::string wrappedConfig()
    {
        if (const auto page = fdsupd_.dir() / "index.html"; !std::filesystem::exists(page)) {
            writeFile(page, R"({"pid": 1})");
        }
        return fdsupd_.supervisorTable(requireEnv("FDSUP_TEST_PRELOAD")) +
               "[socket.web]\nlisten = \"tcp://127.0.0.1:" + std::to_string(port_) +
               "\"\n\n[service.web]\ncommand = [\"/usr/bin/python3\", \"-m\", \"http.server\", \"" +
               std::to_string(appPort_) + "\", \"--bind\", \"127.0.0.1\"]\nworking_directory = " +
               Json(fdsupd_.dir().path().string()).dump() +
               "\nsockets = [\"web\"]\nwrap = \"preload\"\npreload_map = { web = \"tcp://127.0.0.1:" +
               std::to_string(appPort_) +
               "\" }\nready = \"bound\"\ninstances = " + std::to_string(kInstances) +
               "\nstop_timeout = \"10s\"\noutput = \"inherit\"\n";
    }

    // fdsupd with kInstances ready workers; their pids.
    std::set<pid_t> startServing()
    {
        std::string why;
        if (!fdsupd_.start(config(), why)) {
            throw std::runtime_error(why);
        }
        std::set<pid_t> pids;
        EXPECT_TRUE(waitUntil([&] {
            const auto status = fdsupd_.status("web");
            pids = instancePids(status);
            return status.at("ready") == kInstances;
        }));
        return pids;
    }

    // kill -9 of fdsupd: its workers, now orphans, keep serving.
    void killFdsupd()
    {
        ASSERT_EQ(kill(fdsupd_.pid(), SIGKILL), 0);
        ASSERT_EQ(fdsupd_.stop(), -SIGKILL);
    }

    void killNineUnderLoadThenTakeOver();

    int port_ = freePort();
    int appPort_ = freePort();
    bool reusePort_ = false;
    bool wrapped_ = false;
    bool keepAlive_ = false;
};

// "socket:[INODE]" of the listening TCP socket on 127.0.0.1:port, from the
// kernel's table, "" when there is none.
std::string listenerOn(int port)
{
    std::ifstream tcp("/proc/net/tcp");
    char local[32];
    (void)std::snprintf(local, sizeof local, "0100007F:%04X", port);
    for (std::string line; std::getline(tcp, line);) {
        std::istringstream in(line);
        std::string slot, address, remote, state, queues, timer, retransmits, uid, timeout, inode;
        in >> slot >> address >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
        if (address == local && state == "0A") {
            return "socket:[" + inode + "]";
        }
    }
    return "";
}

bool holds(pid_t pid, const std::string &socket)
{
    const auto fds = openFds(pid);
    return std::any_of(fds.begin(), fds.end(), [&](const auto &fd) { return fd.second == socket; });
}

TEST_F(Recovery, KillNineUnderLoadThenANewFdsupdTakesOverWithoutARefusal)
{
    killNineUnderLoadThenTakeOver();
}

// SO_REUSEPORT would let the new fdsupd bind beside its orphans: it looks
// for them first, and takes the same socket over all the same.
TEST_F(Recovery, WithReusePortTheListenerIsTakenOverNotBoundBeside)
{
    reusePort_ = true;
    killNineUnderLoadThenTakeOver();
}

// A wrapped server never inherited the socket: it holds the shim's dup(),
// which the /proc scan finds the same way.
TEST_F(Recovery, AWrappedServerHoldingTheShimsDupIsTakenOverToo)
{
    wrapped_ = true;
    killNineUnderLoadThenTakeOver();
}

// Keep-alive clients of a handoff service (libactivate's http-keepalive):
// the orphans keep their connections until they are stopped.
TEST_F(Recovery, KeepAliveClientsOfAHandoffServiceSeeNoRefusalNorFailure)
{
    keepAlive_ = true;
    killNineUnderLoadThenTakeOver();
}

void Recovery::killNineUnderLoadThenTakeOver()
{
    const auto old = startServing();
    ASSERT_EQ(old.size(), static_cast<std::size_t>(kInstances));
    const Watched orphans(old);
    // The listener, as the kernel lists it and every worker holds it.
    const std::string listener = listenerOn(port_);
    ASSERT_THAT(listener, ::testing::StartsWith("socket:["));
    for (const pid_t pid : old) {
        ASSERT_TRUE(holds(pid, listener)) << pid;
    }

    HttpLoad load(port_, 4, keepAlive_ ? HttpLoad::Mode::KeepAlive : HttpLoad::Mode::Fresh);
    load.start();
    ASSERT_TRUE(load.waitForRequests(load.requests(), 50, kEventDeadline));
    killFdsupd();
    // Nobody supervises them now; they still serve.
    ASSERT_TRUE(load.waitForRequests(load.requests(), 50, kEventDeadline));
    EXPECT_FALSE(orphans.exited(*old.begin()));

    std::string why;
    ASSERT_TRUE(fdsupd_.start(config(), why)) << why;
    // Replaced once the new instances are ready: SIGTERM, and their pidfds say they exited.
    EXPECT_TRUE(orphans.waitAllExited(kEventDeadline)) << "an orphan survived";
    std::set<pid_t> now;
    ASSERT_TRUE(waitUntil([&] {
        const auto status = fdsupd_.status("web");
        now = instancePids(status);
        return status.at("ready") == kInstances && status.at("orphaned").empty();
    }));
    ASSERT_TRUE(load.waitForRequests(load.requests(), 50, kEventDeadline));
    const auto report = load.stop();
    std::cout << report.summary() << "\n";

    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed(), 0U) << report.summary();
    // A keep-alive connection an orphan closes when it stops (it has no
    // channel to hand it over) is the replayable keep-alive race, no failure.
    EXPECT_EQ(report.ok + report.keepAliveRace, report.requests);
    EXPECT_EQ(now.size(), static_cast<std::size_t>(kInstances));
    for (const pid_t pid : now) {
        EXPECT_THAT(old, Not(Contains(pid)));
        EXPECT_TRUE(holds(pid, listener)) << "the new workers serve the very same socket";
    }
    EXPECT_TRUE(holds(fdsupd_.pid(), listener)) << "fdsupd holds the predecessor's listener (same inode)";
    EXPECT_EQ(listenerOn(port_), listener) << "one listener, never closed";
    EXPECT_THAT(fdsupd_.log(), HasSubstr("Took over socket 'web'"));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("Stopping 2 orphaned workers of web"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Recovery, OrphansKeepServingWhileTheNewInstancesNeverGetReady)
{
    const auto old = startServing();
    const Watched orphans(old);
    killFdsupd();

    // The next build never gets ready: the orphans must not be stopped.
    std::string why;
    ASSERT_TRUE(fdsupd_.start(config("hang"), why)) << why;
    HttpLoad load(port_, 2, HttpLoad::Mode::Fresh);
    load.start();
    // ready_timeout (2s) passes for the first new instances, which are killed and restarted.
    ASSERT_TRUE(waitUntil([&] { return fdsupd_.status("web").at("restarts").get<int>() >= kInstances; }));
    ASSERT_TRUE(load.waitForRequests(load.requests(), 50, kEventDeadline));

    const auto status = fdsupd_.status("web");
    ASSERT_EQ(status.at("orphaned").size(), old.size());
    for (const auto &orphan : status.at("orphaned")) {
        EXPECT_THAT(old, Contains(orphan.at("pid").get<pid_t>()));
        EXPECT_EQ(orphan.at("state"), "orphaned");
        EXPECT_EQ(orphan.at("stopping"), false);
        EXPECT_THAT(orphan.at("command").get<std::string>(), HasSubstr("sd-worker"));
    }
    EXPECT_FALSE(orphans.exited(*old.begin()));
    const auto table = fdsupd_.fdsupctl({"status"});
    EXPECT_EQ(table.exitCode, 0) << table.err;
    EXPECT_THAT(table.out, HasSubstr("orphaned"));
    EXPECT_THAT(table.out, HasSubstr(std::to_string(*old.begin())));

    // Stopping fdsupd stops them too: nothing of the predecessor survives it.
    const auto report = load.stop();
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed(), 0U) << report.summary();
    EXPECT_EQ(fdsupd_.stop(), 0);
    EXPECT_TRUE(orphans.waitAllExited(kEventDeadline));
}

TEST_F(Recovery, APortHeldByAnotherProgramIsRefusedWithItsPidCommandAndReason)
{
    writeFile(fdsupd_.dir() / "index.html", "{}");
    BackgroundProcess python({"/usr/bin/python3", "-m", "http.server", std::to_string(port_), "--bind",
                              "127.0.0.1", "--directory", fdsupd_.dir().path().string()},
                             fdsupd_.dir() / "python.log");
    ASSERT_TRUE(waitUntil([&] { return answersOk(port_, 1s); }));

    std::string why;
    ASSERT_FALSE(fdsupd_.start(config(), why));
    EXPECT_THAT(why, HasSubstr("status 4"));
    EXPECT_THAT(why, HasSubstr("Failed to bind socket 'web'"));
    EXPECT_THAT(why, HasSubstr("pid " + std::to_string(python.pid()) + " (/usr/bin/python3 -m http.server"));
    EXPECT_THAT(why, HasSubstr("will not be taken over: it is not an fdsupd worker"));
    EXPECT_THAT(why, HasSubstr("nothing started"));
    EXPECT_TRUE(answersOk(port_)) << "the other program still serves";
    EXPECT_EQ(python.wait(0ms), std::nullopt);
}

TEST_F(Recovery, ALivePredecessorIsNeverTakenOver)
{
    const auto workers = startServing();
    const std::string first = config();
    DaemonHarness second;
    std::string why;
    ASSERT_FALSE(second.start(first, why)) << "the same configuration, the same control socket";
    EXPECT_THAT(why, HasSubstr("fdsupd pid " + std::to_string(fdsupd_.pid()) + " ("));
    EXPECT_THAT(why, HasSubstr("is running and answers on " + fdsupd_.controlPath()));
    EXPECT_THAT(why, HasSubstr("nothing started"));

    // The first one is untouched: same workers, serving.
    EXPECT_EQ(instancePids(fdsupd_.status("web")), workers);
    EXPECT_TRUE(answersOk(port_));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
