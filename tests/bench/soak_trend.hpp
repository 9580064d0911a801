// The soak's checkpoints (fdsupd's descriptors and private memory every 100 restarts) and the verdict on
// its memory: the slope over the last half of the run against the documented criterion (docs/benchmark.md).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace fdsup::bench {

struct Checkpoint {
    int restarts = 0; // restarts done when it was taken (after the warm-up)
    int fds = 0;
    double privateKib = 0;
    double heapKib = 0; // Rss of the [heap] mapping: where malloc's pages are (part of privateKib)
};

// Memory is "flat" when the least-squares slope of private KiB over the
// checkpoints of the last half of the run (restarts >= N/2, the start
// counted when it is one of them) is at most this many KiB per 100
// restarts. One lost 32-byte allocation per instance replaced (8 a restart)
// is 25 KiB/100; a page a hundred restarts is 4.
inline constexpr double kFlatKibPer100 = 4.0;

// The least-squares slope of private KiB against restarts, in KiB per 100
// restarts, over the checkpoints taken at or after `from` restarts; nullopt
// with fewer than two of them or when they were all taken at one count.
std::optional<double> kibPer100Slope(const std::vector<Checkpoint> &points, int from);

// What kibPer100Slope() says of the last half of a run of `restarts`.
struct MemoryVerdict {
    std::optional<double> slope; // KiB per 100 restarts
    bool flat = false;
    std::string text; // "flat: ..." or "not flat: ..." or why it cannot say
};
MemoryVerdict memoryVerdict(const std::vector<Checkpoint> &points, int restarts);

// Growth of private KiB between consecutive checkpoints, per 100 restarts (one per interval).
std::vector<double> growthPer100(const std::vector<Checkpoint> &points);

} // namespace fdsup::bench
