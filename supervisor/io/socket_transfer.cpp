// Sockets that move between fdsupds: a `receive = true` socket taking its fds, and a socket let go.
#include <algorithm>
#include <cerrno>
#include <cstring>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/address.hpp"
#include "io/sockets.hpp"

namespace fdsup {
namespace {

// Whether the bound address `local` is one that `want` names: the same IP
// (any, for a host name) and port (any, for port 0); the same unix path or
// abstract name.
bool sameAddress(const Address &want, const sockaddr_storage &local, socklen_t length)
{
    const auto *sa = reinterpret_cast<const sockaddr *>(&local);
    if (want.isUnix()) {
        if (sa->sa_family != AF_UNIX) {
            return false;
        }
        const auto *un = reinterpret_cast<const sockaddr_un *>(&local);
        const std::size_t size =
            std::min<std::size_t>(length - offsetof(sockaddr_un, sun_path), sizeof un->sun_path);
        const std::string_view path(un->sun_path, size);
        if (want.abstract) {
            return path.starts_with('\0') && path.substr(1) == want.host;
        }
        return path.substr(0, path.find('\0')) == want.host;
    }
    std::uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        port = ntohs(reinterpret_cast<const sockaddr_in *>(&local)->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        port = ntohs(reinterpret_cast<const sockaddr_in6 *>(&local)->sin6_port);
    }
    if (want.port != 0 && want.port != port) {
        return false;
    }
    if (!want.isNumericHost()) {
        return true;
    }
    auto resolved = resolveAddress(want);
    if (!resolved) {
        return false;
    }
    return std::any_of(resolved->begin(), resolved->end(), [&](const SocketAddress &candidate) {
        if (candidate.family != sa->sa_family) {
            return false;
        }
        if (sa->sa_family == AF_INET) {
            return reinterpret_cast<const sockaddr_in *>(&candidate.storage)->sin_addr.s_addr ==
                   reinterpret_cast<const sockaddr_in *>(&local)->sin_addr.s_addr;
        }
        return std::memcmp(&reinterpret_cast<const sockaddr_in6 *>(&candidate.storage)->sin6_addr,
                           &reinterpret_cast<const sockaddr_in6 *>(&local)->sin6_addr, sizeof(in6_addr)) == 0;
    });
}

Result<std::string> checkReceived(const config::SocketConfig &socket, BorrowedFd fd)
{
    auto address = checkInherited(socket, fd, "received");
    if (!address) {
        return address;
    }
    sockaddr_storage local{};
    socklen_t length = sizeof local;
    if (getsockname(fd.get(), reinterpret_cast<sockaddr *>(&local), &length) < 0) {
        return errnoError(errno, "received descriptor for socket '" + socket.name + "': getsockname");
    }
    const bool listed = std::any_of(socket.listen.begin(), socket.listen.end(),
                                    [&](const Address &want) { return sameAddress(want, local, length); });
    if (!listed) {
        std::vector<std::string> wanted;
        for (const auto &want : socket.listen) {
            wanted.push_back(formatAddress(want));
        }
        return Error{EADDRNOTAVAIL, fmt::format("received descriptor for socket '{}' is bound to {}, not to "
                                                "its listen address ({})",
                                                socket.name, *address, fmt::join(wanted, ", "))};
    }
    return address;
}

} // namespace

Result<std::vector<std::string>> checkBoundAsConfigured(const config::SocketConfig &socket,
                                                        const std::vector<UniqueFd> &fds,
                                                        std::string_view how)
{
    std::vector<std::string> addresses;
    std::vector<bool> covered(socket.listen.size(), false);
    for (const auto &fd : fds) {
        auto address = checkInherited(socket, fd.borrow(), how);
        if (!address) {
            return address.error();
        }
        sockaddr_storage local{};
        socklen_t length = sizeof local;
        if (getsockname(fd.get(), reinterpret_cast<sockaddr *>(&local), &length) < 0) {
            return errnoError(errno,
                              fmt::format("{} descriptor for socket '{}': getsockname", how, socket.name));
        }
        bool listed = false;
        for (std::size_t i = 0; i < socket.listen.size(); ++i) {
            if (sameAddress(socket.listen[i], local, length)) {
                covered[i] = true;
                listed = true;
            }
        }
        if (!listed) {
            std::vector<std::string> wanted;
            for (const auto &want : socket.listen) {
                wanted.push_back(formatAddress(want));
            }
            return Error{EADDRNOTAVAIL,
                         fmt::format("{} descriptor for socket '{}' is bound to {}, not to its "
                                     "listen address ({})",
                                     how, socket.name, *address, fmt::join(wanted, ", "))};
        }
        addresses.push_back(*address);
    }
    for (std::size_t i = 0; i < socket.listen.size(); ++i) {
        if (!covered[i]) {
            return Error{EADDRNOTAVAIL, fmt::format("no {} descriptor for socket '{}' is bound to {}", how,
                                                    socket.name, formatAddress(socket.listen[i]))};
        }
    }
    return addresses;
}

Result<void> SocketSet::receive(std::string_view name, std::vector<UniqueFd> fds)
{
    HeldSocket *held = find(name);
    if (held == nullptr) {
        return Error{ENOENT, fmt::format("no socket '{}' here", name)};
    }
    if (!held->config.receive) {
        return Error{EPERM, fmt::format("socket '{}' is not declared with receive = true", name)};
    }
    if (!held->fds.empty()) {
        return Error{EEXIST,
                     fmt::format("socket '{}' is already held ({})", name, fmt::join(held->addresses, ", "))};
    }
    if (fds.empty()) {
        return Error{EINVAL, fmt::format("no descriptor for socket '{}'", name)};
    }
    std::vector<std::string> addresses;
    for (const auto &fd : fds) {
        auto address = checkReceived(held->config, fd.borrow());
        if (!address) {
            return address.error();
        }
        addresses.push_back(*address);
    }
    held->fds = std::move(fds);
    held->addresses = std::move(addresses);
    held->adopted = true;
    spdlog::info("Received socket '{}' ({} descriptor{}: {})", name, held->fds.size(),
                 held->fds.size() == 1 ? "" : "s", fmt::join(held->addresses, ", "));
    return {};
}

std::size_t SocketSet::release(std::string_view name)
{
    HeldSocket *held = find(name);
    if (held == nullptr) {
        return 0;
    }
    const std::size_t closed = held->fds.size();
    held->fds.clear();
    // Its unix socket file, if any, belongs to the fdsupd that holds it now.
    held->adopted = true;
    spdlog::info("Released socket '{}' ({} descriptor{}): another fdsupd holds it now", name, closed,
                 closed == 1 ? "" : "s");
    return closed;
}

} // namespace fdsup
