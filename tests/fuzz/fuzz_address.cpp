// Fuzz target: address parsing, with the round-trip property parse(format(a)) == a.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/address.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    const auto parsed = fdsup::parseAddress(text);
    if (!parsed) {
        if (parsed.error().message.empty()) {
            std::abort(); // every refusal must say why
        }
        return 0;
    }
    const auto again = fdsup::parseAddress(fdsup::formatAddress(*parsed));
    if (!again || !(*again == *parsed)) {
        std::abort();
    }
    return 0;
}
