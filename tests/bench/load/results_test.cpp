// fdsup-load's figures from known outcomes at known times: gaps, percentiles, phases, timeline; and seqnum
// echoes.
#include <gtest/gtest.h>

#include "results.hpp"
#include "seqnum.hpp"

using namespace fdsup::load;
using namespace std::chrono_literals;

TEST(LoadResults, FiguresFromKnownOutcomes)
{
    const Clock::time_point t0{};
    Results r(t0);
    // 100 oks: latency 1..100 ms, at 10 ms steps from 10 ms to 1 s, before the first restart.
    for (int i = 1; i <= 100; ++i) {
        r.ok(t0 + i * 10ms, i * 1ms, Phase::Before);
    }
    // Nothing from 1 s to 1.6 s, then 50 oks during, 25 after.
    r.failure(t0 + 1100ms, Outcome::Refused);
    r.failure(t0 + 1150ms, Outcome::Other, "ECONNRESET");
    r.failure(t0 + 1160ms, Outcome::Other, "ECONNRESET");
    r.forcedReconnect(t0 + 1200ms);
    for (int i = 0; i < 50; ++i) {
        r.ok(t0 + 1600ms + i * 4ms, 1ms, Phase::During);
    }
    for (int i = 0; i < 25; ++i) {
        r.ok(t0 + 2000ms + i * 4ms, 1ms, Phase::After);
    }
    r.connectionOpened();
    Report rep = r.finish(t0 + 3000ms, {{.startMs = 1000, .endMs = 2000, .exitStatus = 0}});
    EXPECT_EQ(rep.counts[static_cast<size_t>(Outcome::Ok)], 175U);
    EXPECT_EQ(rep.failures, 3U);
    EXPECT_EQ(rep.otherErrors.at("ECONNRESET"), 2U);
    EXPECT_EQ(rep.forcedReconnects, 1U);
    EXPECT_EQ(rep.connectionsOpened, 1U);
    // The longest gap: the last ok at 2.096 s to the end at 3 s.
    EXPECT_DOUBLE_EQ(rep.longestGapMs, 904.0);
    EXPECT_DOUBLE_EQ(rep.elapsedMs, 3000.0);
    // 175 latencies: 76 of 1 ms, then 2..100 ms (the k-th is k - 75 ms): p50 is the 88th, p99 the 174th.
    EXPECT_DOUBLE_EQ(rep.p50Ms, 13.0);
    EXPECT_DOUBLE_EQ(rep.p99Ms, 99.0);
    EXPECT_DOUBLE_EQ(rep.maxMs, 100.0);
    EXPECT_DOUBLE_EQ(rep.before, 100.0); // 100 in the first 1000 ms
    EXPECT_DOUBLE_EQ(rep.during, 50.0);  // 50 in 1000 ms
    EXPECT_DOUBLE_EQ(rep.after, 25.0);   // 25 in 1000 ms
    ASSERT_EQ(rep.timelineOk.size(), 30U);
    EXPECT_EQ(rep.timelineOk[0], 9U); // 10..90 ms
    EXPECT_EQ(rep.timelineOk[12], 0U);
    EXPECT_EQ(rep.timelineFailures[11], 3U);
    EXPECT_EQ(rep.timelineForced[12], 1U);
    EXPECT_EQ(rep.timelineOk[29], 0U);
}

TEST(LoadResults, WithoutRestartsEverythingIsBefore)
{
    const Clock::time_point t0{};
    Results r(t0);
    r.ok(t0 + 500ms, 2ms, Phase::Before);
    Report rep = r.finish(t0 + 2000ms, {});
    EXPECT_DOUBLE_EQ(rep.before, 0.5);
    EXPECT_EQ(rep.during, 0);
    EXPECT_EQ(rep.after, 0);
    EXPECT_DOUBLE_EQ(rep.longestGapMs, 1500.0);
    EXPECT_EQ(rep.timelineOk.size(), 20U);
}

TEST(Seqnum, EchoesAreCheckedByteForByte)
{
    SeqnumStream s;
    EXPECT_EQ(s.request(), std::string_view("\0\0\0\0", 4));
    size_t used = 0;
    EXPECT_EQ(s.feed(std::string_view("\0\0", 2), used), SeqnumStream::Progress::NeedMore);
    EXPECT_TRUE(s.started());
    EXPECT_EQ(s.feed(std::string_view("\0\0\0\1", 4), used), SeqnumStream::Progress::Complete);
    EXPECT_EQ(used, 2U); // the rest is not this echo's
    EXPECT_EQ(s.next(), 1U);
    EXPECT_EQ(s.request(), std::string_view("\0\0\0\1", 4));
    EXPECT_FALSE(s.started());
    EXPECT_EQ(s.feed(std::string_view("\0\0\0\2", 4), used), SeqnumStream::Progress::Error);
}
