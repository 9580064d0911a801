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

#include "bench_report.hpp"
#include "handoff_fdsupd.hpp"
#include "handoff_notes.hpp"
#include "handoff_raw.hpp"
#include "test_support.hpp"

namespace fdsup::bench {
namespace {

// What a tier measures: the sizes, the repetitions, and the size whose extra handoff runs under strace.
struct Plan {
    Tier tier = Tier::Quick;
    std::vector<int> sizes;
    int repeats = 0;
    int traced = 0;
};

Plan planFor(Tier tier)
{
    switch (tier) {
    case Tier::Smoke:
        return {tier, {256, 1024}, 1, 256};
    case Tier::Full:
        return {tier, {1024, 4096, 16384}, 5, 4096};
    case Tier::Quick:
        break;
    }
    return {Tier::Quick, {1024, 4096, 16384}, 3, 1024};
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
void measureEmpty(BenchReport &report, const Plan &tier, const std::string &seqnum)
{
    HandoffFixture fixture(seqnum, 0);
    for (int rep = 0; rep < tier.repeats; ++rep) {
        const HandoffSample s = fixture.rollout();
        report
            .figure("handoff.fdsupd.0.cpu_ms", "fdsupd CPU of a rollout of 4 instances, no connection", "ms",
                    false)
            .push_back(s.cpuMs);
        report
            .figure("handoff.fdsupd.0.ms", "DRAIN to the last drained worker reaped, no connection", "ms",
                    false)
            .push_back(s.handoffMs);
    }
}

void addSample(BenchReport &report, int n, double raw, const HandoffSample &s)
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
                "conn/s", true)
        .push_back(raw);
    report
        .figure("handoff.fdsupd." + k + ".rate", count + " connections through fdsupd", "conn/s", true,
                rateTarget)
        .push_back(n / (std::max(s.handoffMs, 1.0) / 1000.0));
    report
        .figure("handoff.fdsupd." + k + ".ms", count + " connections: DRAIN to the last worker reaped", "ms",
                false, msTarget)
        .push_back(s.handoffMs);
    report
        .figure("handoff.fdsupd." + k + ".rollout_ms", count + " connections: the whole Restart call", "ms",
                false)
        .push_back(s.rolloutMs);
    report
        .figure("handoff.fdsupd." + k + ".cpu_us", count + " connections: fdsupd CPU per connection", "us",
                false)
        .push_back(s.cpuMs * 1000.0 / n);
    if (s.userMs + s.systemMs > 0) {
        report
            .figure("handoff.fdsupd." + k + ".system_share",
                    count + " connections: share of fdsupd's CPU spent in the kernel", "ratio", false)
            .push_back(s.systemMs / (s.userMs + s.systemMs));
    }
    report
        .figure("handoff.fdsupd." + k + ".failed", count + " connections: round trips failed afterwards",
                "count", false, Target{"==", 0, "0"})
        .push_back(s.failed);
}

void measureSize(BenchReport &report, const Plan &tier, const std::string &seqnum, RawHandoff &raw, int n)
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
    report.ratio("handoff." + k + ".fdsupd_vs_raw",
                 "fdsupd / raw socketpair, " + withCommas(n) + " connections",
                 "handoff.fdsupd." + k + ".rate", "handoff.raw." + k + ".rate");
    if (n == tier.traced) {
        (void)std::fprintf(stderr, "handoff-bench: %d connections under strace -c\n", n);
        syscallNotes(report, n, fixture.rolloutTraced());
    }
}

void machineFacts(BenchReport &report)
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

int run(const Plan &tier, const std::string &jsonPath)
{
    raiseNofile();
    RawHandoff raw; // forked before anything is open
    const std::string seqnum = test::requireEnv("FDSUP_TEST_SEQNUM_ECHO");
    BenchReport report("handoff-bench", "handoff", tier.tier);
    machineFacts(report);
    measureEmpty(report, tier, seqnum);
    for (const int n : tier.sizes) {
        measureSize(report, tier, seqnum, raw, n);
    }
    staticNotes(report, tier.sizes.back());
    report.print();
    std::string why;
    if (!jsonPath.empty() && !report.write(jsonPath, why)) {
        (void)std::fprintf(stderr, "handoff-bench: %s\n", why.c_str());
        return 1;
    }
    return 0;
}

} // namespace
} // namespace fdsup::bench

int main(int argc, char **argv)
{
    fdsup::bench::Plan tier = fdsup::bench::planFor(fdsup::bench::Tier::Quick);
    std::string json;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto named = i + 1 < argc ? fdsup::bench::tierFromName(argv[i + 1]) : std::nullopt;
        if (a == "--tier" && named) {
            tier = fdsup::bench::planFor(*named);
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
