// The systemd-unit suite: what the packaged units allow and keep, under a real systemd user manager (the
// example fdsupd.socket, a worker dropped to its user inside the hardened fdsupd.service).
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "test_support.hpp"
#include "user_manager.hpp"

namespace fdsup::test {
namespace {

const char *const kService = "fdsupd.service";
const char *const kSocket = "fdsupd.socket";

class SystemdUnitTest : public ManagedUnitTest<SystemdUnitTest> {
    friend class ManagedUnitTest<SystemdUnitTest>; // its hooks

protected:
    static std::vector<std::string> units() { return {kService, kSocket}; }

    // The packaged fdsupd.service, unchanged but for this build's paths.
    void installService(const std::string &config) const
    {
        std::string unit = readFile(requireEnv("FDSUP_SERVICE_UNIT"));
        replaceAll(unit, "@sbindir@/fdsupd", requireEnv("FDSUPD"));
        replaceAll(unit, "@bindir@/fdsupctl reload", requireEnv("FDSUPCTL") + " -s " + control() + " reload");
        replaceAll(unit, "/etc/fdsupd/fdsupd.toml", (dir_ / "fdsupd.toml").string());
        writeFile(dir_ / "fdsupd.toml", config);
        manager_->installUnit(kService, unit);
    }
    void start(const char *unit) const
    {
        const auto started = manager_->systemctl({"start", unit});
        ASSERT_EQ(started.exitCode, 0) << started.err << journal();
    }
    [[nodiscard]] nlohmann::json fdsupctl(const std::string &command) const
    {
        const auto r = runProcess({requireEnv("FDSUPCTL"), "-s", control(), command, "--json"});
        EXPECT_EQ(r.exitCode, 0) << r.err;
        return nlohmann::json::parse(r.out);
    }
    [[nodiscard]] std::string journal() const
    {
        return "\n--- journal:\n" +
               runProcess({"/usr/bin/journalctl", "-D", manager_->journalDir().string(), "--no-pager", "-n",
                           "40", "SYSLOG_IDENTIFIER=fdsupd"})
                   .out +
               manager_->log();
    }
};

std::string webService(const std::string &extra = "")
{
    return "\n[service.web]\ncommand = [" + quoted(requireEnv("FDSUP_TEST_SD_WORKER")) +
           "]\nsockets = [\"web\"]\nready = \"notify\"\n" + extra;
}

// GET / on the port; the worker's JSON answer.
nlohmann::json get(int port)
{
    const auto r = runProcess(
        {"/usr/bin/curl", "-sS", "--max-time", "10", "http://127.0.0.1:" + std::to_string(port) + "/"});
    return r.exitCode == 0 ? nlohmann::json::parse(r.out, nullptr, false) : nlohmann::json();
}

// packaging/systemd/fdsupd.socket as shipped, on a loopback port instead of
// port 80: systemd binds it and passes it as LISTEN_FDNAMES=web, and fdsupd
// adopts it for [socket.web] rather than binding the address itself.
TEST_F(SystemdUnitTest, TheExampleSocketUnitPassesItsListenerByName)
{
    const int port = freePort();
    const std::string address = "127.0.0.1:" + std::to_string(port);
    std::string socketUnit = readFile(requireEnv("FDSUP_SOCKET_UNIT"));
    ASSERT_NE(socketUnit.find("ListenStream=0.0.0.0:80\n"), std::string::npos);
    replaceAll(socketUnit, "ListenStream=0.0.0.0:80\n", "ListenStream=" + address + "\n");
    manager_->installUnit(kSocket, socketUnit);
    installService("[supervisor]\ncontrol = " + quoted(control()) + "\n\n[socket.web]\nlisten = \"tcp://" +
                   address + "\"\n" + webService());
    start(kSocket);
    start(kService);

    const auto sockets = fdsupctl("sockets").at("sockets");
    ASSERT_EQ(sockets.size(), 1U) << sockets.dump();
    EXPECT_EQ(sockets.at(0).at("bound").at(0).at("origin"), "adopted") << sockets.dump();
    EXPECT_EQ(sockets.at(0).at("bound").at(0).at("address"), address) << sockets.dump();
    EXPECT_TRUE(get(port).contains("pid")) << journal();

    // The socket is systemd's: with fdsupd stopped it still accepts (into
    // the backlog), and fdsupd started again adopts it again.
    ASSERT_EQ(manager_->systemctl({"stop", kService}).exitCode, 0);
    EXPECT_TRUE(loopbackAccepts(port));
    start(kService);
    EXPECT_EQ(fdsupctl("sockets").at("sockets").at(0).at("bound").at(0).at("origin"), "adopted");
    EXPECT_TRUE(get(port).contains("pid")) << journal();
}

// NoNewPrivileges= and CapabilityBoundingSet= of the hardened unit do not
// stop fdsupd from starting a worker as its user, and the worker keeps the
// sandbox: no_new_privs set, no capability in its bounding set beyond the
// unit's.
TEST_F(SystemdUnitTest, AWorkerDropsToItsUserInsideTheHardenedUnit)
{
    installService("[supervisor]\ncontrol = " + quoted(control()) +
                   "\n\n[socket.web]\nlisten = \"tcp://127.0.0.1:0\"\n" +
                   webService("user = \"nobody\"\ngroup = \"nogroup\"\nworking_directory = \"/\"\n"));
    start(kService);
    const auto instance = fdsupctl("status").at("services").at(0).at("instances").at(0);
    const std::string status = readFile("/proc/" + std::to_string(instance.at("pid").get<int>()) + "/status");
    EXPECT_NE(status.find("\nUid:\t65534\t65534\t65534\t65534\n"), std::string::npos) << status;
    EXPECT_NE(status.find("\nNoNewPrivs:\t1\n"), std::string::npos) << status;
    EXPECT_NE(status.find("\nCapEff:\t0000000000000000\n"), std::string::npos) << status;
    // CAP_CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID, NET_BIND_SERVICE.
    EXPECT_NE(status.find("\nCapBnd:\t00000000000004eb\n"), std::string::npos) << status;
}

// packaging/config/fdsupd.toml, the /etc/fdsupd/fdsupd.toml that `meson
// install` and the package ship, under the packaged unit (its control
// socket moved to the test's directory): fdsupd starts, is ready, answers
// status, and runs nothing.
TEST_F(SystemdUnitTest, TheShippedConfigurationStartsAndRunsNothing)
{
    std::string config = readFile(std::filesystem::path(requireEnv("FDSUP_SOURCE_ROOT")) / "packaging" /
                                  "config" / "fdsupd.toml");
    ASSERT_NE(config.find("\"/run/fdsupd/control.sock\""), std::string::npos);
    replaceAll(config, "\"/run/fdsupd/control.sock\"", quoted(control()));
    installService(config);
    start(kService);
    EXPECT_EQ(manager_->property(kService, "ActiveState"), "active");
    const auto status = fdsupctl("status");
    EXPECT_EQ(status.at("services"), nlohmann::json::array()) << status.dump();
    EXPECT_EQ(fdsupctl("sockets").at("sockets"), nlohmann::json::array());
}

// What fdsupd.socket is for, without the user manager (it cannot run a unit
// as another user): a socket activator (systemd-socket-activate, the same
// protocol as a .socket unit) binds port 80 in a network namespace of the
// test's own and passes it as "web" to fdsupd run as nobody with no
// capability at all. The first connection starts fdsupd and waits in the
// backlog; fdsupd adopts the socket, serves it, and restarts its worker
// with a handoff, all unprivileged.
TEST(UnprivilegedFdsupd, ServesAPrivilegedPortPassedByASocketActivator)
{
    if (geteuid() != 0) {
        GTEST_SKIP() << "needs root to make a network namespace and drop to nobody";
    }
    TempDir dir;
    ASSERT_EQ(::chown(dir.path().c_str(), 65534, 65534), 0);
    const auto config = dir / "fdsupd.toml";
    writeFile(config, "[supervisor]\ncontrol = " + quoted((dir / "control.sock").string()) +
                          "\n\n[socket.web]\nlisten = \"tcp://127.0.0.1:80\"\n\n[service.web]\ncommand = [" +
                          quoted(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE")) +
                          "]\nsockets = [\"web\"]\nready = \"channel\"\nhandoff = true\n");
    const std::string script = R"sh(set -eu
ip link set lo up
mkfifo "$LOG.fifo"
systemd-socket-activate -l 127.0.0.1:80 --fdname=web -- \
  setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
  "$FDSUPD" -c "$CFG" >"$LOG.fifo" 2>&1 &
fdsupd=$!
trap 'kill $fdsupd 2>/dev/null || true; wait' EXIT
# The activator's first line says it listens (deadline 10 s); the rest of
# what it and fdsupd print goes on to the log.
exec 3<"$LOG.fifo"
IFS= read -r -t 10 first <&3
case "$first" in "Listening on 127.0.0.1:80"*) ;; *) echo "activator: $first" >&2; exit 1 ;; esac
echo "$first" >"$LOG"
cat <&3 >>"$LOG" &
echo "first: $(curl -sS -m 20 http://127.0.0.1:80/)"
grep -E '^(Uid|CapEff|CapBnd):' /proc/$fdsupd/status
"$FDSUPCTL" -s "$CTL" restart web --wait >/dev/null
echo "second: $(curl -sS -m 20 http://127.0.0.1:80/)"
echo "workers: $(ps -o user= --ppid $fdsupd | sort -u | tr '\n' ' ')"
)sh";
    const auto log = dir / "fdsupd.log";
    const ProcessResult r = runProcess({"/usr/bin/unshare", "-n", "/bin/bash", "-c", script},
                                       {"FDSUPD=" + requireEnv("FDSUPD"),
                                        "FDSUPCTL=" + requireEnv("FDSUPCTL"), "CFG=" + config.string(),
                                        "CTL=" + (dir / "control.sock").string(), "LOG=" + log.string()},
                                       std::chrono::seconds(60));
    std::error_code ec;
    const std::string fdsupdLog = std::filesystem::exists(log, ec) ? readFile(log) : "";
    ASSERT_EQ(r.exitCode, 0) << r.out << r.err << fdsupdLog;
    EXPECT_THAT(r.out, ::testing::HasSubstr("first: {\"pid\":"));
    EXPECT_THAT(r.out, ::testing::HasSubstr("\"generation\":\"1\"}"));
    EXPECT_THAT(r.out, ::testing::HasSubstr("second: {\"pid\":"));
    EXPECT_THAT(r.out, ::testing::HasSubstr("\"generation\":\"2\"}"));
    EXPECT_THAT(r.out, ::testing::HasSubstr("Uid:\t65534\t65534\t65534\t65534"));
    EXPECT_THAT(r.out, ::testing::HasSubstr("CapEff:\t0000000000000000"));
    EXPECT_THAT(r.out, ::testing::HasSubstr("CapBnd:\t0000000000000000"));
    EXPECT_THAT(r.out, ::testing::HasSubstr("workers: nobody \n"));
    EXPECT_THAT(fdsupdLog, ::testing::HasSubstr("Adopted socket 'web' (1 descriptor: 127.0.0.1:80)"));
}

} // namespace
} // namespace fdsup::test
