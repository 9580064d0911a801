// Faults: a real fdsupd, real workers and real clients when a process is killed mid-step, fdsupd runs
// out of descriptors, or a port or a directory is not what the configuration needs (docs/fdsupd.md#faults).
//
// Every test asserts the error is clear (what, where, why), that a bystander
// service (`other`, http-keepalive) answered a real client (curl) throughout,
// that fdsupd's descriptor count comes back to its baseline, and that nothing
// fdsupd or a worker held is lost.
#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "faults.hpp"
#include "load_clients.hpp"
#include "seqnum_clients.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Every error of a client is the end of its connection (EOF or a reset),
// never a timeout: a connection nobody serves any more was closed, not left stuck.
void expectClosedNotStuck(const std::vector<std::string> &errors)
{
    for (const auto &e : errors) {
        EXPECT_TRUE(e.find("EOF") != std::string::npos || e.find("reset") != std::string::npos) << e;
    }
}

// 1. The old instance is killed while it drains: DRAIN was sent, nothing
// was handed over yet. Its connections end (EOF) with it, none is left
// hanging, the rollout completes, and the next restart hands over as
// usual. (Killed after handing over half: Handoff.AWorkerThatDiesMidHandoff...)
TEST_F(Faults, TheOldWorkerKilledWhileDrainingClosesItsConnectionsAndTheServiceGoesOn)
{
    ASSERT_NO_FATAL_FAILURE(start(seqnumWeb()));
    SeqnumClients clients(fdsupd_.port("web"), kClients);
    ASSERT_TRUE(waitUntil([&] { return clients.rounds() >= 10 * kClients; }));
    const pid_t old = onlyPid();
    const pid_t replacement = restartWithTheOldOneStopped(old);
    ASSERT_NE(replacement, 0);

    ASSERT_EQ(kill(old, SIGKILL), 0);
    ASSERT_TRUE(waitUntil([&] { return clients.errors().size() == kClients; }))
        << ::testing::PrintToString(clients.errors());
    expectClosedNotStuck(clients.errors());
    clients.close();
    ASSERT_TRUE(
        waitUntil([&] { return instancePids(fdsupd_.status("web")) == std::set<pid_t>{replacement}; }));
    EXPECT_TRUE(waitUntil([&] { return fdsupd_.log().find("rollout 1 succeeded") != std::string::npos; }));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("(pid " + std::to_string(old) + ") killed by SIGKILL"));
    const auto web = connections();
    EXPECT_EQ(web.at("handed"), 0);
    EXPECT_TRUE(web.at("held").empty());
    expectFdsAtBaseline();

    expectAHandoffRestartWorks();
    expectFdsAtBaseline();
    expectBystanderServed();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// 1. The new instance is killed while it adopts: the old one handed every
// connection over, fdsupd gave each to the replacement (ADOPT queued in its
// channel: it is stopped), and the replacement dies before reading them.
// Those connections end with it (the kernel closes what was in flight), none
// is held or stuck, the slot is restarted, and the next restart works.
TEST_F(Faults, TheNewWorkerKilledWhileAdoptingClosesWhatItWasGivenAndTheSlotIsRestarted)
{
    ASSERT_NO_FATAL_FAILURE(start(seqnumWeb("restart = \"on-failure\"\nrestart_delay = \"100ms\"\n")));
    SeqnumClients clients(fdsupd_.port("web"), kClients);
    ASSERT_TRUE(waitUntil([&] { return clients.rounds() >= 10 * kClients; }));
    const pid_t old = onlyPid();
    const pid_t replacement = restartWithTheOldOneStopped(old);
    ASSERT_NE(replacement, 0);

    ASSERT_EQ(kill(replacement, SIGSTOP), 0);
    ASSERT_EQ(kill(old, SIGCONT), 0);
    // The old one hands everything over and exits; fdsupd gives it all out.
    ASSERT_TRUE(waitUntil([&] {
        const auto web = connections();
        return web.at("adopted") == kClients && stateOf(old).empty();
    })) << connections().dump();
    EXPECT_TRUE(connections().at("held").empty());
    ASSERT_EQ(kill(replacement, SIGKILL), 0);
    ASSERT_TRUE(waitUntil([&] { return clients.errors().size() == kClients; }))
        << ::testing::PrintToString(clients.errors());
    expectClosedNotStuck(clients.errors());
    clients.close();
    // A fresh instance of the new generation takes the slot.
    ASSERT_TRUE(waitUntil([&] {
        const auto status = fdsupd_.status("web");
        const auto pids = instancePids(status);
        return status.at("ready") == 1 && pids.size() == 1 && pids.count(replacement) == 0;
    })) << fdsupd_.status("web").dump();
    EXPECT_THAT(fdsupd_.log(), HasSubstr("(pid " + std::to_string(replacement) + ") killed by SIGKILL"));
    expectFdsAtBaseline();

    expectAHandoffRestartWorks();
    expectFdsAtBaseline();
    expectBystanderServed();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// The lowest descriptor number free in process pid: with RLIMIT_NOFILE at
// that number, it can open no descriptor at all.
int lowestFreeFd(pid_t pid)
{
    const auto fds = openFds(pid);
    int n = 0;
    while (fds.count(n) != 0) {
        ++n;
    }
    return n;
}

constexpr const char *kAcceptFailed = "Failed to accept a control connection: Too many open files";
// fdsupd's LogLimit (supervisor/io/log_limit.hpp): 5 lines per 10 s per source.
constexpr std::size_t kAcceptWarnings = 5;

// 4. fdsupd at its descriptor limit while a worker hands its connections
// over: each HANDOFF is refused with EMFILE and the limit named, the worker
// keeps and serves every connection (no client sees anything), fdsupd keeps
// what it holds and answers on the control connection it had; a control
// client that needs a new descriptor waits in the backlog and is answered
// once the limit is raised back. Then the rollout completes, the descriptors
// are back to the baseline and the next handoff works.
//
// Not a spin: the control socket stays readable while accept() fails with
// EMFILE, so a loop that retried at once would wake up without end. fdsupd
// retries every 100 ms and logs each failure, at debug (the harness's level)
// but for a warning a few times a time (io/log_limit.hpp): over a window that lasts until
// ten retries were logged (a second at least), the retries are bounded by
// the wall time (twice the rate it promises: a loaded machine only makes
// fewer), and the CPU it used stays under half the window (a spinning loop
// uses a core: the whole window).
TEST_F(Faults, AtItsDescriptorLimitAHandoffIsRefusedWithEmfileAndTheWorkerServesItOn)
{
    ASSERT_NO_FATAL_FAILURE(start(seqnumWeb()));
    const pid_t daemon = fdsupd_.pid();
    const int port = fdsupd_.port("web");
    SeqnumClients clients(port, kClients);
    ASSERT_TRUE(waitUntil([&] { return clients.rounds() >= 10 * kClients; }));
    const pid_t old = onlyPid();
    const pid_t replacement = restartWithTheOldOneStopped(old);
    ASSERT_NE(replacement, 0);
    {
        // The control connection for the calls made at the limit, accepted before it.
        auto control = varlink::Client::connect(fdsupd_.controlPath(), 10s);
        ASSERT_TRUE(control) << control.error().message;
        auto refused = [&] {
            auto reply = control->call(
                varlink::Call{"io.fdsup.Manager.Connections", {{"service", "web"}}, false, false});
            if (!reply) {
                throw std::runtime_error(reply.error().message);
            }
            return reply->parameters.at("services").at(0).at("refused").get<int>();
        };
        ASSERT_EQ(refused(), 0);

        rlimit original{};
        ASSERT_EQ(prlimit(daemon, RLIMIT_NOFILE, nullptr, &original), 0);
        const rlimit none{static_cast<rlim_t>(lowestFreeFd(daemon)), original.rlim_max};
        ASSERT_EQ(prlimit(daemon, RLIMIT_NOFILE, &none, nullptr), 0);
        const auto windowStart = std::chrono::steady_clock::now();
        const double cpuStart = cpuSecondsOf(daemon);
        const std::size_t retriesStart = occurrences(fdsupd_.log(), kAcceptFailed);
        BackgroundProcess waiting({requireEnv("FDSUPCTL"), "-s", fdsupd_.controlPath(), "status"},
                                  fdsupd_.dir() / "waiting.log");

        ASSERT_EQ(kill(old, SIGCONT), 0);
        ASSERT_TRUE(waitUntil([&] { return refused() == kClients; })) << refused();
        // Said with its cause; a burst of refusals is logged a few lines at a
        // time (io/log_limit.hpp), the count is refused()'s.
        const std::size_t said = occurrences(
            fdsupd_.log(),
            "fdsupd could not receive the connection: Too many open files (its RLIMIT_NOFILE is " +
                std::to_string(none.rlim_cur) + "); the worker keeps it\n");
        EXPECT_GE(said, 1U);
        EXPECT_LE(said, static_cast<std::size_t>(kClients));
        // The old worker serves on every connection it kept.
        const std::uint64_t kept = clients.rounds();
        ASSERT_TRUE(waitUntil([&] { return clients.rounds() >= kept + 10 * kClients; }));
        EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
        for (const int clientPort : clients.localPorts()) {
            EXPECT_EQ(serverPidOf(port, clientPort, {old, replacement}), old) << "client port " << clientPort;
        }

        ASSERT_TRUE(
            waitUntil([&] { return occurrences(fdsupd_.log(), kAcceptFailed) >= retriesStart + 10; }));
        const double window =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - windowStart).count();
        const double cpu = cpuSecondsOf(daemon) - cpuStart;
        const std::size_t retries = occurrences(fdsupd_.log(), kAcceptFailed) - retriesStart;
        std::cout << "[ figures  ] at RLIMIT_NOFILE " << none.rlim_cur << " for " << window
                  << " s: " << retries << " accept retries, " << cpu << " s of CPU\n";
        EXPECT_LE(static_cast<double>(retries), window / 0.05 + 2);
        EXPECT_LT(cpu, window / 2);
        // Ten failures a second for as long as it lasts: a few are warnings.
        const std::size_t warned = occurrences(fdsupd_.log(), std::string("warning ") + kAcceptFailed);
        EXPECT_GE(warned, 1U);
        EXPECT_LE(warned, kAcceptWarnings * (static_cast<std::size_t>(window / 10) + 1)) << warned;

        // Descriptors free up: the waiting client is answered.
        ASSERT_EQ(prlimit(daemon, RLIMIT_NOFILE, &original, nullptr), 0);
        const auto answered = waiting.wait(kEventDeadline);
        ASSERT_TRUE(answered.has_value());
        EXPECT_EQ(*answered, 0) << waiting.log();
        EXPECT_THAT(waiting.log(), HasSubstr("other"));
    }
    // Its clients leave: the old worker has nothing left and exits, the rollout ends.
    clients.close();
    ASSERT_TRUE(
        waitUntil([&] { return instancePids(fdsupd_.status("web")) == std::set<pid_t>{replacement}; }));
    EXPECT_TRUE(waitUntil([&] { return fdsupd_.log().find("rollout 1 succeeded") != std::string::npos; }));
    expectFdsAtBaseline();

    expectAHandoffRestartWorks();
    expectFdsAtBaseline();
    expectBystanderServed();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// 4. A worker restarted while fdsupd is at its descriptor limit: each start
// fails naming EMFILE and what needed the descriptor, is retried with the
// backoff, and succeeds once the limit is back; the failed starts leave no
// descriptor behind.
TEST_F(Faults, AWorkerRestartedAtTheDescriptorLimitFailsWithEmfileAndStartsOnceItIsBack)
{
    ASSERT_NO_FATAL_FAILURE(start(seqnumWeb("restart = \"always\"\nrestart_delay = \"50ms\"\n"
                                            "restart_delay_max = \"200ms\"\nstart_limit_burst = 1000\n")));
    const pid_t daemon = fdsupd_.pid();
    const pid_t old = onlyPid();
    rlimit original{};
    ASSERT_EQ(prlimit(daemon, RLIMIT_NOFILE, nullptr, &original), 0);
    const rlimit none{static_cast<rlim_t>(lowestFreeFd(daemon)), original.rlim_max};
    ASSERT_EQ(prlimit(daemon, RLIMIT_NOFILE, &none, nullptr), 0);
    ASSERT_EQ(kill(old, SIGKILL), 0);
    const std::string failed = "Failed to start web[0]: ";
    ASSERT_TRUE(waitUntil([&] { return occurrences(fdsupd_.log(), failed) >= 2; }));
    const std::string log = fdsupd_.log();
    const std::string line =
        log.substr(log.find(failed), log.find('\n', log.find(failed)) - log.find(failed));
    EXPECT_THAT(line, HasSubstr("Too many open files")) << line;
    ASSERT_EQ(prlimit(daemon, RLIMIT_NOFILE, &original, nullptr), 0);
    ASSERT_TRUE(waitUntil([&] {
        const auto status = fdsupd_.status("web");
        return status.at("ready") == 1 && instancePids(status).count(old) == 0;
    })) << fdsupd_.status("web").dump();
    expectFdsAtBaseline();

    expectAHandoffRestartWorks();
    expectFdsAtBaseline();
    expectBystanderServed();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// What curl clients of a service saw: every request answered, by these pids only.
void expectServedBy(LoadClients &load, const std::set<pid_t> &pids)
{
    const LoadReport report = load.stop();
    EXPECT_GT(report.ok, 0U);
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed, 0U) << report.summary();
    for (const pid_t pid : report.pids) {
        EXPECT_EQ(pids.count(pid), 1U) << "answered by pid " << pid << ": " << report.summary();
    }
}

// 2. A replacement is killed before it is ready: the rollout fails and rolls
// back, `restart --wait` says which instance died and how, the old
// instances serve throughout with their pids, and the next restart works.
TEST_F(Faults, AReplacementKilledMidRolloutRollsBackAndTheOldInstancesServeThroughout)
{
    writeFile(readyFile(), "");
    ASSERT_NO_FATAL_FAILURE(start(readyFileWeb()));
    const std::set<pid_t> old = instancePids(fdsupd_.status("web"));
    ASSERT_EQ(old.size(), 2U);
    LoadClients load;
    load.start(fdsupd_.port("web"), 2, LoadClients::Tool::Curl);
    ASSERT_TRUE(load.waitForRequests(3, kEventDeadline));

    std::filesystem::remove(readyFile()); // the replacement waits for it
    auto restart = std::async(std::launch::async, [&] {
        return fdsupd_.fdsupctl({"restart", "--wait", "web"});
    });
    const pid_t replacement = nextStarted(old);
    ASSERT_NE(replacement, 0) << "no replacement started";
    const LoadMark killed = load.mark();
    ASSERT_EQ(kill(replacement, SIGKILL), 0);
    const ProcessResult result = restart.get();
    EXPECT_EQ(result.exitCode, 1) << result.out << result.err;
    const std::string said = result.out + result.err;
    EXPECT_THAT(said, HasSubstr("(pid " + std::to_string(replacement) + ", generation 2)"));
    EXPECT_THAT(said, HasSubstr("killed by SIGKILL"));
    EXPECT_THAT(said, HasSubstr("rolled back: generation 1 keeps serving"));
    EXPECT_EQ(instancePids(fdsupd_.status("web")), old);
    ASSERT_TRUE(load.waitForRequests(3, kEventDeadline, killed));
    expectServedBy(load, old);
    expectFdsAtBaseline();

    writeFile(readyFile(), "");
    const auto again = fdsupd_.fdsupctl({"restart", "--wait", "web"});
    EXPECT_EQ(again.exitCode, 0) << again.out << again.err;
    for (const pid_t pid : instancePids(fdsupd_.status("web"))) {
        EXPECT_EQ(old.count(pid), 0U);
    }
    expectFdsAtBaseline();
    expectBystanderServed();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// Whether process pid (not a child: an orphan) has exited, by its pidfd.
class Exits {
public:
    explicit Exits(const std::set<pid_t> &pids)
    {
        for (const pid_t pid : pids) {
            fds_.emplace_back(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
        }
    }
    [[nodiscard]] bool allExited() const
    {
        return std::all_of(fds_.begin(), fds_.end(), [](const UniqueFd &fd) {
            pollfd pfd{fd.get(), POLLIN, 0};
            return !fd || poll(&pfd, 1, 0) == 1;
        });
    }

private:
    std::vector<UniqueFd> fds_;
};

// 3. fdsupd is killed (SIGKILL) mid-rollout, its replacement not ready yet.
// A new fdsupd started with the same configuration takes the listeners over
// from the orphans (docs/fdsupd.md "Taking over after a crash"), serves
// without a refused connection, stops every orphan (the old instances and
// the unfinished replacement) once its own are ready, and a restart then
// rolls its generation out as usual.
TEST_F(Faults, FdsupdKilledMidRolloutIsTakenOverAndTheNextRestartIsRight)
{
    const int port = freePort();
    const int otherPort = freePort();
    writeFile(readyFile(), "");
    ASSERT_NO_FATAL_FAILURE(start(readyFileWeb(port), otherPort));
    const std::set<pid_t> old = instancePids(fdsupd_.status("web"));
    const std::set<pid_t> oldOther = instancePids(fdsupd_.status("other"));
    LoadClients load;
    load.start(port, 2, LoadClients::Tool::Curl);
    ASSERT_TRUE(load.waitForRequests(3, kEventDeadline));

    std::filesystem::remove(readyFile());
    const auto restart = fdsupd_.fdsupctl({"restart", "--no-wait", "web"});
    ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    const pid_t replacement = nextStarted(old);
    ASSERT_NE(replacement, 0);
    ASSERT_EQ(kill(fdsupd_.pid(), SIGKILL), 0);
    ASSERT_EQ(fdsupd_.stop(), -SIGKILL);
    std::set<pid_t> orphans = old;
    orphans.insert(replacement);
    orphans.insert(oldOther.begin(), oldOther.end());
    const Exits orphansExit(orphans);

    writeFile(readyFile(), "");
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + readyFileWeb(port) + bystander(otherPort), why))
        << why;
    EXPECT_TRUE(waitUntil([&] { return orphansExit.allExited(); })) << "an orphan still runs";
    // fdsupd's own watch of them ends too (its baseline is without them).
    EXPECT_TRUE(waitUntil([&] {
        const std::string log = fdsupd_.log();
        return log.find("Every orphaned worker of web is gone") != std::string::npos &&
               log.find("Every orphaned worker of other is gone") != std::string::npos;
    }));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("orphan"));
    const auto status = fdsupd_.status("web");
    EXPECT_EQ(status.at("generation"), 1);
    EXPECT_TRUE(status.at("orphaned").empty());
    const std::set<pid_t> taken = instancePids(status);
    for (const pid_t pid : taken) {
        EXPECT_EQ(orphans.count(pid), 0U);
    }
    noteBaseline();

    const auto again = fdsupd_.fdsupctl({"restart", "--wait", "web"});
    EXPECT_EQ(again.exitCode, 0) << again.out << again.err;
    EXPECT_THAT(again.out, HasSubstr("generation 1 -> 2"));
    const std::set<pid_t> now = instancePids(fdsupd_.status("web"));
    EXPECT_EQ(now.size(), 2U);
    for (const pid_t pid : now) {
        EXPECT_EQ(taken.count(pid) + orphans.count(pid), 0U);
    }
    const LoadReport report = load.stop();
    EXPECT_GT(report.ok, 0U);
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed, 0U) << report.summary();
    expectFdsAtBaseline();
    expectBystanderServed();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
