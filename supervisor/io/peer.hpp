// Who is at the other end of a unix socket (SO_PEERCRED), and whether an access list lets them in.
#pragma once

#include <string>
#include <vector>

#include <sys/types.h>

#include "core/fd.hpp"

namespace fdsup {

// Who is calling, from the kernel (SO_PEERCRED, SO_PEERGROUPS), taken at
// connect() time: it cannot be forged by the client and does not change if
// the client later drops privileges or passes the socket on.
struct Peer {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups; // supplementary; empty on kernels before 4.13
};

// Fills peer from a connected unix socket. Returns 0 or -errno.
int peerOf(BorrowedFd fd, Peer &peer);

// "uid 33 (pid 4711)", for logs.
std::string describePeer(const Peer &peer);

// Root and the user fdsupd runs as (a per-user fdsupd has no root) always;
// otherwise a uid in uids, or a primary or supplementary group in gids.
bool peerAllowed(const Peer &peer, const std::vector<uid_t> &uids, const std::vector<gid_t> &gids);

} // namespace fdsup
