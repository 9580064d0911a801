// The two remaining units/examples/ files, run as written (paths and port
// rewritten by prepareExample): api-with-admin.toml (libactivate's
// http-keepalive as www-data, a TCP and a unix admin socket, channel
// readiness, handoff of keep-alive connections on restart) and
// queue-worker.toml (mailer.py: a lease that forbids two at once, notify
// readiness, stop-first restarts, SIGINT finishing the file in progress).
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "http_load.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

namespace fs = std::filesystem;

constexpr int kKeepAliveClients = 8;
constexpr std::size_t kRequests = 200;

// The example's [supervisor] table merged with the test's (control socket).
std::string withTestSupervisor(std::string config, const DaemonHarness &fdsupd)
{
    if (config.find("[supervisor]\n") == std::string::npos) {
        return fdsupd.supervisorTable() + config;
    }
    replaceAll(config, "[supervisor]\n", fdsupd.supervisorTable());
    return config;
}

// One GET over a unix stream socket, read to EOF (Connection: close); the
// whole answer, or "" when the connection failed.
std::string httpOverUnix(const fs::path &path)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.string().copy(addr.sun_path, sizeof addr.sun_path - 1);
    const timeval timeout{10, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        return "";
    }
    const std::string request = "GET /health HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
    if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
        return "";
    }
    std::string answer;
    char buf[4096];
    for (ssize_t n; (n = recv(fd.get(), buf, sizeof buf, 0)) > 0;) {
        answer.append(buf, static_cast<std::size_t>(n));
    }
    return answer;
}

// The real uid of a process, from /proc/PID/status.
uid_t uidOf(pid_t pid)
{
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string key;
    for (std::string line; std::getline(status, line);) {
        if (line.starts_with("Uid:")) {
            std::istringstream fields(line.substr(4));
            uid_t uid = 0;
            fields >> uid;
            return uid;
        }
    }
    return static_cast<uid_t>(-1);
}

class Examples : public DaemonTest<> {
protected:
    void SetUp() override
    {
        if (geteuid() != 0) {
            GTEST_SKIP() << "the examples run their workers as www-data and nobody: needs root";
        }
    }

    fs::path exampleDir() const { return fdsupd_.dir() / "example"; }

    void start(const std::string &config)
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(withTestSupervisor(config, fdsupd_), why)) << why;
    }

    nlohmann::json connections(const std::string &service)
    {
        const auto reply = fdsupd_.call("io.fdsup.Manager.Connections", {{"service", service}});
        EXPECT_EQ(reply.error, "");
        return reply.parameters.at("services").at(0);
    }

    // The pids of the service's instances once `n` are ready.
    std::set<pid_t> waitReady(const std::string &service, std::size_t n)
    {
        std::set<pid_t> pids;
        EXPECT_TRUE(waitUntil([&] {
            const auto status = fdsupd_.status(service);
            pids.clear();
            for (const auto &instance : status.at("instances")) {
                if (instance.at("state") == "ready" && instance.at("pid").is_number()) {
                    pids.insert(instance.at("pid").get<pid_t>());
                }
            }
            return pids.size() == n;
        })) << fdsupd_.status(service).dump();
        return pids;
    }
};

TEST_F(Examples, ApiWithAdminServesBothSocketsAndKeepsKeepAliveConnectionsAcrossARestart)
{
    const int port = freePort();
    const std::string config = prepareExample(
        exampleDir(), "api-with-admin", port,
        {{"/usr/libexec/fdsup/examples/http-keepalive", requireEnv("FDSUP_TEST_HTTP_KEEPALIVE")}});
    start(config);
    ASSERT_FALSE(HasFatalFailure());
    const std::set<pid_t> before = waitReady("api", 4);
    const passwd *www = getpwnam("www-data");
    ASSERT_NE(www, nullptr);
    for (const pid_t pid : before) {
        EXPECT_EQ(uidOf(pid), www->pw_uid) << "pid " << pid;
    }
    ASSERT_TRUE(answersOk(port));
    const fs::path admin = exampleDir() / "run" / "api-admin.sock";
    EXPECT_NE(httpOverUnix(admin).find("HTTP/1.1 200"), std::string::npos);
    struct stat st {};
    ASSERT_EQ(stat(admin.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660U);
    const group *adm = getgrnam("adm");
    ASSERT_NE(adm, nullptr);
    EXPECT_EQ(st.st_gid, adm->gr_gid);

    HttpLoad load(port, kKeepAliveClients, HttpLoad::Mode::KeepAlive, std::chrono::seconds(10));
    load.start();
    EXPECT_TRUE(load.waitForRequests(0, kRequests, kEventDeadline));
    const ProcessResult restart = fdsupd_.fdsupctl({"restart", "api", "--wait"});
    EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    EXPECT_TRUE(load.waitForRequests(load.requests(), kRequests, kEventDeadline));
    const HttpLoadReport report = load.stop();
    std::cout << "[ figures  ] api-with-admin, keep-alive across a restart: " << report.summary() << "\n";

    const std::set<pid_t> after = waitReady("api", 4);
    for (const pid_t pid : after) {
        EXPECT_EQ(before.count(pid), 0U) << "pid " << pid << " was not replaced";
    }
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed(), 0U) << report.summary();
    EXPECT_EQ(report.keepAliveRace, 0U) << "a connection was closed, not handed over: " << report.summary();
    // Each client's one connection went from its old worker to a new one.
    const auto api = connections("api");
    EXPECT_EQ(api.at("handed"), kKeepAliveClients) << api.dump();
    EXPECT_EQ(api.at("adopted"), api.at("handed")) << api.dump();
    EXPECT_EQ(api.at("refused"), 0) << api.dump();
    EXPECT_NE(httpOverUnix(admin).find("HTTP/1.1 200"), std::string::npos)
        << "admin socket after the restart";
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
