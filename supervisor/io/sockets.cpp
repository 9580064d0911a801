// The listening sockets fdsupd holds: bound from the configuration or adopted from its own LISTEN_FDS.
#include "io/sockets.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <optional>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include "common/address.hpp"
#include "common/socket.hpp"

namespace fdsup {
namespace {

int familyOf(const Address &address)
{
    if (address.isUnix()) {
        return AF_UNIX;
    }
    return address.isIpv6Literal() ? AF_INET6 : (address.isNumericHost() ? AF_INET : AF_UNSPEC);
}

std::string localAddress(BorrowedFd fd)
{
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (getsockname(fd.get(), reinterpret_cast<sockaddr *>(&local), &len) < 0) {
        return "unknown";
    }
    return formatSocketAddress(reinterpret_cast<const sockaddr *>(&local), len);
}

} // namespace

// An inherited descriptor must be what the configuration says it is, or the
// workers would be handed something they cannot serve.
Result<std::string> checkInherited(const config::SocketConfig &socket, BorrowedFd fd, std::string_view how)
{
    int type = 0;
    int domain = 0;
    int listening = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
        return errnoError(errno,
                          std::string(how) + " descriptor for socket '" + socket.name + "' is not a socket");
    }
    len = sizeof(int);
    getsockopt(fd.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len);
    const Address &want = socket.listen.front();
    if (type != want.socketType()) {
        return Error{EPROTOTYPE, std::string(how) + " descriptor for socket '" + socket.name +
                                     "' has the wrong type for " + formatAddress(want)};
    }
    const int family = familyOf(want);
    if (family != AF_UNSPEC && family != domain) {
        return Error{EAFNOSUPPORT, std::string(how) + " descriptor for socket '" + socket.name +
                                       "' has the wrong address family for " + formatAddress(want)};
    }
    if (type != SOCK_DGRAM) {
        len = sizeof(int);
        if (getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0 || listening == 0) {
            return Error{EINVAL,
                         std::string(how) + " descriptor for socket '" + socket.name + "' is not listening"};
        }
    }
    return localAddress(fd);
}

namespace {

// A predecessor's listeners, checked as inherited ones are.
Result<std::vector<UniqueFd>> takeOver(ListenerRecovery &recovery, const config::SocketConfig &socket,
                                       const Address &address, const Error &bindError, bool probe)
{
    auto fds = recovery.recover(socket, address, bindError, probe);
    if (!fds) {
        return fds;
    }
    for (const auto &fd : *fds) {
        if (auto checked = checkInherited(socket, fd.borrow(), "taken over"); !checked) {
            return Error{checked.error().code, formatAddress(address) + ": " + checked.error().message};
        }
    }
    return fds;
}

// Binds one address; an address in use (with SO_REUSEPORT, which binds
// beside a live listener, one that has a listener already: looked for
// before binding) is asked of `recovery`. `tookOver` says which it was.
Result<std::vector<UniqueFd>> bindOrTakeOver(ListenerRecovery *recovery, const config::SocketConfig &socket,
                                             const Address &address, bool &tookOver)
{
    tookOver = false;
    if (recovery != nullptr && address.isInet() && socket.options.reusePort.value_or(false)) {
        auto found = takeOver(*recovery, socket, address,
                              Error{EADDRINUSE, formatAddress(address) + " has a listener already"}, true);
        if (!found || !found->empty()) {
            tookOver = true;
            return found;
        }
    }
    auto fds = bindAll(address, socket.options);
    if (fds || fds.error().code != EADDRINUSE || recovery == nullptr) {
        return fds;
    }
    tookOver = true;
    return takeOver(*recovery, socket, address, fds.error(), false);
}

} // namespace

namespace {

// pidfs's magic number (include/uapi/linux/magic.h, Linux 6.9+).
constexpr long kPidfsMagic = 0x50494446;

// The inode id of a pidfd of this process, or nullopt where pidfds are not
// on pidfs.
std::optional<std::uint64_t> ownPidfdId()
{
    const UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
    struct statfs fs {};
    struct stat st {};
    if (!pidfd || fstatfs(pidfd.get(), &fs) < 0 || fs.f_type != kPidfsMagic || fstat(pidfd.get(), &st) < 0) {
        return std::nullopt;
    }
    return static_cast<std::uint64_t>(st.st_ino);
}

bool parseDecimal(std::string_view text, std::uint64_t &value)
{
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

} // namespace

Result<bool> listenFdsAreOurs()
{
    const char *value = std::getenv("LISTEN_PIDFDID");
    if (value == nullptr) {
        return true;
    }
    const std::string text(value);
    unsetenv("LISTEN_PIDFDID");
    std::uint64_t wanted = 0;
    if (!parseDecimal(text, wanted)) {
        return Error{EINVAL, "Failed to read LISTEN_FDS: LISTEN_PIDFDID='" + text + "' is not a number"};
    }
    const std::optional<std::uint64_t> own = ownPidfdId();
    if (!own || *own == wanted) {
        return true;
    }
    spdlog::warn("LISTEN_FDS is meant for another process (LISTEN_PIDFDID={}, ours is {}), ignoring it", text,
                 *own);
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDNAMES");
    return false;
}

Result<InheritedFds> InheritedFds::fromEnvironment()
{
    InheritedFds inherited;
    auto ours = listenFdsAreOurs();
    if (!ours) {
        return ours.error();
    }
    if (!*ours) {
        return inherited;
    }
    char **names = nullptr;
    const int n = sd_listen_fds_with_names(1, &names);
    if (n < 0) {
        return errnoError(n, "Failed to read LISTEN_FDS");
    }
    for (int i = 0; i < n; ++i) {
        const int fd = SD_LISTEN_FDS_START + i;
        // sd_listen_fds() leaves them inheritable; fdsupd's own fds are born
        // CLOEXEC, and so must these be.
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        inherited.byName.emplace(names != nullptr && names[i] != nullptr ? names[i] : "unknown",
                                 UniqueFd(fd));
    }
    if (names != nullptr) {
        for (int i = 0; i < n; ++i) {
            free(names[i]); // NOLINT(cppcoreguidelines-no-malloc): allocated by libsystemd
        }
        free(names); // NOLINT(cppcoreguidelines-no-malloc)
    }
    return inherited;
}

namespace {

// Unix socket files bound so far; unlinked unless open() succeeds, so a
// failed start leaves nothing behind on disk either.
class CreatedFiles {
public:
    CreatedFiles() = default;
    CreatedFiles(const CreatedFiles &) = delete;
    CreatedFiles &operator=(const CreatedFiles &) = delete;
    ~CreatedFiles()
    {
        for (const auto &path : paths_) {
            unlink(path.c_str());
        }
    }
    void add(const Address &address)
    {
        if (address.isUnix() && !address.abstract) {
            paths_.push_back(address.host);
        }
    }
    void keep() { paths_.clear(); }

private:
    std::vector<std::string> paths_;
};

} // namespace

Result<SocketSet> SocketSet::open(const config::Config &config, InheritedFds inherited,
                                  ListenerRecovery *recovery)
{
    SocketSet set;
    CreatedFiles created;
    for (const auto &socket : config.sockets) {
        HeldSocket held;
        held.config = socket;
        auto [first, last] = inherited.byName.equal_range(socket.name);
        if (first != last) {
            held.adopted = true;
            for (auto it = first; it != last; ++it) {
                auto address = checkInherited(socket, it->second.borrow(), "inherited");
                if (!address) {
                    return address.error();
                }
                held.addresses.push_back(*address);
                held.fds.push_back(std::move(it->second));
            }
            inherited.byName.erase(first, last);
            spdlog::info("Adopted socket '{}' ({} descriptor{}: {})", socket.name, held.fds.size(),
                         held.fds.size() == 1 ? "" : "s", held.addresses.front());
        } else if (socket.receive) {
            // Services that use it wait for it (Service::start()).
            spdlog::info("Socket '{}' waits to be received (receive = true)", socket.name);
        } else {
            bool tookOver = false;
            for (const auto &address : socket.listen) {
                bool recovered = false;
                auto fds = bindOrTakeOver(recovery, socket, address, recovered);
                if (!fds) {
                    return Error{fds.error().code,
                                 "Failed to bind socket '" + socket.name + "': " + fds.error().message};
                }
                if (!recovered) {
                    created.add(address); // a file taken over is not ours to remove if start-up fails
                }
                tookOver = tookOver || recovered;
                for (auto &fd : *fds) {
                    held.addresses.push_back(localAddress(fd.borrow()));
                    held.fds.push_back(std::move(fd));
                }
            }
            spdlog::info("{} socket '{}' on {}", tookOver ? "Took over" : "Bound", socket.name,
                         fmt::join(held.addresses, ", "));
        }
        set.sockets_.push_back(std::move(held));
    }
    for (const auto &[name, fd] : inherited.byName) {
        spdlog::warn("Inherited descriptor named '{}' matches no [socket.{}], closing it", name, name);
    }
    created.keep();
    return set;
}

const HeldSocket *SocketSet::find(std::string_view name) const
{
    for (const auto &socket : sockets_) {
        if (socket.config.name == name) {
            return &socket;
        }
    }
    return nullptr;
}

HeldSocket *SocketSet::find(std::string_view name)
{
    for (auto &socket : sockets_) {
        if (socket.config.name == name) {
            return &socket;
        }
    }
    return nullptr;
}

void SocketSet::merge(SocketSet &&other)
{
    for (auto &socket : other.sockets_) {
        sockets_.push_back(std::move(socket));
    }
    other.sockets_.clear();
}

void SocketSet::close(std::string_view name)
{
    const auto it = std::find_if(sockets_.begin(), sockets_.end(),
                                 [&](const HeldSocket &s) { return s.config.name == name; });
    if (it == sockets_.end()) {
        return;
    }
    if (!it->adopted) {
        for (const auto &address : it->config.listen) {
            // The file fdsupd created at bind; a non-socket there is left alone.
            struct stat st {};
            if (address.isUnix() && !address.abstract && lstat(address.host.c_str(), &st) == 0 &&
                S_ISSOCK(st.st_mode)) {
                (void)unlink(address.host.c_str());
            }
        }
    }
    spdlog::info("Closed socket '{}'", it->config.name);
    sockets_.erase(it);
}

std::size_t SocketSet::fdCount() const
{
    std::size_t n = 0;
    for (const auto &socket : sockets_) {
        n += socket.fds.size();
    }
    return n;
}

std::uint64_t raiseFileLimit(std::uint64_t wanted)
{
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0) {
        return 1024;
    }
    rlimit next = limit;
    if (wanted == 0) {
        next.rlim_cur = limit.rlim_max;
    } else {
        next.rlim_cur = wanted;
        if (wanted > limit.rlim_max) {
            next.rlim_max = wanted; // only root may; tried, then fall back
        }
    }
    if (setrlimit(RLIMIT_NOFILE, &next) < 0) {
        const int err = errno;
        next.rlim_max = limit.rlim_max;
        next.rlim_cur = std::min<rlim_t>(next.rlim_cur, limit.rlim_max);
        if (setrlimit(RLIMIT_NOFILE, &next) < 0) {
            spdlog::warn("Failed to raise RLIMIT_NOFILE from {}: {}, ignoring", limit.rlim_cur,
                         errnoText(errno));
            return limit.rlim_cur;
        }
        spdlog::warn("Failed to raise RLIMIT_NOFILE to {}: {}; using {}", wanted, errnoText(err),
                     next.rlim_cur);
    }
    return next.rlim_cur;
}

} // namespace fdsup
