// The preload shim's state: bookkeeping of fds, the lock-free fd hint, stderr lines.
#include "state.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "real.hpp"

namespace fdsup::preload {

namespace {

std::atomic<State *> gState{nullptr};

// One bit per fd below kMarkedFds; fds above share one "some big fd" flag.
constexpr int kMarkedFds = 1 << 16;
std::atomic<std::uint64_t> gMarks[kMarkedFds / 64];
std::atomic<bool> gBigMarks{false};

// "fdsup-preload: MESSAGE" (as fdsupd's contract words it), or with the
// pid for the debug lines, where forked processes interleave.
void vprint(bool withPid, const char *format, va_list ap)
{
    char line[1024];
    int n = withPid ? std::snprintf(line, sizeof(line), "fdsup-preload[%d]: ", static_cast<int>(getpid()))
                    : std::snprintf(line, sizeof(line), "fdsup-preload: ");
    if (n < 0) {
        return;
    }
    // ap was started by the caller (warn, debug).
    // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized)
    int m = std::vsnprintf(line + n, sizeof(line) - static_cast<std::size_t>(n) - 1, format, ap);
    if (m < 0) {
        return;
    }
    std::size_t len = std::min(sizeof(line) - 2, static_cast<std::size_t>(n) + static_cast<std::size_t>(m));
    line[len] = '\n';
    (void)!::write(STDERR_FILENO, line, len + 1);
}

} // namespace

State *state() noexcept
{
    return gState.load(std::memory_order_acquire);
}

void setState(State *s) noexcept
{
    gState.store(s, std::memory_order_release);
}

bool maybeManaged(int fd) noexcept
{
    if (fd < 0) {
        return false;
    }
    if (fd >= kMarkedFds) {
        return gBigMarks.load(std::memory_order_acquire);
    }
    return (gMarks[fd / 64].load(std::memory_order_acquire) & (std::uint64_t{1} << (fd % 64))) != 0;
}

void markFd(int fd) noexcept
{
    if (fd >= kMarkedFds) {
        gBigMarks.store(true, std::memory_order_release);
    } else if (fd >= 0) {
        gMarks[fd / 64].fetch_or(std::uint64_t{1} << (fd % 64), std::memory_order_acq_rel);
    }
}

void unmarkFd(int fd) noexcept
{
    // Big fds keep the shared flag: it only costs them the slow path.
    if (fd >= 0 && fd < kMarkedFds) {
        gMarks[fd / 64].fetch_and(~(std::uint64_t{1} << (fd % 64)), std::memory_order_acq_rel);
    }
}

Claim *findClaim(State &s, int fd)
{
    auto it = std::find_if(s.claims.begin(), s.claims.end(), [fd](const Claim &c) { return c.fd == fd; });
    return it == s.claims.end() ? nullptr : &*it;
}

bool isOwnFd(const State &s, int fd)
{
    return std::find(s.ownFds.begin(), s.ownFds.end(), fd) != s.ownFds.end();
}

void addOwnFd(State &s, int fd)
{
    s.ownFds.push_back(fd);
    markFd(fd);
}

void removeOwnFd(State &s, int fd)
{
    std::erase(s.ownFds, fd);
    if (findClaim(s, fd) == nullptr) {
        unmarkFd(fd);
    }
}

void addClaim(State &s, const Claim &claim)
{
    dropClaim(s, claim.fd);
    s.claims.push_back(claim);
    markFd(claim.fd);
}

void dropClaim(State &s, int fd)
{
    std::erase_if(s.claims, [fd](const Claim &c) { return c.fd == fd; });
    std::erase_if(s.epolls, [fd](const EpollReg &r) { return r.fd == fd; });
    if (!isOwnFd(s, fd)) {
        unmarkFd(fd);
    }
}

void evictOwnFd(State &s, int fd)
{
    int moved = moveHigh(fd);
    if (moved < 0) {
        return;
    }
    for (auto &l : s.listeners) {
        if (l.fd == fd) {
            l.fd = moved;
        }
    }
    if (s.channelFd == fd) {
        s.channelFd = moved;
    }
    std::replace(s.ownFds.begin(), s.ownFds.end(), fd, moved);
    unmarkFd(fd);
    markFd(moved);
}

int moveHigh(int fd)
{
    rlimit limit{};
    long base = 3;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
        // Below 1024 (select()'s FD_SETSIZE) and clear of the app's low fds.
        base = std::max<long>(3, std::min<long>(static_cast<long>(limit.rlim_cur), 1024) - 64);
    }
    ShimScope scope;
    ErrnoKeeper keep; // called from interposers that succeed (dup2 onto a shim fd)
    int moved = real::fcntlInt(fd, F_DUPFD_CLOEXEC, base);
    if (moved < 0) {
        moved = real::fcntlInt(fd, F_DUPFD_CLOEXEC, 3);
    }
    if (moved < 0) {
        return -errno;
    }
    real::close(fd);
    return moved;
}

void warn(const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    vprint(false, format, ap);
    va_end(ap);
}

void debug(const char *format, ...)
{
    State *s = state();
    if (s == nullptr || !s->config.debug) {
        return;
    }
    va_list ap;
    va_start(ap, format);
    vprint(true, format, ap);
    va_end(ap);
}

bool resolveDir(const std::string &dir, std::string &canonical, void * /*context*/)
{
    char buf[PATH_MAX];
    if (::realpath(dir.c_str(), buf) == nullptr) {
        return false;
    }
    canonical = buf;
    return true;
}

} // namespace fdsup::preload
