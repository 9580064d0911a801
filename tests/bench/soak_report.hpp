// What the soak saw, and how it becomes fdsup-bench/1 figures, notes and an exit status.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_report.hpp"
#include "soak_trend.hpp"

namespace fdsup::bench {

// clang-tidy 14 says one of the implicit (noexcept) constructors may throw;
// none is used where that matters: one result is made, in main's try, and
// benchMain catches what escapes.
struct SoakResult { // NOLINT(bugprone-exception-escape)
    int restartsAsked = 0;
    int warmup = 0;
    int restartsDone = 0;      // after the warm-up
    std::string failedRestart; // fdsupctl's words when one failed (the soak stops there)
    std::map<std::string, std::vector<double>> restartMs; // per service: each `fdsupctl restart --wait`
    std::vector<double> cpuMsPerRestart;                  // fdsupd's CPU over each restart of both
    std::map<int, std::string> baseline;                  // fdsupd's descriptors after the warm-up
    std::vector<Checkpoint> points;                       // after the warm-up, every 100, the last
    Checkpoint end;                                       // the load stopped and settled
    bool settled = false;                                 // the descriptor count came back to the baseline
    std::string fdsOpened;                                // when not: what is open that was not
    nlohmann::json http, streams;                         // fdsup-load/1 of each load
    nlohmann::json broker;                                // `fdsupctl connections --json` at the end
    double wallS = 0;                                     // of the restarts after the warm-up
    double cpuUserS = 0, cpuSystemS = 0;                  // fdsupd's, over the same restarts
};

// The nearest-rank q-quantile (0 when empty).
double percentile(std::vector<double> samples, double q);

// Adds the figures, notes and facts of the soak to report; prints why it failed, if it did, to stderr.
// Returns the exit status: 1 when a request failed, a stream broke, a restart failed or the descriptors
// did not come back to the baseline, else 0 (memory is a figure, judged against its target, not a status).
int reportSoak(BenchReport &report, const SoakResult &result);

} // namespace fdsup::bench
