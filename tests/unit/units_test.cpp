// Unit tests for duration and size parsing, printing and closestMatch.
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "common/units.hpp"

namespace fdsup {
namespace {

using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

struct DurationCase {
    std::string_view text;
    Duration expected;
    std::string_view canonical; // formatDuration(expected)
};

const std::vector<DurationCase> &validDurations()
{
    static const std::vector<DurationCase> cases = {
        {"250us", microseconds(250), "250us"},
        {"500ms", milliseconds(500), "500ms"},
        {"30s", seconds(30), "30s"},
        {"5m", minutes(5), "5m"},
        {"5min", minutes(5), "5m"},
        {"1h", hours(1), "1h"},
        {"1h30m", minutes(90), "1h30m"},
        {"1h 30m", minutes(90), "1h30m"},
        {"2d", hours(48), "2d"},
        {"90s", seconds(90), "1m30s"},
        {"1500ms", milliseconds(1500), "1s500ms"},
        {"0s", Duration::zero(), "0s"},
        {" 10s ", seconds(10), "10s"},
        {"1d2h3m4s5ms6us", hours(26) + minutes(3) + seconds(4) + milliseconds(5) + microseconds(6),
         "1d2h3m4s5ms6us"},
        {"infinity", Duration::max(), "infinity"},
    };
    return cases;
}

TEST(Units, ValidDurations)
{
    for (const auto &c : validDurations()) {
        SCOPED_TRACE(c.text);
        auto parsed = parseDuration(c.text);
        ASSERT_TRUE(parsed.ok()) << parsed.error().message;
        EXPECT_EQ(*parsed, c.expected);
        EXPECT_EQ(formatDuration(*parsed), c.canonical);
        auto again = parseDuration(formatDuration(*parsed));
        ASSERT_TRUE(again.ok());
        EXPECT_EQ(*again, c.expected);
    }
}

struct InvalidCase {
    std::string_view text;
    std::vector<std::string_view> fragments; // each must appear in the message
};

const std::vector<InvalidCase> &invalidDurations()
{
    static const std::vector<InvalidCase> cases = {
        {"", {"empty"}},
        {"30", {"'30'", "missing unit", "30s"}},
        {"-5s", {"'-5s'", "negative"}},
        {"5x", {"'5x'", "unknown unit 'x'"}},
        {"s", {"'s'", "expected a number"}},
        {"1.5s", {"'1.5s'", "fractions"}},
        {"99999999999999999999s", {"too large"}},
        {"200000000d", {"'200000000d'", "too large"}},
        {"1h30", {"'1h30'", "missing unit"}},
        {"forever", {"'forever'", "expected a number"}},
        {std::string_view("1\0s", 3), {"NUL"}},
    };
    return cases;
}

TEST(Units, InvalidDurations)
{
    for (const auto &c : invalidDurations()) {
        SCOPED_TRACE(c.text);
        auto parsed = parseDuration(c.text);
        ASSERT_FALSE(parsed.ok());
        EXPECT_EQ(parsed.error().code, EINVAL);
        for (std::string_view fragment : c.fragments) {
            EXPECT_NE(parsed.error().message.find(fragment), std::string::npos)
                << "'" << fragment << "' not in: " << parsed.error().message;
        }
    }
}

TEST(Units, LargestFiniteDuration)
{
    // Duration::max() is reserved for "infinity"; one microsecond less is finite.
    const auto max = static_cast<std::uint64_t>(Duration::max().count());
    auto below = parseDuration(std::to_string(max - 1) + "us");
    ASSERT_TRUE(below.ok()) << below.error().message;
    EXPECT_EQ(below->count(), Duration::max().count() - 1);
    EXPECT_FALSE(parseDuration(std::to_string(max) + "us").ok());
}

struct SizeCase {
    std::string_view text;
    std::uint64_t expected;
    std::string_view canonical;
};

const std::vector<SizeCase> &validSizes()
{
    static const std::vector<SizeCase> cases = {
        {"512", 512, "512"},
        {"0", 0, "0"},
        {"512B", 512, "512"},
        {"64KiB", 65536, "64KiB"},
        {"1MiB", 1048576, "1MiB"},
        {"2GiB", std::uint64_t{2} << 30, "2GiB"},
        {"3TiB", std::uint64_t{3} << 40, "3TiB"},
        {"1K", 1024, "1KiB"},
        {"1M", 1 << 20, "1MiB"},
        {"1G", 1 << 30, "1GiB"},
        {"64kB", 64000, "64000"},
        {"1MB", 1000000, "1000000"},
        {"1536KiB", 1572864, "1536KiB"},
        {"2048KiB", 2 << 20, "2MiB"},
    };
    return cases;
}

TEST(Units, ValidSizes)
{
    for (const auto &c : validSizes()) {
        SCOPED_TRACE(c.text);
        auto parsed = parseSize(c.text);
        ASSERT_TRUE(parsed.ok()) << parsed.error().message;
        EXPECT_EQ(*parsed, c.expected);
        EXPECT_EQ(formatSize(*parsed), c.canonical);
        auto again = parseSize(formatSize(*parsed));
        ASSERT_TRUE(again.ok());
        EXPECT_EQ(*again, c.expected);
    }
    auto max = parseSize(std::to_string(std::numeric_limits<std::uint64_t>::max()));
    ASSERT_TRUE(max.ok());
    EXPECT_EQ(*max, std::numeric_limits<std::uint64_t>::max());
}

const std::vector<InvalidCase> &invalidSizes()
{
    static const std::vector<InvalidCase> cases = {
        {"", {"empty"}},
        {"-1", {"'-1'", "negative"}},
        {"KiB", {"'KiB'", "expected a number"}},
        {"10XB", {"'10XB'", "unknown unit 'XB'"}},
        {"1.5MiB", {"fractions"}},
        {"18446744073709551616", {"too large"}},
        {"16777216TiB", {"'16777216TiB'", "too large"}},
        {"64 KiB x", {"unknown unit 'KiB x'"}},
    };
    return cases;
}

TEST(Units, InvalidSizes)
{
    for (const auto &c : invalidSizes()) {
        SCOPED_TRACE(c.text);
        auto parsed = parseSize(c.text);
        ASSERT_FALSE(parsed.ok());
        EXPECT_EQ(parsed.error().code, EINVAL);
        for (std::string_view fragment : c.fragments) {
            EXPECT_NE(parsed.error().message.find(fragment), std::string::npos)
                << "'" << fragment << "' not in: " << parsed.error().message;
        }
    }
}

TEST(Units, ClosestMatch)
{
    const std::vector<std::string_view> keys = {"backlog", "listen", "reuse_port", "nodelay", "mode"};
    EXPECT_EQ(closestMatch("backlg", keys), "backlog");
    EXPECT_EQ(closestMatch("lisen", keys), "listen");
    EXPECT_EQ(closestMatch("lsiten", keys), "listen"); // one transposition
    EXPECT_EQ(closestMatch("Backlog", keys), "backlog");
    EXPECT_EQ(closestMatch("reuseport", keys), "reuse_port");
    EXPECT_EQ(closestMatch("mdoe", keys), "mode");
    EXPECT_EQ(closestMatch("zzzzzz", keys), "");
    EXPECT_EQ(closestMatch("x", keys), "");
    EXPECT_EQ(closestMatch("backlog", {}), "");
    EXPECT_EQ(closestMatch("tpc", {"tcp", "udp", "unix"}), "tcp");
}

} // namespace
} // namespace fdsup
