// Restarts of a service under continuous load: what the clients saw, for the suites that run real servers.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include "daemon_harness.hpp"
#include "http_load.hpp"

namespace fdsup::test {

struct RestartLoad {
    int restarts = 3;
    std::size_t requestsPerRestart = 150; // by each kind of client, before each restart and after the last
    int freshClients = 3;                 // a new connection per request
    int keepAliveClients = 2;
    // Generous: a request that takes this long on loopback is a failure anyway.
    std::chrono::milliseconds requestTimeout = std::chrono::seconds(10);
    std::optional<RawExchange> raw; // another protocol than HTTP GET
};

// What the clients saw across the restarts.
struct RestartFigures {
    HttpLoadReport fresh;
    HttpLoadReport keepAlive;
    int replaced = 0; // restarts after which no pid of before was left
};

// load.restarts `fdsupctl restart SERVICE --wait` under fresh-connection and
// keep-alive load on target, each once both kinds of client made
// requestsPerRestart more requests. Each restart's output and the figures
// are printed (`[ restart  ]`, `[ figures  ]`); a failed restart is a test
// failure (EXPECT), and so is load that stops making progress.
RestartFigures restartUnderLoad(DaemonHarness &fdsupd, const std::string &service, const LoadTarget &target,
                                const RestartLoad &load = {});

} // namespace fdsup::test
