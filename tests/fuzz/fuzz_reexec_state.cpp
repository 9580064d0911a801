// Fuzz target: the re-exec state decoder. The state is fdsupd's own sealed memfd, but a corrupted or
// foreign one (another version, a truncated write) must be refused with the field named, never crash.
// What decodes must encode again to a state that decodes equal, and name each descriptor once, >= 3.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string_view>

#include "daemon/reexec_state.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    const auto state = fdsup::decodeState(text);
    if (!state) {
        if (state.error().message.empty()) {
            std::abort(); // every refusal says why
        }
        return 0;
    }
    std::set<int> seen;
    for (const int fd : state->fds()) {
        if (fd < 3 || !seen.insert(fd).second) {
            std::abort();
        }
    }
    const auto again = fdsup::decodeState(fdsup::encodeState(*state));
    if (!again || !(*again == *state)) {
        std::abort();
    }
    return 0;
}
