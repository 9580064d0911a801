// Fuzz target: the configuration loader; a valid result must render to a file that loads again.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "config/config.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    // Includes resolve against a directory that does not exist, so the target
    // never reads the machine's files.
    const auto loaded = fdsup::config::loadConfigString(text, "fuzz.toml", "/nonexistent-fdsup-fuzz");
    if (loaded.config.has_value() == !loaded.diagnostics.empty()) {
        std::abort();
    }
    if (loaded.config) {
        const auto again = fdsup::config::loadConfigString(fdsup::config::renderConfig(*loaded.config),
                                                           "again.toml", "/nonexistent-fdsup-fuzz");
        if (!again.config) {
            std::abort();
        }
    }
    return 0;
}
