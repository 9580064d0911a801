// The systemd suite: fdsupd as a Type=notify unit of a real systemd user manager, in a private mount
// namespace.
#include <algorithm>
#include <array>
#include <csignal>
#include <future>
#include <iomanip>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/varlink.hpp"
#include "daemon_harness.hpp"
#include "examples.hpp"
#include "http_load.hpp"
#include "test_support.hpp"
#include "user_manager.hpp"

namespace fdsup::test {
namespace {

using std::chrono::seconds;

const char *const kUnit = "fdsupd.service";

class SystemdTest : public ManagedUnitTest<SystemdTest> {
protected:
    [[nodiscard]] std::string readyFile(const std::string &name) const { return (dir_ / name).string(); }

    // A web socket on an ephemeral port and a 2-instance sd-worker service
    // that says READY=1 once readyFile(ready) exists.
    void writeConfig(const std::string &ready, const std::string &extraSupervisor = "",
                     const std::string &extraService = "")
    {
        writeFile(
            dir_ / "fdsupd.toml",
            "[supervisor]\ncontrol = " + quoted(control()) + "\nlog_level = \"debug\"\n" + extraSupervisor +
                "\n[socket.web]\nlisten = \"tcp://127.0.0.1:0\"\nbacklog = 1024\n\n"
                "[service.web]\ncommand = [" +
                quoted(requireEnv("FDSUP_TEST_SD_WORKER")) + ", \"--ready-file\", " +
                quoted(readyFile(ready)) +
                "]\nsockets = [\"web\"]\ninstances = 2\nready = \"notify\"\nready_timeout = \"5min\"\n" +
                extraService);
    }
    void installUnit()
    {
        manager_->installUnit(kUnit, packagedUnit((dir_ / "fdsupd.toml").string(), control()));
    }
    // Installs and starts the unit with its workers ready; the unit is active.
    void startReady(const std::string &extraSupervisor = "")
    {
        writeFile(readyFile("ready"), "");
        writeConfig("ready", extraSupervisor);
        installUnit();
        const auto started = manager_->systemctl({"start", kUnit});
        ASSERT_EQ(started.exitCode, 0) << started.err << journal();
        ASSERT_EQ(manager_->property(kUnit, "ActiveState"), "active");
    }

    [[nodiscard]] varlink::Reply call(const std::string &method, const nlohmann::json &parameters = {}) const
    {
        auto client = varlink::Client::connect(control(), seconds(10));
        if (!client) {
            throw std::runtime_error("connect: " + client.error().message);
        }
        varlink::Call c;
        c.method = method;
        c.parameters = parameters.is_null() ? nlohmann::json::object() : parameters;
        auto reply = client->call(c);
        if (!reply) {
            throw std::runtime_error(method + ": " + reply.error().message);
        }
        return *reply;
    }
    [[nodiscard]] nlohmann::json status() const
    {
        return call("io.fdsup.Manager.Status", {{"service", "web"}}).parameters.at("services").at(0);
    }
    [[nodiscard]] int port() const
    {
        const std::string address =
            call("io.fdsup.Manager.Sockets").parameters.at("sockets").at(0).at("bound").at(0).at("address");
        return std::stoi(address.substr(address.rfind(':') + 1));
    }
    [[nodiscard]] pid_t mainPid() const { return std::stoi(manager_->property(kUnit, "MainPID")); }
    [[nodiscard]] std::string journal() const
    {
        return "\n--- journal:\n" +
               runProcess(
                   {"/usr/bin/journalctl", "-D", manager_->journalDir().string(), "--no-pager", "-n", "80"})
                   .out +
               manager_->log();
    }
};

// The JSON a worker answers GET / with.
nlohmann::json workerAnswer(int port)
{
    const auto r = runProcess(
        {"/usr/bin/curl", "-sS", "--max-time", "10", "http://127.0.0.1:" + std::to_string(port) + "/"});
    return nlohmann::json::parse(r.out);
}

TEST_F(SystemdTest, ActiveOnlyOnceEveryServiceIsReady)
{
    writeConfig("ready");
    installUnit();
    ASSERT_EQ(manager_->systemctl({"start", "--no-block", kUnit}).exitCode, 0);
    // Both workers started and wait for the file: fdsupd is up, the unit is not.
    ASSERT_TRUE(waitUntil([&] {
        try {
            return status().at("instances").size() == 2;
        } catch (const std::exception &) {
            return false;
        }
    })) << journal();
    EXPECT_EQ(manager_->property(kUnit, "ActiveState"), "activating");
    EXPECT_EQ(manager_->property(kUnit, "SubState"), "start");
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "0/1 services running");

    writeFile(readyFile("ready"), "");
    EXPECT_TRUE(manager_->waitProperty(kUnit, "ActiveState", "active")) << journal();
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "1/1 services running");
    // MAINPID= went with READY=1: the manager follows fdsupd itself.
    EXPECT_EQ(std::filesystem::read_symlink("/proc/" + std::to_string(mainPid()) + "/exe"),
              std::filesystem::path(requireEnv("FDSUPD")));
}

TEST_F(SystemdTest, ReloadIsSynchronousAndTheManagerSeesReloading)
{
    startReady();
    const pid_t before = mainPid();
    writeConfig("ready2"); // a new command line: the reload is a rollout to workers waiting for ready2
    auto reload = std::async(std::launch::async, [&] { return manager_->systemctl({"reload", kUnit}); });
    EXPECT_TRUE(manager_->waitProperty(kUnit, "ActiveState", "reloading")) << journal();
    EXPECT_EQ(reload.wait_for(seconds(0)), std::future_status::timeout); // not before the workers are ready
    writeFile(readyFile("ready2"), "");
    const ProcessResult done = reload.get();
    ASSERT_EQ(done.exitCode, 0) << done.out << done.err << journal();
    // When `systemctl reload` returns, the new configuration is in force.
    const nlohmann::json web = status();
    ASSERT_EQ(web.at("instances").size(), 2U) << web.dump();
    for (const auto &instance : web.at("instances")) {
        EXPECT_EQ(instance.at("generation"), 2) << web.dump();
        EXPECT_EQ(instance.at("state"), "ready") << web.dump();
    }
    EXPECT_EQ(manager_->property(kUnit, "ActiveState"), "active");
    EXPECT_EQ(mainPid(), before);
}

TEST_F(SystemdTest, SighupReloadIsReportedToTheManager)
{
    startReady();
    writeConfig("ready2");
    // SIGHUP, as Type=notify-reload sends it: RELOADING=1 makes the manager
    // show the unit reloading until READY=1.
    ASSERT_EQ(manager_->systemctl({"kill", "-s", "HUP", "--kill-who=main", kUnit}).exitCode, 0);
    EXPECT_TRUE(manager_->waitProperty(kUnit, "ActiveState", "reloading")) << journal();
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "reloading");
    writeFile(readyFile("ready2"), "");
    EXPECT_TRUE(manager_->waitProperty(kUnit, "ActiveState", "active")) << journal();
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "1/1 services running");
    const nlohmann::json web = status();
    for (const auto &instance : web.at("instances")) {
        EXPECT_EQ(instance.at("generation"), 2) << web.dump();
    }
}

// Load on the web socket across `disrupt`, until the new fdsupd's workers
// answered; returns what the clients saw.
HttpLoadReport underLoad(int port, const std::function<void()> &disrupt)
{
    HttpLoad load(port, 4, HttpLoad::Mode::Fresh, seconds(30));
    load.start();
    EXPECT_TRUE(load.waitForRequests(0, 200, kEventDeadline));
    disrupt();
    EXPECT_TRUE(load.waitForRequests(load.requests(), 200, kEventDeadline));
    return load.stop();
}

TEST_F(SystemdTest, RestartUnderLoadRefusesNothing)
{
    startReady();
    const int webPort = port();
    const pid_t before = mainPid();
    const auto inode = workerAnswer(webPort).at("inodes").at(0).get<std::uint64_t>();
    const HttpLoadReport report = underLoad(webPort, [&] {
        const auto restarted = manager_->systemctl({"restart", kUnit});
        EXPECT_EQ(restarted.exitCode, 0) << restarted.err;
    });
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed(), 0U) << report.summary();
    EXPECT_GT(report.ok, 400U) << report.summary();
    EXPECT_NE(mainPid(), before);
    // The same socket, back from the descriptor store.
    EXPECT_EQ(port(), webPort);
    EXPECT_EQ(workerAnswer(webPort).at("inodes").at(0).get<std::uint64_t>(), inode);
    std::cout << "restart under load: " << report.summary() << '\n';
}

TEST_F(SystemdTest, KillNineUnderLoadRefusesNothing)
{
    startReady();
    const int webPort = port();
    const pid_t before = mainPid();
    const auto inode = workerAnswer(webPort).at("inodes").at(0).get<std::uint64_t>();
    const HttpLoadReport report = underLoad(webPort, [&] {
        ASSERT_EQ(kill(before, SIGKILL), 0);
        // Restart=on-failure: a new fdsupd, active once its workers are ready.
        EXPECT_TRUE(waitUntil([&] {
            return mainPid() != before && mainPid() != 0 &&
                   manager_->property(kUnit, "ActiveState") == "active";
        })) << journal();
    });
    // systemd kills the dead fdsupd's workers: a connection one of them had
    // accepted is reset (counted apart); none is refused.
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.timeout + report.non2xx + report.otherError, 0U) << report.summary();
    EXPECT_GT(report.ok, 400U) << report.summary();
    EXPECT_EQ(workerAnswer(webPort).at("inodes").at(0).get<std::uint64_t>(), inode);
    std::cout << "kill -9 under load: " << report.summary() << " (resets of connections in flight on a "
              << "killed worker: " << report.resetFresh + report.midResponse << ")\n";
}

TEST_F(SystemdTest, StopSendsStoppingAndStatusText)
{
    writeFile(readyFile("ready"), "");
    // A worker that ignores SIGTERM keeps fdsupd stopping until the test kills it.
    writeConfig("ready", "", "stop_timeout = \"5min\"\n");
    writeFile(dir_ / "fdsupd.toml", replaced(readFile(dir_ / "fdsupd.toml"), "\"--ready-file\"",
                                             "\"--mode\", \"ignore-term\", \"--ready-file\""));
    installUnit();
    ASSERT_EQ(manager_->systemctl({"start", kUnit}).exitCode, 0) << journal();
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "1/1 services running");
    std::vector<pid_t> workers;
    const nlohmann::json web = status();
    for (const auto &instance : web.at("instances")) {
        workers.push_back(instance.at("pid").get<pid_t>());
    }
    // SIGTERM to fdsupd alone: only its STOPPING=1 tells the manager it is stopping.
    ASSERT_EQ(manager_->systemctl({"kill", "-s", "TERM", "--kill-who=main", kUnit}).exitCode, 0);
    EXPECT_TRUE(manager_->waitProperty(kUnit, "ActiveState", "deactivating")) << journal();
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "stopping");
    for (const pid_t worker : workers) {
        (void)kill(worker, SIGKILL);
    }
    EXPECT_TRUE(manager_->waitProperty(kUnit, "ActiveState", "inactive")) << journal();
    EXPECT_EQ(manager_->property(kUnit, "Result"), "success");
}

// The port of a socket, by name.
int portOf(const nlohmann::json &sockets, const std::string &name)
{
    for (const auto &socket : sockets) {
        if (socket.at("name") == name) {
            const std::string address = socket.at("bound").at(0).at("address");
            return std::stoi(address.substr(address.rfind(':') + 1));
        }
    }
    return 0;
}

TEST_F(SystemdTest, ASocketAddedByAReloadIsStoredAndOneRemovedIsDropped)
{
    startReady();
    const std::string base = readFile(dir_ / "fdsupd.toml");
    writeFile(dir_ / "fdsupd.toml", base + "\n[socket.extra]\nlisten = \"tcp://127.0.0.1:0\"\n");
    const auto added = manager_->systemctl({"reload", kUnit});
    ASSERT_EQ(added.exitCode, 0) << added.err << journal();
    const int extra = portOf(call("io.fdsup.Manager.Sockets").parameters.at("sockets"), "extra");
    ASSERT_GT(extra, 0);

    // Stored when the reload bound it: a restart gets the same socket back.
    ASSERT_EQ(manager_->systemctl({"restart", kUnit}).exitCode, 0) << journal();
    EXPECT_EQ(portOf(call("io.fdsup.Manager.Sockets").parameters.at("sockets"), "extra"), extra);

    // Removed by a reload: fdsupd closes it and systemd drops it (FDSTOREREMOVE=1).
    writeFile(dir_ / "fdsupd.toml", base);
    const auto removed = manager_->systemctl({"reload", kUnit});
    ASSERT_EQ(removed.exitCode, 0) << removed.err << journal();
    EXPECT_TRUE(waitUntil([&] { return loopbackPortFree(extra); }))
        << "systemd still holds the removed socket";
    ASSERT_EQ(manager_->systemctl({"restart", kUnit}).exitCode, 0) << journal();
    EXPECT_EQ(portOf(call("io.fdsup.Manager.Sockets").parameters.at("sockets"), "extra"), 0);
    EXPECT_TRUE(loopbackPortFree(extra));
}

// 300 listeners at start are 300 FDSTORE= messages at once: far more than
// the manager's queue takes (net.unix.max_dgram_qlen, 10). What it refuses
// waits and follows in order, so every listener is stored, and a restart
// gets each of them back on its port.
TEST_F(SystemdTest, EveryListenerOfABurstIsStoredAndComesBackOnRestart)
{
    constexpr int kListeners = 300;
    std::string extra;
    for (int i = 0; i < kListeners; ++i) {
        extra += "\n[socket.s" + std::to_string(i) + "]\nlisten = \"tcp://127.0.0.1:0\"\n";
    }
    writeFile(readyFile("ready"), "");
    writeConfig("ready");
    writeFile(dir_ / "fdsupd.toml", readFile(dir_ / "fdsupd.toml") + extra);
    installUnit();
    ASSERT_EQ(manager_->systemctl({"start", kUnit}).exitCode, 0) << journal();
    std::map<std::string, int> ports;
    const auto before = call("io.fdsup.Manager.Sockets").parameters.at("sockets");
    for (const auto &socket : before) {
        ports[socket.at("name")] = portOf(before, socket.at("name").get<std::string>());
    }
    ASSERT_EQ(ports.size(), static_cast<std::size_t>(kListeners + 1));
    ASSERT_EQ(manager_->systemctl({"restart", kUnit}).exitCode, 0) << journal();
    const auto after = call("io.fdsup.Manager.Sockets").parameters.at("sockets");
    int same = 0;
    for (const auto &[name, port] : ports) {
        same += portOf(after, name) == port ? 1 : 0;
    }
    EXPECT_EQ(same, kListeners + 1) << journal();
}

TEST_F(SystemdTest, AnEditedListenAddressIsBoundAfreshOnRestart)
{
    startReady();
    const int oldPort = port();
    const pid_t before = mainPid();
    // The operator gives the socket a fixed port, then restarts fdsupd.
    const int newPort = freePort();
    writeFile(dir_ / "fdsupd.toml", replaced(readFile(dir_ / "fdsupd.toml"), "tcp://127.0.0.1:0",
                                             "tcp://127.0.0.1:" + std::to_string(newPort)));
    const auto restarted = manager_->systemctl({"restart", kUnit});
    ASSERT_EQ(restarted.exitCode, 0) << restarted.err << journal();
    EXPECT_NE(mainPid(), before);
    ASSERT_EQ(port(), newPort) << journal();
    EXPECT_EQ(workerAnswer(newPort).at("inodes").size(), 1U);
    // The old listener was shut down and dropped from the store: its port is closed.
    EXPECT_FALSE(loopbackAccepts(oldPort));
    EXPECT_TRUE(waitUntil([&] { return loopbackPortFree(oldPort); }))
        << "systemd still holds the old listener";
    const std::string why = "socket 'web' is bound to 127.0.0.1:" + std::to_string(oldPort) +
                            ", not to its listen address (tcp://127.0.0.1:" + std::to_string(newPort) + ")";
    EXPECT_TRUE(waitUntil([&] {
        return runProcess({"/usr/bin/journalctl", "-D", manager_->journalDir().string(), "--no-pager", "-g",
                           "Not adopting the stored listener"})
                   .out.find(why) != std::string::npos;
    })) << journal();

    // The new listener was stored: the next restart keeps it (same inode).
    const auto inode = workerAnswer(newPort).at("inodes").at(0).get<std::uint64_t>();
    ASSERT_EQ(manager_->systemctl({"restart", kUnit}).exitCode, 0) << journal();
    EXPECT_EQ(workerAnswer(newPort).at("inodes").at(0).get<std::uint64_t>(), inode);
}

// The pid in a http-keepalive worker's answer to the request whose start
// went before (`rest`: the end of it), on the same connection; 0 when
// nothing is answered.
pid_t answeringPid(BorrowedFd fd, const std::string &rest)
{
    if (send(fd.get(), rest.data(), rest.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(rest.size())) {
        return 0;
    }
    std::string data;
    std::array<char, 4096> buffer{};
    for (;;) {
        const auto head = data.find("\r\n\r\n");
        const auto length = data.find("Content-Length: ");
        if (head != std::string::npos && length != std::string::npos &&
            data.size() >= head + 4 + std::stoul(data.substr(length + 16))) {
            return nlohmann::json::parse(data.substr(head + 4)).at("pid").get<pid_t>();
        }
        const ssize_t n = recv(fd.get(), buffer.data(), buffer.size(), 0);
        if (n <= 0) {
            return 0;
        }
        data.append(buffer.data(), static_cast<std::size_t>(n));
    }
}

// The bytes waiting unread on the server's side of the loopback connection
// from local port `client` to `server` (/proc/net/tcp's rx_queue), or -1.
long serverUnread(int server, int client)
{
    std::istringstream lines(readFile("/proc/net/tcp"));
    const auto hex = [](int port) {
        std::ostringstream text;
        text << "0100007F:" << std::uppercase << std::hex << std::setw(4) << std::setfill('0') << port;
        return text.str();
    };
    const std::string local = hex(server);
    const std::string remote = hex(client);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream fields(line);
        std::string slot, from, to, state, queues;
        fields >> slot >> from >> to >> state >> queues;
        if (from == local && to == remote) {
            return std::stol(queues.substr(queues.find(':') + 1), nullptr, 16);
        }
    }
    return -1;
}

int localPort(BorrowedFd fd)
{
    sockaddr_in local{};
    socklen_t length = sizeof local;
    getsockname(fd.get(), reinterpret_cast<sockaddr *>(&local), &length);
    return ntohs(local.sin_port);
}

TEST_F(SystemdTest, AHeldConnectionSurvivesARestartWithItsState)
{
    writeFile(dir_ / "fdsupd.toml", "[supervisor]\ncontrol = " + quoted(control()) +
                                        "\nlog_level = \"debug\"\n" +
                                        channelWebService(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE"), 1) +
                                        "handoff_timeout = \"60s\"\n");
    installUnit();
    ASSERT_EQ(manager_->systemctl({"start", kUnit}).exitCode, 0) << journal();
    const int webPort = port();
    const UniqueFd client = connectLoopback(webPort);
    const pid_t first = answeringPid(client.borrow(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_NE(first, 0) << journal();
    // Half a request, read by the worker (nothing unread on its side): its state.
    const std::string half = "GET / HTTP/1.1\r\nHost: x\r\n";
    ASSERT_EQ(send(client.get(), half.data(), half.size(), MSG_NOSIGNAL), static_cast<ssize_t>(half.size()));
    ASSERT_TRUE(waitUntil([&] { return serverUnread(webPort, localPort(client.borrow())) == 0; }));

    // Scaled to 0, the worker drains and hands the connection over: held, and stored.
    const auto scaled = runProcess({requireEnv("FDSUPCTL"), "-s", control(), "scale", "web", "0"});
    ASSERT_EQ(scaled.exitCode, 0) << scaled.out << scaled.err;
    const auto held = [&]() -> nlohmann::json {
        const nlohmann::json services =
            call("io.fdsup.Manager.Connections", {{"service", "web"}}).parameters.at("services");
        return services.at(0).at("held");
    };
    ASSERT_TRUE(waitUntil([&] { return held().size() == 1; })) << journal();
    EXPECT_EQ(held().at(0).at("state_bytes"), half.size());

    // A new fdsupd (instances = 1 again) takes it back from the store and its worker adopts it.
    const pid_t before = mainPid();
    ASSERT_EQ(manager_->systemctl({"restart", kUnit}).exitCode, 0) << journal();
    ASSERT_NE(mainPid(), before);
    const std::set<pid_t> workers = [&] {
        std::set<pid_t> pids;
        const nlohmann::json web = status();
        for (const auto &instance : web.at("instances")) {
            pids.insert(instance.at("pid").get<pid_t>());
        }
        return pids;
    }();
    ASSERT_EQ(workers.size(), 1U) << journal();
    // The rest of the request, on the same client connection: the new worker answers it.
    const pid_t second = answeringPid(client.borrow(), "\r\n");
    EXPECT_EQ(second, *workers.begin()) << journal();
    EXPECT_NE(second, first);
    EXPECT_TRUE(waitUntil([&] {
        return runProcess({"/usr/bin/journalctl", "-D", manager_->journalDir().string(), "--no-pager", "-g",
                           "Holding 1 connection back from the manager's descriptor store"})
                   .out.find("Holding 1 connection back") != std::string::npos;
    })) << journal();
    const auto connections = call("io.fdsup.Manager.Connections", {{"service", "web"}}).parameters;
    EXPECT_TRUE(connections.at("services").at(0).at("held").empty()) << connections.dump();
}

// Every journal entry fdsupd wrote about service web, as JSON objects.
std::vector<nlohmann::json> journalAbout(const std::filesystem::path &journalDir, const std::string &service)
{
    const ProcessResult r = runProcess({"/usr/bin/journalctl", "-D", journalDir.string(), "--no-pager", "-o",
                                        "json", "FDSUP_SERVICE=" + service});
    std::vector<nlohmann::json> entries;
    std::istringstream lines(r.out);
    for (std::string line; std::getline(lines, line);) {
        if (!line.empty() && line.front() == '{') {
            entries.push_back(nlohmann::json::parse(line));
        }
    }
    return entries;
}

TEST_F(SystemdTest, JournalLinesCarryServiceInstancePidAndGeneration)
{
    startReady("log_target = \"journal\"\n");
    const nlohmann::json web = status();
    std::map<int, pid_t> pids; // slot -> pid
    for (const auto &instance : web.at("instances")) {
        pids[instance.at("index").get<int>()] = instance.at("pid").get<pid_t>();
    }
    ASSERT_EQ(pids.size(), 2U) << web.dump();
    const std::string fdsupd = std::to_string(mainPid());
    // For each instance its "is ready" line, and a line of its own output.
    for (const auto &[slot, pid] : pids) {
        const std::string tag = "web[" + std::to_string(slot) + "]";
        std::vector<nlohmann::json> entries;
        const auto found = [&](const std::string &text) {
            return std::find_if(entries.begin(), entries.end(), [&](const nlohmann::json &e) {
                return e.value("MESSAGE", "").find(text) != std::string::npos;
            });
        };
        ASSERT_TRUE(waitUntil([&] {
            entries = journalAbout(manager_->journalDir(), "web");
            return found(tag + " (pid " + std::to_string(pid) + ") is ready") != entries.end() &&
                   found(tag + ": sd-worker") != entries.end();
        })) << journal();
        for (const auto &text : {tag + " (pid " + std::to_string(pid) + ") is ready", tag + ": sd-worker"}) {
            const nlohmann::json &entry = *found(text);
            EXPECT_EQ(entry.value("FDSUP_SERVICE", ""), "web") << entry.dump();
            EXPECT_EQ(entry.value("FDSUP_INSTANCE", ""), std::to_string(slot)) << entry.dump();
            EXPECT_EQ(entry.value("FDSUP_PID", ""), std::to_string(pid)) << entry.dump();
            EXPECT_EQ(entry.value("FDSUP_GENERATION", ""), "1") << entry.dump();
            EXPECT_EQ(entry.value("_PID", ""), fdsupd) << entry.dump(); // the journal's own, untouched
            EXPECT_EQ(entry.value("SYSLOG_IDENTIFIER", ""), "fdsupd") << entry.dump();
        }
    }
}

} // namespace
} // namespace fdsup::test
