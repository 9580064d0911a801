// LoadClients against a real fdsupd: curl and wrk see every answer, and a refusal when nothing listens.
#include <cerrno>
#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "load_clients.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsSubsetOf;

constexpr int kInstances = 4;

class Load : public DaemonTest<> {
protected:
    // fdsupd with kInstances sd-workers serving one ephemeral port; their pids.
    std::set<pid_t> startServing()
    {
        std::string why;
        const bool started = fdsupd_.start(fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.web]
command = )" + fdsupd_.workerCommand("serve") + R"(
sockets = ["web"]
ready = "notify"
instances = )" + std::to_string(kInstances) + "\n",
                                           why);
        if (!started) {
            throw std::runtime_error(why);
        }
        for (int i = 0; i < kInstances; ++i) {
            if (!fdsupd_.reports().waitFor([](const std::string &m) { return m.starts_with("ready "); },
                                           kEventDeadline)) {
                throw std::runtime_error("not every instance got ready in time");
            }
        }
        std::set<pid_t> pids;
        const auto status = fdsupd_.status("web");
        for (const auto &instance : status.at("instances")) {
            pids.insert(instance.at("pid").get<pid_t>());
        }
        return pids;
    }

    // Runs the clients until n requests got an outcome and returns their report.
    LoadReport drive(LoadClients::Tool tool, std::size_t n)
    {
        LoadClients load;
        load.start(fdsupd_.port("web"), kInstances, tool);
        EXPECT_TRUE(load.waitForRequests(n, kEventDeadline));
        auto report = load.stop();
        std::cout << report.summary();
        return report;
    }
};

// Curl (a new process and connection per request) and wrk (Connection: close).
std::string toolName(const ::testing::TestParamInfo<LoadClients::Tool> &tool)
{
    return tool.param == LoadClients::Tool::Curl ? "Curl" : "Wrk";
}

class LoadWithTool : public Load, public ::testing::WithParamInterface<LoadClients::Tool> {};

TEST_P(LoadWithTool, EveryRequestIsAnsweredByTheFirstGeneration)
{
    const std::size_t n = GetParam() == LoadClients::Tool::Curl ? 200 : 2000;
    const auto workers = startServing();
    const int fdsBefore = countOpenFds();
    const auto report = drive(GetParam(), n);

    EXPECT_GE(report.requests, n);
    EXPECT_EQ(report.ok, report.requests) << report.summary();
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed, 0U) << report.summary();
    EXPECT_THAT(report.failures, ::testing::IsEmpty());
    EXPECT_FALSE(report.pids.empty());
    EXPECT_THAT(report.pids, IsSubsetOf(workers));
    EXPECT_THAT(report.generations, ElementsAre(std::optional<int>(1)));
    EXPECT_EQ(countOpenFds(), fdsBefore);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Tools, LoadWithTool,
                         ::testing::Values(LoadClients::Tool::Curl, LoadClients::Tool::Wrk), toolName);

TEST_F(Load, AMarkSplitsTheAnswersInTime)
{
    const auto workers = startServing();
    LoadClients load;
    load.start(fdsupd_.port("web"), 2, LoadClients::Tool::Curl);
    ASSERT_TRUE(load.waitForRequests(20, kEventDeadline));
    const auto mark = load.mark();
    ASSERT_TRUE(load.waitForRequests(20, kEventDeadline, mark));
    const auto report = load.stop();

    EXPECT_EQ(report.failed + report.refused, 0U) << report.summary();
    EXPECT_EQ(mark.outcomes.size(), 2U);
    std::size_t before = 0;
    for (const auto n : mark.outcomes) {
        before += n;
    }
    EXPECT_GE(before, 20U);
    EXPECT_GE(report.requests, before + 20);
    EXPECT_FALSE(report.pidsAfter(mark).empty());
    EXPECT_THAT(report.pidsAfter(mark), IsSubsetOf(report.pids));
    EXPECT_THAT(report.generationsAfter(mark), ElementsAre(std::optional<int>(1)));
    EXPECT_THAT(report.pidsAfter(load.mark()), ::testing::IsEmpty()) << "nothing after the end";
}

// The report can fail: with nothing listening, every curl is refused.
TEST(LoadClientsAlone, CountsRefusedConnectionsWhereNothingListens)
{
    const int fdsBefore = countOpenFds();
    {
        LoadClients load;
        load.start(freePort(), 2, LoadClients::Tool::Curl);
        ASSERT_TRUE(load.waitForRequests(10, kEventDeadline));
        const auto report = load.stop();
        EXPECT_GE(report.refused, 10U) << report.summary();
        EXPECT_EQ(report.ok, 0U);
        EXPECT_EQ(report.failed, 0U) << report.summary();
        EXPECT_TRUE(report.pids.empty());
        ASSERT_FALSE(report.failures.empty());
        EXPECT_THAT(report.failures.front(), HasSubstr("refused (curl exit 7)"));
    }
    EXPECT_EQ(countOpenFds(), fdsBefore);
}

// wrk gives up at once when its first connection is refused: one refusal.
TEST(LoadClientsAlone, WrkCountsARefusalWhereNothingListens)
{
    LoadClients load;
    load.start(freePort(), 2, LoadClients::Tool::Wrk);
    EXPECT_FALSE(load.waitForRequests(1, kEventDeadline)) << "wrk exited without an answer";
    const auto report = load.stop();
    EXPECT_EQ(report.refused, 1U) << report.summary();
    EXPECT_EQ(report.ok + report.failed, 0U) << report.summary();
    ASSERT_FALSE(report.failures.empty());
    EXPECT_THAT(report.failures.front(), HasSubstr("Connection refused"));
}

// A server that accepts and closes without answering, on a thread of the test
// until destroyed (shutdown() wakes its blocked accept4()).
class SilentServer {
public:
    SilentServer() : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0))
    {
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof addr;
        if (!fd_ || bind(fd_.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0 ||
            listen(fd_.get(), 64) != 0 ||
            getsockname(fd_.get(), reinterpret_cast<sockaddr *>(&addr), &len) != 0) {
            throw std::runtime_error("cannot listen");
        }
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] {
            for (;;) {
                const int conn = accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
                if (conn < 0) {
                    return;
                }
                close(conn);
            }
        });
    }
    ~SilentServer()
    {
        shutdown(fd_.get(), SHUT_RDWR);
        thread_.join();
    }
    SilentServer(const SilentServer &) = delete;
    SilentServer &operator=(const SilentServer &) = delete;
    [[nodiscard]] int port() const { return port_; }

private:
    UniqueFd fd_;
    int port_ = 0;
    std::thread thread_;
};

// The report can fail the other way: connections accepted, never answered.
TEST(LoadClientsAlone, CountsConnectionsClosedWithoutAnAnswerAsFailed)
{
    SilentServer server;
    LoadClients load;
    load.start(server.port(), 2, LoadClients::Tool::Curl);
    ASSERT_TRUE(load.waitForRequests(10, kEventDeadline));
    const auto report = load.stop();
    EXPECT_GE(report.failed, 10U) << report.summary();
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.ok, 0U);
    ASSERT_FALSE(report.failures.empty());
    // 52: empty reply; 56: reset (the request was unread when the server closed).
    EXPECT_THAT(report.failures.front(), ::testing::MatchesRegex(".*curl exit 5[26]: .*"));
}

// A destructor without stop(): clients killed and reaped, nothing left running.
TEST(LoadClientsAlone, DestructorKillsAndReapsTheClients)
{
    {
        LoadClients load;
        load.start(freePort(), 2, LoadClients::Tool::Curl);
        ASSERT_TRUE(load.waitForRequests(2, kEventDeadline));
    }
    // Our children would be zombies (or alive) here; waitpid says there are none.
    EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

// --mode-file overrides --mode: a test deploys "a new build" by rewriting it.
TEST(SdWorker, ModeFileOverridesMode)
{
    TempDir dir;
    writeFile(dir / "mode", "crash  \n");
    const auto r = runProcess({requireEnv("FDSUP_TEST_SD_WORKER"), "--mode", "serve", "--mode-file",
                               (dir / "mode").string(), "--exit-code", "7"});
    EXPECT_EQ(r.exitCode, 7) << r.err;
}

TEST(SdWorker, UnreadableModeFileExits2)
{
    TempDir dir;
    const auto r = runProcess(
        {requireEnv("FDSUP_TEST_SD_WORKER"), "--mode-file", (dir / "missing").string(), "--exit-code", "7"});
    EXPECT_EQ(r.exitCode, 2);
    EXPECT_THAT(r.err, HasSubstr("cannot read the mode from " + (dir / "missing").string()));
    writeFile(dir / "empty", " \n");
    EXPECT_EQ(
        runProcess({requireEnv("FDSUP_TEST_SD_WORKER"), "--mode-file", (dir / "empty").string()}).exitCode,
        2);
}

} // namespace
} // namespace fdsup::test
