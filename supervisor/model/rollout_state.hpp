// The state of a rollout in progress; internal to Service (service.cpp, rollout.cpp).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/service.hpp"

namespace fdsup {

// One instance slot of a rollout. Instances are referred to by id, never by
// pointer: they may be reaped at any time.
struct Service::RolloutStep {
    enum class Phase : std::uint8_t {
        Pending,     // not reached yet
        DrainingOld, // stop-first: the old instance drains before its replacement starts
        Starting,    // the replacement was spawned and is not ready yet
        Ready,       // the replacement is ready
        Retiring,    // start-first: the old instance drains after its replacement is ready
        Done,
        Failed,     // the replacement exited or missed its deadline
        RolledBack, // the replacement was stopped by the rollback
    };
    unsigned index = 0;
    Phase phase = Phase::Pending;
    std::uint64_t oldId = 0;
    pid_t oldPid = 0;
    std::uint64_t newId = 0;
    pid_t newPid = 0;
    std::string reason;
};

// The replacement that made a rollout fail.
struct RolloutFailure {
    unsigned index = 0;
    pid_t pid = 0; // 0: it could not even be spawned
    unsigned generation = 0;
    std::string reason;
    std::vector<std::string> output; // its last lines
};

struct Service::Rollout {
    std::uint64_t id = 0;
    std::shared_ptr<const Profile> from;
    std::shared_ptr<const Profile> to;
    RolloutOptions options;
    RolloutState state = RolloutState::Running;
    // What the rollout ends as once the rollback is complete.
    RolloutState finalState = RolloutState::Failed;
    std::string reason;
    std::optional<RolloutFailure> failure;
    std::int64_t startedRealtimeUsec = 0;
    Duration startedAt{};
    std::vector<RolloutStep> steps;
    unsigned fromSlots = 0;     // slots before the rollout
    unsigned fromInstances = 0; // of which were wanted up (0 for a stopped service)
    unsigned toInstances = 0;
    bool wasActive = false;
    bool wasFailed = false;
    std::string wasFailedReason;
    EventSource deadline;
    // The rollback: replacements it stopped, old-generation instances it started.
    std::vector<std::uint64_t> stopped;
    std::vector<std::uint64_t> restored;
};

} // namespace fdsup
