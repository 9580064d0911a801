// The summary and the JSON of bench-contract.md section 2: every class key always present.
#include "report.hpp"

#include <cstdio>

namespace fdsup::load {

namespace {

std::string fixed(double value, int digits = 1)
{
    char text[64];
    (void)std::snprintf(text, sizeof text, "%.*f", digits, value);
    return text;
}

} // namespace

nlohmann::json reportJson(const Options &options, const Report &report)
{
    nlohmann::json counts = nlohmann::json::object();
    for (size_t i = 0; i < kOutcomeCount; ++i) {
        counts[std::string(outcomeName(static_cast<Outcome>(i)))] = report.counts[i];
    }
    counts["forced_reconnects"] = report.forcedReconnects;
    counts["connections_opened"] = report.connectionsOpened;
    nlohmann::json restarts = nlohmann::json::array();
    for (const auto &r : report.restarts) {
        restarts.push_back({{"start_ms", r.startMs}, {"end_ms", r.endMs}, {"exit_status", r.exitStatus}});
    }
    return {
        {"schema", "fdsup-load/1"},
        {"target", options.target.text},
        {"mode", modeName(options.mode)},
        {"connections", options.connections},
        {"duration_ms", options.duration.count()},
        {"elapsed_ms", report.elapsedMs},
        {"think_ms", options.think.count()},
        {"timeout_ms", options.timeout.count()},
        {"counts", counts},
        {"failures", report.failures},
        {"other_errors", report.otherErrors},
        {"longest_gap_ms", report.longestGapMs},
        {"latency_ms", {{"p50", report.p50Ms}, {"p99", report.p99Ms}, {"max", report.maxMs}}},
        {"throughput", {{"before", report.before}, {"during", report.during}, {"after", report.after}}},
        {"restarts", restarts},
        {"timeline",
         {{"bucket_ms", Report::kBucketMs},
          {"ok", report.timelineOk},
          {"failures", report.timelineFailures},
          {"forced_reconnects", report.timelineForced}}},
    };
}

void printSummary(std::ostream &out, const Options &options, const Report &report)
{
    uint64_t ok = report.counts[0];
    out << "fdsup-load: " << modeName(options.mode) << ", " << options.connections << " connections to "
        << options.target.text << " for " << fixed(report.elapsedMs / 1000.0, 2) << " s\n";
    out << "requests ok:        " << ok << " ("
        << fixed(report.elapsedMs > 0 ? ok * 1000.0 / report.elapsedMs : 0) << "/s), latency p50 "
        << fixed(report.p50Ms, 2) << " ms, p99 " << fixed(report.p99Ms, 2) << " ms, max "
        << fixed(report.maxMs, 2) << " ms\n";
    out << "failures:           " << report.failures << "\n";
    for (size_t i = 1; i < kOutcomeCount; ++i) {
        if (report.counts[i] != 0) {
            out << "  " << outcomeName(static_cast<Outcome>(i)) << ": " << report.counts[i] << "\n";
        }
    }
    for (const auto &[name, count] : report.otherErrors) {
        out << "    " << name << ": " << count << "\n";
    }
    out << "forced reconnects:  " << report.forcedReconnects
        << " (connections opened: " << report.connectionsOpened << ")\n";
    out << "longest gap:        " << fixed(report.longestGapMs, 1) << " ms without a response\n";
    out << "throughput (ok/s):  before " << fixed(report.before) << ", during " << fixed(report.during)
        << ", after " << fixed(report.after) << "\n";
    for (size_t i = 0; i < report.restarts.size(); ++i) {
        const auto &r = report.restarts[i];
        out << "restart " << i + 1 << ":          at " << fixed(r.startMs) << " ms, took "
            << fixed(r.endMs - r.startMs) << " ms, exit status " << r.exitStatus << "\n";
    }
}

} // namespace fdsup::load
