// Error construction from errno values.
#include "fdsup/result.hpp"

#include <climits>
#include <cstring>

namespace fdsup {

Error errnoError(int code, std::string what)
{
    if (code < 0 && code != INT_MIN) {
        code = -code;
    }
    // strerrordesc_np is thread-safe and locale-independent (messages end up
    // in logs that get grepped); it returns nullptr for codes it does not know.
    const char *description = ::strerrordesc_np(code);
    std::string message = std::move(what);
    message += ": ";
    if (description != nullptr) {
        message += description;
    } else {
        message += "Unknown error " + std::to_string(code);
    }
    return Error{code, std::move(message)};
}

} // namespace fdsup
