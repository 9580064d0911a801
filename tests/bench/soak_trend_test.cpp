// The soak's arithmetic: the memory slope and its verdict, growth per 100 restarts, the p99.
#include <gtest/gtest.h>

#include "soak_report.hpp"
#include "soak_trend.hpp"

using fdsup::bench::Checkpoint;

namespace {

// Checkpoints every 100 restarts up to `restarts`, memory from kib(restarts).
template <typename F>
std::vector<Checkpoint> series(int restarts, F kib)
{
    std::vector<Checkpoint> points;
    for (int r = 0; r <= restarts; r += 100) {
        points.push_back({r, 49, kib(r)});
    }
    return points;
}

} // namespace

TEST(SoakTrend, AConstantSeriesIsFlat)
{
    const auto v = fdsup::bench::memoryVerdict(series(1000, [](int) { return 700.0; }), 1000);
    ASSERT_TRUE(v.slope);
    EXPECT_DOUBLE_EQ(*v.slope, 0.0);
    EXPECT_TRUE(v.flat);
    EXPECT_EQ(v.text.rfind("flat: 0.0 KiB per 100 restarts over restarts 500 to 1000", 0), 0U) << v.text;
}

TEST(SoakTrend, ALeakOfTenKibPerHundredIsNotFlat)
{
    const auto v = fdsup::bench::memoryVerdict(series(1000, [](int r) { return 700.0 + r / 10.0; }), 1000);
    ASSERT_TRUE(v.slope);
    EXPECT_NEAR(*v.slope, 10.0, 1e-9);
    EXPECT_FALSE(v.flat);
    EXPECT_EQ(v.text.rfind("not flat", 0), 0U) << v.text;
}

TEST(SoakTrend, OnlyTheLastHalfCounts)
{
    // Growth while the first restarts size the tables, none after.
    const auto points = series(1000, [](int r) { return r < 300 ? 600.0 + r : 900.0; });
    const auto v = fdsup::bench::memoryVerdict(points, 1000);
    ASSERT_TRUE(v.slope);
    EXPECT_DOUBLE_EQ(*v.slope, 0.0);
    EXPECT_TRUE(v.flat);
    EXPECT_GT(*fdsup::bench::kibPer100Slope(points, 0), fdsup::bench::kFlatKibPer100);
}

TEST(SoakTrend, TheCriterionIsInclusive)
{
    const double per100 = fdsup::bench::kFlatKibPer100;
    const auto v =
        fdsup::bench::memoryVerdict(series(1000, [&](int r) { return 700.0 + r * per100 / 100; }), 1000);
    ASSERT_TRUE(v.slope);
    EXPECT_NEAR(*v.slope, per100, 1e-9);
    EXPECT_TRUE(v.flat);
}

TEST(SoakTrend, OneCheckpointCannotSay)
{
    const std::vector<Checkpoint> points{{0, 49, 700}, {50, 49, 800}};
    const auto v = fdsup::bench::memoryVerdict(points, 50);
    EXPECT_FALSE(v.slope);
    EXPECT_FALSE(v.flat);
    EXPECT_EQ(v.text.rfind("cannot say", 0), 0U) << v.text;
    EXPECT_FALSE(fdsup::bench::kibPer100Slope({}, 0));
}

TEST(SoakTrend, GrowthPerHundredScalesShortIntervals)
{
    const std::vector<Checkpoint> points{{0, 49, 700}, {100, 49, 708}, {150, 49, 712}};
    EXPECT_EQ(fdsup::bench::growthPer100(points), (std::vector<double>{8.0, 8.0}));
    EXPECT_TRUE(fdsup::bench::growthPer100({{0, 49, 700}}).empty());
}

TEST(SoakTrend, PercentileIsTheNearestRank)
{
    std::vector<double> hundred;
    for (int i = 100; i >= 1; --i) {
        hundred.push_back(i);
    }
    EXPECT_EQ(fdsup::bench::percentile(hundred, 0.99), 99.0);
    EXPECT_EQ(fdsup::bench::percentile(hundred, 0.50), 50.0);
    EXPECT_EQ(fdsup::bench::percentile({7.0}, 0.99), 7.0);
    EXPECT_EQ(fdsup::bench::percentile({}, 0.99), 0.0);
}
