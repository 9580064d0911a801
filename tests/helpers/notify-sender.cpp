// Test helper: a stock sd_notify() client built on the real libsystemd.
//
//   notify-sender [--fds=N,M,...] [--repeat=COUNT] [--barrier] MESSAGE
//
// Sends MESSAGE to $NOTIFY_SOCKET. --fds attaches the inherited fds N, M...
// (sd_pid_notify_with_fds). --repeat sends COUNT datagrams, each MESSAGE
// followed by its index (0, 1, ...). --barrier calls sd_notify_barrier()
// afterwards, which returns only once the server has closed the barrier fd.
// Exit status: 0 every call succeeded, 1 NOTIFY_SOCKET unset, 2 an error, 64
// bad usage.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <systemd/sd-daemon.h>

namespace {

constexpr int kUsage = 64;

bool parseCount(std::string_view text, long &out)
{
    if (text.empty()) {
        return false;
    }
    char *end = nullptr;
    const std::string copy(text);
    errno = 0;
    out = std::strtol(copy.c_str(), &end, 10);
    return errno == 0 && *end == '\0' && out >= 0;
}

int report(int r, const char *what)
{
    if (r > 0) {
        return 0;
    }
    if (r == 0) {
        (void)std::fprintf(stderr, "notify-sender: %s: NOTIFY_SOCKET is not set\n", what);
        return 1;
    }
    (void)std::fprintf(stderr, "notify-sender: %s: %s\n", what, std::strerror(-r));
    return 2;
}

} // namespace

int main(int argc, char **argv)
{
    std::vector<int> fds;
    long repeat = -1;
    bool barrier = false;
    int i = 1;
    for (; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg.starts_with("--fds=")) {
            std::string_view list = arg.substr(6);
            while (!list.empty()) {
                const auto comma = list.find(',');
                long fd = 0;
                if (!parseCount(list.substr(0, comma), fd)) {
                    return kUsage;
                }
                fds.push_back(static_cast<int>(fd));
                list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
            }
        } else if (arg.starts_with("--repeat=")) {
            if (!parseCount(arg.substr(9), repeat)) {
                return kUsage;
            }
        } else if (arg == "--barrier") {
            barrier = true;
        } else {
            break;
        }
    }
    if (i + 1 != argc) {
        (void)std::fprintf(stderr,
                           "usage: notify-sender [--fds=N,...] [--repeat=COUNT] [--barrier] MESSAGE\n");
        return kUsage;
    }
    const std::string message = argv[i];

    if (repeat < 0) {
        const int r = fds.empty() ? sd_notify(0, message.c_str())
                                  : sd_pid_notify_with_fds(0, 0, message.c_str(), fds.data(),
                                                           static_cast<unsigned>(fds.size()));
        if (const int status = report(r, "sd_notify"); status != 0) {
            return status;
        }
    } else {
        // Blocking sends: when the server's queue is full the sender waits,
        // as a real worker would.
        for (long k = 0; k < repeat; ++k) {
            const std::string text = message + std::to_string(k);
            if (const int status = report(sd_notify(0, text.c_str()), "sd_notify"); status != 0) {
                return status;
            }
        }
    }
    if (barrier) {
        const int r = sd_notify_barrier(0, 30ULL * 1000 * 1000);
        // sd_notify_barrier() returns 0 on success (not >0 like sd_notify()).
        if (r < 0) {
            return report(r, "sd_notify_barrier");
        }
    }
    return 0;
}
