// External workers: processes fdsupd did not spawn join a service over its
// activation socket. A real fdsupd, real worker processes (the libactivate
// examples, the hostile worker, setpriv for other credentials), real clients.
#include <cerrno>
#include <csignal>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/stat.h>

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

class External : public DaemonTest<> {
protected:
    [[nodiscard]] std::string activationPath() const { return (fdsupd_.dir() / "web.activation").string(); }

    // [service.web] of seqnum-echo on the worker channel, with an activation
    // socket external workers of user "nobody", uid 4242 (no passwd entry)
    // or group "daemon" may join.
    [[nodiscard]] std::string config(int instances, const std::string &extra = "") const
    {
        const std::string service =
            "instances = " + std::to_string(instances) +
            "\nready = \"channel\"\nhandoff = true\ndrain_timeout = \"10s\"\nactivation_socket = " +
            quoted(activationPath()) +
            "\nactivation_users = [\"nobody\", \"4242\"]\nactivation_groups = [\"daemon\"]\n";
        return fdsupd_.supervisorTable() + socketAndService("web", "tcp://127.0.0.1:0",
                                                            commandOf(requireEnv("FDSUP_TEST_SEQNUM_ECHO")),
                                                            service + extra);
    }

    void start(int instances, const std::string &extra = "")
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(config(instances, extra), why)) << why;
        // One control connection throughout, so that connections opened and
        // closed around fd counts cannot blur them.
        auto client = varlink::Client::connect(fdsupd_.controlPath(), 10s);
        ASSERT_TRUE(client) << client.error().message;
        client_.emplace(std::move(*client));
        ASSERT_EQ(call("Start").error, "");
    }

    // io.fdsup.Manager.METHOD for service web; throws on transport errors.
    varlink::Reply call(const std::string &method, nlohmann::json parameters = nlohmann::json::object())
    {
        parameters["service"] = "web";
        auto reply = client_->call(varlink::Call{"io.fdsup.Manager." + method, parameters, false, false});
        if (!reply) {
            throw std::runtime_error(reply.error().message);
        }
        return *reply;
    }
    nlohmann::json status() { return call("Status").parameters.at("services").at(0); }

    // The external workers fdsupd lists, once `done` holds for them (polling
    // Status); fails at the deadline.
    nlohmann::json waitExternal(const std::function<bool(const nlohmann::json &)> &done)
    {
        nlohmann::json external;
        if (!waitUntil([&] {
                external = status().at("external");
                return done(external);
            })) {
            ADD_FAILURE() << "external workers never got there: " << external.dump();
        }
        return external;
    }
    static bool allReady(const nlohmann::json &external, std::size_t count)
    {
        if (external.size() != count) {
            return false;
        }
        for (const auto &e : external) {
            if (!e.at("ready").get<bool>()) {
                return false;
            }
        }
        return true;
    }

    // The hostile worker joining as an external worker and leaving at once
    // ("hello" mode), as another user when setpriv options are given.
    ProcessResult hello(const std::vector<std::string> &setpriv = {})
    {
        std::vector<std::string> argv;
        if (!setpriv.empty()) {
            argv = {"/usr/bin/setpriv"};
            argv.insert(argv.end(), setpriv.begin(), setpriv.end());
            argv.emplace_back("--");
        }
        for (const auto &arg : {requireEnv("FDSUP_TEST_HOSTILE_WORKER"), std::string("--connect"),
                                activationPath(), std::string("hello"), fdsupd_.reportPath()}) {
            argv.push_back(arg);
        }
        return runProcess(argv);
    }

    std::optional<varlink::Client> client_;
};

TEST_F(External, CredentialsDecideWhoMayJoin)
{
    ASSERT_NO_FATAL_FAILURE(start(0));
    // Let other users reach the socket file (mode 0666) in the test's directory.
    ASSERT_EQ(chmod(fdsupd_.dir().path().c_str(), 0711), 0);
    struct stat st {};
    ASSERT_EQ(stat(activationPath().c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0666U) << "access is decided by SO_PEERCRED, not the file";
    const int baseline = countFdsOf(fdsupd_.pid());

    // Root, and the user fdsupd runs as: always. WELCOME names an external
    // instance, the current generation, HANDOFF|ADOPT|LISTENERS.
    auto root = hello();
    EXPECT_EQ(root.exitCode, 0) << root.out << root.err;
    EXPECT_THAT(root.out, HasSubstr("welcome 4294967295 1 7"));
    // activation_users = ["nobody", "4242"].
    auto nobody = hello({"--reuid=65534", "--regid=65534", "--clear-groups"});
    EXPECT_EQ(nobody.exitCode, 0) << nobody.out << nobody.err;
    auto numeric = hello({"--reuid=4242", "--regid=4242", "--clear-groups"});
    EXPECT_EQ(numeric.exitCode, 0) << numeric.out << numeric.err;
    // Anyone else: EACCES, with fdsupd's reason.
    auto stranger = hello({"--reuid=12345", "--regid=12345", "--clear-groups"});
    EXPECT_EQ(stranger.exitCode, 5) << stranger.out << stranger.err;
    EXPECT_THAT(stranger.out, HasSubstr("rejected 13 uid 12345 (gid 12345) may not join service 'web'"));
    // activation_groups = ["daemon"] (gid 1): as a supplementary group, or the primary one.
    auto supplementary = hello({"--reuid=12345", "--regid=12345", "--groups=1"});
    EXPECT_EQ(supplementary.exitCode, 0) << supplementary.out << supplementary.err;
    auto primary = hello({"--reuid=12345", "--regid=1", "--clear-groups"});
    EXPECT_EQ(primary.exitCode, 0) << primary.out << primary.err;
    EXPECT_THAT(fdsupd_.log(), HasSubstr("refused external worker uid 12345"));

    // Every one of them is gone from fdsupd, and so are their descriptors.
    waitExternal([](const nlohmann::json &external) { return external.empty(); });
    EXPECT_EQ(countFdsOf(fdsupd_.pid()), baseline);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(External, AStoppedServiceTurnsExternalWorkersAwayAndTheSocketGoesWithFdsupd)
{
    ASSERT_NO_FATAL_FAILURE(start(0));
    ASSERT_EQ(call("Stop").error, "");
    auto refused = hello();
    EXPECT_EQ(refused.exitCode, 5) << refused.out << refused.err;
    EXPECT_THAT(refused.out, HasSubstr("rejected 108 service 'web' is stopped")); // ESHUTDOWN
    ASSERT_EQ(call("Start").error, "");
    EXPECT_EQ(hello().exitCode, 0);
    EXPECT_EQ(fdsupd_.stop(), 0);
    struct stat st {};
    EXPECT_EQ(lstat(activationPath().c_str(), &st), -1) << "the activation socket was left behind";
}

TEST_F(External, ConnectionsMoveFromASpawnedWorkerToAnExternalOneAndBack)
{
    // One spawned seqnum-echo, and one run by the test that connects to the
    // activation socket: both accept on the same listener.
    ASSERT_NO_FATAL_FAILURE(start(1));
    const std::string seqnum = requireEnv("FDSUP_TEST_SEQNUM_ECHO");
    BackgroundProcess external({seqnum, "--connect", activationPath()}, fdsupd_.dir() / "external.log");
    const auto joined = waitExternal([](const nlohmann::json &e) { return allReady(e, 1); });
    ASSERT_EQ(joined.size(), 1U) << external.log();
    EXPECT_EQ(joined.at(0).at("pid").get<pid_t>(), external.pid());
    const pid_t spawned = *instancePids(status()).begin();
    const int port = fdsupd_.port("web");
    SeqnumClients clients(port, 50);
    auto roundsPast = [&](std::uint64_t target) {
        (void)waitUntil([&] { return clients.rounds() >= target || !clients.errors().empty(); });
        return clients.rounds() >= target;
    };
    ASSERT_TRUE(roundsPast(500)) << ::testing::PrintToString(clients.errors());

    // Scaled to 0, the spawned worker drains over its channel and hands its
    // connections over; the external worker is the only one to adopt them.
    const auto down = fdsupd_.fdsupctl({"scale", "web", "0"});
    ASSERT_EQ(down.exitCode, 0) << down.out << down.err;
    ASSERT_TRUE(roundsPast(clients.rounds() + 500)) << ::testing::PrintToString(clients.errors());
    for (const int clientPort : clients.localPorts()) {
        EXPECT_EQ(serverPidOf(port, clientPort, {external.pid(), spawned}), external.pid())
            << "client port " << clientPort;
    }
    const auto table = fdsupd_.fdsupctl({"connections", "web"});
    EXPECT_THAT(table.out, HasSubstr("external " + joined.at(0).at("id").dump()));

    // The external worker is told to go by its own operator (SIGTERM): it
    // hands every connection over and exits; fdsupd holds them until a
    // spawned worker is ready to adopt them.
    external.signal(SIGTERM);
    EXPECT_EQ(external.wait(kEventDeadline), 0) << external.log();
    EXPECT_EQ(call("Connections").parameters.at("services").at(0).at("held").size(), 50U);
    const auto up = fdsupd_.fdsupctl({"scale", "web", "1"});
    ASSERT_EQ(up.exitCode, 0) << up.out << up.err;
    ASSERT_TRUE(roundsPast(clients.rounds() + 500)) << ::testing::PrintToString(clients.errors());
    const std::set<pid_t> now = instancePids(status());
    ASSERT_EQ(now.size(), 1U);
    for (const int clientPort : clients.localPorts()) {
        EXPECT_EQ(serverPidOf(port, clientPort, now), *now.begin()) << "client port " << clientPort;
    }
    clients.close();
    EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
    EXPECT_THAT(external.log(), HasSubstr("SIGTERM: handing over"));
    const auto connections = call("Connections");
    const auto &web = connections.parameters.at("services").at(0);
    EXPECT_EQ(web.at("handed"), web.at("adopted"));
    EXPECT_GE(web.at("handed").get<int>(), 50); // the external worker's 50, plus the spawned one's share
    EXPECT_EQ(web.at("refused"), 0);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// A hostile external worker is refused like a hostile instance: it gets its
// specific answer, and nothing of it stays in fdsupd.
struct Abuse {
    const char *mode;
    const char *answer;
};

class HostileExternal : public External, public ::testing::WithParamInterface<Abuse> {};

TEST_P(HostileExternal, IsRefusedAndLeavesNothingBehind)
{
    const Abuse abuse = GetParam();
    ASSERT_NO_FATAL_FAILURE(start(1));
    const int baseline = countFdsOf(fdsupd_.pid());
    {
        BackgroundProcess hostile({requireEnv("FDSUP_TEST_HOSTILE_WORKER"), "--connect", activationPath(),
                                   abuse.mode, fdsupd_.reportPath()},
                                  fdsupd_.dir() / "hostile.log");
        const auto answer = fdsupd_.reports().waitFor(
            [](const std::string &m) {
                return m.starts_with("result ") || m.starts_with("error ") || m.starts_with("sent ") ||
                       m.starts_with("closed ") || m.starts_with("timeout ");
            },
            kEventDeadline);
        ASSERT_TRUE(answer.has_value()) << "the hostile worker reported nothing: " << hostile.log();
        EXPECT_THAT(*answer, HasSubstr(abuse.answer)) << *answer;
        // The spawned instance still serves.
        SeqnumClients clients(fdsupd_.port("web"), 1);
        EXPECT_TRUE(waitUntil([&] { return clients.rounds() >= 10 || !clients.errors().empty(); }));
        clients.close();
        EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
        hostile.signal(SIGTERM);
        EXPECT_TRUE(hostile.wait(kEventDeadline).has_value());
    }
    waitExternal([](const nlohmann::json &external) { return external.empty(); });
    const auto connections = call("Connections");
    const auto &web = connections.parameters.at("services").at(0);
    EXPECT_EQ(web.at("handed"), 0);
    EXPECT_TRUE(web.at("held").empty());
    EXPECT_EQ(countFdsOf(fdsupd_.pid()), baseline);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Abuses, HostileExternal,
                         ::testing::Values(Abuse{"garbage", "error 74"},       // EBADMSG
                                           Abuse{"no-fd", "error 74"},         // EBADMSG: fd count
                                           Abuse{"short", "sent"},             // half a header, then gone
                                           Abuse{"not-socket", "result 88"},   // ENOTSOCK
                                           Abuse{"foreign", "result 1"},       // EPERM
                                           Abuse{"unconnected", "result 107"}, // ENOTCONN
                                           Abuse{"flood", "error 16"}),        // EBUSY
                         [](const auto &param) {
                             std::string name = param.param.mode;
                             std::erase(name, '-');
                             return name;
                         });

} // namespace
} // namespace fdsup::test
