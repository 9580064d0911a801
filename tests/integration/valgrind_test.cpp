// fdsupd under valgrind memcheck through a rollout with handoff and a clean stop: no error, no leak.
// Suite `valgrind`, only in a build whose fdsupd is not sanitized (build-ci): an ASan binary cannot run
// under valgrind. Workers are not traced (they exec other programs); fdsupd is, from start to exit,
// including each spawned child until its exec.
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon_harness.hpp"
#include "seqnum_clients.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// What valgrind exits with when it found an error or a definite or indirect
// leak; fdsupd itself never exits with it.
constexpr int kValgrindError = 97;

class Valgrind : public DaemonTest<> {
protected:
    [[nodiscard]] std::string logPath() const { return (fdsupd_.dir() / "valgrind.log").string(); }

    // valgrind's command line: memcheck, every leak kind that is a bug an
    // error (definite: nothing points to it; indirect: only leaked blocks
    // do), and no suppression file: none is needed (docs/fuzzing.md).
    [[nodiscard]] std::vector<std::string> wrapper() const
    {
        return {requireEnv("FDSUP_VALGRIND"),
                "--tool=memcheck",
                "--leak-check=full",
                "--show-leak-kinds=definite,indirect",
                "--errors-for-leak-kinds=definite,indirect",
                "--error-exitcode=" + std::to_string(kValgrindError),
                "--track-fds=no",
                "--log-file=" + logPath()};
    }

    [[nodiscard]] std::string valgrindLog() const
    {
        std::ifstream in(logPath());
        std::stringstream text;
        text << in.rdbuf();
        return text.str();
    }
};

TEST_F(Valgrind, ARolloutWithHandoffAndACleanStopHaveNoErrorAndNoLeak)
{
    std::string why;
    ASSERT_TRUE(
        fdsupd_.start(fdsupd_.supervisorTable() + channelWebService(requireEnv("FDSUP_TEST_SEQNUM_ECHO"), 2),
                      why, wrapper()))
        << why << "\n"
        << valgrindLog();
    const int port = fdsupd_.port("web");
    SeqnumClients clients(port, 20);
    const std::set<pid_t> before = instancePids(fdsupd_.status("web"));
    ASSERT_TRUE(waitUntil([&] { return clients.rounds() >= 200 || !clients.errors().empty(); }));

    const auto restart = fdsupd_.fdsupctl({"restart", "--wait", "web"});
    ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    EXPECT_THAT(restart.out, HasSubstr("over its channel"));
    const std::set<pid_t> after = instancePids(fdsupd_.status("web"));
    for (const pid_t pid : after) {
        EXPECT_EQ(before.count(pid), 0U) << "pid " << pid << " was not replaced";
    }
    // The same connections go on with the new generation.
    const std::uint64_t settled = clients.rounds();
    EXPECT_TRUE(waitUntil([&] { return clients.rounds() >= settled + 200 || !clients.errors().empty(); }));
    clients.stop();
    EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
    for (const int clientPort : clients.localPorts()) {
        EXPECT_NE(serverPidOf(port, clientPort, after), 0)
            << "the connection of client port " << clientPort << " is not served by the new generation";
    }
    const auto connections = fdsupd_.call("io.fdsup.Manager.Connections", {{"service", "web"}});
    const auto &web = connections.parameters.at("services").at(0);
    EXPECT_EQ(web.at("handed"), 20);
    EXPECT_EQ(web.at("adopted"), 20);
    clients.close(); // idle connections would hold up the workers' SIGTERM

    EXPECT_EQ(fdsupd_.stop(), 0) << "valgrind exits " << kValgrindError << " on an error or a leak\n"
                                 << valgrindLog();
    const std::string log = valgrindLog();
    EXPECT_THAT(log, HasSubstr("Memcheck, a memory error detector"));
    EXPECT_THAT(log, HasSubstr("Command: " + requireEnv("FDSUPD")));
    EXPECT_THAT(log, HasSubstr("ERROR SUMMARY: 0 errors")) << log;
    EXPECT_THAT(log, Not(HasSubstr("definitely lost in"))) << log;
    EXPECT_THAT(log, Not(HasSubstr("indirectly lost in"))) << log;
}

} // namespace
} // namespace fdsup::test
