// Connection handoff: a real fdsupd, workers on libactivate's channel, real clients on loopback.
#include <atomic>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "seqnum_clients.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// A hostile worker's abuse, and what fdsupd must answer (reported by the worker).
struct Abuse {
    const char *mode;
    const char *answer;
};

class HostileWorker : public DaemonTest<::testing::TestWithParam<Abuse>> {};

TEST_P(HostileWorker, IsRefusedAndFdsupdKeepsServingEveryoneElse)
{
    const Abuse abuse = GetParam();
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[socket.other]
listen = "tcp://127.0.0.1:0"

[service.bad]
command = [")" + requireEnv("FDSUP_TEST_HOSTILE_WORKER") +
                                  "\", \"" + abuse.mode + "\", \"" + fdsupd_.reportPath() + R"("]
sockets = ["web"]
instances = 0 # started by Scale, after the baseline
ready = "channel"
handoff = true
restart = "never"
stop_timeout = "5s"

[service.good]
command = )" + fdsupd_.workerCommand("serve") +
                                  R"(
sockets = ["other"]
)",
                              why))
        << why;
    // One control connection throughout, so that connections opened and
    // closed around the measurements cannot blur them.
    auto client = varlink::Client::connect(fdsupd_.controlPath(), 10s);
    ASSERT_TRUE(client) << client.error().message;
    auto call = [&](const char *method, const char *service,
                    nlohmann::json extra = nlohmann::json::object()) {
        extra["service"] = service;
        auto reply = client->call(varlink::Call{method, extra, false, false});
        if (!reply) {
            throw std::runtime_error(reply.error().message);
        }
        return *reply;
    };
    // The baseline: everything up, the hostile one without an instance.
    ASSERT_EQ(call("io.fdsup.Manager.Start", "good").error, "");
    ASSERT_EQ(call("io.fdsup.Manager.Start", "bad").error, ""); // running, with no instance yet
    const int baseline = countFdsOf(fdsupd_.pid());

    ASSERT_EQ(call("io.fdsup.Manager.Scale", "bad", {{"instances", 1}}).error, "");
    const auto answer = fdsupd_.reports().waitFor(
        [](const std::string &m) {
            return m.starts_with("result ") || m.starts_with("error ") || m.starts_with("sent ") ||
                   m.starts_with("closed ") || m.starts_with("timeout ");
        },
        kEventDeadline);
    ASSERT_TRUE(answer.has_value()) << "the hostile worker reported nothing";
    EXPECT_THAT(*answer, HasSubstr(abuse.answer)) << *answer;

    // fdsupd still serves the other service and answers its control socket.
    const auto curl = runProcess({"/usr/bin/curl", "-sS", "--max-time", "10",
                                  "http://127.0.0.1:" + std::to_string(fdsupd_.port("other")) + "/"});
    EXPECT_EQ(curl.exitCode, 0) << curl.err;
    const auto connections = call("io.fdsup.Manager.Connections", "bad");
    ASSERT_EQ(connections.error, "");
    const auto &bad = connections.parameters.at("services").at(0);
    EXPECT_TRUE(bad.at("held").empty());
    EXPECT_EQ(bad.at("handed"), 0);
    // Nothing of the abuse stays in fdsupd.
    ASSERT_EQ(call("io.fdsup.Manager.Stop", "bad").error, "");
    EXPECT_EQ(countFdsOf(fdsupd_.pid()), baseline);
    if (std::string(abuse.mode) == "flood") {
        // Logged once fdsupd has closed the channel, which is after the
        // worker could read the ERROR.
        EXPECT_THAT(fdsupd_.log(), HasSubstr("messages per second"));
    }
    EXPECT_EQ(fdsupd_.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Abuses, HostileWorker,
                         ::testing::Values(Abuse{"garbage", "error 74"},       // EBADMSG
                                           Abuse{"no-fd", "error 74"},         // EBADMSG: fd count
                                           Abuse{"short", "sent"},             // half a header, then gone
                                           Abuse{"not-socket", "result 88"},   // ENOTSOCK
                                           Abuse{"listener", "result 95"},     // EOPNOTSUPP
                                           Abuse{"foreign", "result 1"},       // EPERM
                                           Abuse{"unconnected", "result 107"}, // ENOTCONN
                                           Abuse{"big-state", "result 90"},    // EMSGSIZE
                                           Abuse{"unsealed", "error 77"},      // EBADFD
                                           Abuse{"flood", "error 16"}),        // EBUSY
                         [](const auto &param) {
                             std::string name = param.param.mode;
                             std::erase(name, '-');
                             return name;
                         });

class Handoff : public DaemonTest<> {
protected:
    void startService(const std::string &binary, int instances)
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + channelWebService(binary, instances), why))
            << why;
        ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    }

    ProcessResult fdsupctl(std::vector<std::string> args) { return fdsupd_.fdsupctl(std::move(args)); }
};

TEST_F(Handoff, TwoHundredSeqnumClientsSurviveThreeRollingRestarts)
{
    startService(requireEnv("FDSUP_TEST_SEQNUM_ECHO"), 4);
    const int port = fdsupd_.port("web");
    SeqnumClients clients(port, 200);
    std::set<pid_t> previous = instancePids(fdsupd_.status("web"));
    for (int round = 1; round <= 3; ++round) {
        const std::uint64_t before = clients.rounds();
        const auto restart = fdsupctl({"restart", "--wait", "web"});
        ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err;
        EXPECT_THAT(restart.out, HasSubstr("over its channel"));
        const std::set<pid_t> now = instancePids(fdsupd_.status("web"));
        for (const pid_t pid : now) {
            EXPECT_EQ(previous.count(pid), 0U);
        }
        previous = now;
        EXPECT_GT(clients.rounds(), before) << "no round trip during restart " << round;
    }
    // Every client keeps going on the last generation, and fdsupd keeps answering.
    const std::uint64_t settled = clients.rounds();
    EXPECT_TRUE(waitUntil([&] { return clients.rounds() >= settled + 2000 || !clients.errors().empty(); }));
    (void)fdsupd_.status("web");
    clients.stop();
    EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
    EXPECT_GE(clients.rounds(), settled);
    for (const int clientPort : clients.localPorts()) {
        const pid_t server = serverPidOf(port, clientPort, previous);
        EXPECT_NE(server, 0) << "the connection of client port " << clientPort
                             << " is not served by the last generation";
    }
    const auto connections = fdsupd_.call("io.fdsup.Manager.Connections", {{"service", "web"}});
    const auto &web = connections.parameters.at("services").at(0);
    clients.close();                  // idle connections would hold up the workers' SIGTERM
    EXPECT_EQ(web.at("handed"), 600); // 200 connections, three times
    EXPECT_EQ(web.at("adopted"), 600);
    EXPECT_EQ(web.at("refused"), 0);
    EXPECT_TRUE(web.at("held").empty());
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Handoff, ListenersCanComeOverTheChannelInstead)
{
    // activation = "channel": no LISTEN_FDS; the worker asks for its
    // listeners over the channel (the example does when LISTEN_FDS is 0).
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.web]
command = [")" + requireEnv("FDSUP_TEST_HTTP_KEEPALIVE") +
                                  R"("]
sockets = ["web"]
activation = "channel"
ready = "channel"
)",
                              why))
        << why;
    ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    const auto answer = runProcess({"/usr/bin/curl", "-sS", "--max-time", "10",
                                    "http://127.0.0.1:" + std::to_string(fdsupd_.port("web")) + "/"});
    ASSERT_EQ(answer.exitCode, 0) << answer.err;
    EXPECT_EQ(nlohmann::json::parse(answer.out).at("pid"),
              fdsupd_.status("web").at("instances").at(0).at("pid"));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("listener from the channel"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Handoff, AWorkerThatDiesMidHandoffLosesOnlyWhatItHadNotHandedOver)
{
    // Generation 1 hands over half of its connections on DRAIN, then kills
    // itself; generation 2 (a reload changes the command) adopts that half.
    const std::string seqnum = requireEnv("FDSUP_TEST_SEQNUM_ECHO");
    const std::string hostile = requireEnv("FDSUP_TEST_HOSTILE_WORKER");
    auto config = [&](const std::string &command) {
        return fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.web]
command = )" + command +
               R"(
sockets = ["web"]
ready = "channel"
handoff = true
drain_timeout = "10s"
)";
    };
    std::string why;
    ASSERT_TRUE(
        fdsupd_.start(config("[\"" + hostile + "\", \"echo-die\", \"" + fdsupd_.reportPath() + "\"]"), why))
        << why;
    auto client = varlink::Client::connect(fdsupd_.controlPath(), 10s);
    ASSERT_TRUE(client) << client.error().message;
    auto call = [&](const char *method, nlohmann::json parameters) {
        auto reply = client->call(varlink::Call{method, std::move(parameters), false, false});
        if (!reply) {
            throw std::runtime_error(reply.error().message);
        }
        return *reply;
    };
    ASSERT_EQ(call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    // A generation-2 worker holds as many descriptors in fdsupd as this one.
    const int baseline = countFdsOf(fdsupd_.pid());
    constexpr int kClients = 20;
    SeqnumClients clients(fdsupd_.port("web"), kClients);
    ASSERT_TRUE(waitUntil([&] { return clients.rounds() >= 200; })) << clients.rounds() << " rounds";

    writeFile(fdsupd_.dir() / "fdsupd.toml", config("[\"" + seqnum + "\"]"));
    const auto reload = call("io.fdsup.Manager.Reload", nlohmann::json::object());
    ASSERT_EQ(reload.error, "") << reload.parameters.dump();
    const auto handed = fdsupd_.reports().waitFor(
        [](const std::string &m) { return m.starts_with("handed "); }, kEventDeadline);
    ASSERT_TRUE(handed.has_value());
    EXPECT_TRUE(handed->starts_with("handed 10 ")) << *handed;
    // The adopted half keeps going; the other half was closed with the worker.
    const std::uint64_t after = clients.rounds();
    (void)waitUntil([&] { return clients.rounds() >= after + 500; });
    clients.close();
    EXPECT_EQ(clients.errors().size(), static_cast<std::size_t>(kClients / 2))
        << ::testing::PrintToString(clients.errors());
    EXPECT_GE(clients.rounds(), after + 500) << "the adopted connections did not go on";
    const auto connections = call("io.fdsup.Manager.Connections", {{"service", "web"}});
    const auto &web = connections.parameters.at("services").at(0);
    EXPECT_EQ(web.at("handed"), kClients / 2);
    EXPECT_EQ(web.at("adopted"), kClients / 2);
    EXPECT_TRUE(web.at("held").empty());
    EXPECT_EQ(countFdsOf(fdsupd_.pid()), baseline);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
