// handoff-bench's notes: where fdsupd's time goes, what the clock covers, what 100k connections would take.
#include "handoff_notes.hpp"

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <sys/resource.h>

namespace fdsup::bench {
namespace {

std::string format(const char *fmt, double a, double b = 0, double c = 0)
{
    char buffer[256];
    (void)std::snprintf(buffer, sizeof buffer, fmt, a, b, c);
    return buffer;
}

std::uint64_t callsOf(const SyscallProfile &profile, std::initializer_list<const char *> names)
{
    std::uint64_t sum = 0;
    for (const char *name : names) {
        if (const auto it = profile.calls.find(name); it != profile.calls.end()) {
            sum += it->second;
        }
    }
    return sum;
}

} // namespace

void syscallNotes(Report &report, int n, const SyscallProfile &profile)
{
    // Channel messages fdsupd handles per connection: HANDOFF in, HANDOFF_RESULT and ADOPT out.
    const double messages = 3.0 * n;
    report
        .figure("handoff.syscalls.per_connection", "fdsupd's system calls per connection moved", "syscalls",
                "lower")
        .samples.push_back(static_cast<double>(profile.total) / n);
    report
        .figure("handoff.syscalls.per_message",
                "fdsupd's system calls per channel message (3 per connection)", "syscalls", "lower")
        .samples.push_back(static_cast<double>(profile.total) / messages);
    std::vector<std::pair<std::uint64_t, std::string>> rows;
    for (const auto &[name, calls] : profile.calls) {
        rows.emplace_back(calls, name);
    }
    std::sort(rows.rbegin(), rows.rend());
    std::string table = "fdsupd's system calls during one rollout moving " + std::to_string(n) +
                        " connections (`strace -c -p` on every thread of fdsupd, children not followed; "
                        "the rollout's fixed part, spawning 4 instances, included):\n\n"
                        "| system call | calls | failed | per connection |\n| --- | ---: | ---: | ---: |\n";
    for (std::size_t i = 0; i < rows.size() && i < 14; ++i) {
        const auto failed = profile.errors.find(rows[i].second);
        table += "| `" + rows[i].second + "` | " + std::to_string(rows[i].first) + " | " +
                 std::to_string(failed == profile.errors.end() ? 0 : failed->second) + " | " +
                 format("%.2f", static_cast<double>(rows[i].first) / n) + " |\n";
    }
    table += format("| all | %.0f | | %.2f |\n\n", static_cast<double>(profile.total),
                    static_cast<double>(profile.total) / n);
    const double messageCalls = static_cast<double>(
        callsOf(profile, {"recvmsg", "sendmsg", "recvmmsg", "sendmmsg", "read", "write", "writev"}));
    table += format("Message transfer (recvmsg/sendmsg and their batched forms, read/write of the "
                    "workers' output and fdsupd's log): %.2f calls per connection; ",
                    messageCalls / n);
    table += format("descriptor checks (fstat, getsockopt, getpeername, getsockname): %.2f; ",
                    static_cast<double>(callsOf(
                        profile, {"fstat", "newfstatat", "getsockopt", "getpeername", "getsockname"})) /
                        n);
    table += format("epoll (epoll_ctl, epoll_wait): %.2f; close: %.2f.",
                    static_cast<double>(callsOf(profile, {"epoll_ctl", "epoll_wait", "epoll_pwait"})) / n,
                    static_cast<double>(callsOf(profile, {"close"})) / n);
    report.note(table);
}

void staticNotes(Report &report, int largest)
{
    report.note(
        "**What the clocks cover.** *raw*: from the sender's first `sendmsg()` (the receiver blocked in "
        "`recvmsg()`) to the receiver holding every descriptor, 253 per message, one `SOCK_SEQPACKET` "
        "socketpair, no checks. *fdsupd*: a real fdsupd rolls out 4 `seqnum-echo` instances at once "
        "(`Restart` with `batch = 4`, `log_level = \"info\"`); the clock is fdsupd's own log, from the "
        "first `draining old pid` (DRAIN sent) to the last `old pid N exited` (the last drained worker "
        "reaped: it exits once every HANDOFF it sent was answered, and fdsupd sends each ADOPT in the "
        "same turn as its HANDOFF_RESULT). Millisecond stamps, so the 1,024 figure is coarse. After each "
        "rollout every connection makes a round trip and fdsupd's `adopted` counter must have grown by "
        "the number of connections (`failed` counts both). CPU: fdsupd's `schedstat` (ns) over the whole "
        "`Restart` call, which also spawns 4 instances: `handoff.fdsupd.0.cpu_ms` is that fixed part.");
    rlimit limit{};
    (void)getrlimit(RLIMIT_NOFILE, &limit);
    report.note("**Up to 16,384 connections.** This machine's hard `RLIMIT_NOFILE` is " +
                std::to_string(limit.rlim_max) +
                " and cannot be raised here; the client process holds every connection, so 16,384 "
                "is the largest power of two that fits.");
    const Figure *rate = report.find("handoff.fdsupd." + std::to_string(largest) + ".rate");
    const double perSecond = rate != nullptr ? median(rate->samples) : 0;
    report.note(format("**100,000 connections** would take, at the rate measured for %.0f (%.0f/s), "
                       "about %.0f ms. It needs: RLIMIT_NOFILE ≥ 100,000 plus a margin in fdsupd (it holds "
                       "every connection no adopter took yet: all of them if none is ready), "
                       "`[supervisor.limits] held_connections_per_service` and `held_connections` ≥ "
                       "100,000 (defaults 16,384 and 65,536), in each worker its share (25,000 with 4 "
                       "instances, old and new generation alike) and in the client 100,000. The channel's "
                       "message rate limit (2,048/s after a burst of 4,096 per worker, one HANDOFF per "
                       "connection) lets a worker hand over about 4,096 connections plus 2,048 per second: "
                       "100,000 need about 25 instances, or a batched HANDOFF (not in protocol version 1). "
                       "Memory, not measured here: the kernel's socket, file and inode for each end of a "
                       "loopback TCP connection (a few KiB per end), and in fdsupd a few hundred bytes per "
                       "connection held.",
                       largest, perSecond, perSecond > 0 ? 100000.0 / perSecond * 1000.0 : 0.0));
}

} // namespace fdsup::bench
