// The control API's blocking client, for fdsupctl and tests: every wait has a deadline.
#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control/varlink.hpp"
#include "core/scm.hpp"

namespace fdsup::varlink {
namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point deadlineAfter(std::chrono::milliseconds timeout)
{
    const auto now = Clock::now();
    if (timeout >= std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - now)) {
        return Clock::time_point::max();
    }
    return now + timeout;
}

// Waits for events on fd until deadline: 1 ready, 0 timed out, -errno.
int waitFor(int fd, short events, Clock::time_point deadline)
{
    for (;;) {
        int timeoutMs = -1;
        if (deadline != Clock::time_point::max()) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) {
                return 0;
            }
            timeoutMs = static_cast<int>(
                std::min<std::chrono::milliseconds::rep>(left.count(), std::numeric_limits<int>::max()));
        }
        pollfd p{fd, events, 0};
        const int r = poll(&p, 1, timeoutMs);
        if (r < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (r > 0) {
            return 1;
        }
    }
}

} // namespace

Result<Client> Client::connect(const std::string &path, std::chrono::milliseconds timeout)
{
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(sa.sun_path)) {
        return Error{ENAMETOOLONG, "Invalid control socket path '" + path + "'"};
    }
    std::memcpy(sa.sun_path, path.data(), path.size());

    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errnoError(errno, "Failed to create a socket");
    }
    // A unix connect() only waits when the listener's backlog is full. A
    // blocking connect with SO_SNDTIMEO bounds that wait (it then fails with
    // EAGAIN); non-blocking would fail at once instead of waiting.
    // A zero SO_SNDTIMEO means no limit, which is also what a timeout of
    // "infinity" (or anything beyond a year) asks for.
    if (timeout.count() > 0 && timeout < std::chrono::hours(24 * 366)) {
        const auto usec = std::chrono::duration_cast<std::chrono::microseconds>(timeout).count();
        timeval tv{};
        tv.tv_sec = static_cast<time_t>(usec / 1000000);
        tv.tv_usec = static_cast<suseconds_t>(usec % 1000000);
        if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0) {
            return errnoError(errno, "Failed to set SO_SNDTIMEO");
        }
    }
    int r = 0;
    do {
        r = ::connect(fd.get(), reinterpret_cast<const sockaddr *>(&sa), sizeof(sa));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        const int code = errno == EAGAIN ? ETIMEDOUT : errno;
        return errnoError(code, "Failed to connect to " + path);
    }
    // From here on every wait is a poll() with the caller's deadline.
    const timeval none{};
    if (setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none)) < 0) {
        return errnoError(errno, "Failed to clear SO_SNDTIMEO");
    }
    return Client(std::move(fd), timeout);
}

Result<Reply> Client::call(const Call &call)
{
    return this->call(call, {});
}

Result<Reply> Client::call(const Call &call, std::span<const BorrowedFd> fds)
{
    if (fds.size() > kMaxCallFds) {
        return Error{EMSGSIZE, call.method + " carries " + std::to_string(fds.size()) +
                                   " descriptors, more than " + std::to_string(kMaxCallFds)};
    }
    const Clock::time_point deadline = deadlineAfter(timeout_);
    const std::string message = encodeCall(call);
    std::size_t sent = 0;
    while (sent < message.size()) {
        // The fds go with the first byte; the rest of the message without.
        const auto rest = std::as_bytes(std::span(message)).subspan(sent);
        const ssize_t n = sent == 0
                              ? sendStreamWithFds(fd_.borrow(), rest, fds, MSG_DONTWAIT)
                              : ::send(fd_.get(), rest.data(), rest.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && sent == 0) {
            errno = static_cast<int>(-n);
        }
        if (n >= 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN) {
            const int w = waitFor(fd_.get(), POLLOUT, deadline);
            if (w < 0) {
                return errnoError(w, "Failed to wait for fdsupd");
            }
            if (w == 0) {
                return errnoError(ETIMEDOUT, "Timed out sending " + call.method);
            }
            continue;
        }
        const int code = errno;
        // fdsupd refuses an oversized or unauthorised request with an error
        // reply and hangs up while we are still sending: that reply says more
        // than EPIPE.
        if (code == EPIPE || code == ECONNRESET) {
            auto reply = next();
            if (reply) {
                return reply;
            }
        }
        return errnoError(code, "Failed to send " + call.method);
    }
    if (call.oneway) {
        return Reply{};
    }
    return next();
}

Result<Reply> Client::next()
{
    const Clock::time_point deadline = deadlineAfter(timeout_);
    std::string message;
    for (;;) {
        const int r = reader_.next(message);
        if (r < 0) {
            return errnoError(r, "Reply from fdsupd too large");
        }
        if (r == 1) {
            auto reply = decodeReply(message);
            if (!reply) {
                return Error{EBADMSG, "Invalid reply from fdsupd: " + reply.error().message};
            }
            return reply;
        }
        std::array<std::byte, 65536> buffer{};
        DatagramInfo info;
        const ssize_t n = recvWithFds(fd_.borrow(), MSG_DONTWAIT, buffer, kMaxCallFds, fds_, info);
        if (n >= 0 && (info.controlTruncated || info.unexpectedControl || fds_.size() > kMaxCallFds)) {
            fds_.clear();
            return Error{EBADMSG, "fdsupd sent more descriptors than " + std::to_string(kMaxCallFds) +
                                      ", or control data that was cut"};
        }
        if (n > 0) {
            reader_.append(
                std::string_view(reinterpret_cast<const char *>(buffer.data()), static_cast<std::size_t>(n)));
            continue;
        }
        if (n == 0) {
            return Error{ECONNRESET, "fdsupd closed the connection"};
        }
        if (n == -EINTR) {
            continue;
        }
        if (n != -EAGAIN) {
            return errnoError(static_cast<int>(-n), "Failed to read from fdsupd");
        }
        const int w = waitFor(fd_.get(), POLLIN, deadline);
        if (w < 0) {
            return errnoError(w, "Failed to wait for fdsupd");
        }
        if (w == 0) {
            return errnoError(ETIMEDOUT, "Timed out waiting for fdsupd");
        }
    }
}

} // namespace fdsup::varlink
