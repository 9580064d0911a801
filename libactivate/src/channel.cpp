// libactivate's worker channel: the C ABI over the core channel codec.
#include "core/channel.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "activate/activate.h"

#define ACTIVATE_EXPORT __attribute__((visibility("default")))

using fdsup::ChannelMessage;
using fdsup::ChannelType;
using fdsup::UniqueFd;

struct activate_channel {
    UniqueFd fd;
    unsigned capabilities = 0;
    std::uint32_t seq = 0;
    bool over = false; // an ERROR or REJECT arrived, or was sent
    // Limits: the protocol's own until WELCOME says otherwise.
    std::size_t maxInlineState = fdsup::kChannelMaxInlineState;
    std::uint64_t maxState = fdsup::kChannelMaxMemfdState;
    // What the last event points into, kept until the next process() call.
    ChannelMessage last;
    std::vector<int> listenerFds;
    std::vector<const char *> listenerNames;
    std::vector<std::byte> adoptState;
};

namespace {

constexpr unsigned kKnownCaps = ACTIVATE_CAP_HANDOFF | ACTIVATE_CAP_ADOPT | ACTIVATE_CAP_LISTENERS;
static_assert(ACTIVATE_CAP_HANDOFF == fdsup::kChannelCapHandoff &&
              ACTIVATE_CAP_ADOPT == fdsup::kChannelCapAdopt &&
              ACTIVATE_CAP_LISTENERS == fdsup::kChannelCapListeners &&
              ACTIVATE_INSTANCE_EXTERNAL == fdsup::kChannelExternalInstance);

int parseFd(const char *text)
{
    if (text == nullptr || *text == '\0') {
        return -EINVAL;
    }
    int fd = -1;
    const char *end = text + std::strlen(text);
    const auto [ptr, ec] = std::from_chars(text, end, fd);
    if (ec != std::errc() || ptr != end || fd < 0) {
        return -EINVAL;
    }
    return fd;
}

// Checks the inherited descriptor before the library claims it.
int checkChannelFd(int fd)
{
    const int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) {
        return -errno;
    }
    int value = 0;
    socklen_t len = sizeof(value);
    if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &len) < 0) {
        return -errno;
    }
    if (value != AF_UNIX) {
        return -EPROTOTYPE;
    }
    len = sizeof(value);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) < 0) {
        return -errno;
    }
    if (value != SOCK_SEQPACKET) {
        return -EPROTOTYPE;
    }
    return 0;
}

int makeChannelFd(int fd)
{
    const int fdFlags = ::fcntl(fd, F_GETFD);
    if (fdFlags < 0 || ::fcntl(fd, F_SETFD, fdFlags | FD_CLOEXEC) < 0) {
        return -errno;
    }
    const int flFlags = ::fcntl(fd, F_GETFL);
    if (flFlags < 0 || ::fcntl(fd, F_SETFL, flFlags | O_NONBLOCK) < 0) {
        return -errno;
    }
    return 0;
}

int send(activate_channel *ch, ChannelMessage &msg)
{
    if (ch->over) {
        return -ENOTCONN;
    }
    // The counter only advances for messages that went out, so the peer sees
    // 1, 2, 3... whatever -EAGAIN happened in between.
    msg.seq = ch->seq + 1;
    const int r = fdsup::sendChannelMessage(ch->fd.borrow(), msg);
    if (r == 0) {
        ++ch->seq;
    }
    return r;
}

// Turns a received message into an event. Returns 0 or -EBADMSG for a type
// fdsupd never sends to a worker.
int fillEvent(activate_channel *ch, activate_event *ev)
{
    ChannelMessage &m = ch->last;
    switch (m.type) {
    case ChannelType::Welcome:
        if (m.version != fdsup::kChannelVersion) {
            return -EPROTONOSUPPORT; // not one this library offered
        }
        ch->maxInlineState = std::min<std::size_t>(m.maxInlineState, fdsup::kChannelMaxInlineState);
        ch->maxState = std::min<std::uint64_t>(m.maxMemfdState, fdsup::kChannelMaxMemfdState);
        ev->type = ACTIVATE_EVENT_WELCOME;
        ev->welcome.version = m.version;
        ev->welcome.capabilities = m.capabilities;
        ev->welcome.service = m.service.c_str();
        ev->welcome.instance = m.instance;
        ev->welcome.generation = m.generation;
        ev->welcome.max_inline_state = static_cast<std::uint32_t>(ch->maxInlineState);
        ev->welcome.max_state = ch->maxState;
        return 0;
    case ChannelType::Listeners:
        ch->listenerFds.clear();
        ch->listenerNames.clear();
        for (std::size_t i = 0; i < m.fds.size(); ++i) {
            ch->listenerNames.push_back(m.names[i].c_str());
        }
        // Ownership passes to the caller only once nothing can fail any more.
        for (UniqueFd &fd : m.fds) {
            ch->listenerFds.push_back(fd.release());
        }
        ev->type = ACTIVATE_EVENT_LISTENERS;
        ev->listeners.count = ch->listenerFds.size();
        ev->listeners.fds = ch->listenerFds.data();
        ev->listeners.names = ch->listenerNames.data();
        return 0;
    case ChannelType::Drain:
        ev->type = ACTIVATE_EVENT_DRAIN;
        ev->drain.deadline_usec = m.deadlineUsec;
        return 0;
    case ChannelType::Adopt:
        if ((m.stateFlags & fdsup::kChannelStateMemfd) != 0) {
            if (const int r = fdsup::readStateMemfd(m.fds[1].borrow(), m.stateSize, ch->adoptState); r < 0) {
                return r;
            }
        } else {
            ch->adoptState = std::move(m.state);
        }
        ev->type = ACTIVATE_EVENT_ADOPT;
        ev->adopt.id = m.id;
        ev->adopt.state = ch->adoptState.empty() ? nullptr : ch->adoptState.data();
        ev->adopt.state_size = ch->adoptState.size();
        ev->adopt.fd = m.fds[0].release();
        return 0;
    case ChannelType::HandoffResult:
        ev->type = ACTIVATE_EVENT_HANDOFF_RESULT;
        ev->handoff_result.id = m.id;
        ev->handoff_result.error = static_cast<int>(m.code);
        ev->handoff_result.reason = m.text.c_str();
        return 0;
    case ChannelType::Reject:
    case ChannelType::Error:
        ch->over = true;
        ev->type = ACTIVATE_EVENT_ERROR;
        ev->error.error = static_cast<int>(m.code);
        ev->error.reason = m.text.c_str();
        return 0;
    case ChannelType::Hello:
    case ChannelType::ListenersRequest:
    case ChannelType::Ready:
    case ChannelType::Handoff:
    case ChannelType::Done:
    case ChannelType::Claimed:
        break;
    }
    return -EBADMSG;
}

// Wraps a checked, non-blocking, close-on-exec channel descriptor and queues
// HELLO. On failure the descriptor is not the channel's: the caller keeps it.
int startChannel(activate_channel **out, int fd, unsigned capabilities)
{
    auto *ch = new (std::nothrow) activate_channel;
    if (ch == nullptr) {
        return -ENOMEM;
    }
    ch->fd.reset(fd);
    ch->capabilities = capabilities;
    int r = 0;
    try {
        ChannelMessage hello;
        hello.type = ChannelType::Hello;
        hello.capabilities = capabilities;
        r = send(ch, hello);
    } catch (const std::bad_alloc &) {
        r = -ENOMEM;
    }
    if (r < 0) {
        (void)ch->fd.release();
        delete ch;
        return r;
    }
    *out = ch;
    return 0;
}

} // namespace

extern "C" {

ACTIVATE_EXPORT int activate_channel_open(activate_channel **out, unsigned capabilities)
{
    const char *text = std::getenv(ACTIVATE_CHANNEL_ENV);
    if (text == nullptr) {
        return -ENOENT;
    }
    const int fd = parseFd(text);
    unsetenv(ACTIVATE_CHANNEL_ENV);
    if (out == nullptr || (capabilities & ~kKnownCaps) != 0 || fd < 0) {
        return -EINVAL;
    }
    if (const int r = checkChannelFd(fd); r < 0) {
        return r;
    }
    if (const int r = makeChannelFd(fd); r < 0) {
        return r;
    }
    return startChannel(out, fd, capabilities);
}

ACTIVATE_EXPORT int activate_channel_connect(activate_channel **out, const char *path, unsigned capabilities)
{
    if (out == nullptr || path == nullptr || (capabilities & ~kKnownCaps) != 0) {
        return -EINVAL;
    }
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::size_t len = std::strlen(path);
    if (len == 0 || len >= sizeof(address.sun_path)) {
        return -EINVAL;
    }
    std::memcpy(address.sun_path, path, len);
    socklen_t size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + 1);
    if (path[0] == '@') {
        address.sun_path[0] = '\0'; // abstract: no terminating NUL counted
        size = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
    }
    UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) {
        return -errno;
    }
    // Non-blocking: a full backlog is -EAGAIN, never a wait.
    if (::connect(fd.get(), reinterpret_cast<const sockaddr *>(&address), size) < 0) {
        return -errno;
    }
    const int r = startChannel(out, fd.get(), capabilities);
    if (r == 0) {
        (void)fd.release();
    }
    return r;
}

ACTIVATE_EXPORT int activate_channel_fd(const activate_channel *ch)
{
    return ch == nullptr ? -EINVAL : ch->fd.get();
}

ACTIVATE_EXPORT int activate_channel_process(activate_channel *ch, activate_event *ev)
{
    if (ch == nullptr || ev == nullptr) {
        return -EINVAL;
    }
    if (ch->over) {
        return -ENOTCONN;
    }
    try {
        ChannelMessage msg;
        if (const int r = fdsup::recvChannelMessage(ch->fd.borrow(), msg); r < 0) {
            return r;
        }
        ch->last = std::move(msg);
        *ev = activate_event{};
        return fillEvent(ch, ev);
    } catch (const std::bad_alloc &) {
        return -ENOMEM;
    }
}

ACTIVATE_EXPORT int activate_channel_ready(activate_channel *ch, const char *status)
{
    if (ch == nullptr) {
        return -EINVAL;
    }
    try {
        ChannelMessage msg;
        msg.type = ChannelType::Ready;
        msg.text = status == nullptr ? "" : status;
        const int r = send(ch, msg);
        return r == -EMSGSIZE ? -EINVAL : r;
    } catch (const std::bad_alloc &) {
        return -ENOMEM;
    }
}

ACTIVATE_EXPORT int activate_channel_request_listeners(activate_channel *ch)
{
    if (ch == nullptr) {
        return -EINVAL;
    }
    if ((ch->capabilities & ACTIVATE_CAP_LISTENERS) == 0) {
        return -EOPNOTSUPP;
    }
    try {
        ChannelMessage msg;
        msg.type = ChannelType::ListenersRequest;
        return send(ch, msg);
    } catch (const std::bad_alloc &) {
        return -ENOMEM;
    }
}

ACTIVATE_EXPORT int activate_channel_handoff(activate_channel *ch, int fd, uint64_t id, const void *state,
                                             size_t len)
{
    if (ch == nullptr || fd < 0 || (state == nullptr && len > 0)) {
        return -EINVAL;
    }
    if ((ch->capabilities & ACTIVATE_CAP_HANDOFF) == 0) {
        return -EOPNOTSUPP;
    }
    if (ch->over) {
        return -ENOTCONN;
    }
    if (len > ch->maxState) {
        return -EMSGSIZE;
    }
    try {
        const std::span bytes(static_cast<const std::byte *>(state), len);
        ChannelMessage msg;
        msg.type = ChannelType::Handoff;
        msg.id = id;
        msg.stateSize = len;
        // The message carries a duplicate so that the caller's fd stays the
        // caller's whatever happens; the kernel takes its own reference anyway.
        UniqueFd dup(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
        if (!dup) {
            return -errno;
        }
        msg.fds.push_back(std::move(dup));
        if (len > ch->maxInlineState) {
            UniqueFd memfd;
            if (const int r = fdsup::createStateMemfd(bytes, memfd); r < 0) {
                return r;
            }
            msg.stateFlags = fdsup::kChannelStateMemfd;
            msg.fds.push_back(std::move(memfd));
        } else {
            msg.state.assign(bytes.begin(), bytes.end());
        }
        return send(ch, msg);
    } catch (const std::bad_alloc &) {
        return -ENOMEM;
    }
}

ACTIVATE_EXPORT int activate_channel_done(activate_channel *ch)
{
    if (ch == nullptr) {
        return -EINVAL;
    }
    try {
        ChannelMessage msg;
        msg.type = ChannelType::Done;
        return send(ch, msg);
    } catch (const std::bad_alloc &) {
        return -ENOMEM;
    }
}

ACTIVATE_EXPORT void activate_channel_close(activate_channel *ch)
{
    delete ch;
}

} // extern "C"
