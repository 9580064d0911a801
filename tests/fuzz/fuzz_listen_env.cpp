// Fuzz target: LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES as libactivate reads them (a worker's environment,
// set by whoever started it). The input is the three values separated by NULs; a fourth field, when present,
// unsets LISTEN_FDNAMES.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/listen_env.hpp"
#include "fuzz.hpp"

namespace {

constexpr unsigned long kSelf = 4242;

std::string field(std::string_view &rest)
{
    const auto nul = rest.find('\0');
    std::string value(rest.substr(0, nul));
    rest.remove_prefix(nul == std::string_view::npos ? rest.size() : nul + 1);
    return value;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    std::string_view rest(reinterpret_cast<const char *>(data), size);
    const std::string pid = field(rest);
    const std::string fds = field(rest);
    const std::string names = field(rest);
    const char *namesValue = rest.empty() ? names.c_str() : nullptr;
    std::vector<std::string> parsed{"left over"};
    const int r = fdsup::parseListenEnvironment(pid.c_str(), fds.c_str(), namesValue, kSelf, &parsed);
    const int counted = fdsup::parseListenEnvironment(pid.c_str(), fds.c_str(), namesValue, kSelf, nullptr);
    if (r < 0) {
        // The names are checked only when asked for: without them a count may pass.
        if (r != -EINVAL || (counted < 0 && counted != -EINVAL) || parsed.size() != 1) {
            std::abort();
        }
        return 0;
    }
    if (r != counted || (r > 0 && pid.find_first_not_of("0123456789") != std::string::npos)) {
        std::abort(); // fds only for a LISTEN_PID that is a plain number
    }
    if (r == 0 && parsed.size() == 1 && parsed.front() == "left over") {
        return 0; // addressed to another process: nothing written
    }
    if (parsed.size() != (namesValue == nullptr ? 0 : static_cast<std::size_t>(r))) {
        std::abort(); // one name per fd, and none stored without LISTEN_FDNAMES
    }
    for (const auto &name : parsed) {
        if (name.find(':') != std::string::npos) {
            std::abort();
        }
    }
    return 0;
}
