// Channel peers refused before their HELLO was read: told why, and kept until they read it.
#include "io/channel_rejections.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include <sys/epoll.h>
#include <sys/socket.h>

#include "core/channel.hpp"

namespace fdsup {
namespace {

// How many of a refused peer's messages are read (and their fds closed) before closing.
constexpr int kReadsBeforeClosing = 4;

} // namespace

void ChannelRejections::reject(UniqueFd fd, int code, const std::string &why)
{
    // REJECT before HELLO was read: libactivate reports it as an ERROR event
    // whatever the peer sent (docs/worker-channel.md).
    ChannelMessage reject;
    reject.type = ChannelType::Reject;
    reject.seq = 1;
    reject.code = static_cast<std::uint32_t>(code);
    reject.text = why.substr(0, kChannelMaxText);
    if (sendChannelMessage(fd.borrow(), reject) < 0) {
        return;
    }
    (void)shutdown(fd.get(), SHUT_WR);
    if (entries_.size() >= kMax) {
        entries_.erase(entries_.begin());
    }
    auto entry = std::make_unique<Entry>();
    const void *key = entry.get();
    auto io = loop_.addIo(fd.borrow(), EPOLLIN | EPOLLRDHUP, [this, key](std::uint32_t) { drop(key); });
    if (!io) {
        return;
    }
    entry->fd = std::move(fd);
    entry->io = std::move(*io);
    entries_.push_back(std::move(entry));
}

void ChannelRejections::drop(const void *key)
{
    const auto it = std::find_if(entries_.begin(), entries_.end(),
                                 [key](const auto &entry) { return entry.get() == key; });
    if (it == entries_.end()) {
        return;
    }
    for (int i = 0; i < kReadsBeforeClosing; ++i) {
        ChannelMessage discarded;
        const int r = recvChannelMessage((*it)->fd.borrow(), discarded);
        if (r == -EAGAIN || r == -ECONNRESET) {
            break;
        }
    }
    entries_.erase(it); // destroys the source that called us: allowed
}

} // namespace fdsup
