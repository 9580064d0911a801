// Checking socket options against a transport, and binding listening sockets.
#include "common/socket.hpp"

#include <array>
#include <cerrno>
#include <chrono>
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

// How an option reaches the kernel: setsockopt(level, name) with an int.
struct SockOpt {
    int level;
    int name;
    std::string_view text; // in messages: "Failed to set TCP_NODELAY=1 on ..."
};

struct Bounds {
    long long min;
    long long max;
};

long long asNumber(bool value)
{
    return value ? 1 : 0;
}

long long asNumber(int value)
{
    return value;
}

long long asNumber(std::chrono::seconds value)
{
    return value.count();
}

// A field of SocketOptions as the number the kernel gets (a flag as 0 or 1),
// or nullopt when it is unset.
template <auto Field>
std::optional<long long> numberOf(const SocketOptions &options)
{
    const auto &field = options.*Field;
    return field ? std::optional<long long>(asNumber(*field)) : std::nullopt;
}

template <auto Field>
bool isSet(const SocketOptions &options)
{
    return (options.*Field).has_value();
}

// The options of tcp:// sockets are all alike: refused on any other
// transport, checked against their bounds where they have any, and set
// with one setsockopt() each, in this order.
struct TcpOption {
    std::string_view key; // as written in [socket.NAME]
    std::optional<long long> (*value)(const SocketOptions &);
    SockOpt sockopt;
    std::optional<Bounds> bounds;
};
constexpr std::array<TcpOption, 7> kTcpOptions{{
    {"defer_accept",
     numberOf<&SocketOptions::deferAccept>,
     {IPPROTO_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT"},
     Bounds{0, INT32_MAX}},
    {"fastopen",
     numberOf<&SocketOptions::fastOpen>,
     {IPPROTO_TCP, TCP_FASTOPEN, "TCP_FASTOPEN"},
     Bounds{0, 1 << 30}},
    {"keepalive",
     numberOf<&SocketOptions::keepAlive>,
     {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE"},
     std::nullopt},
    {"keepalive_time",
     numberOf<&SocketOptions::keepAliveTime>,
     {IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE"},
     Bounds{1, kMaxKeepAliveSeconds}},
    {"keepalive_interval",
     numberOf<&SocketOptions::keepAliveInterval>,
     {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL"},
     Bounds{1, kMaxKeepAliveSeconds}},
    {"keepalive_count",
     numberOf<&SocketOptions::keepAliveCount>,
     {IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT"},
     Bounds{1, kMaxKeepAliveCount}},
    {"nodelay", numberOf<&SocketOptions::noDelay>, {IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY"}, std::nullopt},
}};

// The flags of tcp:// and udp:// sockets after SO_REUSEADDR, in the order
// they are set. Some exist once per address family: a V6 row is for IPv6
// sockets, a V4 row for the others (IPv4), an Any row for both.
enum class Family : std::uint8_t { Any, V4, V6 };
struct InetFlag {
    Family family;
    std::optional<long long> (*value)(const SocketOptions &);
    SockOpt sockopt;
};
constexpr std::array<InetFlag, 6> kInetFlags{{
    {Family::Any, numberOf<&SocketOptions::reusePort>, {SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT"}},
    {Family::V6, numberOf<&SocketOptions::ipv6Only>, {IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY"}},
    {Family::V4, numberOf<&SocketOptions::freeBind>, {IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND"}},
    {Family::V6, numberOf<&SocketOptions::freeBind>, {IPPROTO_IPV6, IPV6_FREEBIND, "IPV6_FREEBIND"}},
    {Family::V4, numberOf<&SocketOptions::transparent>, {IPPROTO_IP, IP_TRANSPARENT, "IP_TRANSPARENT"}},
    {Family::V6, numberOf<&SocketOptions::transparent>, {IPPROTO_IPV6, IPV6_TRANSPARENT, "IPV6_TRANSPARENT"}},
}};

// What applies only to some sockets, for the checks that refuse it elsewhere.
struct OptionKey {
    std::string_view key; // as written in [socket.NAME]
    bool (*isSet)(const SocketOptions &);
};
constexpr std::array<OptionKey, 5> kInetOnly{{
    {"reuse_address", isSet<&SocketOptions::reuseAddress>},
    {"reuse_port", isSet<&SocketOptions::reusePort>},
    {"free_bind", isSet<&SocketOptions::freeBind>},
    {"transparent", isSet<&SocketOptions::transparent>},
    {"bind_to_device", isSet<&SocketOptions::bindToDevice>},
}};
constexpr std::array<OptionKey, 3> kUnixPathOnly{{
    {"mode", isSet<&SocketOptions::mode>},
    {"owner", isSet<&SocketOptions::owner>},
    {"group", isSet<&SocketOptions::group>},
}};

Result<void> setInt(int fd, int level, int name, int value, std::string_view optName,
                    const std::string &valueText, const std::string &where)
{
    if (setsockopt(fd, level, name, &value, sizeof(value)) < 0) {
        return errnoError(errno, "Failed to set " + std::string(optName) + "=" + valueText + " on " + where);
    }
    return {};
}

Result<void> setIfGiven(int fd, std::optional<long long> value, const SockOpt &option,
                        const std::string &where)
{
    if (!value) {
        return {};
    }
    const auto number = static_cast<int>(*value);
    return setInt(fd, option.level, option.name, number, option.text, std::to_string(number), where);
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

Result<void> applyInetOptions(int fd, const Address &address, bool inet6, const SocketOptions &options,
                              const std::string &where)
{
    // Like systemd, TCP listeners get SO_REUSEADDR unless told otherwise,
    // so a restart is not blocked by connections in TIME_WAIT.
    std::optional<long long> reuseAddress = numberOf<&SocketOptions::reuseAddress>(options);
    if (!reuseAddress && address.transport == Transport::Tcp) {
        reuseAddress = 1;
    }
    if (auto r = setIfGiven(fd, reuseAddress, {SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR"}, where); !r) {
        return r;
    }
    for (const InetFlag &flag : kInetFlags) {
        if (flag.family != Family::Any && (flag.family == Family::V6) != inet6) {
            continue;
        }
        if (auto r = setIfGiven(fd, flag.value(options), flag.sockopt, where); !r) {
            return r;
        }
    }
    if (options.bindToDevice) {
        // A name, not an int: its length is the option's length.
        const std::string &device = *options.bindToDevice;
        if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device.c_str(),
                       static_cast<socklen_t>(device.size())) < 0) {
            return errnoError(errno, "Failed to set SO_BINDTODEVICE=" + device + " on " + where);
        }
    }
    return {};
}

Result<void> applyOptions(int fd, const Address &address, const SocketAddress &resolved,
                          const SocketOptions &options, const std::string &where)
{
    if (address.isInet()) {
        if (auto r = applyInetOptions(fd, address, resolved.family == AF_INET6, options, where); !r) {
            return r;
        }
    }
    if (address.transport == Transport::Tcp) {
        for (const TcpOption &option : kTcpOptions) {
            if (auto r = setIfGiven(fd, option.value(options), option.sockopt, where); !r) {
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

// validateSocketOptions()'s messages for one address, in the order found.
class Problems {
public:
    explicit Problems(Transport transport) : scheme_(transportName(transport)) {}

    void add(std::string problem) { problems_.push_back(std::move(problem)); }

    // "'nodelay' applies only to tcp:// sockets, not to udp:// sockets"
    void notFor(std::string_view key, std::string_view appliesTo)
    {
        add(quote(key) + " applies only to " + std::string(appliesTo) + ", not to " + scheme_ + " sockets");
    }

    template <std::size_t N>
    void notForAny(const std::array<OptionKey, N> &keys, const SocketOptions &options,
                   std::string_view appliesTo)
    {
        for (const OptionKey &option : keys) {
            if (option.isSet(options)) {
                notFor(option.key, appliesTo);
            }
        }
    }

    void checkRange(std::string_view key, long long value, Bounds bounds)
    {
        if (value < bounds.min || value > bounds.max) {
            add(quote(key) + " must be between " + std::to_string(bounds.min) + " and " +
                std::to_string(bounds.max) + ", got " + std::to_string(value));
        }
    }

    std::vector<std::string> take() { return std::move(problems_); }

private:
    std::string scheme_;
    std::vector<std::string> problems_;
};

// Why bind_to_device cannot name an interface, or nullopt when it can.
std::optional<std::string> deviceNameProblem(const std::string &device)
{
    if (device.empty()) {
        return "'bind_to_device' must name a network interface, e.g. 'eth0'";
    }
    if (device.size() >= IFNAMSIZ) {
        return "'bind_to_device' " + quote(device) + " is too long: interface names have at most " +
               std::to_string(IFNAMSIZ - 1) + " characters";
    }
    if (device.find('/') != std::string::npos || device.find(' ') != std::string::npos ||
        device.find('\0') != std::string::npos) {
        return "'bind_to_device' " + quote(device) + " is not a valid interface name";
    }
    return std::nullopt;
}

// The options of tcp:// and udp:// sockets: refused on unix ones;
// ipv6_only also on an IPv4 literal, where it could never apply.
void checkInetOptions(const Address &address, const SocketOptions &options, Problems &problems)
{
    if (!address.isInet()) {
        problems.notForAny(kInetOnly, options, "tcp:// and udp:// sockets");
    }
    if (options.ipv6Only) {
        if (!address.isInet()) {
            problems.notFor("ipv6_only", "IPv6 addresses (tcp://[::]:80) and host names");
        } else if (address.isNumericHost() && !address.isIpv6Literal()) {
            problems.add("'ipv6_only' applies only to IPv6 addresses (tcp://[::]:80) and host names, not to "
                         "the IPv4 address " +
                         quote(address.host));
        }
    }
    if (options.bindToDevice && address.isInet()) {
        if (auto problem = deviceNameProblem(*options.bindToDevice)) {
            problems.add(std::move(*problem));
        }
    }
}

} // namespace

std::vector<std::string> validateSocketOptions(const Address &address, const SocketOptions &options)
{
    Problems problems(address.transport);

    if (options.backlog) {
        if (address.socketType() == SOCK_DGRAM) {
            problems.notFor("backlog", "stream and seqpacket sockets (tcp://, unix:, unix-seqpacket:)");
        } else {
            problems.checkRange("backlog", *options.backlog, {1, kMaxBacklog});
        }
    }

    checkInetOptions(address, options, problems);

    for (const TcpOption &option : kTcpOptions) {
        const std::optional<long long> value = option.value(options);
        if (!value) {
            continue;
        }
        if (address.transport != Transport::Tcp) {
            problems.notFor(option.key, "tcp:// sockets");
        } else if (option.bounds) {
            problems.checkRange(option.key, *value, *option.bounds);
        }
    }

    // The kernel doubles the value, so more than INT_MAX / 2 cannot be honoured.
    constexpr Bounds kBuffer{1, INT32_MAX / 2};
    if (options.sendBuffer) {
        problems.checkRange("send_buffer", *options.sendBuffer, kBuffer);
    }
    if (options.receiveBuffer) {
        problems.checkRange("receive_buffer", *options.receiveBuffer, kBuffer);
    }

    const bool hasPath = address.isUnix() && !address.abstract;
    if (!hasPath) {
        problems.notForAny(kUnixPathOnly, options,
                           "unix sockets with a path (not abstract '@' names or inet sockets)");
    }
    if (options.mode && *options.mode > 07777) {
        problems.add("'mode' must be an octal permission between 0000 and 7777, got " +
                     std::to_string(*options.mode));
    }
    return problems.take();
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
