// The preload shim's socket interposers: bind() claims a listener; listen, accept, shutdown, setsockopt on a
// claimed fd.
#include <cerrno>
#include <cstring>
#include <mutex>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drain.hpp"
#include "real.hpp"
#include "source.hpp"
#include "state.hpp"

#define FDSUP_EXPORT extern "C" __attribute__((visibility("default")))

namespace fdsup::preload {

namespace {

// Serialises this process's accepts; the POSIX record lock on the listener
// serialises them with every other process of the shim (see acceptReady()).
std::mutex gAcceptMutex;

int claimFd(State &s, int fd, std::size_t index, const NormalAddress &app)
{
    ListenerFd &listener = s.listeners[index];
    int fdFlags = real::fcntl(fd, F_GETFD, nullptr);
    int flFlags = real::fcntl(fd, F_GETFL, nullptr);
    if (fdFlags < 0 || flFlags < 0 ||
        real::dup3(listener.fd, fd, (fdFlags & FD_CLOEXEC) != 0 ? O_CLOEXEC : 0) < 0) {
        return -errno;
    }
    addClaim(s, Claim{fd, index, (flFlags & O_NONBLOCK) != 0, false});
    listener.claimed = true;
    reportClaims(s);
    ensureDrain(s);
    debug("bind(%d, %s): listener '%s' at %s", fd, formatNormalAddress(app).c_str(),
          listener.info.name.c_str(), formatNormalAddress(listener.info.address).c_str());
    return 0;
}

// Decides an app bind() under the mutex. Returns 1 when libc should bind, 0
// when fd got a listener, -errno when bind() fails; errno is left as it was.
int bindLocked(State &s, int fd, const sockaddr *addr, socklen_t len)
{
    ErrnoKeeper keep;
    if (!ensureListeners(s)) {
        return 1;
    }
    int type = 0;
    socklen_t typeLen = sizeof(type);
    NormalAddress app;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &typeLen) < 0 ||
        normaliseSockaddr(addr, len, type, resolveDir, nullptr, app) < 0) {
        return 1;
    }
    std::vector<Listener> infos;
    for (const auto &l : s.listeners) {
        infos.push_back(l.info);
    }
    BindDecision d = decideBind(app, infos, s.map);
    switch (d.action) {
    case BindDecision::Action::PassThrough:
        debug("bind(%d, %s): no listener, libc binds it", fd, formatNormalAddress(app).c_str());
        return 1;
    case BindDecision::Action::Refuse:
        warn("bind(%d, %s) refused: %s", fd, formatNormalAddress(app).c_str(), d.reason.c_str());
        return -d.error;
    case BindDecision::Action::Claim:
        break;
    }
    return claimFd(s, fd, d.listener, app);
}

// poll(0) then accept under both locks: no other process of the shim can
// take the pending connection between the two, so accept4() never blocks on
// the shared (blocking) listener. Returns the fd, or -1 with errno.
// The caller holds gAcceptMutex.
int acceptReady(int fd, sockaddr *addr, socklen_t *len, int flags)
{
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    while (real::fcntl(fd, F_SETLKW, &lock) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    pollfd p{fd, POLLIN, 0};
    int conn = -1;
    int err = EAGAIN;
    if (poll(&p, 1, 0) > 0 && (p.revents & POLLIN) != 0) {
        conn = real::accept4(fd, addr, len, flags);
        err = errno;
    }
    lock.l_type = F_UNLCK;
    real::fcntl(fd, F_SETLK, &lock);
    errno = err;
    return conn;
}

// The app's accept on a claimed fd with its own blocking view.
int acceptClaimed(State &s, int fd, bool nonblock, bool drained, sockaddr *addr, socklen_t *len, int flags)
{
    for (;;) {
        if (!nonblock || drained) {
            pollfd p{fd, POLLIN, 0};
            if (!nonblock && poll(&p, 1, -1) < 0) {
                return -1; // EINTR: as a blocking accept() interrupted by a handler
            }
        }
        if (drained) {
            if (nonblock) {
                errno = EAGAIN;
                return -1;
            }
            continue; // the swapped-in fd never becomes ready: block as accept() would
        }
        int conn = -1;
        {
            // Accepted and tracked under the accept lock, which the drain
            // takes to stop accepting: a connection is either tracked before
            // the drain looks at what is open, or never accepted by this
            // process (lock order: accepts, then the state).
            std::lock_guard acceptGuard(gAcceptMutex);
            conn = acceptReady(fd, addr, len, flags);
            if (conn >= 0) {
                const int saved = errno;
                std::lock_guard guard(s.mutex);
                trackAccepted(s, conn);
                ensureDrain(s);
                errno = saved;
            }
        }
        if (conn >= 0) {
            return conn;
        }
        if (errno != EAGAIN || nonblock) {
            return -1;
        }
    }
}

} // namespace

void lockAccepts()
{
    gAcceptMutex.lock();
}

void unlockAccepts()
{
    gAcceptMutex.unlock();
}

} // namespace fdsup::preload

using namespace fdsup::preload;

// Every interposer is a C++ function of its own name whose asm label is
// the libc symbol: glibc's declarations name the parameters differently
// (__fd...), and with _FILE_OFFSET_BITS=64 its header renames fcntl.

FDSUP_EXPORT int shimBind(int fd, const sockaddr *addr, socklen_t len) noexcept __asm__("bind");

FDSUP_EXPORT int shimBind(int fd, const sockaddr *addr, socklen_t len) noexcept
{
    State *s = state();
    if (s != nullptr && !inShim()) {
        std::unique_lock guard(s->mutex);
        int r = bindLocked(*s, fd, addr, len);
        if (r < 0) {
            errno = -r;
            return -1;
        }
        if (r == 0) {
            return 0;
        }
    }
    return real::bind(fd, addr, len);
}

FDSUP_EXPORT int shimListen(int fd, int backlog) noexcept __asm__("listen");

FDSUP_EXPORT int shimListen(int fd, int backlog) noexcept
{
    State *s = state();
    if (s != nullptr && !inShim() && maybeManaged(fd)) {
        std::lock_guard guard(s->mutex);
        if (findClaim(*s, fd) != nullptr) {
            debug("listen(%d, %d) on a claimed listener: kept fdsupd's backlog", fd, backlog);
            return 0;
        }
    }
    return real::listen(fd, backlog);
}

FDSUP_EXPORT int shimAccept4(int fd, sockaddr *addr, socklen_t *len, int flags) __asm__("accept4");

FDSUP_EXPORT int shimAccept4(int fd, sockaddr *addr, socklen_t *len, int flags)
{
    State *s = state();
    if (s != nullptr && !inShim() && maybeManaged(fd)) {
        std::unique_lock guard(s->mutex);
        if (Claim *c = findClaim(*s, fd); c != nullptr) {
            bool nonblock = c->nonblock;
            bool drained = c->drained;
            guard.unlock();
            int saved = errno;
            int conn = acceptClaimed(*s, fd, nonblock, drained, addr, len, flags);
            if (conn >= 0) {
                errno = saved; // the lock's EINTR retries and the polls leave no trace
            }
            return conn;
        }
    }
    return real::accept4(fd, addr, len, flags);
}

FDSUP_EXPORT int shimAccept(int fd, sockaddr *addr, socklen_t *len) __asm__("accept");

FDSUP_EXPORT int shimAccept(int fd, sockaddr *addr, socklen_t *len)
{
    return shimAccept4(fd, addr, len, 0);
}

FDSUP_EXPORT int shimShutdown(int fd, int how) noexcept __asm__("shutdown");

FDSUP_EXPORT int shimShutdown(int fd, int how) noexcept
{
    State *s = state();
    if (s != nullptr && !inShim() && maybeManaged(fd)) {
        std::lock_guard guard(s->mutex);
        if (findClaim(*s, fd) != nullptr) {
            debug("shutdown(%d) on a claimed listener: not passed on (it would close it for everyone)", fd);
            return 0;
        }
    }
    return real::shutdown(fd, how);
}

FDSUP_EXPORT int shimSetsockopt(int fd, int level, int name, const void *value, socklen_t len) noexcept
    __asm__("setsockopt");

FDSUP_EXPORT int shimSetsockopt(int fd, int level, int name, const void *value, socklen_t len) noexcept
{
    State *s = state();
    if (s != nullptr && !inShim() && maybeManaged(fd)) {
        std::lock_guard guard(s->mutex);
        if (findClaim(*s, fd) != nullptr) {
            debug("setsockopt(%d, %d, %d) on a claimed listener ignored: fdsupd's configuration decides", fd,
                  level, name);
            return 0;
        }
    }
    return real::setsockopt(fd, level, name, value, len);
}
