// What fdsupd accepts as a handed-over connection: a connected stream socket
// that was accepted on one of the service's own listeners.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include <sys/socket.h>

#include "common/result.hpp"
#include "core/fd.hpp"

namespace fdsup {

// The local address of one listening descriptor, as getsockname() gives it.
struct ListenerAddress {
    sockaddr_storage address{};
    socklen_t length = 0;
};

// getsockname() of every listener, in order; a descriptor that fails is skipped.
std::vector<ListenerAddress> listenerAddresses(std::span<const BorrowedFd> listeners);

// Checks a descriptor a worker handed over. Returns nothing when it is a
// connected stream socket whose local address belongs to one of `listeners`
// (same family and port, and the same IP unless the listener is bound to the
// wildcard address; for unix sockets the same path or abstract name), else
// the reason, with a code the worker is told:
//   ENOTSOCK    not a socket (a file, a pipe, a memfd...)
//   EPROTOTYPE  a socket, but not SOCK_STREAM
//   EOPNOTSUPP  a listening socket, not a connection
//   ENOTCONN    not connected (never was, or the peer is gone and the socket reset)
//   EPERM       a connection, but not one accepted on this service's listeners
// Only reads the descriptor's properties; never reads from it.
Result<void> checkHandedConnection(BorrowedFd fd, std::span<const ListenerAddress> listeners);

} // namespace fdsup
