// Per-command access to the control API: the rights of each caller and the one decision (docs/access.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "config/config.hpp"
#include "io/peer.hpp"

namespace fdsup {

// What a method needs the caller to be allowed. The levels nest: admin
// includes operate, operate includes read.
enum class Access : std::uint8_t {
    Read,    // status, sockets, connections, rollout status, logs
    Operate, // start, stop, restart, cancel, scale
    Admin,   // reload, reexec, export, import, release
};
const char *accessName(Access access);

// A method's own right: "RolloutCancel" -> "rollout-cancel".
std::string commandRight(std::string_view method);

// One allow_* list or [[supervisor.access]] entry, its names resolved to ids.
struct Grant {
    std::vector<uid_t> uids;
    std::vector<gid_t> gids;
    std::optional<Access> level;       // the highest level it grants, if any
    std::vector<std::string> commands; // single commands ("restart")
    std::vector<std::string> services; // empty: every service, and calls naming none
};

struct AccessPolicy {
    std::vector<Grant> grants;
    // Who may connect at all (ControlOptions): everyone some grant names.
    [[nodiscard]] std::vector<uid_t> uids() const;
    [[nodiscard]] std::vector<gid_t> gids() const;
};

// allow_users/allow_groups (one grant of admin over everything) and each
// [[supervisor.access]] entry, checked at load; a name that no longer
// resolves is logged and left out.
AccessPolicy resolveAccessPolicy(const config::SupervisorConfig &supervisor);

// A call refused: which right it needed, and what the caller has.
struct Refusal {
    std::string method;                 // "Restart"
    std::optional<std::string> service; // the one the call names
    std::string right;                  // "operate"
    std::string command;                // "restart"
    std::string has;                    // "read; restart on 'web'", or "nothing"
    std::string message; // "restart of 'web' needs the right 'operate' (or 'restart'); uid 1001 has: read"
};

// The decision, a pure function of its arguments: nullopt when `peer` may
// call `method` (of `level`) on `service` (nullopt: a call naming none).
// Root and `self` (the uid fdsupd runs as) may call everything; anyone else
// needs a grant that names them (uid, primary or supplementary group), has
// the level or the command, and is not limited to services or lists the
// one the call names.
std::optional<Refusal> checkAccess(const AccessPolicy &policy, const Peer &peer, uid_t self,
                                   std::string_view method, Access level,
                                   const std::optional<std::string> &service);

} // namespace fdsup
