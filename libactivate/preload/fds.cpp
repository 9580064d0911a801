// The preload shim's descriptor interposers: close*, dup*, fcntl, ioctl(FIONBIO), epoll_ctl on claimed and
// shim-owned fds.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdarg>
#include <mutex>

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "real.hpp"
#include "state.hpp"

#define FDSUP_EXPORT extern "C" __attribute__((visibility("default")))

namespace fdsup::preload {

namespace {

// close_range() over [first, last] that skips the shim's own fds and
// forgets the claims it closes.
int closeRangeSkipping(State &s, unsigned first, unsigned last, int flags)
{
    std::vector<unsigned> own;
    for (int fd : s.ownFds) {
        auto u = static_cast<unsigned>(fd);
        if (u >= first && u <= last) {
            own.push_back(u);
        }
    }
    if ((flags & CLOSE_RANGE_CLOEXEC) == 0) {
        std::vector<int> dropped;
        for (const auto &c : s.claims) {
            auto u = static_cast<unsigned>(c.fd);
            if (u >= first && u <= last) {
                dropped.push_back(c.fd);
            }
        }
        for (int fd : dropped) {
            dropClaim(s, fd);
        }
    }
    std::sort(own.begin(), own.end());
    int result = 0;
    unsigned from = first;
    for (unsigned fd : own) {
        if (fd > from && real::closeRange(from, fd - 1, flags) < 0 && result == 0) {
            result = -errno;
        }
        from = fd + 1;
        if (fd == UINT_MAX) {
            return result;
        }
    }
    if (from <= last && real::closeRange(from, last, flags) < 0 && result == 0) {
        result = -errno;
    }
    if (!own.empty()) {
        debug("close_range(%u, %u) skipped the shim's %zu fd(s)", first, last, own.size());
    }
    return result;
}

// After dup/dup2/F_DUPFD of oldFd into newFd succeeded.
void copyClaim(State &s, int oldFd, int newFd)
{
    if (oldFd == newFd) {
        return;
    }
    dropClaim(s, newFd);
    if (Claim *c = findClaim(s, oldFd); c != nullptr) {
        Claim copy = *c;
        copy.fd = newFd;
        addClaim(s, copy);
    }
}

int fcntlClaimed(State &s, Claim &c, int fd, int cmd, void *arg)
{
    switch (cmd) {
    case F_GETFL: {
        int flags = real::fcntl(fd, cmd, arg);
        return flags < 0 ? flags : (flags & ~O_NONBLOCK) | (c.nonblock ? O_NONBLOCK : 0);
    }
    case F_SETFL:
        // Only the app's own view: the status flags belong to the shared file description.
        c.nonblock = (reinterpret_cast<long>(arg) & O_NONBLOCK) != 0;
        debug("fcntl(%d, F_SETFL): O_NONBLOCK %s for this process only", fd, c.nonblock ? "on" : "off");
        return 0;
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
        int newFd = real::fcntl(fd, cmd, arg);
        if (newFd >= 0) {
            copyClaim(s, fd, newFd);
        }
        return newFd;
    }
    default:
        return real::fcntl(fd, cmd, arg);
    }
}

int fcntlInterposed(int fd, int cmd, void *arg)
{
    State *s = state();
    if (s != nullptr && !inShim() && maybeManaged(fd)) {
        std::lock_guard guard(s->mutex);
        if (Claim *c = findClaim(*s, fd); c != nullptr) {
            return fcntlClaimed(*s, *c, fd, cmd, arg);
        }
    }
    return real::fcntl(fd, cmd, arg);
}

int dupInto(int oldFd, int newFd, int flags, bool isDup2)
{
    State *s = state();
    if (s == nullptr || inShim() || (!maybeManaged(oldFd) && !maybeManaged(newFd))) {
        return isDup2 ? real::dup2(oldFd, newFd) : real::dup3(oldFd, newFd, flags);
    }
    std::lock_guard guard(s->mutex);
    if (isOwnFd(*s, newFd) && oldFd != newFd) {
        evictOwnFd(*s, newFd);
    }
    int r = isDup2 ? real::dup2(oldFd, newFd) : real::dup3(oldFd, newFd, flags);
    if (r >= 0) {
        copyClaim(*s, oldFd, newFd);
    }
    return r;
}

} // namespace

} // namespace fdsup::preload

using namespace fdsup::preload;

// Every interposer is a C++ function of its own name whose asm label is
// the libc symbol: glibc's declarations name the parameters differently
// (__fd...), and with _FILE_OFFSET_BITS=64 its header renames fcntl.

FDSUP_EXPORT int shimClose(int fd) __asm__("close");

FDSUP_EXPORT int shimClose(int fd)
{
    State *s = state();
    if (s != nullptr && !inShim() && maybeManaged(fd)) {
        std::lock_guard guard(s->mutex);
        if (isOwnFd(*s, fd)) {
            debug("close(%d) of the shim's own fd ignored", fd);
            return 0;
        }
        dropClaim(*s, fd);
    }
    return real::close(fd);
}

FDSUP_EXPORT int shimCloseRange(unsigned first, unsigned last, int flags) noexcept __asm__("close_range");
FDSUP_EXPORT void shimClosefrom(int first) noexcept __asm__("closefrom");
FDSUP_EXPORT int shimDup2(int fd, int target) noexcept __asm__("dup2");
FDSUP_EXPORT int shimDup3(int fd, int target, int flags) noexcept __asm__("dup3");

FDSUP_EXPORT int shimCloseRange(unsigned first, unsigned last, int flags) noexcept
{
    State *s = state();
    if (s == nullptr || inShim() || first > last) {
        return real::closeRange(first, last, flags);
    }
    std::lock_guard guard(s->mutex);
    int r = closeRangeSkipping(*s, first, last, flags);
    if (r < 0) {
        errno = -r;
        return -1;
    }
    return 0;
}

FDSUP_EXPORT void shimClosefrom(int first) noexcept
{
    State *s = state();
    if (s == nullptr || inShim() || first < 0) {
        real::closefrom(first);
        return;
    }
    ErrnoKeeper keep;
    std::lock_guard guard(s->mutex);
    // closefrom() cannot fail; close_range() exists since Linux 5.9.
    (void)closeRangeSkipping(*s, static_cast<unsigned>(first), UINT_MAX, 0);
}

FDSUP_EXPORT int shimDup(int fd) noexcept __asm__("dup");

FDSUP_EXPORT int shimDup(int fd) noexcept
{
    State *s = state();
    if (s == nullptr || inShim() || !maybeManaged(fd)) {
        return real::dup(fd);
    }
    std::lock_guard guard(s->mutex);
    int newFd = real::dup(fd);
    if (newFd >= 0) {
        copyClaim(*s, fd, newFd);
    }
    return newFd;
}

FDSUP_EXPORT int shimDup2(int fd, int target) noexcept
{
    return dupInto(fd, target, 0, true);
}

FDSUP_EXPORT int shimDup3(int fd, int target, int flags) noexcept
{
    return dupInto(fd, target, flags, false);
}

FDSUP_EXPORT int shimFcntl(int fd, int cmd, ...) __asm__("fcntl");
FDSUP_EXPORT int shimFcntl64(int fd, int cmd, ...) __asm__("fcntl64");

FDSUP_EXPORT int shimFcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntlInterposed(fd, cmd, arg);
}

FDSUP_EXPORT int shimFcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntlInterposed(fd, cmd, arg);
}

FDSUP_EXPORT int shimIoctl(int fd, unsigned long request, ...) noexcept __asm__("ioctl");

FDSUP_EXPORT int shimIoctl(int fd, unsigned long request, ...) noexcept
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    State *s = state();
    if (request == FIONBIO && arg != nullptr && s != nullptr && !inShim() && maybeManaged(fd)) {
        std::lock_guard guard(s->mutex);
        if (Claim *c = findClaim(*s, fd); c != nullptr) {
            c->nonblock = *static_cast<const int *>(arg) != 0;
            debug("ioctl(%d, FIONBIO): O_NONBLOCK %s for this process only", fd, c->nonblock ? "on" : "off");
            return 0;
        }
    }
    return real::ioctl(fd, request, arg);
}

FDSUP_EXPORT int shimEpollCtl(int epfd, int op, int fd, epoll_event *event) noexcept __asm__("epoll_ctl");

FDSUP_EXPORT int shimEpollCtl(int epfd, int op, int fd, epoll_event *event) noexcept
{
    State *s = state();
    if (s == nullptr || inShim() || !maybeManaged(fd)) {
        return real::epollCtl(epfd, op, fd, event);
    }
    std::lock_guard guard(s->mutex);
    int r = real::epollCtl(epfd, op, fd, event);
    Claim *c = findClaim(*s, fd);
    if (r < 0 || c == nullptr || c->drained) {
        return r;
    }
    // Remembered so that the drain can take the listener out of every set first.
    std::erase_if(s->epolls, [&](const EpollReg &reg) { return reg.epfd == epfd && reg.fd == fd; });
    if ((op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD) && event != nullptr) {
        s->epolls.push_back(EpollReg{epfd, fd, *event});
    }
    return r;
}
