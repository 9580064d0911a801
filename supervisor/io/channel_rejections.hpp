// Channel peers refused before their HELLO was read: told why, and kept until they read it.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/fd.hpp"
#include "io/event_loop.hpp"

namespace fdsup {

// Shared by the sockets that admit channel peers by credentials (the
// activation socket, the preload socket). reject() sends REJECT{code, why}.
// A peer sends HELLO right after connecting; closed before that, its send
// would fail with EPIPE and it would never read why. So the socket is kept,
// write side shut, until anything (or a hang-up) arrives; what it sent is
// read (its fds closed) before closing, so that it sees its REJECT rather
// than ECONNRESET first. A peer that never sends is closed once kMax newer
// ones are waiting: no timer, no unbounded list.
class ChannelRejections {
public:
    static constexpr std::size_t kMax = 64;

    explicit ChannelRejections(EventLoop &loop) : loop_(loop) {}
    ChannelRejections(const ChannelRejections &) = delete;
    ChannelRejections &operator=(const ChannelRejections &) = delete;

    void reject(UniqueFd fd, int code, const std::string &why);
    [[nodiscard]] std::size_t waiting() const { return entries_.size(); }

private:
    struct Entry {
        UniqueFd fd;
        EventSource io;
    };
    void drop(const void *key);

    EventLoop &loop_;
    std::vector<std::unique_ptr<Entry>> entries_;
};

} // namespace fdsup
