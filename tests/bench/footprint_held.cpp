// footprint-bench: fdsupd holding connections in its handoff broker.
#include "footprint_held.hpp"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::bench {
namespace {

using fdsup::test::DaemonHarness;
using fdsup::test::quoted;

// Workers sharing the connections: fdsupd closes the channel of a worker sending more than 2,048
// messages a second (burst 4,096), a HANDOFF each, so one worker cannot hand 16k over.
constexpr int kWorkers = 8;

// The replacement waits in sh before exec while GATE exists, until a line arrives on FIFO.
std::string heldConfig(const DaemonHarness &fdsupd, int connections)
{
    const std::string gate = (fdsupd.dir() / "gate").string();
    const std::string fifo = (fdsupd.dir() / "fifo").string();
    const std::string script = "if [ -e " + gate + " ]; then read go < " + fifo + "; fi; exec \"$0\"";
    return "[supervisor]\ncontrol = " + quoted(fdsupd.controlPath()) +
           "\n\n[supervisor.limits]\nheld_connections_per_service = " + std::to_string(connections) +
           "\n\n[socket.web]\nlisten = \"tcp://127.0.0.1:0\"\n\n[service.web]\ncommand = [\"/bin/sh\", "
           "\"-c\", " +
           quoted(script) + ", " + quoted(fdsup::test::requireEnv("FDSUP_TEST_HTTP_KEEPALIVE")) +
           "]\nsockets = [\"web\"]\ninstances = " + std::to_string(kWorkers) +
           "\nrollout_batch = " + std::to_string(kWorkers) +
           "\nready = \"channel\"\nhandoff = true\nrollout_order = \"stop-first\"\n";
}

// `count` keep-alive connections, each with one request answered: the worker has accepted them all.
std::vector<UniqueFd> connectAll(int port, int count)
{
    std::vector<UniqueFd> clients;
    clients.reserve(static_cast<std::size_t>(count));
    const std::string request = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    for (int i = 0; i < count; ++i) {
        clients.push_back(fdsup::test::connectLoopback(port));
        if (send(clients.back().get(), request.data(), request.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(request.size())) {
            throw std::runtime_error("cannot send a request: " + std::string(std::strerror(errno)));
        }
    }
    char buffer[512];
    for (const auto &c : clients) {
        const ssize_t n = recv(c.get(), buffer, sizeof(buffer), 0);
        if (n < 12 || std::memcmp(buffer, "HTTP/1.1 200", 12) != 0) {
            throw std::runtime_error("a connection was not answered 200");
        }
    }
    return clients;
}

std::string rolloutState(DaemonHarness &fdsupd)
{
    const auto reply = fdsupd.call("io.fdsup.Manager.RolloutStatus", {{"service", "web"}});
    const auto &rollout = reply.parameters.value("rollout", nlohmann::json());
    return rollout.is_object() ? rollout.value("state", "") : "";
}

void heldOnce(BenchReport &report, const std::string &base, int connections)
{
    DaemonHarness fdsupd;
    std::string why;
    if (mkfifo((fdsupd.dir() / "fifo").c_str(), 0600) != 0 ||
        !fdsupd.start(heldConfig(fdsupd, connections), why)) {
        throw std::runtime_error("fdsupd with a handoff service did not start: " + why);
    }
    // Read-write: opening does not wait for the reader, and the line stays in the pipe until it reads.
    const UniqueFd fifo(open((fdsupd.dir() / "fifo").c_str(), O_RDWR | O_CLOEXEC));
    const auto clients = connectAll(fdsupd.port("web"), connections);
    const int fdsBefore = fdsup::test::countFdsOf(fdsupd.pid());
    fdsup::test::writeFile(fdsupd.dir() / "gate", "");
    const auto t0 = std::chrono::steady_clock::now();
    const auto begun = fdsupd.call("io.fdsup.Manager.Restart", {{"service", "web"}});
    if (!begun.error.empty()) {
        throw std::runtime_error("the rollout did not begin: " + begun.error);
    }
    // The old worker's pidfd and pipes go, the replacement's come: a few either way.
    if (!fdsup::test::waitUntil(
            [&] { return fdsup::test::countFdsOf(fdsupd.pid()) >= fdsBefore + connections - 8; })) {
        const std::string log = fdsupd.log();
        throw std::runtime_error("fdsupd did not come to hold every connection: " +
                                 std::to_string(fdsup::test::countFdsOf(fdsupd.pid())) + " fds, " +
                                 std::to_string(fdsBefore) + " before; its log ends:\n" + log);
    }
    report.add(base + ".ms",
               std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    // Before any other call: a reply listing every held connection would grow fdsupd's heap.
    report.add(base + ".private_kib", privateKibOf(fdsupd.pid()));
    report.add(base + ".fds", fdsup::test::countFdsOf(fdsupd.pid()));
    const auto held = fdsupd.call("io.fdsup.Manager.Connections", {{"service", "web"}});
    const auto count = held.parameters["services"][0]["held"].size();
    if (count != static_cast<std::size_t>(connections)) {
        throw std::runtime_error("fdsupd holds " + std::to_string(count) + " connections, not " +
                                 std::to_string(connections));
    }
    const std::string lines = [] {
        std::string go;
        for (int i = 0; i < kWorkers; ++i) {
            go += "go\n"; // a line for each replacement's read
        }
        return go;
    }();
    if (write(fifo.get(), lines.data(), lines.size()) != static_cast<ssize_t>(lines.size()) ||
        !fdsup::test::waitUntil([&] { return rolloutState(fdsupd) == "succeeded"; })) {
        throw std::runtime_error("the replacement did not adopt the connections");
    }
    fdsupd.stop();
}

} // namespace

void held(BenchReport &report, int connections, int repeats)
{
    const std::string base = "footprint.held_" + std::to_string(connections);
    const std::string what = "holding " + std::to_string(connections) + " connections";
    report.figure(base + ".private_kib", "fdsupd private memory, " + what, "KiB", false);
    report.figure(base + ".fds", "fdsupd open descriptors, " + what, "fds", false);
    report.figure(base + ".ms",
                  "drain of " + std::to_string(connections) + " connections into fdsupd's broker", "ms",
                  false);
    for (int i = 0; i < repeats; ++i) {
        heldOnce(report, base, connections);
        (void)std::fprintf(stderr, "footprint-bench: held %d connections (%d of %d)\n", connections, i + 1,
                           repeats);
    }
}

} // namespace fdsup::bench
