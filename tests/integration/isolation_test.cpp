// A worker cannot reach another service: real fdsupd, a real victim worker and a real attacker worker.
//
// Notify: the attacker is an instance of its own service (python3, exec'd by fdsupd,
// so the kernel's SCM_CREDENTIALS name its pid): everything it sends to the
// victim's notify socket must be dropped, counted and logged, and change
// nothing of the victim (descriptor store, readiness, the process fdsupd
// follows). Activation: an instance of another service, running as another
// user, connects to the victim's activation socket to join it as an
// external worker: refused, and the victim gets nothing. Preload: an
// instance of another service loads the real shim pointed at a wrapped
// victim's preload socket: refused, and it gets none of the victim's
// listeners. Channel: an instance of another service hands over, on its own
// channel, its client connection to the victim's listener: refused, and
// neither broker holds it.
#include <string>

#include <sys/stat.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using Json = nlohmann::json;

// argv: the victim's notify socket, the victim's pid. Sends to the victim
// FDSTORE=1 with a descriptor, FDSTOREREMOVE=1 of the victim's own entry,
// STOPPING=1 and WATCHDOG=trigger; then READY=1 with MAINPID= naming the
// victim on its own socket, and waits to be stopped.
constexpr const char *kAttacker = R"(
import array, os, signal, socket, sys
victim, victim_pid = sys.argv[1], int(sys.argv[2])
def address(a):
    return "\0" + a[1:] if a.startswith("@") else a
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
r, w = os.pipe()
s.sendmsg([b"FDSTORE=1\nFDNAME=stolen"],
          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]))], 0, address(victim))
s.sendto(b"FDSTOREREMOVE=1\nFDNAME=keep", address(victim))
s.sendto(b"STOPPING=1", address(victim))
s.sendto(b"WATCHDOG=trigger", address(victim))
s.sendto(b"READY=1\nMAINPID=%d" % victim_pid, address(os.environ["NOTIFY_SOCKET"]))
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    signal.pause()
)";

class Isolation : public DaemonTest<> {
protected:
    std::string victimConfig() const
    {
        return fdsupd_.supervisorTable() + R"(
[service.victim]
command = )" + fdsupd_.workerCommand("serve", {"--fdstore", "keep"}) +
               "\n";
    }
};

TEST_F(Isolation, NotificationsToAnotherServicesSocketChangeNothingThere)
{
    std::string why;
    ASSERT_TRUE(fdsupd_.start(victimConfig(), why)) << why;
    ASSERT_TRUE(waitUntil([&] {
        const Json s = fdsupd_.status("victim");
        return s.at("state") == "running" && s.at("fdstore").size() == 1;
    })) << fdsupd_.status("victim");
    const Json before = fdsupd_.status("victim");
    const std::string victimSocket = before.at("notify_socket");
    const int victimPid = before.at("instances").at(0).at("pid");
    ASSERT_EQ(before.at("fdstore"), Json::parse(R"([{"name": "keep", "fds": 1}])"));

    // The attacker arrives with a reload, once the victim's socket is known.
    writeFile(
        fdsupd_.dir() / "fdsupd.toml",
        victimConfig() + "\n[service.attacker]\ncommand = " +
            Json({"/usr/bin/python3", "-c", kAttacker, victimSocket, std::to_string(victimPid)}).dump() +
            "\n");
    const auto reloaded = fdsupd_.fdsupctl({"reload"});
    ASSERT_EQ(reloaded.exitCode, 0) << reloaded.err;
    ASSERT_TRUE(waitUntil([&] { return fdsupd_.status("attacker").at("state") == "running"; }))
        << fdsupd_.status("attacker");
    const int attackerPid = fdsupd_.status("attacker").at("instances").at(0).at("pid");
    EXPECT_NE(attackerPid, victimPid);

    // All four datagrams sent to the victim are dropped and counted...
    ASSERT_TRUE(waitUntil([&] { return fdsupd_.status("victim").at("notify_dropped") == 4; }))
        << fdsupd_.status("victim");
    // ... and said, with the sender's pid.
    const std::string line = "Ignoring notification for service 'victim' from pid " +
                             std::to_string(attackerPid) + ", not one of its instances";
    EXPECT_NE(fdsupd_.log().find(line), std::string::npos) << fdsupd_.log();
    // Nothing of the victim changed: its store, its instance, its state.
    const Json after = fdsupd_.status("victim");
    EXPECT_EQ(after.at("fdstore"), before.at("fdstore"));
    EXPECT_EQ(after.at("state"), "running");
    EXPECT_EQ(after.at("instances").size(), 1U);
    EXPECT_EQ(after.at("instances").at(0).at("pid"), victimPid);
    EXPECT_EQ(after.at("instances").at(0).at("state"), "ready");
    EXPECT_EQ(after.at("restarts"), 0);
    // The attacker's own store got nothing either, and its MAINPID= did not
    // make fdsupd follow the victim: stopping the attacker leaves the victim.
    EXPECT_EQ(fdsupd_.status("attacker").at("fdstore"), Json::array());
    const auto stopped = fdsupd_.fdsupctl({"stop", "attacker"});
    ASSERT_EQ(stopped.exitCode, 0) << stopped.err;
    EXPECT_EQ(kill(victimPid, 0), 0) << "the victim's process was signalled";
    const Json still = fdsupd_.status("victim");
    EXPECT_EQ(still.at("instances").at(0).at("pid"), victimPid);
    EXPECT_EQ(still.at("instances").at(0).at("state"), "ready");
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Isolation, AWorkerOfAnotherServiceCannotJoinTheVictimsActivationSocket)
{
    // nobody must reach the activation socket and the test's report socket.
    ASSERT_EQ(chmod(fdsupd_.dir().path().c_str(), 0711), 0);
    ASSERT_EQ(chmod(fdsupd_.reportPath().c_str(), 0666), 0);
    const std::string activation = (fdsupd_.dir() / "victim.activation").string();
    const std::string config = fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.victim]
command = [)" + quoted(requireEnv("FDSUP_TEST_SEQNUM_ECHO")) +
                               R"(]
sockets = ["web"]
ready = "channel"
handoff = true
activation_socket = )" + quoted(activation) +
                               R"(

[service.attacker]
command = )" +
                               Json({requireEnv("FDSUP_TEST_HOSTILE_WORKER"), "--connect", activation,
                                     "hello", fdsupd_.reportPath()})
                                   .dump() +
                               R"(
user = "nobody"
ready = "started"
restart = "never"
)";
    std::string why;
    ASSERT_TRUE(fdsupd_.start(config, why)) << why;
    const auto rejected = fdsupd_.reports().waitFor(
        [](const std::string &m) { return m.starts_with("rejected "); }, kEventDeadline);
    ASSERT_TRUE(rejected.has_value()) << fdsupd_.log();
    EXPECT_TRUE(rejected->starts_with("rejected 13 ")) << *rejected; // EACCES
    // fdsupd said why, and the attacker read it (its stdout is in the log).
    EXPECT_TRUE(waitUntil([&] {
        return fdsupd_.log().find("rejected 13 uid 65534 (gid 65534) may not join service 'victim'") !=
               std::string::npos;
    })) << fdsupd_.log();
    EXPECT_NE(fdsupd_.log().find("refused external worker uid 65534"), std::string::npos) << fdsupd_.log();
    // The victim has no external worker and its own instance is as it was.
    const Json victim = fdsupd_.status("victim");
    EXPECT_EQ(victim.at("external"), Json::array());
    EXPECT_EQ(victim.at("state"), "running");
    EXPECT_EQ(victim.at("instances").size(), 1U);
    EXPECT_EQ(victim.at("instances").at(0).at("state"), "ready");
    const auto connections = fdsupd_.call("io.fdsup.Manager.Connections", {{"service", "victim"}});
    ASSERT_EQ(connections.error, "");
    const Json &channel = connections.parameters.at("services").at(0);
    EXPECT_EQ(channel.at("instances").size(), 1U) << channel; // only its own instance
    EXPECT_EQ(channel.at("instances").at(0).at("external"), false) << channel;
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Isolation, AWorkerOfAnotherServiceGetsNoListenerFromTheVictimsPreloadSocket)
{
    // The victim: wrapped (a preload socket), never binding, ready once started.
    const std::string victim = fdsupd_.supervisorTable(requireEnv("FDSUP_TEST_HARMLESS_PRELOAD")) + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.victim]
command = ["/bin/sleep", "1000"]
sockets = ["web"]
wrap = "preload"
ready = "started"
)";
    std::string why;
    ASSERT_TRUE(fdsupd_.start(victim, why)) << why;
    ASSERT_TRUE(waitUntil([&] { return fdsupd_.status("victim").at("state") == "running"; }));
    const Json before = fdsupd_.status("victim");
    const std::string preloadSocket = before.at("preload_socket");
    const int victimPid = before.at("instances").at(0).at("pid");

    // The attacker: an instance of its own service that loads the real shim
    // aimed at the victim's preload socket, then binds.
    writeFile(fdsupd_.dir() / "fdsupd.toml",
              victim + "\n[service.attacker]\ncommand = " +
                  Json({"/usr/bin/env", "FDSUP_PRELOAD=" + preloadSocket,
                        "LD_PRELOAD=" + requireEnv("FDSUP_TEST_PRELOAD"), "/usr/bin/python3", "-c",
                        "import socket; socket.socket().bind(('127.0.0.1', 0))"})
                      .dump() +
                  "\nready = \"started\"\nrestart = \"never\"\n");
    const auto reloaded = fdsupd_.fdsupctl({"reload"});
    ASSERT_EQ(reloaded.exitCode, 0) << reloaded.err;
    // fdsupd refuses it, naming the pid; the shim prints the REJECT.
    ASSERT_TRUE(waitUntil([&] {
        return fdsupd_.log().find("victim: refused a preload shim") != std::string::npos &&
               fdsupd_.log().find("fdsup-preload: cannot get the listeners from fdsupd at " + preloadSocket +
                                  ": REJECT") != std::string::npos;
    })) << fdsupd_.log();
    EXPECT_NE(fdsupd_.log().find("is not a process of service victim"), std::string::npos) << fdsupd_.log();
    // The victim is as it was: same instance, its listener adopted by nobody.
    const Json after = fdsupd_.status("victim");
    EXPECT_EQ(after.at("state"), "running");
    EXPECT_EQ(after.at("instances").at(0).at("pid"), victimPid);
    EXPECT_TRUE(after.at("instances").at(0).at("listeners").at(0).at("adopted_by").is_null()) << after;
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Isolation, AConnectionToAnotherServicesListenerCannotBeHandedOver)
{
    const std::string victim = fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.victim]
command = )" + fdsupd_.workerCommand("serve") +
                               R"(
sockets = ["web"]
handoff = true

[socket.mine]
listen = "tcp://127.0.0.1:0"
)";
    std::string why;
    ASSERT_TRUE(fdsupd_.start(victim, why)) << why;
    const int victimPort = fdsupd_.port("web");
    const int victimPid = fdsupd_.status("victim").at("instances").at(0).at("pid");

    writeFile(fdsupd_.dir() / "fdsupd.toml",
              victim + "\n[service.attacker]\ncommand = " +
                  Json({requireEnv("FDSUP_TEST_HOSTILE_WORKER"), "client-of:" + std::to_string(victimPort),
                        fdsupd_.reportPath()})
                      .dump() +
                  "\nsockets = [\"mine\"]\nready = \"channel\"\nhandoff = true\n");
    const auto reloaded = fdsupd_.fdsupctl({"reload"});
    ASSERT_EQ(reloaded.exitCode, 0) << reloaded.err;
    const auto result = fdsupd_.reports().waitFor(
        [](const std::string &m) { return m.starts_with("result ") || m.starts_with("error "); },
        kEventDeadline);
    ASSERT_TRUE(result.has_value()) << fdsupd_.log();
    EXPECT_TRUE(result->starts_with("result 1 ")) << *result; // EPERM
    EXPECT_NE(fdsupd_.log().find("refused: the handed-over connection was not accepted on one of this "
                                 "service's listeners"),
              std::string::npos)
        << fdsupd_.log();
    // Neither broker holds it; the victim's counted nothing.
    const auto connections = fdsupd_.call("io.fdsup.Manager.Connections");
    ASSERT_EQ(connections.error, "");
    for (const auto &service : connections.parameters.at("services")) {
        EXPECT_TRUE(service.at("held").empty()) << service;
        EXPECT_EQ(service.at("handed"), 0) << service;
        EXPECT_EQ(service.at("refused"), service.at("service") == "attacker" ? 1 : 0) << service;
    }
    const Json after = fdsupd_.status("victim");
    EXPECT_EQ(after.at("instances").at(0).at("pid"), victimPid);
    EXPECT_EQ(after.at("instances").at(0).at("state"), "ready");
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
