// Fuzz target: durations and sizes, with the round-trip property for durations.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/units.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    if (const auto d = fdsup::parseDuration(text)) {
        const auto again = fdsup::parseDuration(fdsup::formatDuration(*d));
        if (!again || *again != *d) {
            std::abort();
        }
    }
    if (const auto s = fdsup::parseSize(text)) {
        const auto again = fdsup::parseSize(fdsup::formatSize(*s));
        if (!again || *again != *s) {
            std::abort();
        }
    }
    return 0;
}
