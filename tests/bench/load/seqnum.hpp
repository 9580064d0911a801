// SeqnumStream: the client side of seqnum-echo's protocol (4-byte big-endian numbers, echoed).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace fdsup::load {

// One stream: sends n, expects the same 4 bytes back, then n + 1. A stream
// starts at 0; any byte lost, repeated or reordered shows as a wrong echo.
class SeqnumStream {
public:
    enum class Progress { NeedMore, Complete, Error };

    // The 4 bytes of the number to send now.
    [[nodiscard]] std::string_view request() const;
    // Feeds bytes of the echo; consumed counts those that belong to it.
    // Complete when the 4 bytes are the number sent (the stream moves on to
    // the next number), Error when they are not.
    Progress feed(std::string_view data, size_t &consumed);
    [[nodiscard]] bool started() const { return received_ > 0; }
    [[nodiscard]] uint32_t next() const { return next_; }

private:
    void encode();

    uint32_t next_ = 0;
    std::array<char, 4> sent_{'\0', '\0', '\0', '\0'}; // next_, big-endian
    std::array<char, 4> echo_{};
    size_t received_ = 0;
};

} // namespace fdsup::load
