// dlsym(RTLD_NEXT) lookups of the interposed libc functions, and the shim's re-entry guard.
#include "real.hpp"

#include <atomic>
#include <cerrno>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace fdsup::preload {

namespace {

// initial-exec: the shim is loaded at start-up (LD_PRELOAD), so its TLS is
// static and reading it never allocates.
thread_local int tDepth __attribute__((tls_model("initial-exec"))) = 0;

template <typename F>
F lookup(std::atomic<void *> &slot, const char *name)
{
    void *p = slot.load(std::memory_order_acquire);
    if (p == nullptr) {
        p = dlsym(RTLD_NEXT, name);
        slot.store(p, std::memory_order_release);
    }
    return reinterpret_cast<F>(p);
}

#define FDSUP_REAL(type, name)                                                                               \
    static std::atomic<void *> slot{nullptr};                                                                \
    auto fn = lookup<type>(slot, name);                                                                      \
    if (fn == nullptr) {                                                                                     \
        errno = ENOSYS;                                                                                      \
        return -1;                                                                                           \
    }

} // namespace

bool inShim() noexcept
{
    return tDepth > 0;
}

ShimScope::ShimScope() noexcept
{
    ++tDepth;
}

ShimScope::~ShimScope()
{
    --tDepth;
}

ErrnoKeeper::ErrnoKeeper() noexcept : saved_(errno)
{}

ErrnoKeeper::~ErrnoKeeper()
{
    errno = saved_;
}

namespace real {

int bind(int fd, const sockaddr *addr, socklen_t len)
{
    FDSUP_REAL(int (*)(int, const sockaddr *, socklen_t), "bind");
    return fn(fd, addr, len);
}

int listen(int fd, int backlog)
{
    FDSUP_REAL(int (*)(int, int), "listen");
    return fn(fd, backlog);
}

int accept4(int fd, sockaddr *addr, socklen_t *len, int flags)
{
    FDSUP_REAL(int (*)(int, sockaddr *, socklen_t *, int), "accept4");
    return fn(fd, addr, len, flags);
}

int close(int fd)
{
    FDSUP_REAL(int (*)(int), "close");
    return fn(fd);
}

int closeRange(unsigned first, unsigned last, int flags)
{
    FDSUP_REAL(int (*)(unsigned, unsigned, int), "close_range");
    return fn(first, last, flags);
}

void closefrom(int first)
{
    static std::atomic<void *> slot{nullptr};
    auto fn = lookup<void (*)(int)>(slot, "closefrom");
    if (fn != nullptr) {
        fn(first);
    }
}

int shutdown(int fd, int how)
{
    FDSUP_REAL(int (*)(int, int), "shutdown");
    return fn(fd, how);
}

int fcntl(int fd, int cmd, void *arg)
{
    FDSUP_REAL(int (*)(int, int, ...), "fcntl");
    return fn(fd, cmd, arg);
}

int fcntlInt(int fd, int cmd, long arg)
{
    FDSUP_REAL(int (*)(int, int, ...), "fcntl");
    return fn(fd, cmd, arg);
}

int ioctl(int fd, unsigned long request, void *arg)
{
    FDSUP_REAL(int (*)(int, unsigned long, ...), "ioctl");
    return fn(fd, request, arg);
}

int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
    FDSUP_REAL(int (*)(int, int, int, const void *, socklen_t), "setsockopt");
    return fn(fd, level, name, value, len);
}

int dup(int fd)
{
    FDSUP_REAL(int (*)(int), "dup");
    return fn(fd);
}

int dup2(int fd, int target)
{
    FDSUP_REAL(int (*)(int, int), "dup2");
    return fn(fd, target);
}

int dup3(int fd, int target, int flags)
{
    FDSUP_REAL(int (*)(int, int, int), "dup3");
    return fn(fd, target, flags);
}

int epollCtl(int epfd, int op, int fd, epoll_event *event)
{
    FDSUP_REAL(int (*)(int, int, int, epoll_event *), "epoll_ctl");
    return fn(epfd, op, fd, event);
}

int sigaction(int sig, const struct sigaction *action, struct sigaction *old)
{
    FDSUP_REAL(int (*)(int, const struct sigaction *, struct sigaction *), "sigaction");
    return fn(sig, action, old);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    FDSUP_REAL(int (*)(int, const char *, int), "unlinkat");
    return fn(dirfd, path, flags);
}

int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags)
{
    FDSUP_REAL(int (*)(int, const char *, int, const char *, unsigned), "renameat2");
    return fn(olddirfd, oldpath, newdirfd, newpath, flags);
}

int fchmodat(int dirfd, const char *path, mode_t mode, int flags)
{
    FDSUP_REAL(int (*)(int, const char *, mode_t, int), "fchmodat");
    return fn(dirfd, path, mode, flags);
}

} // namespace real

} // namespace fdsup::preload
