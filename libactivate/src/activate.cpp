// libactivate's C ABI: receiving listeners through the socket activation environment.
#include "activate/activate.h"

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "fdsup_build_config.h"

#define ACTIVATE_EXPORT __attribute__((visibility("default")))

namespace {

constexpr int kFdsStart = ACTIVATE_LISTEN_FDS_START;

// Parses a decimal without sign or junk; the environment is input we check.
bool parseUnsigned(const char *text, unsigned long &out)
{
    if (text == nullptr || *text == '\0') {
        return false;
    }
    const char *end = text + std::strlen(text);
    const auto [ptr, ec] = std::from_chars(text, end, out);
    return ec == std::errc() && ptr == end;
}

void unsetEnvironment()
{
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
}

// Reads LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES. Returns the count (0 when the
// environment is absent or addressed to another process) or -errno, and the
// names (one per fd) on success.
int readEnvironment(std::vector<std::string> *names)
{
    unsigned long pid = 0;
    const char *pidText = std::getenv("LISTEN_PID");
    if (pidText == nullptr) {
        return 0;
    }
    if (!parseUnsigned(pidText, pid)) {
        return -EINVAL;
    }
    // Inherited from a parent that was the real target: not ours, like systemd.
    if (pid != static_cast<unsigned long>(getpid())) {
        return 0;
    }
    unsigned long count = 0;
    if (!parseUnsigned(std::getenv("LISTEN_FDS"), count)) {
        return -EINVAL;
    }
    if (count > static_cast<unsigned long>(INT32_MAX - kFdsStart)) {
        return -EINVAL;
    }
    if (names != nullptr) {
        names->clear();
        const char *fdNames = std::getenv("LISTEN_FDNAMES");
        if (fdNames == nullptr) {
            names->assign(count, "unknown");
        } else {
            std::string_view rest(fdNames);
            while (true) {
                const auto colon = rest.find(':');
                names->emplace_back(rest.substr(0, colon));
                if (colon == std::string_view::npos) {
                    break;
                }
                rest.remove_prefix(colon + 1);
            }
            if (count == 0 && names->size() == 1 && names->front().empty()) {
                names->clear();
            }
            if (names->size() != count) {
                return -EINVAL;
            }
        }
    }
    return static_cast<int>(count);
}

} // namespace

extern "C" {

ACTIVATE_EXPORT const char *activate_version(void)
{
    return FDSUP_VERSION;
}

ACTIVATE_EXPORT int activate_listen_fds(int unset_environment)
{
    std::vector<std::string> names;
    int r = readEnvironment(&names);
    if (r > 0) {
        for (int fd = kFdsStart; fd < kFdsStart + r; ++fd) {
            const int flags = fcntl(fd, F_GETFD);
            if (flags < 0) {
                r = -errno;
                break;
            }
            if ((flags & FD_CLOEXEC) == 0 && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
                r = -errno;
                break;
            }
        }
    }
    if (unset_environment != 0) {
        unsetEnvironment();
    }
    return r;
}

ACTIVATE_EXPORT int activate_listener(const char *name)
{
    if (name == nullptr || *name == '\0') {
        return -EINVAL;
    }
    std::vector<std::string> names;
    const int r = readEnvironment(&names);
    if (r < 0) {
        return r;
    }
    for (int i = 0; i < r; ++i) {
        if (names[static_cast<std::size_t>(i)] == name) {
            return kFdsStart + i;
        }
    }
    return -ENOENT;
}

} // extern "C"
