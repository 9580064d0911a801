// What a service and its instances carry across an in-place re-exec of fdsupd (docs/reexec.md).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "io/clock.hpp"
#include "model/handoff_broker.hpp"
#include "model/output.hpp"
#include "model/restart_policy.hpp"
#include "model/rollout.hpp"

namespace fdsup {

// Descriptors are numbers: while the snapshot is taken they are borrowed
// from the live objects; after exec the restoring code owns them. -1: none.
struct InstanceSnapshot {
    std::uint64_t id = 0;
    unsigned slot = 0;
    unsigned generation = 0;
    std::string role;  // "primary" (only settled instances are carried)
    std::string state; // "ready" (idem)
    std::int64_t sinceUsec = 0;
    std::int64_t startedAtUsec = 0;
    std::optional<std::int64_t> readyAtUsec;
    std::optional<std::string> status;
    std::optional<int> errnoValue;
    std::int64_t watchdogUsec = 0;
    pid_t pid = 0;
    int pidfd = -1;
    int stdoutFd = -1;
    int stderrFd = -1;
    int channelFd = -1;
    bool welcomed = false;
    std::uint32_t capabilities = 0;
    // pid_file: pid is the daemon it names, found and followed; spawnPid the
    // process fdsupd started (gone: its group is killed with the daemon's).
    // Added within version 1: an older state followed none.
    bool followed = false;
    pid_t spawnPid = 0;

    friend bool operator==(const InstanceSnapshot &, const InstanceSnapshot &) = default;
};

// One descriptor of the service's store (FDSTORE=1).
struct StoredFdSnapshot {
    std::string name;
    int fd = -1;
    bool poll = false; // dropped when it hangs up (FDPOLL)

    friend bool operator==(const StoredFdSnapshot &, const StoredFdSnapshot &) = default;
};

// One connection of the preload shim (docs/preload.md): a worker channel from
// a process of instance `instance`.
struct PreloadPeerSnapshot {
    int fd = -1;
    std::uint64_t instance = 0;
    pid_t pid = 0;
    bool welcomed = false;
    std::uint32_t capabilities = 0;

    friend bool operator==(const PreloadPeerSnapshot &, const PreloadPeerSnapshot &) = default;
};

// Which listeners an instance's processes claimed (CLAIMED), and by which pid first.
struct PreloadClaimSnapshot {
    std::uint64_t instance = 0;
    unsigned connections = 0; // admitted so far, open or closed
    bool deadlinePassed = false;
    std::vector<std::pair<std::string, pid_t>> claimedBy;

    friend bool operator==(const PreloadClaimSnapshot &, const PreloadClaimSnapshot &) = default;
};

// A wrapped service's preload socket: the listening socket, its shim peers and their claims.
struct PreloadSnapshot {
    int fd = -1;
    std::vector<PreloadPeerSnapshot> peers;
    std::vector<PreloadClaimSnapshot> claims;

    friend bool operator==(const PreloadSnapshot &, const PreloadSnapshot &) = default;
};

// A worker fdsupd did not spawn, joined over the activation socket
// (docs/worker-channel.md, "External workers"): its channel and what it said.
struct ExternalWorkerSnapshot {
    int fd = -1;
    std::uint64_t id = 0;
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    bool ready = false;
    bool draining = false;
    std::optional<std::string> status;
    std::int64_t sinceUsec = 0;
    bool welcomed = false;
    std::uint32_t capabilities = 0;

    friend bool operator==(const ExternalWorkerSnapshot &, const ExternalWorkerSnapshot &) = default;
};

// A service's activation socket: the listening socket (its file stays
// fdsupd's, removed at shutdown) and the external workers connected to it.
// Refused connections, which only wait to be closed, are not carried.
struct ActivationSnapshot {
    int fd = -1;
    std::vector<ExternalWorkerSnapshot> workers;

    friend bool operator==(const ActivationSnapshot &, const ActivationSnapshot &) = default;
};

struct ServiceSnapshot {
    std::string name;
    unsigned generation = 1;
    unsigned nextGeneration = 2;
    bool active = false;
    bool failed = false;
    std::string failedReason;
    unsigned restartsTotal = 0;
    std::vector<std::int64_t> restartTimesUsec; // CLOCK_MONOTONIC: the same across exec
    std::vector<SlotHistory> slots;
    int notifyFd = -1;
    std::vector<InstanceSnapshot> instances;
    std::optional<RolloutRecord> lastRollout; // what status and RolloutStatus show
    std::uint64_t rolloutSerial = 0;
    std::uint64_t rolloutTickets = 0;
    std::vector<LogEntry> output; // the lines kept for `fdsupctl logs`, oldest first
    HandoffCounters handoff;      // what `fdsupctl connections` counts
    // What the metrics count (docs/metrics.md); added within version 1:
    // zeros in an older state.
    std::array<std::uint64_t, kRestartCauses> restartsByCause{};
    RolloutCounters rollouts;
    std::uint64_t notifyDropped = 0;
    std::uint64_t channelDropped = 0;
    std::vector<StoredFdSnapshot> stored;
    // A receive = true socket it waits for before it starts (docs/transfer.md); empty: none.
    std::string waitingFor;
    // A wrapped service's (wrap = "preload"); added within version 1: none in an older state.
    std::optional<PreloadSnapshot> preload;
    // A service with an activation_socket; added within version 1: an older
    // state carried none (it refused to re-exec with one).
    std::optional<ActivationSnapshot> activation;

    friend bool operator==(const ServiceSnapshot &, const ServiceSnapshot &) = default;
};

// Calls one(fd) for every descriptor field of a service's snapshot (-1
// included): the one list of them.
template <class Service, class One>
void eachServiceFd(Service &service, One &&one)
{
    one(service.notifyFd);
    for (auto &stored : service.stored) {
        one(stored.fd);
    }
    if (service.preload) {
        one(service.preload->fd);
        for (auto &peer : service.preload->peers) {
            one(peer.fd);
        }
    }
    if (service.activation) {
        one(service.activation->fd);
        for (auto &worker : service.activation->workers) {
            one(worker.fd);
        }
    }
    for (auto &i : service.instances) {
        one(i.pidfd);
        one(i.stdoutFd);
        one(i.stderrFd);
        one(i.channelFd);
    }
}

} // namespace fdsup
