// The metrics endpoint of a real fdsupd, scraped with real curl: what it reports is what happened.
#include <chrono>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "fdsup_build_config.h"
#include "seqnum_clients.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;
using Samples = std::map<std::string, double>;

// `curl` of the endpoint: its body, or "" with a test failure.
std::string curl(const std::vector<std::string> &args)
{
    std::vector<std::string> argv = {"/usr/bin/curl", "-sS", "--max-time", "10"};
    argv.insert(argv.end(), args.begin(), args.end());
    const ProcessResult r = runProcess(argv);
    EXPECT_EQ(r.exitCode, 0) << r.err;
    return r.exitCode == 0 ? r.out : std::string();
}

// "name{labels}" -> value, for every sample line of the text format.
Samples parseSamples(const std::string &text)
{
    Samples samples;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.empty() || line.front() == '#') {
            continue;
        }
        const auto space = line.rfind(' ');
        samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return samples;
}

std::string tcpUrl(int port)
{
    return "http://127.0.0.1:" + std::to_string(port) + "/metrics";
}

// The status code of what curl got for `args`, e.g. {"-X", "DELETE", url}.
std::string statusOf(const std::vector<std::string> &args)
{
    std::vector<std::string> all = {"-o", "/dev/null", "-w", "%{http_code}"};
    all.insert(all.end(), args.begin(), args.end());
    return curl(all);
}

// Sends raw bytes on a fresh connection and reads the answer until fdsupd closes.
std::string rawExchange(int port, const std::string &bytes)
{
    const UniqueFd fd = connectLoopback(port);
    EXPECT_EQ(send(fd.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
    shutdown(fd.get(), SHUT_WR);
    std::string answer;
    char buffer[4096];
    for (ssize_t n; (n = recv(fd.get(), buffer, sizeof buffer, 0)) > 0;) {
        answer.append(buffer, static_cast<std::size_t>(n));
    }
    return answer;
}

// The value of `name` in /proc/PID/environ ("" when absent).
std::string environmentOf(pid_t pid, const std::string &name)
{
    const std::string environ = readFile("/proc/" + std::to_string(pid) + "/environ");
    std::istringstream entries(environ);
    std::string entry;
    while (std::getline(entries, entry, '\0')) {
        if (entry.starts_with(name + "=")) {
            return entry.substr(name.size() + 1);
        }
    }
    return "";
}

std::string web(const std::string &labels = "")
{
    return "{service=\"web\"" + (labels.empty() ? std::string() : "," + labels) + "}";
}

class Metrics : public DaemonTest<> {
protected:
    // The seqnum-echo example under handoff, through a link the test can
    // replace (a copy would lose the library path relative to the binary).
    void startWeb(const std::string &metricsKey)
    {
        app_ = fdsupd_.dir() / "app";
        std::filesystem::create_symlink(requireEnv("FDSUP_TEST_SEQNUM_ECHO"), app_);
        std::string why;
        ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + "metrics = " + quoted(metricsKey) + "\n" +
                                      channelWebService(app_.string(), 2),
                                  why))
            << why;
        ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    }

    // The hostile worker in `mode` as service "bad" (on a socket of its
    // own), started by Scale, with metrics on 127.0.0.1:port.
    void startHostile(int port, const std::string &mode, const std::string &extra = "")
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() +
                                      "metrics = \"127.0.0.1:" + std::to_string(port) +
                                      R"("

[socket.web]
listen = "tcp://127.0.0.1:0"

[service.bad]
command = [")" + requireEnv("FDSUP_TEST_HOSTILE_WORKER") +
                                      "\", \"" + mode + "\", \"" + fdsupd_.reportPath() + R"("]
sockets = ["web"]
instances = 0 # started by Scale: fdsupd is ready only once every first start is over
ready = "channel"
restart = "never"
stop_timeout = "5s"
)" + extra,
                                  why))
            << why;
        EXPECT_EQ(parseSamples(curl({tcpUrl(port)}))[kBadDropped], 0);
        ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "bad"}}).error, "");
        ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Scale", {{"service", "bad"}, {"instances", 1}}).error, "");
    }

    static constexpr const char *kBadDropped = "fdsup_channel_messages_dropped_total{service=\"bad\"}";
    std::filesystem::path app_;
};

TEST_F(Metrics, ReportWhatHappenedToARealHandoffService)
{
    const int port = freePort();
    startWeb("127.0.0.1:" + std::to_string(port));
    const std::string url = tcpUrl(port);

    // A rollout that succeeds, with 20 connections handed over by the old generation.
    SeqnumClients clients(fdsupd_.port("web"), 20);
    ASSERT_TRUE(waitUntil([&] { return clients.rounds() >= 20 || !clients.errors().empty(); }));
    const auto good = fdsupd_.fdsupctl({"restart", "--wait", "web"});
    ASSERT_EQ(good.exitCode, 0) << good.out << good.err;
    clients.close();
    // One that rolls back: the new generation's binary exits at once.
    std::filesystem::copy_file("/bin/false", fdsupd_.dir() / "app.new");
    std::filesystem::rename(fdsupd_.dir() / "app.new", app_);
    const auto bad = fdsupd_.fdsupctl({"restart", "--wait", "web"});
    ASSERT_EQ(bad.exitCode, 1) << bad.out << bad.err;
    // A crash: the old generation's binary is pinned, so it comes back.
    const std::set<pid_t> pids = instancePids(fdsupd_.status("web"));
    ASSERT_EQ(pids.size(), 2U);
    ASSERT_EQ(kill(*pids.begin(), SIGKILL), 0);
    Samples m;
    ASSERT_TRUE(waitUntil([&] {
        m = parseSamples(curl({url}));
        return m[web("cause=\"signal\"").insert(0, "fdsup_restarts_total")] == 1 &&
               m["fdsup_instances" + web("state=\"ready\"")] == 2;
    })) << curl({url});

    EXPECT_EQ(m["fdsup_build_info{version=\"" FDSUP_VERSION "\"}"], 1);
    EXPECT_EQ(m["fdsup_rollouts_started_total" + web()], 2);
    EXPECT_EQ(m["fdsup_rollouts_total" + web("result=\"succeeded\"")], 1);
    EXPECT_EQ(m["fdsup_rollouts_total" + web("result=\"rolled_back\"")], 1);
    EXPECT_EQ(m["fdsup_rollouts_total" + web("result=\"cancelled\"")], 0);
    EXPECT_EQ(m["fdsup_rollout_duration_seconds_count" + web()], 2);
    EXPECT_EQ(m["fdsup_rollout_duration_seconds_bucket" + web("le=\"+Inf\"")], 2);
    EXPECT_GT(m["fdsup_rollout_duration_seconds_sum" + web()], 0);
    for (const char *cause :
         {"exit", "clean_exit", "spawn_failed", "start_timeout", "ready_timeout", "watchdog"}) {
        EXPECT_EQ(m["fdsup_restarts_total" + web("cause=\"" + std::string(cause) + "\"")], 0) << cause;
    }
    for (const char *state : {"launching", "starting", "draining", "stopping", "exited", "failed"}) {
        EXPECT_EQ(m["fdsup_instances" + web("state=\"" + std::string(state) + "\"")], 0) << state;
    }
    // The broker's own account, and the 20 connections of the one drain.
    const auto connections = fdsupd_.call("io.fdsup.Manager.Connections", {{"service", "web"}});
    const auto &broker = connections.parameters.at("services").at(0);
    EXPECT_EQ(m["fdsup_handoff_connections_total" + web("result=\"handed\"")], 20);
    EXPECT_EQ(m["fdsup_handoff_connections_total" + web("result=\"handed\"")],
              broker.at("handed").get<double>());
    EXPECT_EQ(m["fdsup_handoff_connections_total" + web("result=\"adopted\"")], 20);
    EXPECT_EQ(m["fdsup_handoff_connections_total" + web("result=\"refused\"")], 0);
    EXPECT_EQ(m["fdsup_handoff_held_connections" + web()], 0);
    EXPECT_EQ(m["fdsup_channel_messages_dropped_total" + web()], 0);
    EXPECT_EQ(m["fdsup_config_reloads_total{result=\"done\"}"], 0);
    // A notification from a process that is not one of web's instances, on
    // its notify socket (as a worker's environment names it), is dropped.
    EXPECT_EQ(m["fdsup_notify_messages_dropped_total" + web()], 0);
    const std::string notifySocket =
        environmentOf(*instancePids(fdsupd_.status("web")).begin(), "NOTIFY_SOCKET");
    ASSERT_FALSE(notifySocket.empty());
    const ProcessResult stranger = runProcess({requireEnv("FDSUP_TEST_NOTIFY_SENDER"), "STATUS=not yours"},
                                              {"NOTIFY_SOCKET=" + notifySocket});
    ASSERT_EQ(stranger.exitCode, 0) << stranger.err;
    EXPECT_TRUE(waitUntil(
        [&] { return parseSamples(curl({url}))["fdsup_notify_messages_dropped_total" + web()] == 1; }));

    // fdsupd's own figures: its descriptors while it answers, one of them
    // the scrape's connection, which it closes once curl has gone.
    m = parseSamples(curl({url}));
    EXPECT_TRUE(waitUntil([&] { return countFdsOf(fdsupd_.pid()) + 1 == m["process_open_fds"]; }))
        << m["process_open_fds"] << " open fds reported, " << countFdsOf(fdsupd_.pid()) << " now";
    EXPECT_GT(m["process_max_fds"], m["process_open_fds"]);
    EXPECT_NEAR(m["process_start_time_seconds"], static_cast<double>(std::time(nullptr)), 120);
    EXPECT_GT(m["process_resident_memory_bytes"], m["fdsup_process_private_memory_bytes"]);
    EXPECT_GT(m["fdsup_process_private_memory_bytes"], 0);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Metrics, BadRequestsAreAnsweredAndSlowClientsBlockNothing)
{
    const int port = freePort();
    startWeb("127.0.0.1:" + std::to_string(port));
    const std::string url = tcpUrl(port);
    const auto openFds = [&] {
        return parseSamples(curl({url}))["process_open_fds"];
    };

    const ProcessResult head = runProcess({"/usr/bin/curl", "-sS", "--max-time", "10", "-I", url});
    EXPECT_THAT(head.out, HasSubstr("Content-Type: text/plain; version=0.0.4"));
    EXPECT_EQ(statusOf({url}), "200");
    EXPECT_EQ(statusOf({"http://127.0.0.1:" + std::to_string(port) + "/"}), "200");
    EXPECT_EQ(statusOf({"-X", "DELETE", url}), "405");
    EXPECT_EQ(statusOf({"-d", "x=1", url}), "405");
    EXPECT_EQ(statusOf({"http://127.0.0.1:" + std::to_string(port) + "/nope"}), "404");
    EXPECT_THAT(rawExchange(port, "BAD\r\n\r\n"), HasSubstr("HTTP/1.1 400 Bad Request"));
    EXPECT_THAT(rawExchange(port, "GET /metrics HTTP/3.0\r\n\r\n"), HasSubstr("HTTP/1.1 505"));
    EXPECT_THAT(rawExchange(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(10000, 'y') + "\r\n\r\n"),
                HasSubstr("HTTP/1.1 431"));

    // Sixteen clients that send nothing: the next connection is closed at
    // once, while the control socket and the services go on.
    const double baseline = openFds();
    std::vector<UniqueFd> idle;
    for (int i = 0; i < 16; ++i) {
        idle.push_back(connectLoopback(port));
    }
    EXPECT_EQ(rawExchange(port, "GET /metrics HTTP/1.1\r\n\r\n"), "");
    EXPECT_EQ(fdsupd_.status("web").at("state"), "running");
    SeqnumClients clients(fdsupd_.port("web"), 1);
    EXPECT_TRUE(waitUntil([&] { return clients.rounds() >= 10 || !clients.errors().empty(); }));
    clients.close();
    EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
    // Once they hang up they are gone from fdsupd too, and it serves again.
    idle.clear();
    EXPECT_TRUE(waitUntil([&] { return openFds() == baseline; })) << openFds() << " != " << baseline;
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Metrics, AChannelFdsupdClosesOverGarbageIsCounted)
{
    const int port = freePort();
    ASSERT_NO_FATAL_FAILURE(startHostile(port, "garbage", "handoff = true\n"));
    const auto answer = fdsupd_.reports().waitFor(
        [](const std::string &m) { return m.starts_with("error "); }, kEventDeadline);
    ASSERT_TRUE(answer.has_value()) << "the hostile worker reported nothing";
    EXPECT_TRUE(waitUntil([&] { return parseSamples(curl({tcpUrl(port)}))[kBadDropped] == 1; }))
        << curl({tcpUrl(port)});
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// SEQPACKET reads an empty datagram as 0 bytes, as it reads the end of the
// channel: the worker did not close it, so it is dropped as malformed,
// counted and logged, and the READY it sent next makes the service ready.
TEST_F(Metrics, AnEmptyDatagramOnAChannelIsCountedAndTheChannelKept)
{
    const int port = freePort();
    ASSERT_NO_FATAL_FAILURE(startHostile(port, "empty"));
    ASSERT_TRUE(waitUntil([&] { return fdsupd_.status("bad").at("ready") == 1; }))
        << fdsupd_.status("bad").dump() << fdsupd_.log();
    EXPECT_TRUE(waitUntil([&] { return parseSamples(curl({tcpUrl(port)}))[kBadDropped] == 1; }))
        << curl({tcpUrl(port)});
    const std::string log = fdsupd_.log();
    EXPECT_THAT(log, HasSubstr("malformed message: an empty datagram"));
    EXPECT_THAT(log, Not(HasSubstr("channel closed")));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

ino_t inodeOf(const std::filesystem::path &path)
{
    struct stat st {};
    return lstat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST_F(Metrics, AReloadMovesTheEndpointAndAReexecKeepsItsSocket)
{
    const auto first = fdsupd_.dir() / "first.sock";
    startWeb(first.string());
    const auto scrapeUnix = [](const std::filesystem::path &path) {
        return curl({"--unix-socket", path.string(), "http://fdsup/metrics"});
    };
    EXPECT_THAT(scrapeUnix(first), HasSubstr("fdsup_build_info"));
    const std::string config = readFile(fdsupd_.dir() / "fdsupd.toml");
    const auto rewrite = [&](const std::string &metrics) {
        std::string text = config;
        const auto at = text.find("metrics = ");
        text.replace(at, text.find('\n', at) - at, metrics.empty() ? "" : "metrics = " + quoted(metrics));
        writeFile(fdsupd_.dir() / "fdsupd.toml", text);
        const auto reload = fdsupd_.fdsupctl({"reload"});
        EXPECT_EQ(reload.exitCode, 0) << reload.out << reload.err;
        return reload.out;
    };

    // To another unix socket: the first file goes.
    const auto second = fdsupd_.dir() / "second.sock";
    EXPECT_THAT(rewrite("unix:" + second.string()), ContainsRegex("supervisor +metrics +moved +done"));
    EXPECT_FALSE(std::filesystem::exists(first));
    const Samples m = parseSamples(scrapeUnix(second));
    EXPECT_EQ(m.at("fdsup_config_reloads_total{result=\"done\"}"), 1);
    // To a TCP port, then nowhere.
    const int port = freePort();
    rewrite("127.0.0.1:" + std::to_string(port));
    EXPECT_FALSE(std::filesystem::exists(second));
    EXPECT_EQ(parseSamples(curl({tcpUrl(port)})).at("fdsup_config_reloads_total{result=\"done\"}"), 2);
    EXPECT_THAT(rewrite(""), ContainsRegex("supervisor +metrics +removed +done"));
    EXPECT_FALSE(loopbackAccepts(port));
    // An address it cannot bind refuses the reload and changes nothing.
    EXPECT_THAT(rewrite(first.string()), ContainsRegex("supervisor +metrics +added +done"));
    std::string text = readFile(fdsupd_.dir() / "fdsupd.toml");
    text.replace(text.find(first.string()), first.string().size(),
                 (fdsupd_.dir() / "no" / "m.sock").string());
    writeFile(fdsupd_.dir() / "fdsupd.toml", text);
    const auto refused = fdsupd_.fdsupctl({"reload"});
    EXPECT_NE(refused.exitCode, 0);
    EXPECT_THAT(refused.out + refused.err, HasSubstr("metrics endpoint"));
    EXPECT_EQ(parseSamples(scrapeUnix(first)).at("fdsup_config_reloads_total{result=\"refused\"}"), 1);

    // A re-exec carries the very socket: the same file, never unbound.
    const ino_t before = inodeOf(first);
    ASSERT_NE(before, 0U);
    const auto reexec = fdsupd_.fdsupctl({"reexec"});
    ASSERT_EQ(reexec.exitCode, 0) << reexec.out << reexec.err;
    EXPECT_EQ(inodeOf(first), before);
    const Samples after = parseSamples(scrapeUnix(first));
    EXPECT_EQ(after.at("fdsup_instances" + web("state=\"ready\"")), 2);
    // The counters go on from where they were.
    EXPECT_EQ(after.at("fdsup_config_reloads_total{result=\"done\"}"), 4);
    EXPECT_EQ(after.at("fdsup_config_reloads_total{result=\"refused\"}"), 1);
    EXPECT_EQ(fdsupd_.stop(), 0);
    EXPECT_FALSE(std::filesystem::exists(first));
}

} // namespace
} // namespace fdsup::test
