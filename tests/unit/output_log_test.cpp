// OutputLog: the recent output lines of a service, in one byte ring and one slot ring.
#include <cstddef>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "model/output.hpp"

namespace fdsup {
namespace {

using ::testing::ElementsAre;

LogLine lineOf(pid_t pid, const std::string &text, bool isStderr = false)
{
    return LogLine{1000 + pid, 2, pid, 3, isStderr, text};
}

std::vector<std::string> textsOf(const OutputLog &log)
{
    std::vector<std::string> out;
    for (std::size_t i = 0; i < log.size(); ++i) {
        out.emplace_back(log.at(i).text);
    }
    return out;
}

TEST(OutputLogTest, KeepsEveryFieldOfALine)
{
    OutputLog log;
    const LogLine kept = log.add(LogLine{1795254823010097, 4, 77, 9, true, "warning: disk"});
    EXPECT_EQ(kept.text, "warning: disk");
    ASSERT_EQ(log.size(), 1U);
    const LogEntry entry = log.at(0).entry();
    EXPECT_EQ(entry, (LogEntry{1795254823010097, 4, 77, 9, true, "warning: disk"}));
    EXPECT_THAT(log.entries(), ElementsAre(entry));
}

TEST(OutputLogTest, WrapsAroundTheByteBudgetKeepingTheNewestLines)
{
    // 10-byte lines in a 64-byte buffer: six fit, the seventh goes to the start.
    OutputLog log(100, 64);
    for (int i = 0; i < 20; ++i) {
        log.add(lineOf(1, "line " + std::to_string(100 + i) + ".."));
    }
    EXPECT_EQ(log.capacityBytes(), 64U);
    EXPECT_THAT(textsOf(log), ElementsAre("line 114..", "line 115..", "line 116..", "line 117..",
                                          "line 118..", "line 119.."));
}

TEST(OutputLogTest, LinesOfVaryingLengthNeverOverlapAcrossTheWrap)
{
    OutputLog log(1000, 256);
    std::vector<std::string> added;
    for (std::size_t i = 0; i < 500; ++i) {
        // Lengths 0 to 96, in an order that keeps changing which lines fit at the end.
        added.emplace_back((i * 37) % 97, static_cast<char>('a' + i % 26));
        log.add(lineOf(static_cast<pid_t>(i), added.back()));
        // What is kept is always the newest lines, in order, intact.
        const auto kept = textsOf(log);
        ASSERT_FALSE(kept.empty());
        ASSERT_LE(kept.size(), added.size());
        ASSERT_TRUE(
            std::equal(kept.begin(), kept.end(), added.end() - static_cast<std::ptrdiff_t>(kept.size())))
            << "after line " << i;
        std::size_t bytes = 0;
        for (const auto &k : kept) {
            bytes += k.size();
        }
        ASSERT_LE(bytes, 256U);
    }
}

TEST(OutputLogTest, TheLineCountBoundsTheLinesWhenBytesAreLeft)
{
    OutputLog log(3, 4096);
    for (const char *text : {"one", "two", "three", "four", ""}) {
        log.add(lineOf(1, text));
    }
    EXPECT_THAT(textsOf(log), ElementsAre("three", "four", ""));
}

TEST(OutputLogTest, ALineLongerThanTheBudgetIsCutToItAndReplacesTheRest)
{
    OutputLog log(100, 16);
    log.add(lineOf(1, "short"));
    const LogLine kept = log.add(lineOf(1, std::string(40, 'x')));
    EXPECT_EQ(kept.text, std::string(16, 'x'));
    EXPECT_THAT(textsOf(log), ElementsAre(std::string(16, 'x')));
    log.add(lineOf(1, "next"));
    EXPECT_THAT(textsOf(log), ElementsAre("next"));
}

TEST(OutputLogTest, GrowsByDoublingOnlyAsFarAsItsLinesNeed)
{
    OutputLog log;
    EXPECT_EQ(log.capacityBytes(), 0U);
    log.add(lineOf(1, "hello"));
    EXPECT_EQ(log.capacityBytes(), 4096U);
    // 1,000 lines of 80 bytes: 80,000 bytes, 3/4 of 128 KiB at most.
    for (int i = 0; i < 3000; ++i) {
        log.add(lineOf(1, std::string(80, 'y')));
    }
    EXPECT_EQ(log.size(), OutputLog::kMaxLines);
    EXPECT_EQ(log.capacityBytes(), std::size_t{128} * 1024);
    // Lines of the longest a worker's line can be (4 KiB): the budget, not the count, bounds them.
    for (int i = 0; i < 200; ++i) {
        log.add(lineOf(1, std::string(4096, 'z')));
    }
    EXPECT_EQ(log.capacityBytes(), OutputLog::kMaxBytes);
    EXPECT_EQ(log.size(), OutputLog::kMaxBytes / 4096);
}

TEST(OutputLogTest, OnceFullItsSizeFollowsTheKeptBytesNotWhereLinesWrap)
{
    OutputLog log(100, std::size_t{1} << 20);
    for (int i = 0; i < 100; ++i) {
        log.add(lineOf(1, std::string(75, 'a')));
    }
    // 100 lines of 75 bytes: 7,500 bytes, which 8 KiB would hold but not with a quarter free: 16 KiB.
    EXPECT_EQ(log.capacityBytes(), 16384U);
    // Lines of 65 to 85 bytes wrap at every place of the buffer; the kept bytes stay under 8,500. A buffer
    // that grew only when a line did not fit at the end would have stayed at 8 KiB and grown here.
    for (std::size_t i = 0; i < 10000; ++i) {
        log.add(lineOf(1, std::string(65 + (i * 7) % 21, 'b')));
        ASSERT_EQ(log.capacityBytes(), 16384U) << "after line " << i;
        ASSERT_EQ(log.size(), 100U);
    }
}

TEST(OutputLogTest, LastLinesOfOneProcessAcrossTheWrap)
{
    OutputLog log(100, 64);
    for (int i = 0; i < 12; ++i) {
        log.add(lineOf(i % 3 == 0 ? 7 : 8, "l" + std::to_string(i) + std::string(6, '.')));
    }
    // 8-byte lines fill the 64 bytes (l0 to l7); l8 and l9 go to the start in place of l0 and l1, the
    // 9-byte l10 and l11 after them in place of l2 to l4: l5 to l11 are kept, pid 7 printed l6 and l9.
    EXPECT_EQ(log.size(), 7U);
    EXPECT_EQ(log.at(0).text, "l5......");
    EXPECT_THAT(log.lastLinesOf(7, 5), ElementsAre("l6......", "l9......"));
    EXPECT_THAT(log.lastLinesOf(8, 2), ElementsAre("l10......", "l11......"));
    EXPECT_TRUE(log.lastLinesOf(9, 5).empty());
}

} // namespace
} // namespace fdsup
