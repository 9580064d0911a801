// Who is at the other end of a unix socket (SO_PEERCRED), and whether an access list lets them in.
#include "io/peer.hpp"

#include <algorithm>
#include <cerrno>

#include <sys/socket.h>
#include <unistd.h>

namespace fdsup {

int peerOf(BorrowedFd fd, Peer &peer)
{
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
        return -errno;
    }
    peer.pid = cred.pid;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
    std::vector<gid_t> groups(64);
    for (;;) {
        len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
            groups.resize(len / sizeof(gid_t));
            break;
        }
        // ERANGE tells the size needed; kernels before 4.13 lack the option,
        // which then only costs supplementary-group access.
        if (errno == ERANGE && len / sizeof(gid_t) > groups.size()) {
            groups.resize(len / sizeof(gid_t));
            continue;
        }
        groups.clear();
        break;
    }
    peer.groups = std::move(groups);
    return 0;
}

std::string describePeer(const Peer &peer)
{
    return "uid " + std::to_string(peer.uid) + " (pid " + std::to_string(peer.pid) + ")";
}

bool peerAllowed(const Peer &peer, const std::vector<uid_t> &uids, const std::vector<gid_t> &gids)
{
    if (peer.uid == 0 || peer.uid == geteuid()) {
        return true;
    }
    const auto contains = [](const auto &list, auto id) {
        return std::find(list.begin(), list.end(), id) != list.end();
    };
    if (contains(uids, peer.uid) || contains(gids, peer.gid)) {
        return true;
    }
    return std::any_of(peer.groups.begin(), peer.groups.end(), [&](gid_t g) { return contains(gids, g); });
}

} // namespace fdsup
