// fdsupd running services: real daemon, real workers on the real libsystemd, real clients, on loopback.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Fetches http://127.0.0.1:PORT/ (or over a unix socket) with curl, a real
// client, and parses the test worker's JSON answer.
nlohmann::json curlJson(const std::string &url, const std::string &unixSocket = "")
{
    std::vector<std::string> argv{"/usr/bin/curl", "--silent", "--show-error", "--max-time", "10"};
    if (!unixSocket.empty()) {
        argv.insert(argv.end(), {"--unix-socket", unixSocket});
    }
    argv.push_back(url);
    const auto r = runProcess(argv);
    if (r.exitCode != 0) {
        throw std::runtime_error("curl " + url + " failed: " + r.err);
    }
    return nlohmann::json::parse(r.out);
}

// "start PID USEC" / "ready PID" reports of the test worker.
std::vector<std::string> fields(const std::string &report)
{
    std::vector<std::string> out;
    std::string::size_type pos = 0;
    while (pos <= report.size()) {
        const auto end = std::min(report.find(' ', pos), report.size());
        out.push_back(report.substr(pos, end - pos));
        pos = end + 1;
    }
    return out;
}

bool isReport(const std::string &report, const char *kind)
{
    return report.starts_with(std::string(kind) + " ");
}

rlim_t hardNofile()
{
    rlimit limit{};
    getrlimit(RLIMIT_NOFILE, &limit);
    return limit.rlim_max;
}

class Daemon : public DaemonTest<> {
protected:
    void startDaemon(const std::string &config, const std::vector<std::string> &wrapper = {})
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(config, why, wrapper)) << why;
    }

    std::string waitReport(const char *kind)
    {
        auto r = fdsupd_.reports().waitFor([kind](const std::string &m) { return isReport(m, kind); },
                                           kEventDeadline);
        if (!r) {
            throw std::runtime_error(std::string("no '") + kind + "' report from a worker in time");
        }
        return *r;
    }
};

TEST_F(Daemon, WorkerOnRealLibsystemdGetsItsNamedListenersAndAnswersCurl)
{
    const std::string admin = (fdsupd_.dir() / "admin.sock").string();
    startDaemon(fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[socket.admin]
listen = "unix:)" + admin +
                    R"("
mode = "0600"

[service.app]
command = )" + fdsupd_.workerCommand("serve") +
                    R"(
sockets = ["web", "admin"]
ready = "notify"
)",
                {"/usr/bin/prlimit", "--nofile=1024:" + std::to_string(hardNofile()), "--"});
    waitReport("ready");
    const auto status = fdsupd_.status("app");
    EXPECT_EQ(status.at("state"), "running");
    const int pid = status.at("instances").at(0).at("pid");

    const auto answer = curlJson("http://127.0.0.1:" + std::to_string(fdsupd_.port("web")) + "/");
    EXPECT_EQ(answer.at("pid"), pid);
    EXPECT_EQ(answer.at("listen_fds"), 2);
    EXPECT_THAT(answer.at("names").get<std::vector<std::string>>(), ElementsAre("web", "admin"));
    // Only stdin/stdout/stderr and the two listeners: nothing of fdsupd leaks.
    EXPECT_THAT(answer.at("fds").get<std::vector<int>>(), ElementsAre(0, 1, 2, 3, 4));
    // fdsupd raised its own soft RLIMIT_NOFILE to the hard limit; the worker
    // gets the limit fdsupd was started with (1024, from prlimit), as under systemd.
    EXPECT_EQ(answer.at("nofile"), 1024);
    rlimit daemonLimit{};
    ASSERT_EQ(prlimit(fdsupd_.pid(), RLIMIT_NOFILE, nullptr, &daemonLimit), 0);
    EXPECT_EQ(daemonLimit.rlim_cur, daemonLimit.rlim_max);
    EXPECT_GT(daemonLimit.rlim_cur, 1024U);

    const auto overUnix = curlJson("http://localhost/", admin);
    EXPECT_EQ(overUnix.at("pid"), pid);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Daemon, CrashingWorkerIsRestartedWithBackoffThenMarkedFailed)
{
    startDaemon(fdsupd_.supervisorTable() + R"(
[service.crashy]
command = )" + fdsupd_.workerCommand("crash", {"--exit-code", "3"}) +
                R"(
restart = "on-failure"
restart_delay = "50ms"
restart_delay_max = "400ms"
start_limit_burst = 4
start_limit_interval = "1m"
)");
    std::vector<long long> startedAt;
    startedAt.reserve(5);
    for (int i = 0; i < 5; ++i) {
        startedAt.push_back(std::stoll(fields(waitReport("start")).at(2)));
    }
    ASSERT_TRUE(fdsupd_.waitStatus("1 failed")) << "the service was never marked failed";
    // Lower bounds only: each restart waited at least its backoff delay.
    const std::vector<long long> minimumGapUsec{50000, 100000, 200000, 400000};
    for (std::size_t i = 0; i < minimumGapUsec.size(); ++i) {
        EXPECT_GE(startedAt[i + 1] - startedAt[i], minimumGapUsec[i]) << "restart " << i + 1;
    }
    const auto status = fdsupd_.status("crashy");
    EXPECT_EQ(status.at("state"), "failed");
    EXPECT_EQ(status.at("restarts"), 4);
    const std::string reason = status.at("failed_reason");
    EXPECT_THAT(reason, HasSubstr("restarted 4 times within 1m"));
    EXPECT_THAT(reason, HasSubstr("exited with status 3"));
    // No sixth start: the loop really stopped.
    EXPECT_FALSE(fdsupd_.reports().next(300ms).has_value());
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Daemon, HungStartIsKilledAtTheReadyDeadline)
{
    startDaemon(fdsupd_.supervisorTable() + R"(
[service.slow]
command = )" + fdsupd_.workerCommand("hang") +
                R"(
ready_timeout = "300ms"
restart = "never"
)");
    waitReport("start");
    ASSERT_TRUE(fdsupd_.waitStatus("1 failed"));
    const auto status = fdsupd_.status("slow");
    EXPECT_EQ(status.at("state"), "failed");
    const auto &instance = status.at("instances").at(0);
    EXPECT_EQ(instance.at("last_error"), "did not become ready within 300ms");
    EXPECT_EQ(instance.at("last_exit"), "killed by SIGKILL");
    EXPECT_THAT(status.at("failed_reason").get<std::string>(),
                HasSubstr("did not become ready within 300ms"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Daemon, WorkerIgnoringTheStopSignalIsKilledAtTheStopDeadline)
{
    startDaemon(fdsupd_.supervisorTable() + R"(
[service.stubborn]
command = )" + fdsupd_.workerCommand("ignore-term") +
                R"(
stop_timeout = "300ms"
)");
    waitReport("ready");
    const auto reply = fdsupd_.call("io.fdsup.Manager.Stop", {{"service", "stubborn"}});
    ASSERT_EQ(reply.error, "") << reply.parameters.dump();
    EXPECT_EQ(reply.parameters.at("state"), "stopped");
    const auto status = fdsupd_.status("stubborn");
    EXPECT_EQ(status.at("state"), "stopped");
    EXPECT_EQ(status.at("instances").at(0).at("last_exit"), "killed by SIGKILL");
    // Stopped on request: the instance exited, it did not fail.
    EXPECT_EQ(status.at("instances").at(0).at("state"), "exited");
    EXPECT_THAT(fdsupd_.log(), HasSubstr("did not stop within 300ms, killing it"));

    // Started again on request, answered when ready.
    const auto started = fdsupd_.call("io.fdsup.Manager.Start", {{"service", "stubborn"}});
    ASSERT_EQ(started.error, "") << started.parameters.dump();
    EXPECT_EQ(started.parameters.at("state"), "running");
    // SIGTERM's stop has to kill it again: fdsupd says so with status 5 (fdsupd(8)).
    EXPECT_EQ(fdsupd_.stop(), 5);
}

TEST_F(Daemon, NotificationFromAForeignPidIsDroppedAndCounted)
{
    fdsupd_.awaitAtStart("STATUS="); // the worker never becomes ready: neither does fdsupd
    startDaemon(fdsupd_.supervisorTable() + R"(
[service.waiting]
command = )" + fdsupd_.workerCommand("hang") +
                R"(
ready_timeout = "1m"
)");
    waitReport("start");
    const std::string notifySocket = fdsupd_.status("waiting").at("notify_socket");
    ASSERT_TRUE(notifySocket.starts_with("@"));

    // The test process is not an instance: its READY=1 must change nothing.
    UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    notifySocket.copy(addr.sun_path + 1, notifySocket.size() - 1, 1);
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + notifySocket.size());
    const std::string message =
        "READY=1\nMAINPID=" +
        std::to_string(fdsupd_.status("waiting").at("instances").at(0).at("pid").get<int>());
    ASSERT_EQ(sendto(fd.get(), message.data(), message.size(), 0, reinterpret_cast<sockaddr *>(&addr), len),
              static_cast<ssize_t>(message.size()));

    // Event order between two sockets is not defined: ask until it is counted.
    nlohmann::json status;
    (void)waitUntil([&] {
        status = fdsupd_.status("waiting");
        return status.at("notify_dropped") == 1;
    });
    EXPECT_EQ(status.at("notify_dropped"), 1);
    EXPECT_EQ(status.at("state"), "starting");
    EXPECT_EQ(status.at("instances").at(0).at("state"), "starting");
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Daemon, DescriptorStoreComesBackToTheNextInstance)
{
    startDaemon(fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.keeper]
command = )" + fdsupd_.workerCommand("serve", {"--fdstore", "state"}) +
                R"(
sockets = ["web"]
restart = "always"
restart_delay = "10ms"
)");
    const std::string firstPid = fields(waitReport("ready")).at(1);
    // The FDSTORE=1 datagram was sent before READY=1, on the same socket.
    const auto before = fdsupd_.status("keeper");
    ASSERT_EQ(before.at("fdstore").size(), 1U) << before.dump();
    EXPECT_EQ(before.at("fdstore").at(0).at("name"), "state");

    ASSERT_EQ(kill(std::stoi(firstPid), SIGKILL), 0);
    const std::string secondPid = fields(waitReport("ready")).at(1);
    ASSERT_NE(secondPid, firstPid);

    const auto answer = curlJson("http://127.0.0.1:" + std::to_string(fdsupd_.port("web")) + "/");
    EXPECT_EQ(std::to_string(answer.at("pid").get<int>()), secondPid);
    EXPECT_THAT(answer.at("names").get<std::vector<std::string>>(), ElementsAre("web", "state"));
    EXPECT_EQ(answer.at("stored").at("state"), "from pid " + firstPid);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Daemon, AdoptsASocketPassedBySystemdSocketActivate)
{
    // A free port: systemd-socket-activate needs a number. The window between
    // closing this probe and the bind below is the only race, and harmless.
    int port = 0;
    {
        UniqueFd probe(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ASSERT_EQ(bind(probe.get(), reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
        socklen_t len = sizeof a;
        getsockname(probe.get(), reinterpret_cast<sockaddr *>(&a), &len);
        port = ntohs(a.sin_port);
    }
    const std::string address = "127.0.0.1:" + std::to_string(port);
    // systemd-socket-activate starts fdsupd on the first connection, which
    // therefore waits in the backlog and must be answered by our worker.
    std::string why;
    const std::string config = fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:1"

[service.app]
command = )" + fdsupd_.workerCommand("serve") +
                               R"(
sockets = ["web"]
)";
    // The first connection, as a raw client retried until the activator
    // listens (each attempt is refused at once until then).
    std::thread client([&] {
        UniqueFd fd;
        const bool connected = waitUntil([&] {
            fd = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(static_cast<std::uint16_t>(port));
            return connect(fd.get(), reinterpret_cast<sockaddr *>(&a), sizeof a) == 0;
        });
        if (!connected) {
            ADD_FAILURE() << "the activator never listened on " << address;
            return;
        }
        // The answer waits for fdsupd and its worker to start: bounded by the event deadline.
        const timeval timeout{kEventDeadline.count(), 0};
        ASSERT_EQ(setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout), 0);
        const std::string request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        ASSERT_EQ(write(fd.get(), request.data(), request.size()), static_cast<ssize_t>(request.size()));
        std::string response;
        char buffer[4096];
        ssize_t n = 0;
        while ((n = read(fd.get(), buffer, sizeof buffer)) > 0 || (n < 0 && errno == EINTR)) {
            response.append(buffer, static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
        }
        EXPECT_THAT(response, HasSubstr("200 OK"));
        EXPECT_THAT(response, HasSubstr("\"names\":[\"web\"]"));
    });
    // systemd-socket-activate passes only LISTEN_* and what -E names.
    const bool started =
        fdsupd_.start(config, why,
                      {"/usr/bin/systemd-socket-activate", "--listen=" + address, "--fdname=web", "-E",
                       "NOTIFY_SOCKET=" + fdsupd_.notifications().path().string()});
    client.join();
    ASSERT_TRUE(started) << why;
    const auto sockets = fdsupd_.call("io.fdsup.Manager.Sockets").parameters.at("sockets");
    ASSERT_EQ(sockets.size(), 1U);
    EXPECT_EQ(sockets.at(0).at("bound").at(0).at("origin"), "adopted");
    EXPECT_EQ(sockets.at(0).at("bound").at(0).at("address"), address);
    EXPECT_THAT(fdsupd_.log(), HasSubstr("Adopted socket 'web'"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Daemon, SocketThatCannotBeBoundStopsStartupAndNamesIt)
{
    // Hold a port so fdsupd cannot bind it.
    UniqueFd holder(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(holder.get(), reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
    ASSERT_EQ(listen(holder.get(), 1), 0);
    socklen_t len = sizeof a;
    getsockname(holder.get(), reinterpret_cast<sockaddr *>(&a), &len);
    const std::string unixPath = (fdsupd_.dir() / "first.sock").string();

    std::string why;
    EXPECT_FALSE(fdsupd_.start(fdsupd_.supervisorTable() + R"(
[socket.first]
listen = "unix:)" + unixPath + R"("

[socket.taken]
listen = "tcp://127.0.0.1:)" + std::to_string(ntohs(a.sin_port)) +
                                   R"("

[service.app]
command = )" + fdsupd_.workerCommand("serve") +
                                   R"(
sockets = ["first", "taken"]
)",
                               why));
    EXPECT_THAT(why, HasSubstr("fdsupd exited (status 4)"));
    EXPECT_THAT(why, HasSubstr("Failed to bind socket 'taken'"));
    EXPECT_THAT(why, HasSubstr("Address already in use"));
    // Nothing half-started: the socket bound before the failure is gone too.
    EXPECT_FALSE(std::filesystem::exists(unixPath));
    EXPECT_FALSE(fdsupd_.reports().next(200ms).has_value()) << "a worker was started";
}

TEST_F(Daemon, FdCountAndMemoryStayFlatAcross200CrashCycles)
{
    startDaemon(fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.flaky]
command = )" + fdsupd_.workerCommand("ready-then-exit", {"--exit-code", "1"}) +
                R"(
sockets = ["web"]
restart = "always"
restart_delay = "1ms"
restart_delay_max = "1ms"
start_limit_burst = 100000
)");
    // One control connection for the whole test, so that connections opened
    // and closed around the measurements cannot blur them.
    auto client = varlink::Client::connect(fdsupd_.controlPath(), 10s);
    ASSERT_TRUE(client) << client.error().message;
    auto callOn = [&](const char *method) {
        varlink::Call c;
        c.method = method;
        c.parameters = {{"service", "flaky"}};
        auto reply = client->call(c);
        ASSERT_TRUE(reply) << reply.error().message;
        ASSERT_EQ(reply->error, "") << reply->parameters.dump();
    };
    auto cycle = [&](int n) {
        for (int i = 0; i < n; ++i) {
            waitReport("ready");
        }
        callOn("io.fdsup.Manager.Stop");
    };
    cycle(20);
    const int fdsAfter20 = countFdsOf(fdsupd_.pid());
    const long rssAfter20 = rssKibOf(fdsupd_.pid());
    callOn("io.fdsup.Manager.Start");
    cycle(200);
    const int fdsAfter220 = countFdsOf(fdsupd_.pid());
    const long rssAfter220 = rssKibOf(fdsupd_.pid());
    EXPECT_EQ(fdsAfter220, fdsAfter20);
#if defined(__SANITIZE_ADDRESS__)
    // ASan holds freed memory in quarantine, so RSS grows by design; in this
    // build LeakSanitizer checks fdsupd at exit instead (stop() must be 0).
    (void)rssAfter20;
    (void)rssAfter220;
#else
    // Flat, with room for allocator noise: a leak of even 5 KiB per cycle would show.
    EXPECT_LT(rssAfter220 - rssAfter20, 1024) << rssAfter20 << " KiB -> " << rssAfter220 << " KiB";
#endif
    EXPECT_GE(fdsupd_.status("flaky").at("restarts").get<int>(), 200);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Daemon, FailedStartIsReportedWithItsReason)
{
    startDaemon(fdsupd_.supervisorTable() + R"(
[service.lost]
command = )" + fdsupd_.workerCommand("serve") +
                R"(
working_directory = "/nonexistent-fdsup-directory"
restart = "never"
)");
    ASSERT_TRUE(fdsupd_.waitStatus("1 failed"));
    const auto status = fdsupd_.status("lost");
    EXPECT_EQ(status.at("state"), "failed");
    const auto &instance = status.at("instances").at(0);
    EXPECT_EQ(instance.at("last_error"), "chdir /nonexistent-fdsup-directory: No such file or directory");
    EXPECT_EQ(instance.at("last_exit"), "exited with status 127");
    EXPECT_THAT(fdsupd_.log(), HasSubstr("chdir /nonexistent-fdsup-directory: No such file or directory"));
    const auto shown = runProcess({requireEnv("FDSUPCTL"), "-s", fdsupd_.controlPath(), "status", "lost"});
    EXPECT_THAT(shown.out, HasSubstr("No such file or directory"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Daemon, SighupWithAnUnchangedFileReloadsAndChangesNothing)
{
    startDaemon(fdsupd_.supervisorTable() + R"(
[service.app]
command = )" + fdsupd_.workerCommand("serve") +
                R"(
)");
    const std::string pid = fields(waitReport("ready")).at(1);
    ASSERT_EQ(kill(fdsupd_.pid(), SIGHUP), 0);
    // The daemon still answers, with the same worker, once it has logged the reload.
    (void)waitUntil([&] { return fdsupd_.log().find("done") != std::string::npos; });
    EXPECT_THAT(fdsupd_.log(), HasSubstr("SIGHUP: reloading the configuration"));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("Reload of " + (fdsupd_.dir() / "fdsupd.toml").string() + " done"));
    EXPECT_EQ(std::to_string(fdsupd_.status("app").at("instances").at(0).at("pid").get<int>()), pid);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Daemon, IdleDaemonMakesNoSystemCalls)
{
    startDaemon(fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.app]
command = )" + fdsupd_.workerCommand("serve") +
                R"(
sockets = ["web"]
instances = 2
)");
    waitReport("ready");
    waitReport("ready");
    // Both ready and nothing pending: fdsupd must sit in one epoll_wait. This
    // observes it for a second (an absence can only be observed over time).
    const auto trace = fdsupd_.dir() / "strace.out";
    const auto r = runProcess({"/usr/bin/timeout", "-s", "INT", "1", "/usr/bin/strace", "-f", "-p",
                               std::to_string(fdsupd_.pid()), "-o", trace.string()});
    const std::string calls = readFile(trace);
    std::vector<std::string> lines;
    std::istringstream in(calls);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    ASSERT_EQ(lines.size(), 1U) << "system calls of an idle fdsupd:\n" << calls << r.err;
    EXPECT_THAT(lines.front(),
                ::testing::MatchesRegex(".*(epoll_wait|restart_syscall).*<detached \\.\\.\\.>"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
