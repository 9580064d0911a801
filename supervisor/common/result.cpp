// Error construction from errno values.
#include "common/result.hpp"

#include <climits>
#include <cstring>

namespace fdsup {

namespace {

int positive(int code)
{
    return code < 0 && code != INT_MIN ? -code : code;
}

} // namespace

std::string errnoText(int code)
{
    code = positive(code);
    // strerrordesc_np is thread-safe and locale-independent (messages end up
    // in logs that get grepped, and test corpora pin them); it returns nullptr
    // for codes it does not know.
    const char *description = ::strerrordesc_np(code);
    return description != nullptr ? std::string(description) : "Unknown error " + std::to_string(code);
}

Error errnoError(int code, std::string what)
{
    code = positive(code);
    return Error{code, std::move(what) + ": " + errnoText(code)};
}

} // namespace fdsup
