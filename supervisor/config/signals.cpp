// Signal names as written in fdsupd.toml: "SIGTERM", "TERM", "SIGRTMIN+3".
#include <array>
#include <charconv>
#include <csignal>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace fdsup::config {

namespace {

struct SignalEntry {
    std::string_view name;
    int number;
};

// Only the signals a supervisor would send; SIGKILL and SIGSTOP are here so
// that they can be named in a precise refusal rather than as "unknown".
constexpr std::array kSignals{
    SignalEntry{"SIGHUP", SIGHUP},       SignalEntry{"SIGINT", SIGINT},   SignalEntry{"SIGQUIT", SIGQUIT},
    SignalEntry{"SIGILL", SIGILL},       SignalEntry{"SIGTRAP", SIGTRAP}, SignalEntry{"SIGABRT", SIGABRT},
    SignalEntry{"SIGBUS", SIGBUS},       SignalEntry{"SIGFPE", SIGFPE},   SignalEntry{"SIGKILL", SIGKILL},
    SignalEntry{"SIGUSR1", SIGUSR1},     SignalEntry{"SIGSEGV", SIGSEGV}, SignalEntry{"SIGUSR2", SIGUSR2},
    SignalEntry{"SIGPIPE", SIGPIPE},     SignalEntry{"SIGALRM", SIGALRM}, SignalEntry{"SIGTERM", SIGTERM},
    SignalEntry{"SIGCHLD", SIGCHLD},     SignalEntry{"SIGCONT", SIGCONT}, SignalEntry{"SIGSTOP", SIGSTOP},
    SignalEntry{"SIGTSTP", SIGTSTP},     SignalEntry{"SIGTTIN", SIGTTIN}, SignalEntry{"SIGTTOU", SIGTTOU},
    SignalEntry{"SIGURG", SIGURG},       SignalEntry{"SIGXCPU", SIGXCPU}, SignalEntry{"SIGXFSZ", SIGXFSZ},
    SignalEntry{"SIGVTALRM", SIGVTALRM}, SignalEntry{"SIGPROF", SIGPROF}, SignalEntry{"SIGWINCH", SIGWINCH},
    SignalEntry{"SIGIO", SIGIO},         SignalEntry{"SIGPWR", SIGPWR},   SignalEntry{"SIGSYS", SIGSYS},
};

// "+3" / "-3" after SIGRTMIN / SIGRTMAX; the offset must stay in the range.
int realtimeSignal(std::string_view rest, int base, int sign)
{
    if (rest.empty()) {
        return base;
    }
    if (rest.size() < 2 || rest[0] != (sign > 0 ? '+' : '-')) {
        return -1;
    }
    int offset = 0;
    auto [end, ec] = std::from_chars(rest.data() + 1, rest.data() + rest.size(), offset);
    if (ec != std::errc{} || end != rest.data() + rest.size()) {
        return -1;
    }
    const int sig = base + sign * offset;
    return sig >= SIGRTMIN && sig <= SIGRTMAX ? sig : -1;
}

} // namespace

int signalFromName(std::string_view name)
{
    // "TERM" and "SIGTERM" are both common spellings (kill -TERM, systemd).
    if (!name.starts_with("SIG")) {
        for (const auto &entry : kSignals) {
            if (entry.name.substr(3) == name) {
                return entry.number;
            }
        }
        return -1;
    }
    for (const auto &entry : kSignals) {
        if (entry.name == name) {
            return entry.number;
        }
    }
    // SIGRTMIN is a libc function call, not a constant: glibc reserves some
    // real-time signals for itself.
    if (name.starts_with("SIGRTMIN")) {
        return realtimeSignal(name.substr(8), SIGRTMIN, +1);
    }
    if (name.starts_with("SIGRTMAX")) {
        return realtimeSignal(name.substr(8), SIGRTMAX, -1);
    }
    return -1;
}

std::string signalName(int sig)
{
    for (const auto &entry : kSignals) {
        if (entry.number == sig) {
            return std::string(entry.name);
        }
    }
    if (sig >= SIGRTMIN && sig <= SIGRTMAX) {
        return sig == SIGRTMIN ? "SIGRTMIN" : "SIGRTMIN+" + std::to_string(sig - SIGRTMIN);
    }
    return {};
}

std::vector<std::string_view> signalNames()
{
    std::vector<std::string_view> names;
    names.reserve(kSignals.size());
    for (const auto &entry : kSignals) {
        names.push_back(entry.name);
    }
    return names;
}

} // namespace fdsup::config
