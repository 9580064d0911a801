// The socket activation environment, parsed without touching the process's environment or fds.
#include "core/listen_env.hpp"

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>

namespace fdsup {
namespace {

// The first fd passed, as SD_LISTEN_FDS_START.
constexpr unsigned long kFdsStart = 3;

// A decimal without sign or junk: the environment is input we check.
bool parseUnsigned(const char *text, unsigned long &out)
{
    if (text == nullptr || *text == '\0') {
        return false;
    }
    const char *end = text + std::strlen(text);
    const auto [ptr, ec] = std::from_chars(text, end, out);
    return ec == std::errc() && ptr == end;
}

// One name per ':'-separated field; "" (no names at all) for a count of 0.
std::vector<std::string> splitNames(std::string_view rest, unsigned long count)
{
    std::vector<std::string> names;
    while (true) {
        const auto colon = rest.find(':');
        names.emplace_back(rest.substr(0, colon));
        if (colon == std::string_view::npos) {
            break;
        }
        rest.remove_prefix(colon + 1);
    }
    if (count == 0 && names.size() == 1 && names.front().empty()) {
        names.clear();
    }
    return names;
}

} // namespace

int parseListenEnvironment(const char *pid, const char *fds, const char *fdNames, unsigned long self,
                           std::vector<std::string> *names)
{
    if (pid == nullptr) {
        return 0;
    }
    unsigned long target = 0;
    if (!parseUnsigned(pid, target)) {
        return -EINVAL;
    }
    if (target != self) {
        return 0;
    }
    unsigned long count = 0;
    if (!parseUnsigned(fds, count) || count > static_cast<unsigned long>(INT32_MAX) - kFdsStart) {
        return -EINVAL;
    }
    if (names != nullptr) {
        // Without LISTEN_FDNAMES no name is stored: a count in the millions
        // would otherwise be as many strings, all "unknown".
        std::vector<std::string> parsed =
            fdNames == nullptr ? std::vector<std::string>() : splitNames(fdNames, count);
        if (fdNames != nullptr && parsed.size() != count) {
            return -EINVAL;
        }
        *names = std::move(parsed);
    }
    return static_cast<int>(count);
}

} // namespace fdsup
