// What fdsupd accepts as a handed-over connection.
#include "io/handoff_check.hpp"

#include <cerrno>
#include <cstring>

#include <netinet/in.h>
#include <sys/un.h>

namespace fdsup {
namespace {

bool isWildcard(const sockaddr_storage &a)
{
    if (a.ss_family == AF_INET) {
        return reinterpret_cast<const sockaddr_in &>(a).sin_addr.s_addr == htonl(INADDR_ANY);
    }
    if (a.ss_family == AF_INET6) {
        const auto &in6 = reinterpret_cast<const sockaddr_in6 &>(a);
        return std::memcmp(&in6.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0;
    }
    return false;
}

std::uint16_t portOf(const sockaddr_storage &a)
{
    if (a.ss_family == AF_INET) {
        return ntohs(reinterpret_cast<const sockaddr_in &>(a).sin_port);
    }
    return ntohs(reinterpret_cast<const sockaddr_in6 &>(a).sin6_port);
}

bool sameIp(const sockaddr_storage &a, const sockaddr_storage &b)
{
    if (a.ss_family == AF_INET) {
        return reinterpret_cast<const sockaddr_in &>(a).sin_addr.s_addr ==
               reinterpret_cast<const sockaddr_in &>(b).sin_addr.s_addr;
    }
    return std::memcmp(&reinterpret_cast<const sockaddr_in6 &>(a).sin6_addr,
                       &reinterpret_cast<const sockaddr_in6 &>(b).sin6_addr, sizeof(in6_addr)) == 0;
}

// Was a connection with this local address accepted on that listener?
bool belongsTo(const sockaddr_storage &local, socklen_t localLength, const ListenerAddress &listener)
{
    if (local.ss_family != listener.address.ss_family) {
        return false;
    }
    if (local.ss_family == AF_UNIX) {
        // An accepted unix socket reports its listener's path (or abstract name).
        return localLength == listener.length && std::memcmp(&local, &listener.address, localLength) == 0;
    }
    if (local.ss_family != AF_INET && local.ss_family != AF_INET6) {
        return false;
    }
    if (portOf(local) != portOf(listener.address)) {
        return false;
    }
    return isWildcard(listener.address) || sameIp(local, listener.address);
}

int intOption(BorrowedFd fd, int level, int name, int &value)
{
    socklen_t length = sizeof value;
    return getsockopt(fd.get(), level, name, &value, &length);
}

} // namespace

std::vector<ListenerAddress> listenerAddresses(std::span<const BorrowedFd> listeners)
{
    std::vector<ListenerAddress> out;
    for (const auto &fd : listeners) {
        ListenerAddress a;
        a.length = sizeof a.address;
        if (getsockname(fd.get(), reinterpret_cast<sockaddr *>(&a.address), &a.length) == 0) {
            out.push_back(a);
        }
    }
    return out;
}

Result<void> checkHandedConnection(BorrowedFd fd, std::span<const ListenerAddress> listeners)
{
    // Three system calls for a connection (this runs for every one handed
    // over): SO_TYPE fails with ENOTSOCK for anything but a socket (no
    // fstat), getpeername() succeeds only for a connected socket (a listener
    // has no peer, so SO_ACCEPTCONN is asked only to tell which refusal it
    // is), getsockname() gives the listener it was accepted on.
    int type = 0;
    if (intOption(fd, SOL_SOCKET, SO_TYPE, type) < 0) {
        if (errno == ENOTSOCK) {
            return Error{ENOTSOCK, "the handed-over descriptor is not a socket"};
        }
        return errnoError(errno, "SO_TYPE of the handed-over socket");
    }
    if (type != SOCK_STREAM) {
        return Error{EPROTOTYPE, "the handed-over socket is not a stream socket"};
    }
    sockaddr_storage peer{};
    socklen_t peerLength = sizeof peer;
    if (getpeername(fd.get(), reinterpret_cast<sockaddr *>(&peer), &peerLength) < 0) {
        int listening = 0;
        if (intOption(fd, SOL_SOCKET, SO_ACCEPTCONN, listening) == 0 && listening != 0) {
            return Error{EOPNOTSUPP, "the handed-over socket is a listener, not a connection"};
        }
        return Error{ENOTCONN, "the handed-over socket is not connected"};
    }
    sockaddr_storage local{};
    socklen_t localLength = sizeof local;
    if (getsockname(fd.get(), reinterpret_cast<sockaddr *>(&local), &localLength) < 0) {
        return errnoError(errno, "getsockname of the handed-over socket");
    }
    for (const auto &listener : listeners) {
        if (belongsTo(local, localLength, listener)) {
            return {};
        }
    }
    return Error{EPERM, "the handed-over connection was not accepted on one of this service's listeners"};
}

} // namespace fdsup
