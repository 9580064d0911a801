// libactivate's C ABI: receiving listeners through the socket activation environment.
#include "activate/activate.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "core/listen_env.hpp"
#include "fdsup_build_config.h"

#define ACTIVATE_EXPORT __attribute__((visibility("default")))

namespace {

constexpr int kFdsStart = ACTIVATE_LISTEN_FDS_START;

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
    static_assert(kFdsStart == 3, "core/listen_env.cpp counts from SD_LISTEN_FDS_START");
    return fdsup::parseListenEnvironment(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
                                         std::getenv("LISTEN_FDNAMES"), static_cast<unsigned long>(getpid()),
                                         names);
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
    if (names.empty()) {
        // No LISTEN_FDNAMES: every fd is "unknown", so that name is the first.
        return r > 0 && std::strcmp(name, fdsup::kUnnamedListener) == 0 ? kFdsStart : -ENOENT;
    }
    for (int i = 0; i < r; ++i) {
        if (names[static_cast<std::size_t>(i)] == name) {
            return kFdsStart + i;
        }
    }
    return -ENOENT;
}

} // extern "C"
