// libactivate for C++: owning descriptors and an RAII worker channel over the C API (header-only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>

#include <unistd.h>

#include "activate/activate.h"

namespace activate {

// Owns one descriptor: move-only, closes on destruction. release() hands it
// back to raw code and must not be ignored.
class Fd {
public:
    Fd() noexcept = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd &&other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    Fd &operator=(Fd &&other) noexcept
    {
        reset(std::exchange(other.fd_, -1));
        return *this;
    }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    ~Fd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] bool isValid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return isValid(); }
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept
    {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

// The worker channel (activate.h). Every member returns what the C function
// of the same name returns (0 or -errno) and, like it, never blocks.
class Channel {
public:
    Channel() noexcept = default;
    Channel(Channel &&other) noexcept : ch_(std::exchange(other.ch_, nullptr)) {}
    Channel &operator=(Channel &&other) noexcept
    {
        if (this != &other) {
            activate_channel_close(std::exchange(ch_, std::exchange(other.ch_, nullptr)));
        }
        return *this;
    }
    Channel(const Channel &) = delete;
    Channel &operator=(const Channel &) = delete;
    ~Channel() { activate_channel_close(ch_); }

    // Opens the inherited channel into out (closing what out held).
    static int open(Channel &out, unsigned capabilities) noexcept
    {
        activate_channel *ch = nullptr;
        const int r = activate_channel_open(&ch, capabilities);
        if (r >= 0) {
            out = Channel(ch);
        }
        return r;
    }

    // Connects to a service's activation socket into out (closing what out held).
    static int connect(Channel &out, const char *path, unsigned capabilities) noexcept
    {
        activate_channel *ch = nullptr;
        const int r = activate_channel_connect(&ch, path, capabilities);
        if (r >= 0) {
            out = Channel(ch);
        }
        return r;
    }

    [[nodiscard]] bool isOpen() const noexcept { return ch_ != nullptr; }
    [[nodiscard]] int fd() const noexcept { return activate_channel_fd(ch_); }
    // The descriptors in ev (listeners, adopted connection) become the
    // caller's: wrap them in Fd at once.
    int process(activate_event &ev) noexcept { return activate_channel_process(ch_, &ev); }
    int ready(const char *status = nullptr) noexcept { return activate_channel_ready(ch_, status); }
    int requestListeners() noexcept { return activate_channel_request_listeners(ch_); }
    // On success, close conn: fdsupd holds the connection now.
    int handoff(const Fd &conn, std::uint64_t id, std::span<const std::byte> state) noexcept
    {
        return activate_channel_handoff(ch_, conn.get(), id, state.data(), state.size());
    }
    int handoff(const Fd &conn, std::uint64_t id, std::string_view state) noexcept
    {
        return activate_channel_handoff(ch_, conn.get(), id, state.data(), state.size());
    }
    int done() noexcept { return activate_channel_done(ch_); }
    void close() noexcept { activate_channel_close(std::exchange(ch_, nullptr)); }

private:
    explicit Channel(activate_channel *ch) noexcept : ch_(ch) {}
    activate_channel *ch_ = nullptr;
};

} // namespace activate
