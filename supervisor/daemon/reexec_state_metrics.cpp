// The re-exec state's codec for a service's metrics counters (docs/metrics.md), so a re-exec resets none.
#include <cmath>
#include <cstddef>
#include <string>

#include "daemon/reexec_codec.hpp"

namespace fdsup::state_json {
Json encodeServiceMetrics(const ServiceSnapshot &s)
{
    const RolloutCounters &r = s.rollouts;
    return {{"restarts_by_cause", s.restartsByCause},
            {"rollouts",
             {{"started", r.started},
              {"succeeded", r.succeeded},
              {"rolled_back", r.rolledBack},
              {"cancelled", r.cancelled},
              {"durations", r.durations},
              {"duration_usec", static_cast<std::uint64_t>(std::llround(r.durationSeconds * 1e6))}}},
            {"notify_dropped", s.notifyDropped},
            {"channel_dropped", s.channelDropped}};
}

void decodeServiceMetrics(const Reader &r, ServiceSnapshot &s)
{
    decodeCounts(r.at("restarts_by_cause"), s.restartsByCause);
    const Reader rollouts = r.at("rollouts");
    RolloutCounters &c = s.rollouts;
    c.started = rollouts.at("started").unsigned64();
    c.succeeded = rollouts.at("succeeded").unsigned64();
    c.rolledBack = rollouts.at("rolled_back").unsigned64();
    c.cancelled = rollouts.at("cancelled").unsigned64();
    decodeCounts(rollouts.at("durations"), c.durations);
    c.durationSeconds = static_cast<double>(rollouts.at("duration_usec").unsigned64()) / 1e6;
    s.notifyDropped = r.at("notify_dropped").unsigned64();
    s.channelDropped = r.at("channel_dropped").unsigned64();
}

} // namespace fdsup::state_json
