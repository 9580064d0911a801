// A listening unix socket fdsupd binds and accepts on: the control socket, a service's activation socket.
#include "io/unix_listener.hpp"

#include <cerrno>
#include <cstddef>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <systemd/sd-event.h>

#include "common/address.hpp"
#include "common/socket.hpp"

namespace fdsup {

Result<std::unique_ptr<UnixListener>> UnixListener::bind(EventLoop &loop, const std::string &address,
                                                         mode_t mode, std::string what,
                                                         AcceptHandler onAccept)
{
    auto parsed = parseAddress(address);
    if (!parsed) {
        return Error{EINVAL, parsed.error().message};
    }
    const bool abstract = parsed->abstract;
    SocketOptions options;
    if (!abstract) {
        options.mode = mode;
    }
    options.removeStale = true;
    auto bound = bindAll(*parsed, options);
    if (!bound) {
        return bound.error();
    }
    if (bound->size() != 1) {
        return Error{EINVAL, address + " resolved to more than one address"};
    }
    std::unique_ptr<UnixListener> listener(new UnixListener(loop, std::move(what), std::move(onAccept)));
    listener->fd_ = std::move(bound->front());
    struct stat st {};
    if (!abstract && lstat(parsed->host.c_str(), &st) == 0) {
        listener->path_ = parsed->host;
        listener->dev_ = st.st_dev;
        listener->ino_ = st.st_ino;
    }
    if (auto watched = listener->watch(); !watched) {
        return watched.error();
    }
    return listener;
}

Result<std::unique_ptr<UnixListener>> UnixListener::adopt(EventLoop &loop, UniqueFd fd, std::string what,
                                                          AcceptHandler onAccept)
{
    std::unique_ptr<UnixListener> listener(new UnixListener(loop, std::move(what), std::move(onAccept)));
    listener->fd_ = std::move(fd);
    if (auto watched = listener->watch(); !watched) {
        return watched.error();
    }
    return listener;
}

Result<std::unique_ptr<UnixListener>> UnixListener::adoptOwned(EventLoop &loop, UniqueFd fd,
                                                               const std::string &address, std::string what,
                                                               AcceptHandler onAccept)
{
    auto parsed = parseAddress(address);
    if (!parsed) {
        return Error{EINVAL, parsed.error().message};
    }
    sockaddr_un bound{};
    socklen_t length = sizeof(bound);
    if (getsockname(fd.get(), reinterpret_cast<sockaddr *>(&bound), &length) < 0) {
        return errnoError(errno, "Failed to read the address of " + address);
    }
    const std::size_t pathLength =
        length > offsetof(sockaddr_un, sun_path) ? length - offsetof(sockaddr_un, sun_path) : 0;
    std::string path(bound.sun_path, pathLength);
    if (!path.empty() && path.front() == '\0') {
        path.front() = '@';
    }
    while (!path.empty() && path.back() == '\0') {
        path.pop_back();
    }
    const std::string expected = parsed->abstract ? "@" + parsed->host : parsed->host;
    if (bound.sun_family != AF_UNIX || path != expected) {
        return Error{EINVAL, "the socket passed for " + address + " is bound to '" + path + "'"};
    }
    auto listener = adopt(loop, std::move(fd), std::move(what), std::move(onAccept));
    if (!listener) {
        return listener;
    }
    struct stat st {};
    if (!parsed->abstract && lstat(parsed->host.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
        (*listener)->path_ = parsed->host;
        (*listener)->dev_ = st.st_dev;
        (*listener)->ino_ = st.st_ino;
    }
    return listener;
}

UnixListener::~UnixListener()
{
    if (!path_.empty()) {
        // Only the file bound here: someone may have replaced it since.
        struct stat st {};
        if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) {
            unlink(path_.c_str());
        }
    }
}

Result<void> UnixListener::watch()
{
    const int flags = fcntl(fd_.get(), F_GETFL);
    if (flags < 0 || fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
        return errnoError(errno, "Failed to make the listening socket non-blocking");
    }
    auto source = loop_.addIo(fd_.borrow(), EPOLLIN, [this](std::uint32_t) { onReadable(); });
    if (!source) {
        return source.error();
    }
    source_ = std::move(*source);
    return {};
}

void UnixListener::onReadable()
{
    for (int i = 0; i < kAcceptBatch; ++i) {
        UniqueFd connection(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (connection) {
            onAccept_(std::move(connection));
            continue;
        }
        const int err = errno;
        if (err == EAGAIN || err == EINTR || err == ECONNABORTED || err == EPROTO) {
            return;
        }
        // Every retry is a line at debug; a warning a few times a time: at
        // the descriptor limit this fails ten times a second for as long as
        // it lasts.
        if (std::string note; failedLog_.allow(note)) {
            spdlog::warn("Failed to accept {}: {}, pausing for {}{}", what_, errnoText(err),
                         formatDuration(kAcceptBackoff), note);
        } else {
            spdlog::debug("Failed to accept {}: {}, pausing for {}", what_, errnoText(err),
                          formatDuration(kAcceptBackoff));
        }
        source_.setEnabled(SD_EVENT_OFF);
        if (auto timer = loop_.startTimer(kAcceptBackoff, [this] {
                source_.setEnabled(SD_EVENT_ON);
                backoff_.reset();
            })) {
            backoff_ = std::move(*timer);
        } else {
            source_.setEnabled(SD_EVENT_ON);
        }
        return;
    }
}

} // namespace fdsup
