// Notifications to fdsupd's own manager (systemd): non-blocking, so a slow manager never stalls the daemon.
#include "io/manager_notify.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iterator>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/epoll.h>
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

int ManagerNotifier::sendNow(const Message &message, std::span<const BorrowedFd> fds)
{
    return fds.empty() ? send(message.text) : send(message.text, fds);
}

int ManagerNotifier::sendNow(const Message &message)
{
    std::vector<BorrowedFd> fds;
    fds.reserve(message.fds.size());
    for (const auto &fd : message.fds) {
        fds.push_back(fd.borrow());
    }
    return sendNow(message, fds);
}

void ManagerNotifier::sent(const Message &message)
{
    if (!message.storedName.empty()) {
        stored_.insert(message.storedName);
    }
    if (!message.status.empty()) {
        lastStatus_ = message.status;
    }
}

int ManagerNotifier::deliver(Message message, std::span<const BorrowedFd> fds)
{
    if (!fd_) {
        return 0;
    }
    if (outbox_.empty()) {
        const int r = sendNow(message, fds);
        if (r == 0) {
            sent(message);
        }
        if (r != -EAGAIN || loop_ == nullptr) {
            return r;
        }
    }
    if (!message.storedName.empty() && outbox_.size() >= kMaxPending) {
        return -ENOBUFS;
    }
    // The caller keeps its descriptors: the outbox sends copies.
    for (const auto &fd : fds) {
        UniqueFd copy(fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
        if (!copy) {
            return -errno;
        }
        message.fds.push_back(std::move(copy));
    }
    outbox_.push_back(std::move(message));
    if (const int r = armWritable(); r < 0) {
        outbox_.pop_back();
        return r;
    }
    if (!outbox_.back().storedName.empty()) {
        waitingStores_[outbox_.back().storedName] = std::prev(outbox_.end());
    }
    return 0;
}

int ManagerNotifier::armWritable()
{
    if (writable_) {
        return 0;
    }
    auto source = loop_->addIo(fd_.borrow(), EPOLLOUT, [this](std::uint32_t) { flush(); });
    if (!source) {
        spdlog::warn("Cannot wait for room in the manager's notify queue: {}", source.error().message);
        return -source.error().code;
    }
    writable_ = std::move(*source);
    spdlog::debug("The manager's notify queue is full: messages wait in order until it has room");
    return 0;
}

void ManagerNotifier::flush()
{
    while (!outbox_.empty()) {
        const int r = sendNow(outbox_.front());
        if (r == -EAGAIN) {
            return; // still full: EPOLLOUT again when there is room
        }
        if (!outbox_.front().storedName.empty()) {
            waitingStores_.erase(outbox_.front().storedName);
        }
        if (r == 0) {
            sent(outbox_.front());
        } else {
            spdlog::warn("Failed to notify the manager ({}): {}",
                         outbox_.front().text.substr(0, outbox_.front().text.find('\n')), errnoText(-r));
        }
        outbox_.pop_front();
    }
    if (!pendingStatus_.empty()) {
        const std::string text = pendingStatus_;
        if (text != lastStatus_ && send("STATUS=" + text) == -EAGAIN) {
            return;
        }
        pendingStatus_.clear();
        lastStatus_ = text;
    }
    writable_.reset();
}

int ManagerNotifier::ready(const std::string &status)
{
    return deliver({"READY=1\nMAINPID=" + std::to_string(getpid()) + "\nSTATUS=" + status, {}, {}, status});
}

int ManagerNotifier::reloading()
{
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const auto usec =
        static_cast<std::uint64_t>(now.tv_sec) * 1000000U + static_cast<std::uint64_t>(now.tv_nsec) / 1000U;
    return deliver(
        {"RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=reloading", {}, {}, "reloading"});
}

int ManagerNotifier::stopping(const std::string &status)
{
    return deliver({"STOPPING=1\nSTATUS=" + status, {}, {}, status});
}

int ManagerNotifier::store(std::string_view name, std::span<const BorrowedFd> fds)
{
    return deliver({"FDSTORE=1\nFDPOLL=0\nFDNAME=" + std::string(name), {}, std::string(name), {}}, fds);
}

int ManagerNotifier::removeStored(std::string_view name)
{
    const auto waiting =
        std::find_if(outbox_.begin(), outbox_.end(), [&](const Message &m) { return m.storedName == name; });
    if (waiting != outbox_.end()) {
        outbox_.erase(waiting);
        if (!stored_.contains(std::string(name))) {
            return 0; // never reached the manager: nothing to remove
        }
    }
    stored_.erase(std::string(name));
    return deliver({"FDSTOREREMOVE=1\nFDNAME=" + std::string(name), {}, {}, {}});
}

void ManagerNotifier::status(const std::string &text)
{
    if (!outbox_.empty()) {
        pendingStatus_ = text; // after what waits, the latest line only
        return;
    }
    if (text == lastStatus_) {
        return;
    }
    if (const int r = send("STATUS=" + text); r == 0) {
        lastStatus_ = text;
        pendingStatus_.clear();
    } else if (r == -EAGAIN && loop_ != nullptr) {
        pendingStatus_ = text;
        (void)armWritable();
    }
}

} // namespace fdsup
