// Notifications to fdsupd's own manager (systemd): non-blocking, so a slow manager never stalls the daemon.
#include "io/manager_notify.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/result.hpp"
#include "core/scm.hpp"

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

int ManagerNotifier::send(std::string_view message, std::span<const BorrowedFd> fds)
{
    if (!fd_) {
        return 0;
    }
    const int r = sendDatagram(fd_.borrow(), std::as_bytes(std::span(message.data(), message.size())), fds,
                               MSG_DONTWAIT);
    if (r < 0) {
        spdlog::debug("Failed to notify the manager ({}): {}", message.substr(0, message.find('\n')),
                      errnoText(-r));
    }
    return r;
}

int ManagerNotifier::ready(const std::string &status)
{
    const int r = send("READY=1\nMAINPID=" + std::to_string(getpid()) + "\nSTATUS=" + status);
    if (r == 0) {
        lastStatus_ = status;
    }
    return r;
}

int ManagerNotifier::reloading()
{
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const auto usec =
        static_cast<std::uint64_t>(now.tv_sec) * 1000000U + static_cast<std::uint64_t>(now.tv_nsec) / 1000U;
    const int r = send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=reloading");
    if (r == 0) {
        lastStatus_ = "reloading";
    }
    return r;
}

int ManagerNotifier::stopping(const std::string &status)
{
    const int r = send("STOPPING=1\nSTATUS=" + status);
    if (r == 0) {
        lastStatus_ = status;
    }
    return r;
}

int ManagerNotifier::store(std::string_view name, std::span<const BorrowedFd> fds)
{
    return send("FDSTORE=1\nFDPOLL=0\nFDNAME=" + std::string(name), fds);
}

int ManagerNotifier::removeStored(std::string_view name)
{
    return send("FDSTOREREMOVE=1\nFDNAME=" + std::string(name));
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
