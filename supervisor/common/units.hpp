// Human units in configuration and on the command line: durations and sizes.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace fdsup {

using Duration = std::chrono::microseconds;

// "500ms", "30s", "5m", "1h", "1h30m", "250us", "infinity"; a bare number is
// rejected (ambiguous). Overflow and negative values are errors.
// "infinity" returns Duration::max().
Result<Duration> parseDuration(std::string_view text);
// The shortest exact form: "500ms", "30s", "1h30m", "infinity".
std::string formatDuration(Duration d);

// "64KiB", "1MiB", "2GiB", "512" (bytes), "1K"/"1M" meaning KiB/MiB, "64kB" (1000).
Result<std::uint64_t> parseSize(std::string_view text);
std::string formatSize(std::uint64_t bytes);

// Finds the closest candidate by edit distance for "did you mean" hints;
// empty when nothing is close enough to be a plausible typo.
std::string closestMatch(std::string_view word, const std::vector<std::string_view> &candidates);

} // namespace fdsup
