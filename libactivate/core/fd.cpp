// UniqueFd: closing and duplicating the one owned descriptor.
#include "core/fd.hpp"

#include <cerrno>

#include <fcntl.h>
#include <unistd.h>

namespace fdsup {

void UniqueFd::reset(int fd) noexcept
{
    // reset(get()) would otherwise close the fd it is asked to keep.
    if (fd == fd_) {
        return;
    }
    const int old = std::exchange(fd_, fd);
    if (old < 0) {
        return;
    }
    // Destructors and error paths call this after a failing system call; the
    // caller's errno must survive. close() is never retried: on Linux the fd
    // is gone even when it reports EINTR, and a retry could close a fd that
    // another thread has just been given.
    const int savedErrno = errno;
    ::close(old);
    errno = savedErrno;
}

UniqueFd UniqueFd::dup() const noexcept
{
    // Never below 3: a dup must not silently become someone's stdin/stdout/stderr.
    return UniqueFd(::fcntl(fd_, F_DUPFD_CLOEXEC, 3));
}

} // namespace fdsup
