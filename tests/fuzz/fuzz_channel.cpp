// Fuzz target: the worker channel decoder (a worker's datagram, untrusted).
// The first byte chooses how many fds the datagram claims to carry.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "core/channel.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    if (size == 0) {
        return 0;
    }
    const std::size_t fdCount = data[0] % 4;
    const std::span<const std::byte> datagram(reinterpret_cast<const std::byte *>(data + 1), size - 1);
    fdsup::ChannelMessage message;
    const int r = fdsup::decodeChannelMessage(datagram, fdCount, message);
    if (r > 0) {
        std::abort(); // 0 or -errno only
    }
    if (r == 0) {
        // What decodes must encode again, to the same bytes, with the same fd count.
        if (fdsup::channelFdCount(message) != fdCount) {
            std::abort();
        }
        std::vector<std::byte> again;
        for (std::size_t i = 0; i < fdCount; ++i) {
            message.fds.emplace_back(); // counted only
        }
        if (fdsup::encodeChannelMessage(message, again) != 0 ||
            !std::equal(again.begin(), again.end(), datagram.begin(), datagram.end())) {
            std::abort();
        }
    }
    return 0;
}
