// Creating and binding listening sockets from a socket spec.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/address.hpp"
#include "common/result.hpp"
#include "core/fd.hpp"

namespace fdsup {

// The options users of systemd socket units expect. An unset optional means
// "leave the kernel default". Which options apply to which transport is
// checked by validateSocketOptions() (the config layer reports the errors
// with file:line:col before anything is bound).
struct SocketOptions {
    // listen() backlog for stream and seqpacket sockets; unset means
    // kDefaultBacklog. Optional so that an explicit backlog on a datagram
    // socket can be refused instead of silently ignored.
    std::optional<int> backlog;
    std::optional<bool> reuseAddress;                  // SO_REUSEADDR (inet)
    std::optional<bool> reusePort;                     // SO_REUSEPORT (inet)
    std::optional<bool> ipv6Only;                      // IPV6_V6ONLY (inet6 only)
    std::optional<bool> freeBind;                      // IP_FREEBIND / IPV6_FREEBIND
    std::optional<bool> transparent;                   // IP_TRANSPARENT / IPV6_TRANSPARENT (CAP_NET_ADMIN)
    std::optional<std::chrono::seconds> deferAccept;   // TCP_DEFER_ACCEPT
    std::optional<int> fastOpen;                       // TCP_FASTOPEN queue length
    std::optional<bool> keepAlive;                     // SO_KEEPALIVE
    std::optional<std::chrono::seconds> keepAliveTime; // TCP_KEEPIDLE
    std::optional<std::chrono::seconds> keepAliveInterval; // TCP_KEEPINTVL
    std::optional<int> keepAliveCount;                     // TCP_KEEPCNT
    std::optional<bool> noDelay;                           // TCP_NODELAY
    std::optional<int> sendBuffer;                         // SO_SNDBUF (bytes)
    std::optional<int> receiveBuffer;                      // SO_RCVBUF (bytes)
    std::optional<std::string> bindToDevice;               // SO_BINDTODEVICE

    // Unix sockets with a path only.
    std::optional<mode_t> mode; // chmod of the socket file
    std::optional<uid_t> owner; // chown of the socket file
    std::optional<gid_t> group;
    bool removeStale = true; // unlink an existing *socket* file before bind

    friend bool operator==(const SocketOptions &, const SocketOptions &) = default;
};

// The listen() backlog when none is set; the kernel caps it at
// net.core.somaxconn.
inline constexpr int kDefaultBacklog = 4096;

// Limits validateSocketOptions() enforces, from the kernel's own limits
// (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT, IFNAMSIZ).
inline constexpr int kMaxBacklog = 65535;
inline constexpr int kMaxKeepAliveSeconds = 32767;
inline constexpr int kMaxKeepAliveCount = 127;

// One reason per problem, e.g. "'nodelay' applies only to tcp:// sockets".
// Empty when the options fit the address.
std::vector<std::string> validateSocketOptions(const Address &address, const SocketOptions &options);

// Creates a socket for one resolved address (SOCK_CLOEXEC), applies every
// set option, binds, fixes up unix file mode/owner, and listens (stream and
// seqpacket). The error names the step or option that failed and the errno:
// "Failed to set SO_BINDTODEVICE=eth9 on tcp://0.0.0.0:80: No such device".
// A stale unix socket file is removed only if it is a socket nobody listens
// on; a regular file (or any non-socket) in the way is refused with EEXIST.
// Nothing is left behind on failure (no fd, no new socket file).
// The options are validated first (EINVAL with every problem). A unix socket
// file with a mode is created under a matching umask, so it is never more
// accessible than asked for; umask is process-wide, so call this from one
// thread only.
Result<UniqueFd> bindSocket(const Address &address, const SocketAddress &resolved,
                            const SocketOptions &options);

// Resolves address and binds every result (tcp://localhost:80 gives a socket
// for 127.0.0.1 and one for ::1). All or nothing.
// When the results span both families and ipv6_only is unset, the IPv6
// sockets get IPV6_V6ONLY=1, since a dual-stack [::]:P would collide with
// 0.0.0.0:P. With port 0 and several results, every socket gets the port
// the first one was given (retrying if that port is taken elsewhere).
Result<std::vector<UniqueFd>> bindAll(const Address &address, const SocketOptions &options);

} // namespace fdsup
