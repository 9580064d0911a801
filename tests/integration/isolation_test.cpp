// A worker cannot reach another service: real fdsupd, a real victim worker and a real attacker worker.
//
// The attacker is an instance of its own service (python3, exec'd by fdsupd,
// so the kernel's SCM_CREDENTIALS name its pid): everything it sends to the
// victim's notify socket must be dropped, counted and logged, and change
// nothing of the victim (descriptor store, readiness, the process fdsupd
// follows).
#include <string>

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

} // namespace
} // namespace fdsup::test
