// Tests of the metrics endpoint's parts: the HTTP parser, the text of a known state, the key, the docs.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include <sys/wait.h>

#include <gtest/gtest.h>

#include "api/metrics.hpp"
#include "config/config.hpp"
#include "io/http_request.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using Kind = HttpParse::Kind;

HttpParse parse(std::string_view bytes, std::size_t max = 8192)
{
    return parseHttpRequest(bytes, max);
}

TEST(HttpRequest, AGetIsParsedWithItsHeaders)
{
    const auto p = parse("GET /metrics?name=x HTTP/1.1\r\nHost: 127.0.0.1:9187\r\nAccept: */*\r\n\r\n");
    ASSERT_EQ(p.kind, Kind::Complete) << p.reason;
    EXPECT_EQ(p.request.method, "GET");
    EXPECT_EQ(p.request.path, "/metrics");
    EXPECT_EQ(p.request.minorVersion, 1);
    EXPECT_EQ(routeMetricsRequest(p.request), 200);
}

TEST(HttpRequest, BareLineFeedsAndHttp10AreAccepted)
{
    const auto p = parse("HEAD / HTTP/1.0\n\n");
    ASSERT_EQ(p.kind, Kind::Complete) << p.reason;
    EXPECT_EQ(p.request.minorVersion, 0);
    EXPECT_EQ(routeMetricsRequest(p.request), 200);
}

TEST(HttpRequest, EveryPrefixOfARequestIsIncomplete)
{
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    for (std::size_t n = 0; n < request.size(); ++n) {
        EXPECT_EQ(parse(request.substr(0, n)).kind, Kind::Incomplete) << n;
    }
    EXPECT_EQ(parse(request).kind, Kind::Complete);
}

TEST(HttpRequest, RoutesOtherMethodsAndPaths)
{
    EXPECT_EQ(routeMetricsRequest(parse("POST /metrics HTTP/1.1\r\n\r\n").request), 405);
    EXPECT_EQ(routeMetricsRequest(parse("DELETE / HTTP/1.1\r\n\r\n").request), 405);
    EXPECT_EQ(routeMetricsRequest(parse("GET /metricsx HTTP/1.1\r\n\r\n").request), 404);
    EXPECT_EQ(routeMetricsRequest(parse("GET /metrics/ HTTP/1.1\r\n\r\n").request), 404);
}

TEST(HttpRequest, MalformedRequestsAreRefusedWithTheirStatus)
{
    const std::pair<std::string_view, int> cases[] = {
        {"GET  /metrics HTTP/1.1\r\n\r\n", 400},        // two spaces
        {"GET /metrics\r\n\r\n", 400},                  // HTTP/0.9
        {"GET metrics HTTP/1.1\r\n\r\n", 400},          // not a path
        {"GET http://h/metrics HTTP/1.1\r\n\r\n", 400}, // absolute form
        {"G(T /metrics HTTP/1.1\r\n\r\n", 400},         // not a token
        {"GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1\r\nBad name: x\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400},
        {"GET /metrics HTTP/1.1\r\nA: \x01\r\n\r\n", 400},
        {"GET /m\xff HTTP/1.1\r\n\r\n", 400},
        {"GET /metrics HTTP/2.0\r\n\r\n", 505},
        {"GET /metrics HTTX/1.1\r\n\r\n", 400},
    };
    for (const auto &[bytes, status] : cases) {
        const auto p = parse(bytes);
        ASSERT_EQ(p.kind, Kind::Error) << bytes;
        EXPECT_EQ(p.status, status) << bytes;
        EXPECT_FALSE(p.reason.empty());
    }
}

TEST(HttpRequest, SizeIsBounded)
{
    const std::string longLine = "GET /" + std::string(100, 'a');
    EXPECT_EQ(parse(longLine, 64).status, 414);
    EXPECT_EQ(parse(longLine.substr(0, 40), 64).kind, Kind::Incomplete);
    const std::string headers = "GET / HTTP/1.1\r\nA: " + std::string(100, 'b');
    EXPECT_EQ(parse(headers, 64).status, 431);
    // A complete request within the limit is read whatever follows it.
    EXPECT_EQ(parse("GET / HTTP/1.1\r\n\r\n" + std::string(100, 'c'), 64).kind, Kind::Complete);
}

TEST(HttpRequest, ResponsesCloseAndHeadKeepsTheLength)
{
    EXPECT_EQ(
        httpResponse(200, "text/plain", "abc\n", false),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabc\n");
    EXPECT_EQ(httpResponse(405, "text/plain", "no\n", true),
              "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
              "Allow: GET, HEAD\r\nConnection: close\r\n\r\n");
}

TEST(RestartCause, FromHowTheInstanceEnded)
{
    EXPECT_EQ(restartCauseOf(EndCause::None, ExitStatus{CLD_EXITED, 3}), RestartCause::Exit);
    EXPECT_EQ(restartCauseOf(EndCause::None, ExitStatus{CLD_EXITED, 0}), RestartCause::CleanExit);
    EXPECT_EQ(restartCauseOf(EndCause::None, ExitStatus{CLD_KILLED, SIGSEGV}), RestartCause::Signal);
    EXPECT_EQ(restartCauseOf(EndCause::None, ExitStatus{CLD_DUMPED, SIGABRT}), RestartCause::Signal);
    EXPECT_EQ(restartCauseOf(EndCause::WorkerStopping, ExitStatus{CLD_EXITED, 1}), RestartCause::Exit);
    EXPECT_EQ(restartCauseOf(EndCause::Watchdog, ExitStatus{CLD_KILLED, SIGABRT}), RestartCause::Watchdog);
    EXPECT_EQ(restartCauseOf(EndCause::ReadyTimeout, ExitStatus{CLD_KILLED, SIGKILL}),
              RestartCause::ReadyTimeout);
    EXPECT_EQ(restartCauseOf(EndCause::StartTimeout, ExitStatus{CLD_KILLED, SIGKILL}),
              RestartCause::StartTimeout);
    EXPECT_EQ(restartCauseOf(EndCause::ExecFailed, ExitStatus{CLD_EXITED, 127}), RestartCause::SpawnFailed);
}

TEST(RolloutCounters, CountResultsAndBucketDurations)
{
    RolloutCounters c;
    RolloutRecord r;
    r.state = RolloutState::Succeeded;
    r.duration = std::chrono::milliseconds(100); // on a bound: counted in it
    c.finished(r);
    r.state = RolloutState::Failed;
    r.duration = std::chrono::milliseconds(3000);
    c.finished(r);
    r.state = RolloutState::Cancelled;
    r.duration = std::chrono::hours(1);
    c.finished(r);
    r.state = RolloutState::Running; // not finished: not counted
    c.finished(r);
    EXPECT_EQ(c.succeeded, 1U);
    EXPECT_EQ(c.rolledBack, 1U);
    EXPECT_EQ(c.cancelled, 1U);
    EXPECT_EQ(c.durations.at(0), 1U); // <= 0.1
    EXPECT_EQ(c.durations.at(5), 1U); // <= 5
    EXPECT_EQ(c.durations.back(), 1U);
    EXPECT_DOUBLE_EQ(c.durationSeconds, 0.1 + 3 + 3600);
}

// A state chosen so that every number is distinct where it matters.
MetricsSnapshot knownState()
{
    MetricsSnapshot m;
    m.version = "1.2.3";
    m.process = SelfStats{1.5, 1700000000.25, 4096, 8192, 2048, 12, 1024};
    m.reloads = {2, 0, 1, 3, 0};
    ServiceMetrics s;
    s.name = "web";
    s.instances.at(static_cast<std::size_t>(InstanceState::Ready)) = 2;
    s.instances.at(static_cast<std::size_t>(InstanceState::Draining)) = 1;
    s.restarts.at(static_cast<std::size_t>(RestartCause::Signal)) = 4;
    s.restarts.at(static_cast<std::size_t>(RestartCause::Watchdog)) = 1;
    s.rollouts.started = 3;
    s.rollouts.succeeded = 1;
    s.rollouts.rolledBack = 1;
    s.rollouts.durations.at(1) = 1; // <= 0.25
    s.rollouts.durations.at(6) = 1; // <= 10
    s.rollouts.durationSeconds = 7.5;
    s.handoff = HandoffCounters{10, 7, 1, 1, 2};
    s.held = 1;
    s.notifyDropped = 5;
    s.channelDropped = 6;
    m.services.push_back(s);
    return m;
}

TEST(RenderMetrics, ExactTextOfAKnownState)
{
    const std::string expected = R"(# HELP fdsup_build_info The fdsupd build serving these metrics; always 1.
# TYPE fdsup_build_info gauge
fdsup_build_info{version="1.2.3"} 1
# HELP fdsup_config_reloads_total Configuration reloads by outcome.
# TYPE fdsup_config_reloads_total counter
fdsup_config_reloads_total{result="done"} 2
fdsup_config_reloads_total{result="failed"} 0
fdsup_config_reloads_total{result="invalid"} 1
fdsup_config_reloads_total{result="refused"} 3
fdsup_config_reloads_total{result="shutting-down"} 0
# HELP process_cpu_seconds_total User and system CPU time spent by fdsupd in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
# HELP process_open_fds Open file descriptors of fdsupd.
# TYPE process_open_fds gauge
process_open_fds 12
# HELP process_max_fds The most file descriptors fdsupd may open (RLIMIT_NOFILE).
# TYPE process_max_fds gauge
process_max_fds 1024
# HELP process_resident_memory_bytes Resident memory of fdsupd in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 4096
# HELP process_virtual_memory_bytes Virtual memory of fdsupd in bytes.
# TYPE process_virtual_memory_bytes gauge
process_virtual_memory_bytes 8192
# HELP fdsup_process_private_memory_bytes Memory only fdsupd maps (Private_Clean + Private_Dirty of smaps_rollup) in bytes.
# TYPE fdsup_process_private_memory_bytes gauge
fdsup_process_private_memory_bytes 2048
# HELP process_start_time_seconds Start time of fdsupd since the epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1700000000.25
# HELP fdsup_instances Live instances of the service by lifecycle state.
# TYPE fdsup_instances gauge
fdsup_instances{service="web",state="launching"} 0
fdsup_instances{service="web",state="starting"} 0
fdsup_instances{service="web",state="ready"} 2
fdsup_instances{service="web",state="draining"} 1
fdsup_instances{service="web",state="stopping"} 0
fdsup_instances{service="web",state="exited"} 0
fdsup_instances{service="web",state="failed"} 0
# HELP fdsup_restarts_total Automatic restarts of the service's instances by cause.
# TYPE fdsup_restarts_total counter
fdsup_restarts_total{service="web",cause="exit"} 0
fdsup_restarts_total{service="web",cause="signal"} 4
fdsup_restarts_total{service="web",cause="clean_exit"} 0
fdsup_restarts_total{service="web",cause="spawn_failed"} 0
fdsup_restarts_total{service="web",cause="start_timeout"} 0
fdsup_restarts_total{service="web",cause="ready_timeout"} 0
fdsup_restarts_total{service="web",cause="watchdog"} 1
# HELP fdsup_rollouts_started_total Rollouts begun (restarts and reloads).
# TYPE fdsup_rollouts_started_total counter
fdsup_rollouts_started_total{service="web"} 3
# HELP fdsup_rollouts_total Rollouts finished by result.
# TYPE fdsup_rollouts_total counter
fdsup_rollouts_total{service="web",result="succeeded"} 1
fdsup_rollouts_total{service="web",result="rolled_back"} 1
fdsup_rollouts_total{service="web",result="cancelled"} 0
# HELP fdsup_rollout_duration_seconds Durations of finished rollouts in seconds.
# TYPE fdsup_rollout_duration_seconds histogram
fdsup_rollout_duration_seconds_bucket{service="web",le="0.1"} 0
fdsup_rollout_duration_seconds_bucket{service="web",le="0.25"} 1
fdsup_rollout_duration_seconds_bucket{service="web",le="0.5"} 1
fdsup_rollout_duration_seconds_bucket{service="web",le="1"} 1
fdsup_rollout_duration_seconds_bucket{service="web",le="2.5"} 1
fdsup_rollout_duration_seconds_bucket{service="web",le="5"} 1
fdsup_rollout_duration_seconds_bucket{service="web",le="10"} 2
fdsup_rollout_duration_seconds_bucket{service="web",le="30"} 2
fdsup_rollout_duration_seconds_bucket{service="web",le="60"} 2
fdsup_rollout_duration_seconds_bucket{service="web",le="120"} 2
fdsup_rollout_duration_seconds_bucket{service="web",le="300"} 2
fdsup_rollout_duration_seconds_bucket{service="web",le="600"} 2
fdsup_rollout_duration_seconds_bucket{service="web",le="1800"} 2
fdsup_rollout_duration_seconds_bucket{service="web",le="+Inf"} 2
fdsup_rollout_duration_seconds_sum{service="web"} 7.5
fdsup_rollout_duration_seconds_count{service="web"} 2
# HELP fdsup_handoff_connections_total Connections handed over by workers (handed), and how held ones or refused ones ended.
# TYPE fdsup_handoff_connections_total counter
fdsup_handoff_connections_total{service="web",result="handed"} 10
fdsup_handoff_connections_total{service="web",result="adopted"} 7
fdsup_handoff_connections_total{service="web",result="expired"} 1
fdsup_handoff_connections_total{service="web",result="hung_up"} 1
fdsup_handoff_connections_total{service="web",result="refused"} 2
# HELP fdsup_handoff_held_connections Connections fdsupd holds now for the service.
# TYPE fdsup_handoff_held_connections gauge
fdsup_handoff_held_connections{service="web"} 1
# HELP fdsup_notify_messages_dropped_total Notify datagrams dropped: not from an instance, malformed or oversized.
# TYPE fdsup_notify_messages_dropped_total counter
fdsup_notify_messages_dropped_total{service="web"} 5
# HELP fdsup_channel_messages_dropped_total Worker channel messages fdsupd dropped: a malformed, flooding or unexpected one that closed its channel, or an empty datagram.
# TYPE fdsup_channel_messages_dropped_total counter
fdsup_channel_messages_dropped_total{service="web"} 6
)";
    EXPECT_EQ(renderMetrics(knownState()), expected);
}

TEST(RenderMetrics, LabelValuesAreEscaped)
{
    MetricsSnapshot m = knownState();
    m.version = "a\"b\\c\nd";
    EXPECT_NE(renderMetrics(m).find(R"(fdsup_build_info{version="a\"b\\c\nd"} 1)"), std::string::npos);
}

// The metric table of docs/metrics.md: `name` and type of each row.
std::set<std::pair<std::string, std::string>> documentedFamilies()
{
    const std::string doc =
        test::readFile(std::filesystem::path(test::requireEnv("FDSUP_SOURCE_ROOT")) / "docs" / "metrics.md");
    std::set<std::pair<std::string, std::string>> families;
    std::istringstream lines(doc);
    std::string line;
    while (std::getline(lines, line)) {
        if (!line.starts_with("| `") || line.starts_with("| `GET") || line.starts_with("| `HEAD")) {
            continue;
        }
        const auto nameEnd = line.find('`', 3);
        const auto typeStart = line.find("| ", nameEnd) + 2;
        const auto typeEnd = line.find(" |", typeStart);
        families.emplace(line.substr(3, nameEnd - 3), line.substr(typeStart, typeEnd - typeStart));
    }
    return families;
}

TEST(RenderMetrics, TheDocumentedListIsWhatIsServed)
{
    std::set<std::pair<std::string, std::string>> served;
    std::istringstream lines(renderMetrics(knownState()));
    std::string line;
    while (std::getline(lines, line)) {
        if (line.starts_with("# TYPE ")) {
            const auto space = line.find(' ', 7);
            served.emplace(line.substr(7, space - 7), line.substr(space + 1));
        }
    }
    EXPECT_EQ(documentedFamilies(), served);
}

config::LoadResult loadSupervisor(const test::TempDir &dir, const std::string &keys)
{
    test::writeFile(dir / "f.toml", "[supervisor]\n" + keys);
    return config::loadConfig((dir / "f.toml").string());
}

std::string firstError(const config::LoadResult &r)
{
    return r.diagnostics.empty() ? std::string() : r.diagnostics.front().str();
}

TEST(MetricsKey, AcceptedForms)
{
    const test::TempDir dir;
    const std::pair<std::string, std::string> cases[] = {
        {"127.0.0.1:9187", "tcp://127.0.0.1:9187"},
        {"tcp://[::1]:9187", "tcp://[::1]:9187"},
        {"127.1.2.3:80", "tcp://127.1.2.3:80"},
        {"/run/m.sock", "unix:/run/m.sock"},
        {"unix:@fdsup-metrics", "unix:@fdsup-metrics"},
        {"unix:m.sock", "unix:" + (dir / "m.sock").string()},
        {"./m.sock", "unix:" + (dir / "m.sock").string()},
    };
    for (const auto &[value, canonical] : cases) {
        const auto r = loadSupervisor(dir, "metrics = \"" + value + "\"\n");
        ASSERT_TRUE(r.config) << value << ": " << firstError(r);
        ASSERT_TRUE(r.config->supervisor.metrics);
        EXPECT_EQ(formatAddress(*r.config->supervisor.metrics), canonical);
        // The effective configuration (what a re-exec reads back) keeps it.
        EXPECT_NE(config::renderConfig(*r.config).find("metrics = \"" + canonical + "\""), std::string::npos);
    }
    EXPECT_FALSE(loadSupervisor(dir, "").config->supervisor.metrics);
}

TEST(MetricsKey, RefusedWithWhereAndWhy)
{
    const test::TempDir dir;
    const std::string file = (dir / "f.toml").string();
    const std::pair<std::string, std::string> cases[] = {
        {"metrics = \"0.0.0.0:9187\"",
         file + ":2:11: 'metrics': 'tcp://0.0.0.0:9187' is not a loopback address; "
                "set metrics_public = true to serve metrics on it"},
        {"metrics = \"localhost:9187\"",
         file + ":2:11: 'metrics': the host of 'localhost:9187' must be a numeric "
                "address such as 127.0.0.1 or [::1], not a name"},
        {"metrics = \"127.0.0.1:0\"",
         file + ":2:11: 'metrics': '127.0.0.1:0' needs a port (a scraper must know where to connect)"},
        {"metrics = \"unix-dgram:/m\"",
         file + ":2:11: 'metrics' must be a unix stream socket or a tcp:// address, not 'unix-dgram:/m'"},
        {"metrics = \"udp://127.0.0.1:9187\"",
         file +
             ":2:11: 'metrics' must be a unix stream socket or a tcp:// address, not 'udp://127.0.0.1:9187'"},
        {"metrics = 9187", file + ":2:11: 'metrics' must be a string, not an integer"},
    };
    for (const auto &[keys, error] : cases) {
        const auto r = loadSupervisor(dir, keys + "\n");
        EXPECT_FALSE(r.config) << keys;
        EXPECT_EQ(firstError(r), error) << keys;
    }
    const auto r = loadSupervisor(dir, "metrics = \"0.0.0.0:9187\"\nmetrics_public = true\n");
    EXPECT_TRUE(r.config) << firstError(r);
}

} // namespace
} // namespace fdsup
