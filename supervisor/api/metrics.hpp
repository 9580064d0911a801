// The daemon as Prometheus metrics: what a scrape reports (collected from the model) and its text (pure).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "daemon/reload.hpp"
#include "io/self_stats.hpp"
#include "model/handoff_broker.hpp"
#include "model/lifecycle.hpp"
#include "model/restart_policy.hpp"
#include "model/rollout.hpp"

namespace fdsup {

class Daemon;

struct ServiceMetrics {
    std::string name;
    std::array<std::uint64_t, kInstanceStates> instances{}; // live instances by InstanceState
    std::array<std::uint64_t, kRestartCauses> restarts{};
    RolloutCounters rollouts;
    HandoffCounters handoff;
    std::uint64_t held = 0; // connections held now
    std::uint64_t notifyDropped = 0;
    std::uint64_t channelDropped = 0;
};

struct MetricsSnapshot {
    std::string version;
    SelfStats process;
    std::array<std::uint64_t, ReloadOutcome::kKinds> reloads{};
    std::vector<ServiceMetrics> services; // in configuration order
};

// Walks the daemon's services and reads /proc/self: what a scrape reports now.
MetricsSnapshot collectMetrics(const Daemon &daemon, std::string version);

// The Prometheus text exposition format (0.0.4) of a snapshot: every metric
// family of docs/metrics.md with its HELP and TYPE, every label value listed
// (0 included) for each service. Pure: the same snapshot gives the same text.
std::string renderMetrics(const MetricsSnapshot &snapshot);

// Makes the daemon's metrics endpoint answer with renderMetrics() of this build.
void installMetrics(Daemon &daemon);

} // namespace fdsup
