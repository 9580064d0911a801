// The libc functions the preload shim interposes, reached through dlsym(RTLD_NEXT), and the re-entry guard.
#pragma once

#include <csignal>
#include <cstdarg>

#include <sys/epoll.h>
#include <sys/socket.h>

namespace fdsup::preload::real {

// Each resolves the next definition (libc's) once, lazily: an interposer may
// be called before the shim's constructor ran. A function libc lacks fails
// with ENOSYS.
int bind(int fd, const sockaddr *addr, socklen_t len);
int listen(int fd, int backlog);
int accept4(int fd, sockaddr *addr, socklen_t *len, int flags);
int close(int fd);
int closeRange(unsigned first, unsigned last, int flags);
void closefrom(int first);
int shutdown(int fd, int how);
int fcntl(int fd, int cmd, void *arg);   // commands taking a pointer (or nothing)
int fcntlInt(int fd, int cmd, long arg); // commands taking an integer
int ioctl(int fd, unsigned long request, void *arg);
int setsockopt(int fd, int level, int name, const void *value, socklen_t len);
int dup(int fd);
int dup2(int fd, int target);
int dup3(int fd, int target, int flags);
int epollCtl(int epfd, int op, int fd, epoll_event *event);
int sigaction(int sig, const struct sigaction *action, struct sigaction *old);
int unlinkat(int dirfd, const char *path, int flags);
int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags);
int fchmodat(int dirfd, const char *path, mode_t mode, int flags);

} // namespace fdsup::preload::real

namespace fdsup::preload {

// True while the shim itself runs on this thread: its own close(), fcntl()...
// (from the shared core too) then go straight to libc.
bool inShim() noexcept;

// Marks this thread as running shim code for its lifetime; nests.
class ShimScope {
public:
    ShimScope() noexcept;
    ~ShimScope();
    ShimScope(const ShimScope &) = delete;
    ShimScope &operator=(const ShimScope &) = delete;
};

// Restores errno on scope exit: every interposer path that does not fail
// leaves errno as the app had it.
class ErrnoKeeper {
public:
    ErrnoKeeper() noexcept;
    ~ErrnoKeeper();
    ErrnoKeeper(const ErrnoKeeper &) = delete;
    ErrnoKeeper &operator=(const ErrnoKeeper &) = delete;

private:
    int saved_;
};

} // namespace fdsup::preload
