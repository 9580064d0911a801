// Fuzz target: the sd_notify datagram parser (a worker's text, untrusted).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz.hpp"
#include "io/notify.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    const auto parsed = fdsup::parseNotify(text);
    if (!parsed && parsed.error().message.empty()) {
        std::abort(); // every refusal must say why
    }
    if (parsed && !parsed->fdName.empty() && !fdsup::validFdName(parsed->fdName)) {
        std::abort(); // an accepted FDNAME is always one systemd would accept
    }
    return 0;
}
