// Fuzz target: the control socket's Varlink framing and message codec (a control client's bytes, untrusted).
// The first byte chooses the size of the reads the stream arrives in; the rest is the stream.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "control/varlink.hpp"
#include "fuzz.hpp"

namespace {

// Small enough that the fuzzer reaches it, as the daemon's
// control_request_size is reached by a client.
constexpr std::size_t kMaxMessage = 4096;

// What decodes must encode to a message that decodes to the same call.
void checkCall(std::string_view message)
{
    const auto call = fdsup::varlink::decodeCall(message);
    if (!call) {
        if (call.error().code != EINVAL || call.error().message.empty()) {
            std::abort(); // every refusal is EINVAL and says why
        }
        return;
    }
    if (fdsup::varlink::interfaceOf(call->method).empty() || (call->more && call->oneway) ||
        !call->parameters.is_object()) {
        std::abort();
    }
    std::string again = fdsup::varlink::encodeCall(*call);
    if (again.empty() || again.back() != '\0') {
        std::abort();
    }
    again.pop_back();
    const auto twice = fdsup::varlink::decodeCall(again);
    if (!twice || twice->method != call->method || twice->parameters != call->parameters ||
        twice->more != call->more || twice->oneway != call->oneway) {
        std::abort();
    }
}

void checkReply(std::string_view message)
{
    const auto reply = fdsup::varlink::decodeReply(message);
    if (!reply) {
        if (reply.error().message.empty()) {
            std::abort();
        }
        return;
    }
    std::string again = fdsup::varlink::encodeReply(*reply);
    again.pop_back();
    const auto twice = fdsup::varlink::decodeReply(again);
    // An error reply drops `continues` (an error ends the call).
    if (!twice || twice->parameters != reply->parameters || twice->error != reply->error ||
        twice->continues != (reply->continues && reply->error.empty())) {
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    if (size == 0) {
        return 0;
    }
    const std::size_t chunk = 1 + data[0] % 64;
    const std::string_view stream(reinterpret_cast<const char *>(data + 1), size - 1);
    fdsup::varlink::FrameReader reader(kMaxMessage);
    // The reference framing: split at every NUL; the reader must return the
    // same messages, in order, whatever the reads were.
    std::size_t expectedStart = 0;
    bool tooLarge = false;
    std::string message;
    for (std::size_t offset = 0; offset < stream.size() && !tooLarge; offset += chunk) {
        reader.append(stream.substr(offset, chunk));
        int r = 0;
        while ((r = reader.next(message)) == 1) {
            const std::size_t nul = stream.find('\0', expectedStart);
            if (nul == std::string_view::npos ||
                message != stream.substr(expectedStart, nul - expectedStart) ||
                message.size() > kMaxMessage) {
                std::abort();
            }
            expectedStart = nul + 1;
            checkCall(message);
            checkReply(message);
        }
        if (r == -EMSGSIZE) {
            // Only when the message being read really is over the limit.
            const std::size_t nul = stream.find('\0', expectedStart);
            const std::size_t length = (nul == std::string_view::npos ? stream.size() : nul) - expectedStart;
            if (length <= kMaxMessage || reader.next(message) != -EMSGSIZE) {
                std::abort();
            }
            tooLarge = true;
        } else if (r != 0) {
            std::abort();
        }
    }
    if (!tooLarge && reader.pending() != stream.size() - std::min(expectedStart, stream.size())) {
        std::abort(); // the bytes after the last NUL are kept, no more
    }
    return 0;
}
