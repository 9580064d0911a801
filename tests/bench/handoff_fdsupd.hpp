// handoff-bench's numerator: connections moved from draining seqnum-echo
// workers through a real fdsupd into their replacements.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/fd.hpp"
#include "daemon_harness.hpp"

namespace fdsup::bench {

// One rollout with handoff, measured.
struct HandoffSample {
    // fdsupd's own log (its clock, millisecond stamps): from the first
    // "draining old pid" (fdsupd sends DRAIN) to the last "old pid N exited"
    // (fdsupd reaped the last drained worker, which exits once every HANDOFF
    // it sent was answered; fdsupd sends each ADOPT in the same turn as the
    // HANDOFF_RESULT, and held == 0 afterwards is checked).
    double handoffMs = 0;
    double rolloutMs = 0; // the Restart call, wall time (spawning the replacements included)
    double cpuMs = 0;     // fdsupd's user + system time during the Restart call (schedstat, ns)
    double userMs = 0;    // of which user and system (/proc/PID/stat, clock ticks: coarse)
    double systemMs = 0;
    int failed = 0; // round trips that failed afterwards, plus connections not adopted
};

// strace -c of fdsupd during one handoff.
struct SyscallProfile {
    std::uint64_t total = 0;
    std::map<std::string, std::uint64_t> calls;  // by system call name
    std::map<std::string, std::uint64_t> errors; // of which failed (EAGAIN...)
    double seconds = 0;                          // the time strace attributes to them
};

// A running fdsupd with `instances` seqnum-echo workers (handoff = true) and
// n idle client connections, each served once (one round trip).
class HandoffFixture {
public:
    static constexpr int kInstances = 4;

    HandoffFixture(const std::string &seqnumEcho, int connections);
    HandoffFixture(const HandoffFixture &) = delete;
    HandoffFixture &operator=(const HandoffFixture &) = delete;
    ~HandoffFixture();

    // A rollout of every instance at once (batch = instances): each
    // connection handed over and adopted, then checked with a round trip.
    HandoffSample rollout();
    // The same rollout under `strace -c` (attached to every thread of
    // fdsupd, children not followed): what fdsupd asked of the kernel.
    SyscallProfile rolloutTraced();
    [[nodiscard]] pid_t pid() const { return fdsupd_.pid(); }

private:
    void connectClients(int connections);
    int checkClients();
    std::uint64_t adopted();

    test::DaemonHarness fdsupd_;
    std::vector<UniqueFd> clients_;
    std::uint32_t round_ = 1;
};

// fdsupd's CPU time (every thread's sum_exec_runtime from /proc/PID/task/*/schedstat), in ms.
double cpuMsOf(pid_t pid);
// utime and stime of /proc/PID/stat, in ms.
std::pair<double, double> userSystemMsOf(pid_t pid);

} // namespace fdsup::bench
