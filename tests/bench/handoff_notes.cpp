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

// value with `decimals` digits after the point (0 or 2).
std::string fixed(double value, int decimals)
{
    char buffer[64];
    if (decimals == 0) {
        (void)std::snprintf(buffer, sizeof buffer, "%.0f", value);
    } else {
        (void)std::snprintf(buffer, sizeof buffer, "%.2f", value);
    }
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

void syscallNotes(BenchReport &report, int n, const SyscallProfile &profile)
{
    // Channel messages fdsupd handles per connection: HANDOFF in, HANDOFF_RESULT and ADOPT out.
    const double messages = 3.0 * n;
    report
        .figure("handoff.syscalls.per_connection", "fdsupd's system calls per connection moved", "syscalls",
                false)
        .push_back(static_cast<double>(profile.total) / n);
    report
        .figure("handoff.syscalls.per_message",
                "fdsupd's system calls per channel message (3 per connection)", "syscalls", false)
        .push_back(static_cast<double>(profile.total) / messages);
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
                 fixed(static_cast<double>(rows[i].first) / n, 2) + " |\n";
    }
    const auto perConnection = [&](std::initializer_list<const char *> names) {
        return fixed(static_cast<double>(callsOf(profile, names)) / n, 2);
    };
    table += "| all | " + std::to_string(profile.total) + " | | " +
             fixed(static_cast<double>(profile.total) / n, 2) + " |\n\n";
    table += "Message transfer (recvmsg/sendmsg and their batched forms, read/write of the workers' "
             "output and fdsupd's log): " +
             perConnection({"recvmsg", "sendmsg", "recvmmsg", "sendmmsg", "read", "write", "writev"}) +
             " calls per connection; descriptor checks (fstat, getsockopt, getpeername, getsockname): " +
             perConnection({"fstat", "newfstatat", "getsockopt", "getpeername", "getsockname"}) +
             "; epoll (epoll_ctl, epoll_wait): " + perConnection({"epoll_ctl", "epoll_wait", "epoll_pwait"}) +
             "; close: " + perConnection({"close"}) + ".";
    report.note(table);
}

void staticNotes(BenchReport &report, int largest)
{
    report.note(
        "**Before and after** (recorded, not measured by this run: `handoff-bench --tier quick` in a "
        "release build on the 2-core development machine, load average 10 to 15). With main's fdsupd "
        "and seqnum-echo (before branch bench-handoff): 16,384 connections in 1,381 ms, fdsupd CPU 16.6 "
        "µs and 15.2 system calls per connection (`sendmsg` 3, one of them a failing FDSTORE to the "
        "manager; `getsockopt` 2; `getsockname` 2; `epoll_ctl` 2; `write` 2; `fstat`, `getpeername`, "
        "`recvmsg`, `close` 1 each). After: 813 ms, 10.4 µs, 9.5 system calls (`recvmsg` 1, "
        "`sendmsg` 2, `getsockopt` 1, `getpeername` 1, `getsockname` 1, `close` 1, `write` 2: the "
        "example workers' two log lines per connection, relayed). What is left is mostly the "
        "kernel's (`system_share`): one datagram with one descriptor each way per connection "
        "(HANDOFF in, HANDOFF_RESULT and ADOPT out) where the raw figure sends 253 descriptors per "
        "datagram; batching on the wire needs a new protocol message. fdsupd's CPU is a fifth of the "
        "wall time at 16,384 on this loaded machine: the rest is the workers and waiting for a CPU.");
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
    const std::vector<double> *rate = report.samples("handoff.fdsupd." + std::to_string(largest) + ".rate");
    const double perSecond = rate != nullptr ? median(*rate) : 0;
    report.note("**100,000 connections** would take, at the rate measured for " + std::to_string(largest) +
                " (" + fixed(perSecond, 0) + "/s), about " +
                fixed(perSecond > 0 ? 100000.0 / perSecond * 1000.0 : 0.0, 0) +
                " ms. It needs: RLIMIT_NOFILE ≥ 100,000 plus a margin in fdsupd (it holds every "
                "connection no adopter took yet: all of them if none is ready), `[supervisor.limits] "
                "held_connections_per_service` and `held_connections` ≥ 100,000 (defaults 16,384 and "
                "65,536), in each worker its share (25,000 with 4 instances, old and new generation "
                "alike) and in the client 100,000. A worker may send 16,384 HANDOFFs at once (then "
                "2,048/s; one HANDOFF per connection in protocol version 1): 100,000 need 7 or more "
                "instances, or a batched HANDOFF. Memory, not measured here: the kernel's socket, file "
                "and inode for each end of a loopback TCP connection (a few KiB per end), and in fdsupd "
                "a few hundred bytes per connection held.");
}

} // namespace fdsup::bench
