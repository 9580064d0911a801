// The sd_notify protocol, served by fdsupd: parsing datagrams and the receiving socket.
#include "io/notify.hpp"

#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstring>
#include <exception>
#include <limits>
#include <span>
#include <utility>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "core/scm.hpp"
#include "core/utf8.hpp"

namespace fdsup {
namespace {

// systemd's NOTIFY_RCVBUF_SIZE. Datagram queues on AF_UNIX are bounded by
// net.unix.max_dgram_qlen and the senders' SO_SNDBUF rather than by this,
// but a large receive buffer costs nothing until used and is what systemd
// sets, so fdsupd never drops what systemd would have kept.
constexpr int kReceiveBuffer = 8 * 1024 * 1024;

// Untrusted text in log and error messages: printable ASCII as is, every
// other byte escaped, cut short so one datagram cannot flood a log line.
std::string printable(std::string_view text)
{
    constexpr std::size_t kMax = 64;
    std::string out;
    for (std::size_t i = 0; i < text.size() && i < kMax; ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            out += static_cast<char>(c);
        } else {
            static constexpr char kHex[] = "0123456789abcdef";
            out += "\\x";
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
        }
    }
    if (text.size() > kMax) {
        out += "...";
    }
    return out;
}

Error invalid(std::string_view line, const std::string &why)
{
    return Error{EINVAL, "Invalid notify assignment '" + printable(line) + "': " + why};
}

// Digits only: no sign, no blanks, no "0x". sd_notify() senders format
// numbers with printf("%" PRIu64), so anything else is a broken sender.
template <typename T>
bool parseDecimal(std::string_view text, T max, T &out)
{
    if (text.empty()) {
        return false;
    }
    for (const char c : text) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    T value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value > max) {
        return false;
    }
    out = value;
    return true;
}

// A flag assignment: only the one value systemd acts on sets it; others
// ("READY=0") are not errors, just not ours to act on.
bool setFlag(std::string_view value, std::string_view expected, bool &flag)
{
    if (value != expected) {
        return false;
    }
    flag = true;
    return true;
}

} // namespace

bool validFdName(std::string_view name)
{
    if (name.empty() || name.size() > 255) {
        return false;
    }
    for (const char c : name) {
        if (c < 0x20 || c >= 0x7F || c == ':') {
            return false;
        }
    }
    return true;
}

Result<NotifyMessage> parseNotify(std::string_view text)
{
    if (text.find('\0') != std::string_view::npos) {
        return Error{EINVAL, "Invalid notify message: contains a NUL byte"};
    }
    NotifyMessage message;
    std::optional<std::string_view> fdName;
    bool fdPollSeen = false;
    std::size_t assignments = 0;

    while (!text.empty()) {
        const auto newline = text.find('\n');
        const std::string_view line = text.substr(0, newline);
        text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
        if (line.empty()) {
            continue;
        }
        ++assignments;
        const auto equals = line.find('=');
        if (equals == std::string_view::npos || equals == 0) {
            return invalid(line, "not KEY=VALUE");
        }
        const std::string_view key = line.substr(0, equals);
        const std::string_view value = line.substr(equals + 1);

        bool known = false;
        if (key == "READY") {
            known = setFlag(value, "1", message.ready);
        } else if (key == "RELOADING") {
            known = setFlag(value, "1", message.reloading);
        } else if (key == "STOPPING") {
            known = setFlag(value, "1", message.stopping);
        } else if (key == "WATCHDOG") {
            known =
                setFlag(value, "1", message.watchdog) || setFlag(value, "trigger", message.watchdogTrigger);
        } else if (key == "FDSTORE") {
            known = setFlag(value, "1", message.fdStore);
        } else if (key == "FDSTOREREMOVE") {
            known = setFlag(value, "1", message.fdStoreRemove);
        } else if (key == "BARRIER") {
            known = setFlag(value, "1", message.barrier);
        } else if (key == "FDPOLL") {
            if (value == "0" || value == "1") {
                known = true;
                // First value counts, like every other repeated key.
                if (!std::exchange(fdPollSeen, true)) {
                    message.fdPoll = value == "1";
                }
            }
        } else if (key == "WATCHDOG_USEC" || key == "EXTEND_TIMEOUT_USEC") {
            std::uint64_t usec = 0;
            if (!parseDecimal(value, std::numeric_limits<std::uint64_t>::max(), usec)) {
                return invalid(line, "not a decimal number of microseconds (0-18446744073709551615)");
            }
            auto &field = key == "WATCHDOG_USEC" ? message.watchdogUsec : message.extendTimeoutUsec;
            if (!field) {
                field = usec;
            }
            known = true;
        } else if (key == "ERRNO") {
            int number = 0;
            if (!parseDecimal(value, std::numeric_limits<int>::max(), number)) {
                return invalid(line, "not a non-negative decimal errno");
            }
            if (!message.errnoValue) {
                message.errnoValue = number;
            }
            known = true;
        } else if (key == "MAINPID") {
            pid_t pid = 0;
            if (!parseDecimal(value, std::numeric_limits<pid_t>::max(), pid) || pid == 0) {
                return invalid(line, "not a pid (a positive decimal number)");
            }
            if (!message.mainPid) {
                message.mainPid = pid;
            }
            known = true;
        } else if (key == "STATUS") {
            // STATUS= ends up in JSON on the control API, which must stay valid.
            if (!validUtf8(value)) {
                return invalid(line, "not UTF-8");
            }
            if (!message.status) {
                message.status = std::string(value);
            }
            known = true;
        } else if (key == "FDNAME") {
            if (!validFdName(value)) {
                return invalid(line, "a name is 1-255 printable ASCII characters without ':' (it separates "
                                     "LISTEN_FDNAMES)");
            }
            if (!fdName) {
                fdName = value;
            }
            known = true;
        }
        if (!known) {
            message.unknown.emplace_back(line);
        }
    }

    if (message.fdStoreRemove && !fdName) {
        return Error{EINVAL, "Invalid notify message: FDSTOREREMOVE=1 needs FDNAME= to say what to remove"};
    }
    if (message.barrier && assignments != 1) {
        // systemd ignores such a datagram entirely; so do we, loudly.
        return Error{EINVAL, "Invalid notify message: BARRIER=1 must be alone in its datagram"};
    }
    message.fdName = fdName ? std::string(*fdName) : std::string("stored");
    return message;
}

Result<std::unique_ptr<NotifyServer>> NotifyServer::create(EventLoop &loop, const std::string &name,
                                                           Handler handler)
{
    assert(handler);
    sockaddr_un address{};
    // sun_path[0] is the abstract namespace's NUL; the name follows, unterminated.
    if (name.empty() || name.size() > sizeof(address.sun_path) - 1 || name.find('\0') != std::string::npos) {
        return Error{EINVAL, "Invalid notify socket name '@" + printable(name) + "': must be 1-" +
                                 std::to_string(sizeof(address.sun_path) - 1) + " bytes without NUL"};
    }
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path + 1, name.data(), name.size());
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());

    std::unique_ptr<NotifyServer> server(new NotifyServer());
    server->path_ = "@" + name;
    server->fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!server->fd_) {
        return errnoError(errno, "Failed to create notify socket " + server->path_);
    }
    // Before bind: a datagram that arrives between bind() and setsockopt()
    // would otherwise come without credentials and be dropped.
    const int one = 1;
    if (::setsockopt(server->fd_.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
        return errnoError(errno, "Failed to set SO_PASSCRED on notify socket " + server->path_);
    }
    // FORCE needs CAP_NET_ADMIN; without it the kernel caps SO_RCVBUF at
    // net.core.rmem_max, which is still the best we can get. Best effort.
    const int fd = server->fd_.get();
    if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &kReceiveBuffer, sizeof(kReceiveBuffer)) < 0) {
        (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof(kReceiveBuffer));
    }
    if (::bind(server->fd_.get(), reinterpret_cast<const sockaddr *>(&address), length) < 0) {
        return errnoError(errno, "Failed to bind notify socket " + server->path_);
    }
    return serve(loop, std::move(server), std::move(handler));
}

Result<std::unique_ptr<NotifyServer>>
NotifyServer::serve(EventLoop &loop, std::unique_ptr<NotifyServer> server, Handler handler)
{
    server->handler_ = std::make_shared<Handler>(std::move(handler));
    NotifyServer *self = server.get();
    auto source = loop.addIo(server->fd_.borrow(), EPOLLIN, [self](std::uint32_t) { self->onReadable(); });
    if (!source) {
        return source.error();
    }
    server->source_ = std::move(source).value();
    return server;
}

Result<std::unique_ptr<NotifyServer>> NotifyServer::adopt(EventLoop &loop, UniqueFd fd, Handler handler)
{
    assert(handler);
    sockaddr_un address{};
    socklen_t length = sizeof(address);
    int type = 0;
    socklen_t typeLength = sizeof(type);
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr *>(&address), &length) < 0 ||
        ::getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &typeLength) < 0) {
        return errnoError(errno, "Failed to inspect the notify socket fd " + std::to_string(fd.get()));
    }
    const auto offset = offsetof(sockaddr_un, sun_path);
    if (address.sun_family != AF_UNIX || type != SOCK_DGRAM || length <= offset + 1 ||
        address.sun_path[0] != '\0') {
        return Error{EINVAL, "fd " + std::to_string(fd.get()) + " is not an abstract datagram notify socket"};
    }
    std::unique_ptr<NotifyServer> server(new NotifyServer());
    server->path_ = "@" + std::string(address.sun_path + 1, length - offset - 1);
    server->fd_ = std::move(fd);
    return serve(loop, std::move(server), std::move(handler));
}

void NotifyServer::drop(pid_t pid, const std::string &why)
{
    ++dropped_;
    // A worker can send as many bad datagrams as it likes: warn, but a few a time.
    if (std::string note; dropLog_.allow(note)) {
        spdlog::warn("Dropped notify datagram on {} from pid {}: {}{}", path_, pid, why, note);
    }
}

void NotifyServer::onReadable()
{
    const std::weak_ptr<int> alive = lifetime_;
    for (std::size_t i = 0; i < kNotifyMaxPerWakeup; ++i) {
        const int r = receiveOne(alive);
        if (alive.expired()) {
            return; // the handler destroyed us
        }
        if (r == 0) {
            return;
        }
        if (r < 0) {
            // Not expected on a bound datagram socket; the level-triggered
            // source calls again if it persists, so one line per wake-up.
            spdlog::warn("Failed to receive on notify socket {}: {}, ignoring", path_, errnoText(r));
            return;
        }
    }
}

int NotifyServer::receiveOne(const std::weak_ptr<int> &alive)
{
    // Declared first: every path below closes the fds that arrived.
    std::vector<UniqueFd> fds;
    std::array<char, kNotifyMaxDatagram> buffer{};
    DatagramInfo info;
    ssize_t n = 0;
    // Room for kNotifyMaxFds fds, like systemd, so a sender within the
    // protocol's limits never sees MSG_CTRUNC. MSG_TRUNC: n is the full size.
    do {
        n = recvWithFds(fd_.borrow(), MSG_DONTWAIT | MSG_TRUNC, std::as_writable_bytes(std::span(buffer)),
                        kNotifyMaxFds, fds, info);
    } while (n == -EINTR);
    if (n < 0) {
        return n == -EAGAIN ? 0 : static_cast<int>(n);
    }
    const pid_t pid = info.credentials ? info.credentials->pid : 0;

    if (info.truncated) {
        drop(pid, "larger than " + std::to_string(kNotifyMaxDatagram) + " bytes (" + std::to_string(n) + ")");
        return 1;
    }
    if (info.controlTruncated) {
        drop(pid, "control data truncated (more than " + std::to_string(kNotifyMaxFds) +
                      " fds, or RLIMIT_NOFILE reached)");
        return 1;
    }
    if (info.unexpectedControl) {
        drop(pid, "unexpected control message");
        return 1;
    }
    // The kernel attaches credentials to every datagram once SO_PASSCRED is
    // on; pid 0 means the sender is in a pid namespace we cannot see, so we
    // cannot tell which instance sent it.
    if (!info.credentials || pid <= 0) {
        drop(pid, "no sender credentials");
        return 1;
    }
    if (n == 0) {
        drop(pid, "an empty datagram");
        return 1;
    }

    auto parsed = parseNotify(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
    if (!parsed) {
        drop(pid, parsed.error().message);
        return 1;
    }
    NotifyMessage message = std::move(parsed).value();
    message.pid = info.credentials->pid;
    message.uid = info.credentials->uid;
    message.gid = info.credentials->gid;

    if (message.barrier) {
        // sd_notify_barrier() waits for its fd to be closed: everything the
        // sender sent before has been handled by now, datagrams being read in
        // order. Closing it (fds going out of scope) is the whole answer.
        return 1;
    }
    if (message.fdStore) {
        message.fds = std::move(fds);
    } else if (!fds.empty()) {
        if (std::string note; strayFdsLog_.allow(note)) {
            spdlog::debug("Closing {} fds sent without FDSTORE=1 on {} by pid {}{}", fds.size(), path_, pid,
                          note);
        }
        fds.clear();
    }

    // Keep the handler alive even if it destroys this server.
    const auto handler = handler_;
    try {
        (*handler)(std::move(message));
    } catch (const std::exception &e) {
        if (!alive.expired()) {
            ++dropped_;
        }
        spdlog::error("Notify handler failed for pid {}: {}, ignoring", pid, e.what());
    }
    return 1;
}

} // namespace fdsup
