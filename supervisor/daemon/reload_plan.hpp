// Live reload: what differs between the running and the next configuration, and the in-place socket changes.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/socket.hpp"
#include "config/config.hpp"
#include "core/fd.hpp"

namespace fdsup {

// A socket in both configurations whose options differ in a way that can be
// applied to the bound descriptors (applySocketChange()).
struct SocketChange {
    std::string name;
    // One per option, with config key names and effective values:
    // "backlog 128 → 1024", "mode 0660 → 0600", "group 4 → 65534",
    // "remove_stale true → false".
    std::vector<std::string> details;

    friend bool operator==(const SocketChange &, const SocketChange &) = default;
};

// A service in both configurations whose settings differ.
struct ServiceChange {
    std::string name;
    // One per config key that differs, in the order of docs/config/service.md:
    // "command", "environment.FOO" (never the value: it may be a secret),
    // "limits.nofile", "sockets", "ready_timeout", "instances 2 → 4".
    std::vector<std::string> details;

    friend bool operator==(const ServiceChange &, const ServiceChange &) = default;
};

// What a reload does. Every list is in the order of the configuration it
// comes from: `next` for what is added, changed or unchanged, `running` for
// what is removed; the same two configurations always give the same plan.
struct ReloadPlan {
    // Reasons the reload must change nothing at all, one per field that
    // cannot be applied to a running fdsupd. Non-empty means: apply none of
    // the lists below (they still say what the reload would have done).
    std::vector<std::string> refused;

    std::vector<std::string> socketsAdded;    // to bind
    std::vector<std::string> socketsRemoved;  // to close once no instance uses them
    std::vector<SocketChange> socketsChanged; // same addresses, options applied in place

    std::vector<std::string> servicesAdded;   // to create and start
    std::vector<std::string> servicesRemoved; // to stop and remove
    // Only `instances` differs: scale to the new count, no rollout.
    std::vector<ServiceChange> servicesScaled;
    // Anything else differs (possibly `instances` too): roll out a new
    // generation with the new settings, at the new instance count.
    std::vector<ServiceChange> servicesRolled;
    std::vector<std::string> servicesUnchanged;

    // [supervisor] log_level: set it in place.
    bool logLevelChanged = false;
    // [supervisor] allow_users / allow_groups, compared as sets: check new
    // control connections against the new lists.
    bool accessChanged = false;
    // [supervisor] metrics: added, moved or removed (bound in prepare).
    bool metricsChanged = false;

    // True when there is nothing to refuse and nothing to do: next means the
    // same as running.
    [[nodiscard]] bool empty() const;

    friend bool operator==(const ReloadPlan &, const ReloadPlan &) = default;
};

// Decides what reloading from running to next does. Both must be valid
// (loaded by config::loadConfig()); the function touches nothing.
//
// Meaning is compared, not position: every `where` and Config::files are
// ignored, so a table moved to another included file, or keys written in
// another order, is unchanged.
//
// - [supervisor]: log_level, allow_users and allow_groups are applied in
//   place; any other difference is refused, one reason per key.
// - Sockets are matched by name. A socket whose `listen` differs is refused
//   (a bound socket cannot move without refusing connections). backlog and,
//   for unix sockets with a path, mode, owner and group are changed in place;
//   remove_stale is recorded as changed (it only matters at the next bind).
//   Unsetting mode, owner or group, and any other option, is refused.
// - Services are matched by name: equal, scaled (only `instances`) or rolled.
//   A service of next that names a socket removed from running cannot exist:
//   next is validated, and its sockets all exist in next.
ReloadPlan planReload(const config::Config &running, const config::Config &next);

// Applies the in-place part of a socket change to one bound descriptor: for
// a unix socket with a path, lchown() and chmod() of its file for a new
// owner, group or mode; then listen() again with a new backlog (stream and
// seqpacket). The path is the one the descriptor is bound to
// (getsockname()), so adopted sockets work the same as bound ones; the file
// must still be a socket. Call it once per descriptor of the socket.
//
// Returns std::nullopt on success (there is no Result<void>; this is the
// "an error or nothing" of the core), or the error, naming the path and the
// errno. A difference planReload() refuses is refused here too (EINVAL),
// before anything changes. If chmod() fails after the owner was changed,
// the old owner is put back (best effort).
Result<void> applySocketChange(BorrowedFd fd, const SocketOptions &before, const SocketOptions &after);

} // namespace fdsup
