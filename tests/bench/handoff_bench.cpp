// handoff-bench: how fast fdsupd moves established connections, against the kernel's own limit.
//
// For each size (tier smoke: 256 and 1,024; quick and full: 1,024, 4,096
// and 16,384 connections) and each repetition, interleaved:
//   - raw: the same number of connected TCP sockets sent from one process to
//     another over one AF_UNIX socketpair, 253 per message (handoff_raw.hpp);
//   - fdsupd: a rollout of 4 seqnum-echo instances (libactivate/examples)
//     holding that many idle client connections, every one handed over
//     through a real fdsupd and adopted by a replacement, then checked with a
//     round trip (handoff_fdsupd.hpp says what the clock covers).
// Plus fdsupd's CPU time per connection, a rollout without connections (the
// fixed part), and fdsupd's system calls during one more handoff (strace -c).
//
//   handoff-bench [--tier smoke|quick|full] [--json FILE] [--sizes N,N...]
//
// Prints a table on stdout, progress on stderr; writes fdsup-bench/1 JSON
// with --json (docs/benchmark.md). Exit 0 when it measured, 1 when it
// could not (why on stderr), 2 for a bad command line.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/utsname.h>

#include "handoff_fdsupd.hpp"
#include "handoff_notes.hpp"
#include "handoff_raw.hpp"
#include "handoff_report.hpp"
#include "test_support.hpp"

namespace fdsup::bench {
namespace {

struct Tier {
    std::string name;
    std::vector<int> sizes;
    int repeats = 0;
    int traced = 0; // the size whose extra handoff runs under strace
};

bool parseTier(const std::string &name, Tier &tier)
{
    if (name == "smoke") {
        tier = {name, {256, 1024}, 1, 256};
    } else if (name == "quick") {
        tier = {name, {1024, 4096, 16384}, 3, 1024};
    } else if (name == "full") {
        tier = {name, {1024, 4096, 16384}, 5, 4096};
    } else {
        return false;
    }
    return true;
}

std::string withCommas(int n)
{
    const std::string digits = std::to_string(n);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i > 0 && (digits.size() - i) % 3 == 0) {
            out.push_back(',');
        }
        out.push_back(digits[i]);
    }
    return out;
}

void raiseNofile()
{
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &limit);
    }
}

// The rollout's fixed cost: the same rollout with no connection to move.
void measureEmpty(Report &report, const Tier &tier, const std::string &seqnum)
{
    HandoffFixture fixture(seqnum, 0);
    for (int rep = 0; rep < tier.repeats; ++rep) {
        const HandoffSample s = fixture.rollout();
        report
            .figure("handoff.fdsupd.0.cpu_ms", "fdsupd CPU of a rollout of 4 instances, no connection", "ms",
                    "lower")
            .samples.push_back(s.cpuMs);
        report
            .figure("handoff.fdsupd.0.ms", "DRAIN to the last drained worker reaped, no connection", "ms",
                    "lower")
            .samples.push_back(s.handoffMs);
    }
}

void addSample(Report &report, int n, double raw, const HandoffSample &s)
{
    const std::string k = std::to_string(n);
    const std::string count = withCommas(n);
    std::optional<Target> rateTarget;
    std::optional<Target> msTarget;
    if (n == 16384) {
        rateTarget = Target{">=", 200000, "≥ 200k connections/s"};
        msTarget = Target{"<=", 80, "≤ 80 ms"};
    }
    report
        .figure("handoff.raw." + k + ".rate", count + " sockets over one socketpair, 253 per message",
                "conn/s", "higher")
        .samples.push_back(raw);
    report
        .figure("handoff.fdsupd." + k + ".rate", count + " connections through fdsupd", "conn/s", "higher",
                rateTarget)
        .samples.push_back(n / (std::max(s.handoffMs, 1.0) / 1000.0));
    report
        .figure("handoff.fdsupd." + k + ".ms", count + " connections: DRAIN to the last worker reaped", "ms",
                "lower", msTarget)
        .samples.push_back(s.handoffMs);
    report
        .figure("handoff.fdsupd." + k + ".rollout_ms", count + " connections: the whole Restart call", "ms",
                "lower")
        .samples.push_back(s.rolloutMs);
    report
        .figure("handoff.fdsupd." + k + ".cpu_us", count + " connections: fdsupd CPU per connection", "us",
                "lower")
        .samples.push_back(s.cpuMs * 1000.0 / n);
    if (s.userMs + s.systemMs > 0) {
        report
            .figure("handoff.fdsupd." + k + ".system_share",
                    count + " connections: share of fdsupd's CPU spent in the kernel", "ratio", "lower")
            .samples.push_back(s.systemMs / (s.userMs + s.systemMs));
    }
    report
        .figure("handoff.fdsupd." + k + ".failed", count + " connections: round trips failed afterwards",
                "count", "lower", Target{"==", 0, "0"})
        .samples.push_back(s.failed);
}

void measureSize(Report &report, const Tier &tier, const std::string &seqnum, RawHandoff &raw, int n)
{
    (void)std::fprintf(stderr, "handoff-bench: %d connections\n", n);
    HandoffFixture fixture(seqnum, n);
    for (int rep = 0; rep < tier.repeats; ++rep) {
        const double rawRate = raw.measure(n);
        const HandoffSample s = fixture.rollout();
        (void)std::fprintf(stderr, "  raw %.0f/s; fdsupd %.1f ms (rollout %.1f ms, CPU %.1f ms), %d failed\n",
                           rawRate, s.handoffMs, s.rolloutMs, s.cpuMs, s.failed);
        addSample(report, n, rawRate, s);
    }
    const std::string k = std::to_string(n);
    report.ratio({"handoff." + k + ".fdsupd_vs_raw",
                  "fdsupd / raw socketpair, " + withCommas(n) + " connections",
                  "handoff.fdsupd." + k + ".rate", "handoff.raw." + k + ".rate"});
    if (n == tier.traced) {
        (void)std::fprintf(stderr, "handoff-bench: %d connections under strace -c\n", n);
        syscallNotes(report, n, fixture.rolloutTraced());
    }
}

void machineFacts(Report &report)
{
    rlimit limit{};
    (void)getrlimit(RLIMIT_NOFILE, &limit);
    report.fact("RLIMIT_NOFILE (hard)", std::to_string(limit.rlim_max));
    utsname u{};
    if (uname(&u) == 0) {
        report.fact("kernel", std::string(u.release));
    }
    std::ifstream load("/proc/loadavg");
    std::string l1;
    std::string l5;
    std::string l15;
    load >> l1 >> l5 >> l15;
    report.fact("load average at start (1, 5, 15 min)", l1 + " " + l5 + " " + l15);
}

int run(const Tier &tier, const std::string &jsonPath)
{
    raiseNofile();
    RawHandoff raw; // forked before anything is open
    const std::string seqnum = test::requireEnv("FDSUP_TEST_SEQNUM_ECHO");
    Report report("handoff-bench", "handoff", tier.name);
    machineFacts(report);
    measureEmpty(report, tier, seqnum);
    for (const int n : tier.sizes) {
        measureSize(report, tier, seqnum, raw, n);
    }
    staticNotes(report, tier.sizes.back());
    (void)std::fputs(report.table().c_str(), stdout);
    if (!jsonPath.empty()) {
        std::ofstream out(jsonPath);
        out << report.json().dump(2) << "\n";
        if (!out) {
            (void)std::fprintf(stderr, "handoff-bench: cannot write %s\n", jsonPath.c_str());
            return 1;
        }
    }
    return 0;
}

} // namespace
} // namespace fdsup::bench

int main(int argc, char **argv)
{
    fdsup::bench::Tier tier;
    (void)fdsup::bench::parseTier("quick", tier);
    std::string json;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--tier" && i + 1 < argc && fdsup::bench::parseTier(argv[i + 1], tier)) {
            ++i;
        } else if (a == "--json" && i + 1 < argc) {
            json = argv[++i];
        } else if (a == "--sizes" && i + 1 < argc) { // diagnostics: other sizes, comma-separated
            tier.sizes.clear();
            for (std::string list = argv[++i]; !list.empty();) {
                const auto comma = list.find(',');
                tier.sizes.push_back(std::stoi(list.substr(0, comma)));
                list = comma == std::string::npos ? "" : list.substr(comma + 1);
            }
            tier.traced = tier.sizes.front();
        } else {
            (void)std::fprintf(stderr,
                               "usage: %s [--tier smoke|quick|full] [--json FILE] [--sizes N,...] ('%s'?)\n",
                               argv[0], a.c_str());
            return 2;
        }
    }
    try {
        return fdsup::bench::run(tier, json);
    } catch (const std::exception &e) {
        (void)std::fprintf(stderr, "handoff-bench: %s\n", e.what());
        return 1;
    }
}
