// What /proc says about fdsupd itself, for its metrics: CPU, memory, descriptors, start time.
#pragma once

#include <cstdint>

namespace fdsup {

struct SelfStats {
    double cpuSeconds = 0;       // user + system (/proc/self/stat)
    double startTimeSeconds = 0; // since the epoch (boot time + starttime)
    std::uint64_t residentBytes = 0;
    std::uint64_t virtualBytes = 0;
    std::uint64_t privateBytes = 0; // Private_Clean + Private_Dirty of /proc/self/smaps_rollup
    std::uint64_t openFds = 0;      // entries of /proc/self/fd, the one reading it left out
    std::uint64_t maxFds = 0;       // RLIMIT_NOFILE, soft
};

// Reads it now; a figure that cannot be read stays 0 (the rest is still read).
SelfStats readSelfStats();

} // namespace fdsup
