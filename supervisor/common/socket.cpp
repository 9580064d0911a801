// Checking socket options against a transport, and binding listening sockets.
#include "common/socket.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace fdsup {

namespace {

std::string quote(std::string_view text)
{
    return "'" + std::string(text) + "'";
}

std::string_view transportName(Transport transport)
{
    switch (transport) {
    case Transport::Tcp:
        return "tcp://";
    case Transport::Udp:
        return "udp://";
    case Transport::UnixStream:
        return "unix:";
    case Transport::UnixDgram:
        return "unix-dgram:";
    case Transport::UnixSeqpacket:
        return "unix-seqpacket:";
    }
    return "?";
}

// How the address appears in messages: as written, plus the resolved
// address when the user wrote a name (tcp://localhost:80 binds twice).
std::string describe(const Address &address, const SocketAddress &resolved)
{
    std::string text = formatAddress(address);
    if (address.isInet() && !address.isNumericHost()) {
        text += " (" +
                formatSocketAddress(reinterpret_cast<const sockaddr *>(&resolved.storage), resolved.length) +
                ")";
    }
    return text;
}

Result<void> setInt(int fd, int level, int name, int value, std::string_view optName,
                    const std::string &valueText, const std::string &where)
{
    if (setsockopt(fd, level, name, &value, sizeof(value)) < 0) {
        return errnoError(errno, "Failed to set " + std::string(optName) + "=" + valueText + " on " + where);
    }
    return {};
}

Result<void> setBool(int fd, int level, int name, bool value, std::string_view optName,
                     const std::string &where)
{
    return setInt(fd, level, name, value ? 1 : 0, optName, value ? "1" : "0", where);
}

// SO_SNDBUF/SO_RCVBUF are capped at net.core.[wr]mem_max; when that cuts
// the request short and we are privileged, the *FORCE variants get the
// size the user asked for (as systemd does).
Result<void> setBuffer(int fd, int name, int forceName, int value, std::string_view optName,
                       const std::string &where)
{
    if (auto r = setInt(fd, SOL_SOCKET, name, value, optName, std::to_string(value), where); !r) {
        return r;
    }
    int actual = 0;
    socklen_t length = sizeof(actual);
    if (getsockopt(fd, SOL_SOCKET, name, &actual, &length) == 0 && actual / 2 < value) {
        // Best effort: EPERM without CAP_NET_ADMIN leaves the capped size.
        (void)setsockopt(fd, SOL_SOCKET, forceName, &value, sizeof(value));
    }
    return {};
}

Result<void> applyOptions(int fd, const Address &address, const SocketAddress &resolved,
                          const SocketOptions &options, const std::string &where)
{
    const bool inet6 = resolved.family == AF_INET6;

    if (address.isInet()) {
        // Like systemd, TCP listeners get SO_REUSEADDR unless told otherwise,
        // so a restart is not blocked by connections in TIME_WAIT.
        const std::optional<bool> reuseAddress =
            options.reuseAddress
                ? options.reuseAddress
                : (address.transport == Transport::Tcp ? std::optional<bool>(true) : std::nullopt);
        if (reuseAddress) {
            if (auto r = setBool(fd, SOL_SOCKET, SO_REUSEADDR, *reuseAddress, "SO_REUSEADDR", where); !r) {
                return r;
            }
        }
        if (options.reusePort) {
            if (auto r = setBool(fd, SOL_SOCKET, SO_REUSEPORT, *options.reusePort, "SO_REUSEPORT", where);
                !r) {
                return r;
            }
        }
        if (options.ipv6Only && inet6) {
            if (auto r = setBool(fd, IPPROTO_IPV6, IPV6_V6ONLY, *options.ipv6Only, "IPV6_V6ONLY", where);
                !r) {
                return r;
            }
        }
        if (options.freeBind) {
            if (auto r =
                    inet6
                        ? setBool(fd, IPPROTO_IPV6, IPV6_FREEBIND, *options.freeBind, "IPV6_FREEBIND", where)
                        : setBool(fd, IPPROTO_IP, IP_FREEBIND, *options.freeBind, "IP_FREEBIND", where);
                !r) {
                return r;
            }
        }
        if (options.transparent) {
            if (auto r = inet6 ? setBool(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, *options.transparent,
                                         "IPV6_TRANSPARENT", where)
                               : setBool(fd, IPPROTO_IP, IP_TRANSPARENT, *options.transparent,
                                         "IP_TRANSPARENT", where);
                !r) {
                return r;
            }
        }
        if (options.bindToDevice) {
            const std::string &device = *options.bindToDevice;
            if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device.c_str(),
                           static_cast<socklen_t>(device.size())) < 0) {
                return errnoError(errno, "Failed to set SO_BINDTODEVICE=" + device + " on " + where);
            }
        }
    }

    if (address.transport == Transport::Tcp) {
        if (options.deferAccept) {
            const auto seconds = static_cast<int>(options.deferAccept->count());
            if (auto r = setInt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, seconds, "TCP_DEFER_ACCEPT",
                                std::to_string(seconds), where);
                !r) {
                return r;
            }
        }
        if (options.fastOpen) {
            if (auto r = setInt(fd, IPPROTO_TCP, TCP_FASTOPEN, *options.fastOpen, "TCP_FASTOPEN",
                                std::to_string(*options.fastOpen), where);
                !r) {
                return r;
            }
        }
        if (options.keepAlive) {
            if (auto r = setBool(fd, SOL_SOCKET, SO_KEEPALIVE, *options.keepAlive, "SO_KEEPALIVE", where);
                !r) {
                return r;
            }
        }
        if (options.keepAliveTime) {
            const auto seconds = static_cast<int>(options.keepAliveTime->count());
            if (auto r = setInt(fd, IPPROTO_TCP, TCP_KEEPIDLE, seconds, "TCP_KEEPIDLE",
                                std::to_string(seconds), where);
                !r) {
                return r;
            }
        }
        if (options.keepAliveInterval) {
            const auto seconds = static_cast<int>(options.keepAliveInterval->count());
            if (auto r = setInt(fd, IPPROTO_TCP, TCP_KEEPINTVL, seconds, "TCP_KEEPINTVL",
                                std::to_string(seconds), where);
                !r) {
                return r;
            }
        }
        if (options.keepAliveCount) {
            if (auto r = setInt(fd, IPPROTO_TCP, TCP_KEEPCNT, *options.keepAliveCount, "TCP_KEEPCNT",
                                std::to_string(*options.keepAliveCount), where);
                !r) {
                return r;
            }
        }
        if (options.noDelay) {
            if (auto r = setBool(fd, IPPROTO_TCP, TCP_NODELAY, *options.noDelay, "TCP_NODELAY", where); !r) {
                return r;
            }
        }
    }

    if (options.sendBuffer) {
        if (auto r = setBuffer(fd, SO_SNDBUF, SO_SNDBUFFORCE, *options.sendBuffer, "SO_SNDBUF", where); !r) {
            return r;
        }
    }
    if (options.receiveBuffer) {
        if (auto r = setBuffer(fd, SO_RCVBUF, SO_RCVBUFFORCE, *options.receiveBuffer, "SO_RCVBUF", where);
            !r) {
            return r;
        }
    }
    return {};
}

// Decides whether an existing file at a unix socket path may be replaced.
// Only a socket file nobody accepts on is stale; anything else is refused
// and left untouched, since it may be another service's socket or data.
Result<void> clearStalePath(const Address &address, const SocketOptions &options, const std::string &where)
{
    const std::string &path = address.host;
    struct stat st {};
    if (lstat(path.c_str(), &st) < 0) {
        if (errno == ENOENT) {
            return {};
        }
        return errnoError(errno, "Failed to check existing file " + path + " for " + where);
    }
    if (!S_ISSOCK(st.st_mode)) {
        const char *kind = S_ISREG(st.st_mode)   ? "a regular file"
                           : S_ISDIR(st.st_mode) ? "a directory"
                           : S_ISLNK(st.st_mode) ? "a symbolic link"
                                                 : "a file that is not a socket";
        Error error = errnoError(EEXIST, "Failed to bind " + where);
        error.message += " (" + path + " is " + kind + "; only stale socket files are replaced)";
        return error;
    }
    if (!options.removeStale) {
        Error error = errnoError(EADDRINUSE, "Failed to bind " + where);
        error.message += " (socket file " + path + " exists and remove_stale is off)";
        return error;
    }

    // Probe with the address's own type: a live socket of another type
    // answers EPROTOTYPE, a dead one ECONNREFUSED whatever its type.
    UniqueFd probe(socket(AF_UNIX, address.socketType() | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) {
        return errnoError(errno, "Failed to create a socket to probe " + path + " for " + where);
    }
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path.data(), path.size());
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    if (connect(probe.get(), reinterpret_cast<const sockaddr *>(&un), length) == 0 || errno == EAGAIN ||
        errno == EINPROGRESS || errno == EPROTOTYPE) {
        Error error = errnoError(EADDRINUSE, "Failed to bind " + where);
        error.message += " (another process is listening on " + path + ")";
        return error;
    }
    if (errno == ENOENT) {
        return {}; // removed meanwhile
    }
    if (errno != ECONNREFUSED) {
        return errnoError(errno, "Failed to probe existing socket " + path + " for " + where);
    }
    if (unlink(path.c_str()) < 0 && errno != ENOENT) {
        return errnoError(errno, "Failed to remove stale socket " + path + " for " + where);
    }
    return {};
}

// Removes the socket file this call created unless the bind completes.
class PathGuard {
public:
    PathGuard() = default;
    PathGuard(const PathGuard &) = delete;
    PathGuard &operator=(const PathGuard &) = delete;
    ~PathGuard()
    {
        if (!path_.empty()) {
            (void)unlink(path_.c_str());
        }
    }
    void arm(std::string path) { path_ = std::move(path); }
    void dismiss() { path_.clear(); }

private:
    std::string path_;
};

std::uint16_t boundPort(int fd)
{
    sockaddr_storage storage{};
    socklen_t length = sizeof(storage);
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&storage), &length) < 0) {
        return 0;
    }
    if (storage.ss_family == AF_INET) {
        return ntohs(reinterpret_cast<const sockaddr_in *>(&storage)->sin_port);
    }
    if (storage.ss_family == AF_INET6) {
        return ntohs(reinterpret_cast<const sockaddr_in6 *>(&storage)->sin6_port);
    }
    return 0;
}

void setPort(SocketAddress &resolved, std::uint16_t port)
{
    if (resolved.family == AF_INET) {
        reinterpret_cast<sockaddr_in *>(&resolved.storage)->sin_port = htons(port);
    } else if (resolved.family == AF_INET6) {
        reinterpret_cast<sockaddr_in6 *>(&resolved.storage)->sin6_port = htons(port);
    }
}

} // namespace

std::vector<std::string> validateSocketOptions(const Address &address, const SocketOptions &options)
{
    std::vector<std::string> problems;
    const std::string scheme(transportName(address.transport));
    auto notFor = [&](std::string_view key, std::string_view appliesTo) {
        problems.push_back(quote(key) + " applies only to " + std::string(appliesTo) + ", not to " + scheme +
                           " sockets");
    };
    auto range = [&](std::string_view key, long long value, long long min, long long max) {
        if (value < min || value > max) {
            problems.push_back(quote(key) + " must be between " + std::to_string(min) + " and " +
                               std::to_string(max) + ", got " + std::to_string(value));
        }
    };

    if (options.backlog) {
        if (address.socketType() == SOCK_DGRAM) {
            notFor("backlog", "stream and seqpacket sockets (tcp://, unix:, unix-seqpacket:)");
        } else {
            range("backlog", *options.backlog, 1, kMaxBacklog);
        }
    }

    if (!address.isInet()) {
        constexpr std::string_view inet = "tcp:// and udp:// sockets";
        if (options.reuseAddress) {
            notFor("reuse_address", inet);
        }
        if (options.reusePort) {
            notFor("reuse_port", inet);
        }
        if (options.freeBind) {
            notFor("free_bind", inet);
        }
        if (options.transparent) {
            notFor("transparent", inet);
        }
        if (options.bindToDevice) {
            notFor("bind_to_device", inet);
        }
    }
    if (options.ipv6Only) {
        if (!address.isInet()) {
            notFor("ipv6_only", "IPv6 addresses (tcp://[::]:80) and host names");
        } else if (address.isNumericHost() && !address.isIpv6Literal()) {
            problems.push_back(
                "'ipv6_only' applies only to IPv6 addresses (tcp://[::]:80) and host names, not to "
                "the IPv4 address " +
                quote(address.host));
        }
    }
    if (options.bindToDevice && address.isInet()) {
        const std::string &device = *options.bindToDevice;
        if (device.empty()) {
            problems.emplace_back("'bind_to_device' must name a network interface, e.g. 'eth0'");
        } else if (device.size() >= IFNAMSIZ) {
            problems.push_back("'bind_to_device' " + quote(device) +
                               " is too long: interface names have at most " + std::to_string(IFNAMSIZ - 1) +
                               " characters");
        } else if (device.find('/') != std::string::npos || device.find(' ') != std::string::npos ||
                   device.find('\0') != std::string::npos) {
            problems.push_back("'bind_to_device' " + quote(device) + " is not a valid interface name");
        }
    }

    if (address.transport != Transport::Tcp) {
        constexpr std::string_view tcp = "tcp:// sockets";
        if (options.deferAccept) {
            notFor("defer_accept", tcp);
        }
        if (options.fastOpen) {
            notFor("fastopen", tcp);
        }
        if (options.keepAlive) {
            notFor("keepalive", tcp);
        }
        if (options.keepAliveTime) {
            notFor("keepalive_time", tcp);
        }
        if (options.keepAliveInterval) {
            notFor("keepalive_interval", tcp);
        }
        if (options.keepAliveCount) {
            notFor("keepalive_count", tcp);
        }
        if (options.noDelay) {
            notFor("nodelay", tcp);
        }
    } else {
        if (options.deferAccept) {
            range("defer_accept", options.deferAccept->count(), 0, INT32_MAX);
        }
        if (options.fastOpen) {
            range("fastopen", *options.fastOpen, 0, 1 << 30);
        }
        if (options.keepAliveTime) {
            range("keepalive_time", options.keepAliveTime->count(), 1, kMaxKeepAliveSeconds);
        }
        if (options.keepAliveInterval) {
            range("keepalive_interval", options.keepAliveInterval->count(), 1, kMaxKeepAliveSeconds);
        }
        if (options.keepAliveCount) {
            range("keepalive_count", *options.keepAliveCount, 1, kMaxKeepAliveCount);
        }
    }

    // The kernel doubles the value, so more than INT_MAX / 2 cannot be honoured.
    if (options.sendBuffer) {
        range("send_buffer", *options.sendBuffer, 1, INT32_MAX / 2);
    }
    if (options.receiveBuffer) {
        range("receive_buffer", *options.receiveBuffer, 1, INT32_MAX / 2);
    }

    const bool hasPath = address.isUnix() && !address.abstract;
    if (!hasPath) {
        const std::string_view where = "unix sockets with a path (not abstract '@' names or inet sockets)";
        if (options.mode) {
            notFor("mode", where);
        }
        if (options.owner) {
            notFor("owner", where);
        }
        if (options.group) {
            notFor("group", where);
        }
    }
    if (options.mode && *options.mode > 07777) {
        problems.push_back("'mode' must be an octal permission between 0000 and 7777, got " +
                           std::to_string(*options.mode));
    }
    return problems;
}

Result<UniqueFd> bindSocket(const Address &address, const SocketAddress &resolved,
                            const SocketOptions &options)
{
    const std::string where = describe(address, resolved);

    if (const auto problems = validateSocketOptions(address, options); !problems.empty()) {
        std::string message = "Invalid options for " + where + ": ";
        for (std::size_t i = 0; i < problems.size(); ++i) {
            message += (i == 0 ? "" : "; ") + problems[i];
        }
        return Error{EINVAL, std::move(message)};
    }

    UniqueFd fd(socket(resolved.family, address.socketType() | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errnoError(errno, "Failed to create socket for " + where);
    }
    if (auto r = applyOptions(fd.get(), address, resolved, options, where); !r) {
        return r.error();
    }

    const bool hasPath = address.isUnix() && !address.abstract;
    if (hasPath) {
        if (auto r = clearStalePath(address, options, where); !r) {
            return r.error();
        }
    }

    // The socket file is created by bind() with 0777 & ~umask. Binding under
    // a umask derived from the wanted mode means the file never exists with
    // wider permissions than asked for, even for an instant. umask is
    // process-wide: this relies on the caller being single-threaded.
    PathGuard guard;
    {
        const bool setMask = hasPath && options.mode.has_value();
        const mode_t oldMask = setMask ? umask(~*options.mode & 0777) : 0;
        const int rc = bind(fd.get(), reinterpret_cast<const sockaddr *>(&resolved.storage), resolved.length);
        const int bindErrno = errno;
        if (setMask) {
            umask(oldMask);
        }
        if (rc < 0) {
            return errnoError(bindErrno, "Failed to bind " + where);
        }
    }
    if (hasPath) {
        guard.arm(address.host);
        if (options.owner || options.group) {
            // lchown: never follow a symlink someone swapped in after bind.
            if (lchown(address.host.c_str(), options.owner.value_or(static_cast<uid_t>(-1)),
                       options.group.value_or(static_cast<gid_t>(-1))) < 0) {
                std::string owner = options.owner ? std::to_string(*options.owner) : "-";
                std::string group = options.group ? std::to_string(*options.group) : "-";
                return errnoError(errno, "Failed to change owner of " + address.host + " to " + owner + ":" +
                                             group + " for " + where);
            }
        }
        // chmod after chown (which may clear mode bits) so the mode is exact;
        // fchmod() on a socket fd does not reach the file.
        if (options.mode && chmod(address.host.c_str(), *options.mode) < 0) {
            return errnoError(errno, "Failed to set mode of " + address.host + " for " + where);
        }
    }

    if (address.socketType() != SOCK_DGRAM) {
        const int backlog = options.backlog.value_or(kDefaultBacklog);
        if (listen(fd.get(), backlog) < 0) {
            return errnoError(errno, "Failed to listen on " + where);
        }
    }

    guard.dismiss();
    return fd;
}

Result<std::vector<UniqueFd>> bindAll(const Address &address, const SocketOptions &options)
{
    auto resolved = resolveAddress(address);
    if (!resolved) {
        return resolved.error();
    }
    std::vector<SocketAddress> &addresses = *resolved;

    // A name that resolves to both families gets a socket per family. Left
    // dual-stack, the IPv6 socket would also claim the IPv4 addresses and
    // collide with the IPv4 socket (for [::] and 0.0.0.0), so it is made
    // IPv6-only unless the user chose ipv6_only themselves.
    bool haveV4 = false;
    bool haveV6 = false;
    for (const SocketAddress &a : addresses) {
        haveV4 = haveV4 || a.family == AF_INET;
        haveV6 = haveV6 || a.family == AF_INET6;
    }
    SocketOptions v6Options = options;
    if (haveV4 && haveV6 && !v6Options.ipv6Only) {
        v6Options.ipv6Only = true;
    }

    // Port 0 with several addresses: the first bind picks the port and the
    // others reuse it, so the name means one port. Another process may hold
    // that port on the other family; then start over with a new one.
    const bool samePort = address.isInet() && address.port == 0 && addresses.size() > 1;
    constexpr int kAttempts = 16;
    for (int attempt = 1;; ++attempt) {
        std::vector<UniqueFd> fds;
        std::vector<SocketAddress> targets = addresses;
        bool retry = false;
        for (std::size_t i = 0; i < targets.size(); ++i) {
            auto fd = bindSocket(address, targets[i], targets[i].family == AF_INET6 ? v6Options : options);
            if (!fd) {
                if (samePort && i > 0 && fd.error().code == EADDRINUSE && attempt < kAttempts) {
                    retry = true;
                    break;
                }
                return fd.error();
            }
            if (samePort && i == 0) {
                const std::uint16_t port = boundPort(fd->get());
                for (std::size_t j = 1; j < targets.size(); ++j) {
                    setPort(targets[j], port);
                }
            }
            fds.push_back(std::move(*fd));
        }
        if (!retry) {
            return fds;
        }
    }
}

} // namespace fdsup
