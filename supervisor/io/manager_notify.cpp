// Notifications to fdsupd's own manager (systemd): non-blocking, so a slow manager never stalls the daemon.
#include "io/manager_notify.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>

#include <spdlog/spdlog.h>

#include "common/result.hpp"

namespace fdsup {

ManagerNotifier::ManagerNotifier()
{
    const char *path = std::getenv("NOTIFY_SOCKET");
    if (path == nullptr || (path[0] != '/' && path[0] != '@')) {
        return;
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::size_t len = std::strlen(path);
    if (len >= sizeof addr.sun_path) {
        spdlog::warn("NOTIFY_SOCKET is too long, not notifying the manager");
        return;
    }
    std::memcpy(addr.sun_path, path, len);
    if (path[0] == '@') {
        addr.sun_path[0] = '\0';
    }
    UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    const auto addrLen =
        static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
    if (!fd || connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), addrLen) < 0) {
        spdlog::warn("Failed to connect to NOTIFY_SOCKET {}: {}, not notifying the manager", path,
                     errnoText(errno));
        return;
    }
    fd_ = std::move(fd);
}

int ManagerNotifier::send(std::string_view message)
{
    if (!fd_) {
        return 0;
    }
    if (::send(fd_.get(), message.data(), message.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
        const int err = errno;
        spdlog::debug("Failed to notify the manager ({}): {}", message.substr(0, message.find('\n')),
                      errnoText(err));
        return -err;
    }
    return 0;
}

void ManagerNotifier::status(const std::string &text)
{
    if (text == lastStatus_) {
        return;
    }
    if (send("STATUS=" + text) == 0) {
        lastStatus_ = text;
    }
}

} // namespace fdsup
