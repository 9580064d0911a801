// fdsupctl events --json against a real fdsupd: a restart, a crash, a reload and the shutdown, line by line.
#include <algorithm>
#include <csignal>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using Json = nlohmann::json;

class Events : public DaemonTest<> {
protected:
    void startDaemon()
    {
        config_ =
            fdsupd_.supervisorTable() +
            socketAndService("web", "tcp://127.0.0.1:0", fdsupd_.workerCommand("serve"), "instances = 1\n");
        std::string why;
        ASSERT_TRUE(fdsupd_.start(config_, why)) << why;
        ASSERT_TRUE(fdsupd_.reports().waitFor([](const std::string &m) { return m.starts_with("ready "); },
                                              kEventDeadline));
    }

    // fdsupctl events --json, printing into a file the test reads.
    std::unique_ptr<BackgroundProcess> follow(const std::vector<std::string> &extra = {})
    {
        std::vector<std::string> argv = {requireEnv("FDSUPCTL"), "-s", fdsupd_.controlPath(), "events"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        const auto before = countFollowers();
        auto process = std::make_unique<BackgroundProcess>(argv, fdsupd_.dir() / "events.log");
        // Subscribed once fdsupd says so (debug log): nothing before it is promised.
        EXPECT_TRUE(waitUntil([&] { return countFollowers() > before; })) << process->log();
        return process;
    }

    std::size_t countFollowers() const { return occurrences(fdsupd_.log(), "Events followed by"); }

    // Every complete line of the follower's output, each parsed (a line that
    // is not JSON fails the test).
    static std::vector<Json> eventsOf(const BackgroundProcess &process)
    {
        std::vector<Json> events;
        std::istringstream in(process.log());
        for (std::string line; std::getline(in, line);) {
            if (in.eof()) {
                break; // not complete yet
            }
            const Json event = Json::parse(line, nullptr, false);
            EXPECT_FALSE(event.is_discarded()) << "not JSON: " << line;
            if (!event.is_discarded()) {
                events.push_back(event);
            }
        }
        return events;
    }

    // The index of the first event at or after `from` that matches, or npos.
    static std::size_t find(const std::vector<Json> &events, std::size_t from, const Json &match)
    {
        for (std::size_t i = from; i < events.size(); ++i) {
            if (std::all_of(match.items().begin(), match.items().end(), [&](const auto &kv) {
                    return events[i].contains(kv.key()) && events[i][kv.key()] == kv.value();
                })) {
                return i;
            }
        }
        return std::string::npos;
    }

    bool waitForEvent(const BackgroundProcess &process, const Json &match)
    {
        return waitUntil([&] { return find(eventsOf(process), 0, match) != std::string::npos; });
    }

    std::string config_;
};

TEST_F(Events, ARestartACrashAReloadAndTheShutdownFollowOneAnotherAsJsonLines)
{
    ASSERT_NO_FATAL_FAILURE(startDaemon());
    const auto follower = follow({"--json"});

    const auto restarted = fdsupd_.fdsupctl({"restart", "web", "--wait"});
    ASSERT_EQ(restarted.exitCode, 0) << restarted.err;
    ASSERT_TRUE(waitForEvent(*follower, {{"event", "rollout-finished"}})) << follower->log();

    const auto pids = instancePids(fdsupd_.status("web"));
    ASSERT_EQ(pids.size(), 1U);
    const pid_t crashed = *pids.begin();
    ASSERT_EQ(kill(crashed, SIGKILL), 0);
    // Its exit, then a new instance ready in its slot.
    ASSERT_TRUE(waitUntil([&] {
        const auto events = eventsOf(*follower);
        const auto exited = find(events, 0, {{"event", "instance-exited"}, {"pid", crashed}});
        return exited != std::string::npos &&
               find(events, exited, {{"event", "instance-ready"}}) != std::string::npos;
    })) << follower->log();

    const auto reloaded = fdsupd_.fdsupctl({"reload"});
    ASSERT_EQ(reloaded.exitCode, 0) << reloaded.err;
    ASSERT_TRUE(waitForEvent(*follower, {{"event", "reload-finished"}})) << follower->log();

    EXPECT_EQ(fdsupd_.stop(), 0);
    ASSERT_EQ(follower->wait(kEventDeadline), 0) << follower->log();

    const auto events = eventsOf(*follower);
    const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)");
    for (const auto &event : events) {
        EXPECT_TRUE(event["time"].is_string() && std::regex_match(event["time"].get<std::string>(), rfc3339))
            << event;
        EXPECT_TRUE(event["event"].is_string()) << event;
        EXPECT_TRUE(event.contains("service")) << event;
    }
    // The restart: the replacement started and got ready, the old instance
    // drained away, the rollout succeeded.
    std::size_t at = find(events, 0, {{"event", "rollout-began"}, {"service", "web"}, {"to_generation", 2}});
    ASSERT_NE(at, std::string::npos) << follower->log();
    for (const Json &next :
         {Json{{"event", "instance-started"}, {"generation", 2}},
          Json{{"event", "instance-ready"}, {"generation", 2}},
          Json{{"event", "instance-exited"}, {"generation", 1}, {"cause", "drained"}},
          Json{{"event", "rollout-finished"}, {"result", "succeeded"}},
          // The crash: a failure, and a new instance in its slot.
          Json{{"event", "instance-exited"},
               {"pid", crashed},
               {"status", "killed by SIGKILL"},
               {"cause", "none"},
               {"failure", true},
               {"killed", false}},
          Json{{"event", "instance-started"}, {"generation", 2}, {"index", 0}},
          Json{{"event", "instance-ready"}, {"generation", 2}, {"index", 0}},
          // The reload (nothing changed) and the shutdown.
          Json{{"event", "reload-begun"}, {"service", nullptr}},
          Json{{"event", "reload-finished"}, {"result", "done"}, {"changes", 0}},
          Json{{"event", "shutdown-begun"}}, Json{{"event", "instance-exited"}, {"cause", "stopped"}},
          Json{{"event", "service-state"}, {"service", "web"}, {"state", "stopped"}},
          Json{{"event", "shutdown-done"}}}) {
        const std::size_t found = find(events, at + 1, next);
        ASSERT_NE(found, std::string::npos) << "no " << next << " after " << events[at] << "\n"
                                            << follower->log();
        at = found;
    }
    EXPECT_EQ(at, events.size() - 1) << "shutdown-done is the last event";
    const auto finished = find(events, 0, {{"event", "rollout-finished"}});
    EXPECT_GT(events[finished]["duration_usec"].get<std::int64_t>(), 0);
}

TEST_F(Events, AServiceFilterInTheHumanForm)
{
    ASSERT_NO_FATAL_FAILURE(startDaemon());
    // An unknown service is refused like everywhere else.
    const auto refused = fdsupd_.fdsupctl({"events", "nosuch"});
    EXPECT_EQ(refused.exitCode, 5) << refused.err;
    EXPECT_NE(refused.err.find("no such service: 'nosuch'"), std::string::npos) << refused.err;

    const auto follower = follow({"web"});
    const auto restarted = fdsupd_.fdsupctl({"restart", "web", "--wait"});
    ASSERT_EQ(restarted.exitCode, 0) << restarted.err;
    EXPECT_EQ(fdsupd_.stop(), 0);
    ASSERT_EQ(follower->wait(kEventDeadline), 0) << follower->log();
    // "23:15:02.000123Z rollout-finished web rollout=1 ... result=succeeded ...".
    const std::regex finished(
        R"((^|\n)\d\d:\d\d:\d\d\.\d{6}Z rollout-finished web [^\n]*result=succeeded[^\n]*\n)");
    EXPECT_TRUE(std::regex_search(follower->log(), finished)) << follower->log();
    const std::regex done(R"(\n\d\d:\d\d:\d\d\.\d{6}Z shutdown-done -\n$)");
    EXPECT_TRUE(std::regex_search(follower->log(), done)) << follower->log();
}

TEST_F(Events, TheStreamGoesOnAcrossAReexec)
{
    ASSERT_NO_FATAL_FAILURE(startDaemon());
    const auto follower = follow({"--json"});
    const std::size_t before = countFollowers();
    const auto reexec = fdsupd_.fdsupctl({"reexec"});
    ASSERT_EQ(reexec.exitCode, 0) << reexec.err;
    ASSERT_TRUE(waitForEvent(*follower, {{"event", "reexec"}})) << follower->log();
    // fdsupctl called again, and the new image serves it.
    ASSERT_TRUE(waitUntil([&] { return countFollowers() > before; })) << fdsupd_.log();
    const auto restarted = fdsupd_.fdsupctl({"restart", "web", "--wait"});
    ASSERT_EQ(restarted.exitCode, 0) << restarted.err;
    ASSERT_TRUE(waitForEvent(*follower, {{"event", "rollout-finished"}, {"result", "succeeded"}}))
        << follower->log();
    const auto events = eventsOf(*follower);
    EXPECT_LT(find(events, 0, {{"event", "reexec"}}), find(events, 0, {{"event", "rollout-began"}}));
    EXPECT_EQ(fdsupd_.stop(), 0);
    ASSERT_EQ(follower->wait(kEventDeadline), 0) << follower->log();
}

} // namespace
} // namespace fdsup::test
