// Results: every outcome fdsup-load counts, as the run goes, and the figures made of them at the end.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace fdsup::load {

using Clock = std::chrono::steady_clock; // CLOCK_MONOTONIC

// The classes of bench-contract.md section 2, in the JSON's order.
enum class Outcome {
    Ok,
    Refused,
    FreshReset,
    FreshEof,
    KeepaliveRace,
    MidResponse,
    Timeout,
    Non2xx,
    BrokenStream,
    Other,
};
inline constexpr size_t kOutcomeCount = static_cast<size_t>(Outcome::Other) + 1;
std::string_view outcomeName(Outcome outcome);

// Which part of the run an ok fell in: before the first restart started,
// from then until the last one ended, after.
enum class Phase { Before, During, After };

struct RestartRecord {
    double startMs = 0; // from the start of the load
    double endMs = 0;
    int exitStatus = 0; // the exit code, or -SIGNAL when a signal ended it
};

// What a run measured, ready to print.
struct Report {
    std::array<uint64_t, kOutcomeCount> counts{};
    uint64_t forcedReconnects = 0;
    uint64_t connectionsOpened = 0;
    uint64_t failures = 0;
    std::map<std::string, uint64_t> otherErrors;
    double elapsedMs = 0;
    double longestGapMs = 0;
    double p50Ms = 0, p99Ms = 0, maxMs = 0;
    double before = 0, during = 0, after = 0; // ok per second
    std::vector<RestartRecord> restarts;
    static constexpr int kBucketMs = 100;
    std::vector<uint64_t> timelineOk, timelineFailures, timelineForced;
};

class Results {
public:
    explicit Results(Clock::time_point start);

    void ok(Clock::time_point now, Clock::duration latency, Phase phase);
    // A failure of class outcome (not Ok); errnoName for Other.
    void failure(Clock::time_point now, Outcome outcome, std::string_view errnoName = {});
    void forcedReconnect(Clock::time_point now);
    void connectionOpened() { ++report_.connectionsOpened; }

    // The figures, for a run that ended at end with these restarts.
    Report finish(Clock::time_point end, std::vector<RestartRecord> restarts);

private:
    size_t bucket(Clock::time_point now);

    Clock::time_point start_;
    Clock::time_point lastOk_;
    Clock::duration longestGap_{};
    std::vector<uint32_t> latencyUs_;
    std::array<uint64_t, 3> okByPhase_{};
    Report report_;
};

} // namespace fdsup::load
