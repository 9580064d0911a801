// The soak's figures (fdsup-bench/1), its tables as notes, and its verdict.
#include "soak_report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace fdsup::bench {

namespace {

double countOf(const nlohmann::json &load, const char *name)
{
    return load.contains("counts") ? load["counts"].value(name, 0.0) : 0.0;
}

// One figure with one sample.
void one(BenchReport &report, const std::string &id, const std::string &label, const std::string &unit,
         bool higher, double value, std::optional<Target> target = std::nullopt)
{
    report.figure(id, label, unit, higher, std::move(target));
    report.add(id, value);
}

Target zero()
{
    return Target{"==", 0, "0"};
}

std::string checkpointTable(const SoakResult &r)
{
    std::string md = "| restarts | fdsupd descriptors | fdsupd private KiB | growth, KiB per 100 restarts | "
                     "of which the heap (Rss) |\n|---|---:|---:|---:|---:|\n";
    char row[200];
    for (std::size_t i = 0; i < r.points.size(); ++i) {
        const auto &p = r.points[i];
        std::string growth = "–";
        if (i > 0 && p.restarts > r.points[i - 1].restarts) {
            (void)std::snprintf(row, sizeof row, "%+.0f",
                                (p.privateKib - r.points[i - 1].privateKib) * 100.0 /
                                    (p.restarts - r.points[i - 1].restarts));
            growth = row;
        }
        const std::string what = i == 0 ? "0 (after " + std::to_string(r.warmup) + " warm-up restarts)"
                                        : std::to_string(p.restarts);
        (void)std::snprintf(row, sizeof row, "| %s | %d | %.0f | %s | %.0f |\n", what.c_str(), p.fds,
                            p.privateKib, growth.c_str(), p.heapKib);
        md += row;
    }
    (void)std::snprintf(row, sizeof row, "| end: the load stopped, settled | %d | %.0f | | %.0f |\n",
                        r.end.fds, r.end.privateKib, r.end.heapKib);
    return md + row;
}

std::string classTable(const SoakResult &r)
{
    std::string md = "| count | HTTP keep-alive | streams |\n|---|---:|---:|\n";
    const nlohmann::json counts = r.http.value("counts", nlohmann::json::object());
    for (const auto &[name, value] : counts.items()) {
        md += "| " + name + " | " + std::to_string(value.get<long long>()) + " | " +
              std::to_string(static_cast<long long>(countOf(r.streams, name.c_str()))) + " |\n";
    }
    return md;
}

void loadFigures(BenchReport &report, const SoakResult &r)
{
    one(report, "soak.http.requests", "HTTP keep-alive requests answered (ok)", "requests", true,
        countOf(r.http, "ok"));
    one(report, "soak.http.failures", "HTTP requests failed (every class)", "requests", false,
        r.http.value("failures", -1.0), zero());
    one(report, "soak.stream.echoes", "stream echoes checked (ok)", "echoes", true, countOf(r.streams, "ok"));
    one(report, "soak.stream.broken", "broken streams", "streams", false, countOf(r.streams, "broken_stream"),
        zero());
    one(report, "soak.stream.failures", "stream failures (every class)", "echoes", false,
        r.streams.value("failures", -1.0), zero());
    one(report, "soak.forced_reconnects", "forced reconnects (both loads)", "connections", false,
        countOf(r.http, "forced_reconnects") + countOf(r.streams, "forced_reconnects"), zero());
    double handed = 0, adopted = 0;
    for (const auto &s : r.broker.value("services", nlohmann::json::array())) {
        handed += s.value("handed", 0.0);
        adopted += s.value("adopted", 0.0);
    }
    one(report, "soak.handed", "connections handed over by draining workers (warm-up included)",
        "connections", true, handed);
    one(report, "soak.adopted", "connections adopted by replacements (warm-up included)", "connections", true,
        adopted);
}

void restartFigures(BenchReport &report, const SoakResult &r)
{
    one(report, "soak.restarts", "rolling restarts done (each: web, then stream)", "restarts", true,
        r.restartsDone);
    one(report, "soak.restarts_failed", "rolling restarts failed", "restarts", false,
        r.failedRestart.empty() ? 0 : 1, zero());
    for (const auto &[service, ms] : r.restartMs) {
        auto &samples =
            report.figure("soak." + service + ".restart_ms",
                          "`fdsupctl restart " + service + " --wait`, wall (4 instances)", "ms", false);
        samples = ms;
        one(report, "soak." + service + ".restart_ms_p99", "`fdsupctl restart " + service + " --wait`, p99",
            "ms", false, percentile(ms, 0.99));
    }
    report.figure("soak.cpu_ms_per_restart", "fdsupd CPU per restart (web and stream; /proc/PID/schedstat)",
                  "ms", false) = r.cpuMsPerRestart;
}

void memoryFigures(BenchReport &report, const SoakResult &r)
{
    // Declared before adding: a reference figure() returns lasts only until the next figure is declared.
    report.figure("soak.fds", "fdsupd descriptors at each checkpoint", "fds", false);
    report.figure("soak.private_kib", "fdsupd private dirty memory at each checkpoint", "KiB", false);
    for (const auto &p : r.points) {
        report.add("soak.fds", p.fds);
        report.add("soak.private_kib", p.privateKib);
    }
    if (!r.points.empty()) {
        one(report, "soak.fds_end_minus_start",
            "fdsupd descriptors at the end (settled) minus after the warm-up", "fds", false,
            r.end.fds - r.points.front().fds, zero());
    }
    report.figure("soak.private_kib_growth_per_100", "fdsupd private dirty memory growth between checkpoints",
                  "KiB/100 restarts", false) = growthPer100(r.points);
    const MemoryVerdict verdict = memoryVerdict(r.points, r.restartsDone);
    if (verdict.slope) {
        char text[80];
        (void)std::snprintf(text, sizeof text, "≤ %g KiB per 100 restarts", kFlatKibPer100);
        one(report, "soak.private_kib_slope_last_half",
            "fdsupd private dirty memory, slope over the last half of the restarts", "KiB/100 restarts",
            false, *verdict.slope, Target{"<=", kFlatKibPer100, text});
    }
    report.note("Memory: " + verdict.text + ".");
}

} // namespace

double percentile(std::vector<double> samples, double q)
{
    if (samples.empty()) {
        return 0;
    }
    std::sort(samples.begin(), samples.end());
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(samples.size())));
    return samples[std::clamp<std::size_t>(rank, 1, samples.size()) - 1];
}

int reportSoak(BenchReport &report, const SoakResult &r)
{
    restartFigures(report, r);
    loadFigures(report, r);
    memoryFigures(report, r);
    report.note("Every checkpoint is taken between two restarts, under load; the last row after the load "
                "stopped and fdsupd's descriptors came back to the count after the warm-up (or the deadline "
                "passed).\n\n" +
                checkpointTable(r));
    report.note("What the clients saw, by class (fdsup-load/1; warm-up included):\n\n" + classTable(r));
    report.fact("services", "web (http-keepalive) and stream (seqnum-echo), 4 instances each, ready = "
                            "\"channel\", handoff = true");
    report.fact("load", "fdsup-load --mode keepalive and --mode stream, 32 connections each, all along");
    report.fact("restarts", std::to_string(r.restartsDone) + " of " + std::to_string(r.restartsAsked) +
                                " after " + std::to_string(r.warmup) + " warm-up restarts");
    char text[80];
    (void)std::snprintf(text, sizeof text, "%.1f s", r.wallS);
    report.fact("wall time of the restarts", text);
    (void)std::snprintf(text, sizeof text, "%.2f s user, %.2f s system", r.cpuUserS, r.cpuSystemS);
    report.fact("fdsupd CPU over the restarts", text);
    int status = 0;
    auto fail = [&](const std::string &why) {
        (void)std::fprintf(stderr, "soak-bench: FAILED: %s\n", why.c_str());
        status = 1;
    };
    if (!r.failedRestart.empty()) {
        fail("a restart failed after " + std::to_string(r.restartsDone) + " restarts: " + r.failedRestart);
    }
    if (r.http.value("failures", -1) != 0 || r.streams.value("failures", -1) != 0) {
        fail("requests failed or streams broke (by class above)");
    }
    if (!r.baseline.empty() && !r.settled) {
        fail("fdsupd's descriptors did not come back to " + std::to_string(r.baseline.size()) + " (now " +
             std::to_string(r.end.fds) + "):\n" + r.fdsOpened);
    }
    return status;
}

} // namespace fdsup::bench
