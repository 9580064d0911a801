// rollout-bench: how long a rolling restart takes and what it costs fdsupd.
//
// Runs a real fdsupd with N sd-worker instances (ready at once, so the
// figures are fdsupd's own overhead plus process start-up), rolls the
// service out several times per (instances, batch) pair and prints the
// median wall time of one rollout, the time per instance, and fdsupd's CPU
// time (user + system) per rollout. Run with `meson test -C build --benchmark`
// or directly with the same environment as the tests.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace {

using fdsup::test::DaemonHarness;

int run()
{
    (void)std::printf("%-10s %-6s %-8s %12s %14s %16s\n", "instances", "batch", "rollouts", "median ms",
                      "ms/instance", "fdsupd CPU ms");
    for (const int instances : {4, 16, 64}) {
        for (const int batch : {1, 4}) {
            DaemonHarness fdsupd;
            std::string why;
            const std::string config = fdsupd.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.web]
command = )" + fdsupd.workerCommand("serve") +
                                       R"(
sockets = ["web"]
instances = )" + std::to_string(instances) +
                                       R"(
rollout_batch = )" + std::to_string(batch) +
                                       "\n";
            if (!fdsupd.start(config, why)) {
                (void)std::fprintf(stderr, "fdsupd did not start: %s\n", why.c_str());
                return 1;
            }
            if (!fdsupd.call("io.fdsup.Manager.Start", {{"service", "web"}}).error.empty()) {
                (void)std::fprintf(stderr, "web did not start\n");
                return 1;
            }
            constexpr int kRollouts = 7;
            std::vector<double> wall;
            const double cpuBefore = fdsup::test::cpuSecondsOf(fdsupd.pid());
            for (int i = 0; i < kRollouts; ++i) {
                const auto t0 = std::chrono::steady_clock::now();
                const auto reply =
                    fdsupd.call("io.fdsup.Manager.Restart", {{"service", "web"}, {"wait", true}});
                const auto t1 = std::chrono::steady_clock::now();
                if (!reply.error.empty()) {
                    (void)std::fprintf(stderr, "rollout failed: %s\n", reply.parameters.dump().c_str());
                    return 1;
                }
                wall.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
            }
            const double cpu = (fdsup::test::cpuSecondsOf(fdsupd.pid()) - cpuBefore) * 1000.0 / kRollouts;
            std::sort(wall.begin(), wall.end());
            const double median = wall[wall.size() / 2];
            (void)std::printf("%-10d %-6d %-8d %12.1f %14.2f %16.1f\n", instances, batch, kRollouts, median,
                              median / instances, cpu);
            (void)std::fflush(stdout);
            fdsupd.stop();
        }
    }
    return 0;
}

} // namespace

int main()
{
    try {
        return run();
    } catch (const std::exception &e) {
        (void)std::fprintf(stderr, "rollout-bench: %s\n", e.what());
        return 1;
    }
}
