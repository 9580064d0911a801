// fdsupctl transfer: two real fdsupds, real workers, real clients under load on loopback.
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "http_load.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// The socket a process has open as fd: "socket:[INODE]".
std::string fdTarget(pid_t pid, int fd)
{
    std::error_code ec;
    return std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec)
        .string();
}

class TransferTest : public ::testing::Test {
protected:
    void TearDown() override
    {
        if (HasFailure()) {
            std::cerr << "---- source fdsupd log ----\n"
                      << source_.log() << "---- target fdsupd log ----\n"
                      << target_.log() << "--------------------\n";
        }
    }

    // [socket.web] and a 2-instance sd-worker service on it; `socket` is
    // the socket table's extra keys, `supervisor` the [supervisor] table's.
    static std::string config(DaemonHarness &d, const std::string &socket, const std::string &supervisor = "")
    {
        return d.supervisorTable() + supervisor + "\n[socket.web]\nlisten = \"tcp://127.0.0.1:0\"\n" +
               socket + "\n[service.web]\ncommand = " + d.workerCommand("serve") +
               "\nsockets = [\"web\"]\ninstances = 2\nstop_timeout = \"10s\"\n";
    }

    void startSource(const std::string &supervisor = "")
    {
        std::string why;
        ASSERT_TRUE(source_.start(config(source_, "backlog = 1024\n", supervisor), why)) << why;
        ASSERT_TRUE(waitUntil([&] { return source_.status("web").at("ready") == 2; }));
        port_ = source_.port("web");
        const auto sockets = source_.call("io.fdsup.Manager.Sockets").parameters.at("sockets");
        listener_ = fdTarget(source_.pid(), sockets.at(0).at("bound").at(0).at("fd").get<int>());
        ASSERT_THAT(listener_, HasSubstr("socket:["));
    }
    void startTarget(const std::string &configText)
    {
        std::string why;
        ASSERT_TRUE(target_.start(configText, why)) << why;
    }
    // The load runs and has been answered a few times.
    void startLoad()
    {
        load_ = std::make_unique<HttpLoad>(port_, 4, HttpLoad::Mode::Fresh);
        load_->start();
        ASSERT_TRUE(load_->waitForRequests(0, 50, kEventDeadline));
    }
    // More requests answered after the transfer, then the report.
    HttpLoadReport stopLoad()
    {
        const std::size_t now = load_->requests();
        EXPECT_TRUE(load_->waitForRequests(now, 100, kEventDeadline));
        return load_->stop();
    }
    // The source still runs its two instances, serves, and holds the socket.
    void expectSourceUnchanged(const std::set<pid_t> &pids)
    {
        const auto status = source_.status("web");
        EXPECT_EQ(status.at("state"), "running");
        EXPECT_EQ(instancePids(status), pids);
        EXPECT_EQ(source_.port("web"), port_);
        EXPECT_TRUE(answersOk(port_));
    }
    ProcessResult transferAs(const std::string &user)
    {
        std::vector<std::string> argv;
        if (!user.empty()) {
            argv = {"/usr/bin/setpriv", "--reuid=" + user, "--regid=nogroup", "--clear-groups"};
        }
        argv.insert(argv.end(), {requireEnv("FDSUPCTL"), "-s", source_.controlPath(), "transfer", "--to",
                                 target_.controlPath()});
        return runProcess(argv, {}, 60s);
    }

    DaemonHarness source_;
    DaemonHarness target_;
    int port_ = 0;
    std::string listener_;
    std::unique_ptr<HttpLoad> load_;
};

TEST_F(TransferTest, MovesTheListenerUnderLoadRefusingNothing)
{
    startSource();
    startTarget(config(target_, "receive = true\n"));
    // The target's service waits for its socket.
    EXPECT_EQ(target_.status("web").at("waiting_for"), "web");
    EXPECT_TRUE(instancePids(target_.status("web")).empty());
    startLoad();

    const auto moved = transferAs("");
    ASSERT_EQ(moved.exitCode, 0) << moved.out << moved.err;
    EXPECT_THAT(moved.out, HasSubstr("moved socket 'web' (1 descriptor)"));
    // Import was answered once the target's service was running: only then
    // did the source let go.
    EXPECT_EQ(target_.status("web").at("state"), "running");
    ASSERT_TRUE(waitUntil([&] { return target_.status("web").at("ready") == 2; }));
    ASSERT_TRUE(waitUntil([&] { return instancePids(source_.status("web")).empty(); }));
    const auto report = stopLoad();
    std::cout << "transfer under load: " << report.summary() << '\n';
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed(), 0U) << report.summary();
    EXPECT_EQ(report.ok, report.requests);

    // The very same socket: the target's workers have it as fd 3, and the
    // target holds it on the same port; the source holds it no more.
    const std::set<pid_t> workers = instancePids(target_.status("web"));
    ASSERT_EQ(workers.size(), 2U);
    for (const pid_t pid : workers) {
        EXPECT_EQ(fdTarget(pid, 3), listener_) << "worker " << pid;
    }
    EXPECT_EQ(target_.port("web"), port_);
    EXPECT_EQ(source_.status("web").at("state"), "stopped");
    EXPECT_TRUE(source_.call("io.fdsup.Manager.Sockets").parameters.at("sockets").at(0).at("bound").empty());
    EXPECT_TRUE(answersOk(port_));
    EXPECT_EQ(source_.stop(), 0);
    EXPECT_TRUE(answersOk(port_)); // the target serves on after the source is gone
}

TEST_F(TransferTest, ATargetReexecutedWhileItWaitsStillWaitsAndTakesTheTransfer)
{
    startSource();
    startTarget(config(target_, "receive = true\n"));
    ASSERT_EQ(target_.status("web").at("waiting_for"), "web");
    // A re-exec carries the wait (docs/reexec.md): the service is still
    // waiting afterwards, and Import still starts it.
    const auto reexec = target_.fdsupctl({"reexec"});
    ASSERT_EQ(reexec.exitCode, 0) << reexec.out << reexec.err;
    EXPECT_EQ(target_.status("web").at("waiting_for"), "web");
    EXPECT_TRUE(instancePids(target_.status("web")).empty());
    startLoad();

    const auto moved = transferAs("");
    ASSERT_EQ(moved.exitCode, 0) << moved.out << moved.err;
    ASSERT_TRUE(waitUntil([&] { return target_.status("web").at("ready") == 2; }));
    const auto report = stopLoad();
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed(), 0U) << report.summary();
}

TEST_F(TransferTest, ATargetWithoutTheSocketRefusesWithExitFourAndTheSourceKeepsServing)
{
    startSource();
    startTarget(target_.supervisorTable() +
                "[socket.other]\nlisten = \"tcp://127.0.0.1:0\"\nreceive = true\n");
    const std::set<pid_t> pids = instancePids(source_.status("web"));
    startLoad();
    const auto refused = transferAs("");
    EXPECT_EQ(refused.exitCode, 4) << refused.out << refused.err;
    EXPECT_THAT(refused.err, HasSubstr("target fdsupd at " + target_.controlPath() +
                                       ": Import refused: no socket 'web' here"));
    EXPECT_THAT(refused.err, HasSubstr("the source is unchanged and still serving"));
    const auto report = stopLoad();
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed(), 0U) << report.summary();
    expectSourceUnchanged(pids);
}

TEST_F(TransferTest, ACallerTheTargetDoesNotAllowGetsExitFour)
{
    if (geteuid() != 0) {
        GTEST_SKIP() << "runs fdsupctl as nobody";
    }
    // nobody may call the source, not the target (root only).
    startSource("allow_users = [\"nobody\"]\ncontrol_mode = \"0666\"\n");
    startTarget(target_.supervisorTable() + "control_mode = \"0666\"\n" +
                "[socket.web]\nlisten = "
                "\"tcp://127.0.0.1:0\"\nreceive = true\n");
    ASSERT_EQ(chmod(source_.dir().path().c_str(), 0755), 0);
    ASSERT_EQ(chmod(target_.dir().path().c_str(), 0755), 0);
    const std::set<pid_t> pids = instancePids(source_.status("web"));
    const auto refused = transferAs("nobody");
    EXPECT_EQ(refused.exitCode, 4) << refused.out << refused.err;
    EXPECT_THAT(refused.err, HasSubstr("target fdsupd at " + target_.controlPath() + ": permission denied"));
    expectSourceUnchanged(pids);
}

TEST_F(TransferTest, ACallerTheSourceDoesNotAllowGetsExitThree)
{
    if (geteuid() != 0) {
        GTEST_SKIP() << "runs fdsupctl as nobody";
    }
    startSource("control_mode = \"0666\"\n");
    startTarget(config(target_, "receive = true\n", "control_mode = \"0666\"\nallow_users = [\"nobody\"]\n"));
    ASSERT_EQ(chmod(source_.dir().path().c_str(), 0755), 0);
    ASSERT_EQ(chmod(target_.dir().path().c_str(), 0755), 0);
    const std::set<pid_t> pids = instancePids(source_.status("web"));
    const auto refused = transferAs("nobody");
    EXPECT_EQ(refused.exitCode, 3) << refused.out << refused.err;
    EXPECT_THAT(refused.err, HasSubstr("source fdsupd at " + source_.controlPath() + ": permission denied"));
    expectSourceUnchanged(pids);
    EXPECT_EQ(target_.status("web").at("waiting_for"), "web");
}

TEST_F(TransferTest, ATargetWhoseServiceFailsRefusesWithExitFourAndTheSourceKeepsServing)
{
    startSource();
    // The target's worker exits at once, never ready: Import is refused.
    std::string target = config(target_, "receive = true\n");
    const std::string serve = target_.workerCommand("serve");
    target.replace(target.find(serve), serve.size(), target_.workerCommand("crash", {"--exit-code", "3"}));
    startTarget(target + "restart = \"never\"\n");
    const std::set<pid_t> pids = instancePids(source_.status("web"));
    startLoad();
    const auto refused = transferAs("");
    EXPECT_EQ(refused.exitCode, 4) << refused.out << refused.err;
    EXPECT_THAT(refused.err, HasSubstr("Import refused: service 'web' failed"));
    const auto report = stopLoad();
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed(), 0U) << report.summary();
    expectSourceUnchanged(pids);
}

// One GET on a kept-alive connection: the pid in the answer, or 0.
pid_t askPid(BorrowedFd fd)
{
    const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
        return 0;
    }
    std::string data;
    char buffer[4096];
    for (;;) {
        const auto head = data.find("\r\n\r\n");
        const auto length = data.find("Content-Length: ");
        if (head != std::string::npos && length != std::string::npos &&
            data.size() >= head + 4 + std::stoul(data.substr(length + 16))) {
            const auto body = nlohmann::json::parse(data.substr(head + 4));
            return body.at("pid").get<pid_t>();
        }
        const ssize_t n = recv(fd.get(), buffer, sizeof buffer, 0);
        if (n <= 0) {
            return 0;
        }
        data.append(buffer, static_cast<std::size_t>(n));
    }
}

nlohmann::json connectionsOf(DaemonHarness &d)
{
    return d.call("io.fdsup.Manager.Connections", {{"service", "web"}}).parameters.at("services").at(0);
}

TEST_F(TransferTest, AConnectionTheSourceHoldsGoesToTheTargetsBrokerAndIsServedThere)
{
    const std::string service =
        channelWebService(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE"), 1) + "handoff_timeout = \"60s\"\n";
    std::string why;
    ASSERT_TRUE(source_.start(source_.supervisorTable() + service, why)) << why;
    std::string targetService = service;
    targetService.replace(targetService.find("backlog = 1024\n"), 15, "receive = true\n");
    ASSERT_TRUE(target_.start(target_.supervisorTable() + targetService, why)) << why;
    ASSERT_TRUE(waitUntil([&] { return source_.status("web").at("ready") == 1; }));
    port_ = source_.port("web");

    // A kept-alive client of the source's worker, which then drains
    // (scaled to 0) and hands it over: with no adopter, the broker holds it.
    const UniqueFd client = connectLoopback(port_);
    const std::set<pid_t> sourcePids = instancePids(source_.status("web"));
    EXPECT_EQ(sourcePids, std::set<pid_t>{askPid(client.borrow())});
    const auto scaled = source_.fdsupctl({"scale", "web", "0"});
    ASSERT_EQ(scaled.exitCode, 0) << scaled.out << scaled.err;
    ASSERT_TRUE(waitUntil([&] { return connectionsOf(source_).at("held").size() == 1; }));

    const auto moved = transferAs("");
    ASSERT_EQ(moved.exitCode, 0) << moved.out << moved.err;
    EXPECT_THAT(moved.out, HasSubstr("moved 1 held connection"));
    EXPECT_TRUE(connectionsOf(source_).at("held").empty());
    // The target's broker gave it to the target's worker: the same client
    // connection is answered there.
    ASSERT_TRUE(waitUntil([&] { return connectionsOf(target_).at("adopted") == 1; }))
        << connectionsOf(target_).dump();
    const std::set<pid_t> targetPids = instancePids(target_.status("web"));
    ASSERT_EQ(targetPids.size(), 1U);
    EXPECT_EQ(askPid(client.borrow()), *targetPids.begin());
}

TEST_F(TransferTest, HeldConnectionsTheTargetCannotTakeGoBackToTheSource)
{
    const std::string service =
        channelWebService(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE"), 1) + "handoff_timeout = \"60s\"\n";
    std::string why;
    ASSERT_TRUE(source_.start(source_.supervisorTable() + service, why)) << why;
    // The target takes the socket but has no service 'web' for the connection.
    ASSERT_TRUE(target_.start(
        target_.supervisorTable() + "[socket.web]\nlisten = \"tcp://127.0.0.1:0\"\nreceive = true\n", why))
        << why;
    ASSERT_TRUE(waitUntil([&] { return source_.status("web").at("ready") == 1; }));
    const UniqueFd client = connectLoopback(source_.port("web"));
    ASSERT_NE(askPid(client.borrow()), 0);
    ASSERT_EQ(source_.fdsupctl({"scale", "web", "0"}).exitCode, 0);
    ASSERT_TRUE(waitUntil([&] { return connectionsOf(source_).at("held").size() == 1; }));

    const auto refused = transferAs("");
    EXPECT_EQ(refused.exitCode, 4) << refused.out << refused.err;
    EXPECT_THAT(refused.err, HasSubstr("Import refused: no service 'web' with handoff = true here"));
    EXPECT_THAT(refused.err, HasSubstr("1 held connection(s) given back to the source"));
    EXPECT_EQ(connectionsOf(source_).at("held").size(), 1U);
    // Back in the source's broker: its next worker adopts and serves it.
    ASSERT_EQ(source_.fdsupctl({"scale", "web", "1"}).exitCode, 0);
    const std::set<pid_t> pids = instancePids(source_.status("web"));
    ASSERT_EQ(pids.size(), 1U);
    EXPECT_EQ(askPid(client.borrow()), *pids.begin());
}

} // namespace
} // namespace fdsup::test
