// handoff-bench: what moving established connections through fdsupd costs.
//
// Runs a real fdsupd with 4 seqnum-echo instances (libactivate/examples),
// opens N idle client connections (one round trip each, so every one is
// accepted and served), rolls the service out with every connection handed
// over and adopted, and checks each connection with one more round trip.
// Prints the rollout's wall time, fdsupd's CPU time (user + system, from
// /proc, 10 ms ticks) per rollout and per connection moved, and how many
// connections failed. Run with `meson test -C build --benchmark` or directly
// with the same environment as the tests.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace {

using fdsup::UniqueFd;
using fdsup::test::DaemonHarness;

// One seqnum round trip; false on any error (the socket has 10 s timeouts,
// so an interruption is EINTR, retried: no error of the connection).
bool roundTrip(const UniqueFd &fd, std::uint32_t number)
{
    const std::uint32_t wire = htonl(number);
    ssize_t sent = 0;
    do {
        sent = send(fd.get(), &wire, sizeof wire, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    if (sent != sizeof wire) {
        return false;
    }
    std::uint32_t echo = 0;
    std::size_t got = 0;
    while (got < sizeof echo) {
        const ssize_t n = recv(fd.get(), reinterpret_cast<char *>(&echo) + got, sizeof echo - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        got += static_cast<std::size_t>(n);
    }
    return ntohl(echo) == number;
}

int run()
{
    const std::string seqnum = fdsup::test::requireEnv("FDSUP_TEST_SEQNUM_ECHO");
    (void)std::printf("%-12s %-10s %12s %16s %18s %9s\n", "connections", "instances", "rollout ms",
                      "fdsupd CPU ms", "CPU us/connection", "failed");
    for (const int connections : {256, 1024, 4096}) {
        constexpr int kInstances = 4;
        DaemonHarness fdsupd;
        std::string why;
        const std::string config = fdsupd.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"
backlog = 8192

[service.web]
command = [")" + seqnum + R"("]
sockets = ["web"]
instances = )" + std::to_string(kInstances) +
                                   R"(
ready = "channel"
handoff = true
drain_timeout = "60s"

[service.web.limits]
nofile = 16384
)";
        if (!fdsupd.start(config, why)) {
            (void)std::fprintf(stderr, "fdsupd did not start: %s\n", why.c_str());
            return 1;
        }
        if (const auto started = fdsupd.call("io.fdsup.Manager.Start", {{"service", "web"}});
            !started.error.empty()) {
            (void)std::fprintf(stderr, "web did not start: %s %s\n%s", started.error.c_str(),
                               started.parameters.dump().c_str(), fdsupd.log().c_str());
            return 1;
        }
        const int port = fdsupd.port("web");
        std::vector<UniqueFd> clients;
        int failed = 0;
        for (int i = 0; i < connections; ++i) {
            clients.push_back(fdsup::test::connectLoopback(port));
            failed += roundTrip(clients.back(), 1) ? 0 : 1;
        }
        const double cpuBefore = fdsup::test::cpuSecondsOf(fdsupd.pid());
        const auto t0 = std::chrono::steady_clock::now();
        const auto reply = fdsupd.call("io.fdsup.Manager.Restart", {{"service", "web"}, {"wait", true}});
        const auto t1 = std::chrono::steady_clock::now();
        const double cpuMs = (fdsup::test::cpuSecondsOf(fdsupd.pid()) - cpuBefore) * 1000.0;
        if (!reply.error.empty()) {
            (void)std::fprintf(stderr, "rollout failed: %s\n", reply.parameters.dump().c_str());
            return 1;
        }
        for (const auto &client : clients) {
            failed += roundTrip(client, 2) ? 0 : 1;
        }
        const auto moved = fdsupd.call("io.fdsup.Manager.Connections", {{"service", "web"}});
        const auto &web = moved.parameters.at("services").at(0);
        if (web.at("adopted").get<int>() != connections) {
            (void)std::fprintf(stderr, "%d connections, but %s adopted\n", connections,
                               web.at("adopted").dump().c_str());
            failed = std::max(failed, 1);
        }
        (void)std::printf("%-12d %-10d %12.1f %16.1f %18.1f %9d\n", connections, kInstances,
                          std::chrono::duration<double, std::milli>(t1 - t0).count(), cpuMs,
                          cpuMs * 1000.0 / connections, failed);
        (void)std::fflush(stdout);
        clients.clear(); // idle connections would hold up the workers' SIGTERM
        fdsupd.stop();
        if (failed != 0) {
            return 1;
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
        (void)std::fprintf(stderr, "handoff-bench: %s\n", e.what());
        return 1;
    }
}
