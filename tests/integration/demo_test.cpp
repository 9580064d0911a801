// The demo (units/demo.toml) as a newcomer runs it: .ci/demo-load's restarts under load fail nothing,
// and the python worker drains every time under concurrent requests.
#include <regex>
#include <string>
#include <vector>

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "test_support.hpp"

using namespace fdsup::test;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

class Demo : public DaemonTest<> {
protected:
    // units/demo.toml on ephemeral ports, its control socket in the test's
    // directory, its workers where they are (units/demo/), the handoff
    // worker from this build; started, or a failed assertion.
    void startDemo()
    {
        std::string units = requireEnv("FDSUP_UNITS_DIR");
        std::string config = readFile(units + "/demo.toml");
        replaceAll(config, "[supervisor]\ncontrol = \"demo/control.sock\"\n", "");
        replaceAll(config, "tcp://127.0.0.1:8080", "tcp://127.0.0.1:0");
        replaceAll(config, "tcp://127.0.0.1:8081", "tcp://127.0.0.1:0");
        replaceAll(config, "\"demo/", "\"" + units + "/demo/");
        std::string why;
        ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + config, why, {},
                                  {"FDSUP_DEMO_BUILD=" + requireEnv("FDSUP_BUILD_ROOT")}))
            << why;
    }
    // Runs .ci/demo-load ARGS against the demo: it exits 0, and its summary
    // shows no failure, no forced reconnect and 3 restarts.
    void expectDemoLoadFailsNothing(const std::vector<std::string> &args);
};

// How long each drain of a hello instance took, from fdsupd's log: its
// "Draining hello[N] (pid P) with SIGTERM" line to "hello[N] (pid P) exited
// with status 0"; -1 for a drain that did not end so (drain_timeout killed it).
std::vector<double> drainSeconds(const std::string &log)
{
    static const std::regex line(R"((\d\d):(\d\d):(\d\d\.\d+) info (Draining hello\[\d\] \(pid (\d+)\) )"
                                 R"(with SIGTERM|hello\[\d\] \(pid (\d+)\) exited with status 0))");
    struct Drain {
        std::string pid;
        double start = 0;
        double seconds = -1;
    };
    std::vector<Drain> drains;
    for (auto it = std::sregex_iterator(log.begin(), log.end(), line); it != std::sregex_iterator(); ++it) {
        const auto &m = *it;
        double t = std::stod(m[1]) * 3600 + std::stod(m[2]) * 60 + std::stod(m[3]);
        if (m[5].matched) {
            drains.push_back({.pid = m[5], .start = t, .seconds = -1});
        }
        for (auto &d : drains) {
            if (m[6].matched && d.pid == m[6] && d.seconds < 0) {
                d.seconds = t - d.start;
            }
        }
    }
    std::vector<double> seconds;
    seconds.reserve(drains.size());
    for (const auto &d : drains) {
        seconds.push_back(d.seconds);
    }
    return seconds;
}

// Every drain of a hello instance in fdsupd's log ended by itself within
// 2.5 s (half its drain_timeout; a healthy one takes a few tens of ms), and
// there were `count` of them.
void expectQuickDrains(const std::string &log, size_t count)
{
    auto drains = drainSeconds(log);
    EXPECT_EQ(drains.size(), count);
    for (double d : drains) {
        EXPECT_GE(d, 0.0) << "a drain did not end with exit status 0";
        EXPECT_LT(d, 2.5);
    }
    EXPECT_THAT(log, Not(HasSubstr("did not finish draining")));
}

} // namespace

// README's second terminal: `.ci/demo-load` (and with `--mode newconn`) against the handoff service.
TEST_F(Demo, DemoLoadRestartsTheHandoffServiceWithoutAFailure)
{
    startDemo();
    for (std::string mode : {"keepalive", "newconn"}) {
        SCOPED_TRACE(mode);
        expectDemoLoadFailsNothing(mode == "keepalive" ? std::vector<std::string>{}
                                                       : std::vector<std::string>{"--mode", mode});
    }
    EXPECT_EQ(fdsupd_.status("fast")["instances"].size(), 2U);
}

void Demo::expectDemoLoadFailsNothing(const std::vector<std::string> &args)
{
    std::vector<std::string> argv{"/bin/bash", requireEnv("FDSUP_SOURCE_ROOT") + "/.ci/demo-load"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = runProcess(argv,
                        {"FDSUP_DEMO_BUILD=" + requireEnv("FDSUP_BUILD_ROOT"),
                         "FDSUP_DEMO_TARGET=127.0.0.1:" + std::to_string(fdsupd_.port("fast")),
                         "FDSUP_DEMO_CONTROL=" + fdsupd_.controlPath(), "FDSUP_DEMO_DURATION=2s"},
                        kEventDeadline);
    ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("requests ok:"));
    EXPECT_THAT(r.out, HasSubstr("\nfailures:           0\n")) << r.out;
    EXPECT_THAT(r.out, HasSubstr("\nforced reconnects:  0 ")) << r.out;
    int restarted = 0;
    for (size_t at = 0; (at = r.out.find(", exit status 0\n", at)) != std::string::npos; ++at) {
        ++restarted;
    }
    EXPECT_EQ(restarted, 3) << r.out << r.err;
}

// The python worker drains within a fraction of its drain_timeout (5 s)
// every time while requests keep coming, and answers those it accepted.
TEST_F(Demo, PythonWorkerDrainsEveryTimeUnderLoad)
{
    startDemo();
    auto file = fdsupd_.dir() / "load.json";
    auto r = runProcess(
        {requireEnv("FDSUP_LOAD"), "--target", "127.0.0.1:" + std::to_string(fdsupd_.port("hello")), "--mode",
         "newconn", "--connections", "16", "--duration", "1s", "--restart",
         requireEnv("FDSUPCTL") + " -s " + fdsupd_.controlPath() + " restart hello --wait >&2", "--restarts",
         "20", "--json", file.string(), "--quiet"},
        {}, std::chrono::minutes(3));
    ASSERT_EQ(r.exitCode, 0) << r.err;
    auto j = nlohmann::json::parse(readFile(file));
    ASSERT_EQ(j["restarts"].size(), 20U);
    for (const auto &restart : j["restarts"]) {
        EXPECT_EQ(restart["exit_status"], 0) << r.err;
    }
    EXPECT_GT(j["counts"]["ok"], 0);
    EXPECT_EQ(j["failures"], 0) << j["counts"].dump();
    expectQuickDrains(fdsupd_.log(), 40); // 20 rollouts of 2 instances
}

// An idle demo: one request at a time, then a restart. A connection wakes
// every instance's select(); with a blocking listener the instances that lost
// the race sat in accept(), SIGTERM did not get them out, and their drain
// lasted until a connection came their way or drain_timeout killed them
// (one restart in six to twelve, here; the first version failed within 20).
TEST_F(Demo, PythonWorkerDrainsWhenIdle)
{
    startDemo();
    int port = fdsupd_.port("hello");
    const std::string request = "GET / HTTP/1.1\r\nHost: demo\r\n\r\n";
    for (int rollout = 1; rollout <= 20; ++rollout) {
        SCOPED_TRACE("rollout " + std::to_string(rollout));
        {
            auto fd = connectLoopback(port);
            ASSERT_EQ(write(fd.get(), request.data(), request.size()), static_cast<ssize_t>(request.size()));
            std::string answer;
            char buf[512];
            for (ssize_t n; (n = read(fd.get(), buf, sizeof buf)) > 0;) {
                answer.append(buf, static_cast<size_t>(n)); // HTTP/1.0: the worker closes after the answer
            }
            ASSERT_THAT(answer, HasSubstr("200 OK"));
        }
        auto r = fdsupd_.fdsupctl({"restart", "hello", "--wait"});
        ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
    }
    expectQuickDrains(fdsupd_.log(), 40);
}
