// The soak's memory trend: least squares over the checkpoints, and the criterion for "flat".
#include "soak_trend.hpp"

#include <cstdio>

namespace fdsup::bench {

std::optional<double> kibPer100Slope(const std::vector<Checkpoint> &points, int from)
{
    double n = 0, sx = 0, sy = 0;
    for (const auto &p : points) {
        if (p.restarts >= from) {
            n += 1;
            sx += p.restarts;
            sy += p.privateKib;
        }
    }
    if (n < 2) {
        return std::nullopt;
    }
    const double mx = sx / n, my = sy / n;
    double sxx = 0, sxy = 0;
    for (const auto &p : points) {
        if (p.restarts >= from) {
            sxx += (p.restarts - mx) * (p.restarts - mx);
            sxy += (p.restarts - mx) * (p.privateKib - my);
        }
    }
    if (sxx == 0) {
        return std::nullopt;
    }
    return sxy / sxx * 100.0;
}

MemoryVerdict memoryVerdict(const std::vector<Checkpoint> &points, int restarts)
{
    MemoryVerdict v;
    const int from = restarts / 2;
    v.slope = kibPer100Slope(points, from);
    char text[200];
    if (!v.slope) {
        (void)std::snprintf(text, sizeof text, "cannot say: fewer than two checkpoints from restart %d on",
                            from);
    } else {
        v.flat = *v.slope <= kFlatKibPer100;
        (void)std::snprintf(text, sizeof text,
                            "%s: %.1f KiB per 100 restarts over restarts %d to %d (criterion: <= %g)",
                            v.flat ? "flat" : "not flat", *v.slope, from, restarts, kFlatKibPer100);
    }
    v.text = text;
    return v;
}

std::vector<double> growthPer100(const std::vector<Checkpoint> &points)
{
    std::vector<double> out;
    for (std::size_t i = 1; i < points.size(); ++i) {
        const int span = points[i].restarts - points[i - 1].restarts;
        if (span > 0) {
            out.push_back((points[i].privateKib - points[i - 1].privateKib) * 100.0 / span);
        }
    }
    return out;
}

} // namespace fdsup::bench
