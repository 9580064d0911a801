// A service's descriptor store: fds its workers keep in fdsupd (FDSTORE=1) and get back when they start.
#include "model/fd_store.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace fdsup {

FdStore::FdStore(EventLoop &loop, std::string service) : loop_(loop), service_(std::move(service))
{}

void FdStore::apply(NotifyMessage &message)
{
    const std::string name = message.fdName.empty() ? "stored" : message.fdName;
    if (message.fdStoreRemove) {
        std::erase_if(fds_, [&](const StoredFd &s) { return s.name == name; });
        spdlog::debug("Service '{}' removed '{}' from its descriptor store", service_, name);
    }
    if (!message.fdStore) {
        return;
    }
    for (auto &fd : message.fds) {
        if (fds_.size() >= kMaxFds) {
            if (std::string note; fullLog_.allow(note)) {
                spdlog::warn("Service '{}' descriptor store is full ({} fds), dropping '{}'{}", service_,
                             kMaxFds, name, note);
            }
            break;
        }
        StoredFd stored{name, std::move(fd), EventSource()};
        if (message.fdPoll) {
            const int raw = stored.fd.get();
            // epoll reports EPOLLHUP/EPOLLERR even with no events asked for.
            if (auto s = loop_.addIo(stored.fd.borrow(), 0, [this, raw](std::uint32_t) {
                    std::erase_if(fds_, [raw](const StoredFd &held) { return held.fd.get() == raw; });
                })) {
                stored.poll = std::move(*s);
            }
        }
        fds_.push_back(std::move(stored));
    }
    spdlog::debug("Service '{}' stored '{}' ({} fds held)", service_, name, fds_.size());
}

std::vector<std::pair<std::string, std::size_t>> FdStore::summary() const
{
    std::vector<std::pair<std::string, std::size_t>> names;
    for (const auto &stored : fds_) {
        auto it =
            std::find_if(names.begin(), names.end(), [&](const auto &e) { return e.first == stored.name; });
        if (it == names.end()) {
            names.emplace_back(stored.name, 1);
        } else {
            ++it->second;
        }
    }
    return names;
}

} // namespace fdsup
