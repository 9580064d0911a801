// End to end: an unmodified python3 -m http.server, wrapped by the real preload shim under a real fdsupd,
// restarted three times under load from clients that open a new connection per request.
#include <set>
#include <stdexcept>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

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
using Json = nlohmann::json;

class WrapEndToEnd : public DaemonTest<> {};

TEST_F(WrapEndToEnd, PythonHttpServerIsRestartedThreeTimesUnderLoadWithoutARefusalOrAFailure)
{
    // The load clients count an answer as ok when its body is JSON with a pid.
    writeFile(fdsupd_.dir() / "index.html", R"({"pid": 1, "generation": 1})");
    const int appPort = freePort();
    const std::string config = fdsupd_.supervisorTable(requireEnv("FDSUP_TEST_PRELOAD")) + R"([socket.web]
listen = "tcp://127.0.0.1:0"

[service.web]
command = ["/usr/bin/python3", "-m", "http.server", ")" +
                               std::to_string(appPort) + R"(", "--bind", "127.0.0.1"]
working_directory = )" + Json(fdsupd_.dir().path().string()).dump() +
                               R"(
sockets = ["web"]
wrap = "preload"
preload_map = { web = "tcp://127.0.0.1:)" +
                               std::to_string(appPort) + R"(" }
ready = "bound"
drain_timeout = "10s"
)";
    std::string why;
    ASSERT_TRUE(fdsupd_.start(config, why)) << why;
    ASSERT_TRUE(waitUntil([&] { return fdsupd_.status("web")["state"] == "running"; }))
        << fdsupd_.status("web").dump(2) << fdsupd_.log();
    std::set<pid_t> previous = instancePids(fdsupd_.status("web"));

    LoadClients load;
    load.start(fdsupd_.port("web"), 4, LoadClients::Tool::Curl);
    ASSERT_TRUE(load.waitForRequests(20, kEventDeadline));
    for (int round = 1; round <= 3; ++round) {
        const auto before = load.mark();
        const ProcessResult restart = fdsupd_.fdsupctl({"restart", "web", "--wait"});
        ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err << fdsupd_.log();
        const std::set<pid_t> now = instancePids(fdsupd_.status("web"));
        for (const pid_t pid : now) {
            EXPECT_EQ(previous.count(pid), 0U) << "restart " << round << ": every instance replaced";
        }
        previous = now;
        ASSERT_TRUE(load.waitForRequests(20, kEventDeadline, before)) << "restart " << round;
    }
    const LoadReport report = load.stop();
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed, 0U) << report.summary();
    EXPECT_GT(report.ok, 60U) << report.summary();
    const Json listener = fdsupd_.status("web")["instances"][0]["listeners"][0];
    EXPECT_EQ(listener["adopted_by"], fdsupd_.status("web")["instances"][0]["pid"]);
    std::cerr << report.summary() << "\n";
}

} // namespace
} // namespace fdsup::test
