// The preload shim's path interposers: the app cannot unlink, rename or chmod the socket file of a claimed
// unix listener.
#include <cerrno>
#include <climits>
#include <cstring>
#include <mutex>
#include <string>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "real.hpp"
#include "source.hpp"
#include "state.hpp"

#define FDSUP_EXPORT extern "C" __attribute__((visibility("default")))

namespace fdsup::preload {

namespace {

// path relative to dirfd as an absolute path (not yet canonical).
bool absolutePath(int dirfd, const char *path, std::string &out)
{
    if (path[0] == '/' || dirfd == AT_FDCWD) {
        out = path;
        return true;
    }
    char link[64];
    char dir[PATH_MAX];
    (void)std::snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, dir, sizeof(dir) - 1);
    if (n <= 0) {
        return false;
    }
    out.assign(dir, static_cast<std::size_t>(n));
    out += "/";
    out += path;
    return true;
}

// Is this path the socket file of one of the shim's unix listeners? Only a
// path that is a socket now is looked at (and only then are the listeners
// loaded), so ordinary file operations cost one lstat().
bool isManagedPath(int dirfd, const char *path)
{
    ErrnoKeeper keep;
    State *s = state();
    struct stat st {};
    if (s == nullptr || inShim() || path == nullptr || fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISSOCK(st.st_mode)) {
        return false;
    }
    std::string absolute;
    if (!absolutePath(dirfd, path, absolute)) {
        return false;
    }
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (absolute.size() >= sizeof(sun.sun_path)) {
        return false;
    }
    std::memcpy(sun.sun_path, absolute.c_str(), absolute.size() + 1);
    NormalAddress address;
    if (normaliseSockaddr(reinterpret_cast<sockaddr *>(&sun), sizeof(sun), 0, resolveDir, nullptr, address) <
        0) {
        return false;
    }
    std::lock_guard guard(s->mutex);
    ensureListeners(*s);
    for (const auto &l : s->listeners) {
        if (l.info.address.isUnix() && !l.info.address.abstract && l.info.address.path == address.path) {
            debug("%s is listener '%s''s socket file: left alone", absolute.c_str(), l.info.name.c_str());
            return true;
        }
    }
    return false;
}

} // namespace

} // namespace fdsup::preload

using namespace fdsup::preload;

// Every interposer is a C++ function of its own name whose asm label is
// the libc symbol: glibc's declarations name the parameters differently
// (__fd...), and with _FILE_OFFSET_BITS=64 its header renames fcntl.

FDSUP_EXPORT int shimUnlink(const char *path) noexcept __asm__("unlink");
FDSUP_EXPORT int shimUnlinkat(int dirfd, const char *path, int flags) noexcept __asm__("unlinkat");
FDSUP_EXPORT int shimRenameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                               unsigned flags) noexcept __asm__("renameat2");
FDSUP_EXPORT int shimRenameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) noexcept
    __asm__("renameat");
FDSUP_EXPORT int shimRename(const char *oldpath, const char *newpath) noexcept __asm__("rename");

FDSUP_EXPORT int shimUnlink(const char *path) noexcept
{
    return isManagedPath(AT_FDCWD, path) ? 0 : real::unlinkat(AT_FDCWD, path, 0);
}

FDSUP_EXPORT int shimUnlinkat(int dirfd, const char *path, int flags) noexcept
{
    return isManagedPath(dirfd, path) ? 0 : real::unlinkat(dirfd, path, flags);
}

FDSUP_EXPORT int shimRenameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath,
                               unsigned flags) noexcept
{
    if (isManagedPath(olddirfd, oldpath) || isManagedPath(newdirfd, newpath)) {
        return 0;
    }
    return real::renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}

FDSUP_EXPORT int shimRenameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) noexcept
{
    return shimRenameat2(olddirfd, oldpath, newdirfd, newpath, 0);
}

FDSUP_EXPORT int shimRename(const char *oldpath, const char *newpath) noexcept
{
    return shimRenameat2(AT_FDCWD, oldpath, AT_FDCWD, newpath, 0);
}

FDSUP_EXPORT int shimFchmodat(int dirfd, const char *path, mode_t mode, int flags) noexcept
    __asm__("fchmodat");

FDSUP_EXPORT int shimFchmodat(int dirfd, const char *path, mode_t mode, int flags) noexcept
{
    return isManagedPath(dirfd, path) ? 0 : real::fchmodat(dirfd, path, mode, flags);
}

FDSUP_EXPORT int shimChmod(const char *path, mode_t mode) noexcept __asm__("chmod");

FDSUP_EXPORT int shimChmod(const char *path, mode_t mode) noexcept
{
    return shimFchmodat(AT_FDCWD, path, mode, 0);
}
