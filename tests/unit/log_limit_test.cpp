// LogLimit: a burst of lines per interval, the rest counted and reported with the next line logged.
#include <chrono>
#include <cstdint>
#include <string>

#include <gtest/gtest.h>

#include "io/log_limit.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using Clock = LogLimit::Clock;

TEST(LogLimit, LogsABurstPerIntervalAndCountsTheRest)
{
    LogLimit limit(10s, 3);
    const Clock::time_point t0{1h};
    std::uint64_t suppressed = 99;
    for (int i = 0; i < 3; ++i) {
        EXPECT_TRUE(limit.allow(suppressed, t0 + std::chrono::seconds(i)));
        EXPECT_EQ(suppressed, 0U);
    }
    for (int i = 0; i < 1000; ++i) {
        EXPECT_FALSE(limit.allow(suppressed, t0 + 9s));
    }
    EXPECT_EQ(limit.held(), 1000U);
    // The next window: the first line says how many were held back.
    EXPECT_TRUE(limit.allow(suppressed, t0 + 10s));
    EXPECT_EQ(suppressed, 1000U);
    EXPECT_EQ(limit.held(), 0U);
    EXPECT_TRUE(limit.allow(suppressed, t0 + 10s));
    EXPECT_EQ(suppressed, 0U);
}

TEST(LogLimit, TheNoteNamesTheLinesHeldBack)
{
    LogLimit limit(1s, 1);
    const Clock::time_point t0{1h};
    std::string note = "stale";
    EXPECT_TRUE(limit.allow(note, t0));
    EXPECT_EQ(note, "");
    EXPECT_FALSE(limit.allow(note, t0 + 500ms));
    EXPECT_FALSE(limit.allow(note, t0 + 999ms));
    EXPECT_TRUE(limit.allow(note, t0 + 1s));
    EXPECT_EQ(note, " (2 similar messages suppressed)");
}

TEST(LogLimit, AFloodOfAMillionLinesLogsOneBurstPerInterval)
{
    LogLimit limit; // the defaults: 5 lines per 10 s
    const Clock::time_point t0{1h};
    int logged = 0;
    std::uint64_t reported = 0;
    // A million lines over 60 s: 6 windows of 5 lines each.
    for (int i = 0; i < 1000000; ++i) {
        std::uint64_t suppressed = 0;
        if (limit.allow(suppressed, t0 + std::chrono::microseconds(i * 60))) {
            ++logged;
            reported += suppressed;
        }
    }
    EXPECT_EQ(logged, 6 * static_cast<int>(LogLimit::kBurst));
    EXPECT_EQ(reported + limit.held() + static_cast<std::uint64_t>(logged), 1000000U);
}

} // namespace
} // namespace fdsup
