// Results: counts, the longest gap, latency percentiles, throughput by phase and the 100 ms timeline.
#include "results.hpp"

#include <algorithm>
#include <limits>

namespace fdsup::load {

namespace {

double toMs(Clock::duration d)
{
    return std::chrono::duration<double, std::milli>(d).count();
}

// Nearest rank: the smallest sample with at least fraction of them at or below it.
double percentileMs(std::vector<uint32_t> &us, double fraction)
{
    if (us.empty()) {
        return 0;
    }
    auto rank = static_cast<size_t>(fraction * static_cast<double>(us.size()) + 0.999999);
    rank = std::clamp<size_t>(rank, 1, us.size()) - 1;
    std::nth_element(us.begin(), us.begin() + static_cast<std::ptrdiff_t>(rank), us.end());
    return us[rank] / 1000.0;
}

double perSecond(uint64_t count, double ms)
{
    return ms > 0 ? static_cast<double>(count) * 1000.0 / ms : 0.0;
}

} // namespace

std::string_view outcomeName(Outcome outcome)
{
    switch (outcome) {
    case Outcome::Ok:
        return "ok";
    case Outcome::Refused:
        return "refused";
    case Outcome::FreshReset:
        return "fresh_reset";
    case Outcome::FreshEof:
        return "fresh_eof";
    case Outcome::KeepaliveRace:
        return "keepalive_race";
    case Outcome::MidResponse:
        return "mid_response";
    case Outcome::Timeout:
        return "timeout";
    case Outcome::Non2xx:
        return "non_2xx";
    case Outcome::BrokenStream:
        return "broken_stream";
    case Outcome::Other:
        return "other";
    }
    return "?";
}

Results::Results(Clock::time_point start) : start_(start), lastOk_(start)
{}

size_t Results::bucket(Clock::time_point now)
{
    auto i = static_cast<size_t>(
        std::max<Clock::rep>(0, (now - start_) / std::chrono::milliseconds(Report::kBucketMs)));
    if (i >= report_.timelineOk.size()) {
        report_.timelineOk.resize(i + 1);
        report_.timelineFailures.resize(i + 1);
        report_.timelineForced.resize(i + 1);
    }
    return i;
}

void Results::ok(Clock::time_point now, Clock::duration latency, Phase phase)
{
    ++report_.counts[static_cast<size_t>(Outcome::Ok)];
    ++report_.timelineOk[bucket(now)];
    ++okByPhase_[static_cast<size_t>(phase)];
    longestGap_ = std::max(longestGap_, now - lastOk_);
    lastOk_ = now;
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(latency).count();
    latencyUs_.push_back(
        static_cast<uint32_t>(std::clamp<int64_t>(us, 0, std::numeric_limits<uint32_t>::max())));
}

void Results::failure(Clock::time_point now, Outcome outcome, std::string_view errnoName)
{
    ++report_.counts[static_cast<size_t>(outcome)];
    ++report_.timelineFailures[bucket(now)];
    if (outcome == Outcome::Other) {
        ++report_.otherErrors[std::string(errnoName.empty() ? "unknown" : errnoName)];
    }
}

void Results::forcedReconnect(Clock::time_point now)
{
    ++report_.forcedReconnects;
    ++report_.timelineForced[bucket(now)];
}

Report Results::finish(Clock::time_point end, std::vector<RestartRecord> restarts)
{
    if (end > start_) {
        bucket(end - Clock::duration(1)); // the timeline covers the whole run
    }
    Report r = report_;
    r.elapsedMs = toMs(end - start_);
    r.longestGapMs = toMs(std::max(longestGap_, end - lastOk_));
    for (size_t i = 1; i < kOutcomeCount; ++i) {
        r.failures += r.counts[i];
    }
    r.p50Ms = percentileMs(latencyUs_, 0.50);
    r.p99Ms = percentileMs(latencyUs_, 0.99);
    r.maxMs = latencyUs_.empty() ? 0 : *std::max_element(latencyUs_.begin(), latencyUs_.end()) / 1000.0;
    if (restarts.empty()) {
        r.before = perSecond(okByPhase_[0], r.elapsedMs);
    } else {
        double first = restarts.front().startMs, last = restarts.back().endMs;
        r.before = perSecond(okByPhase_[0], first);
        r.during = perSecond(okByPhase_[1], last - first);
        r.after = perSecond(okByPhase_[2], r.elapsedMs - last);
    }
    r.restarts = std::move(restarts);
    return r;
}

} // namespace fdsup::load
