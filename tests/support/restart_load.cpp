// Restarts of a service under continuous load: what the clients saw, for the suites that run real servers.
#include "restart_load.hpp"

#include <algorithm>
#include <iostream>
#include <set>

#include <gtest/gtest.h>

#include "test_support.hpp"

namespace fdsup::test {

RestartFigures restartUnderLoad(DaemonHarness &fdsupd, const std::string &service, const LoadTarget &target,
                                const RestartLoad &load)
{
    RestartFigures figures;
    HttpLoad fresh(target, load.freshClients, HttpLoad::Mode::Fresh, load.requestTimeout, load.raw);
    HttpLoad keepAlive(target, load.keepAliveClients, HttpLoad::Mode::KeepAlive, load.requestTimeout,
                       load.raw);
    fresh.start();
    keepAlive.start();
    const auto progress = [&] {
        EXPECT_TRUE(fresh.waitForRequests(fresh.requests(), load.requestsPerRestart, kEventDeadline));
        EXPECT_TRUE(keepAlive.waitForRequests(keepAlive.requests(), load.requestsPerRestart, kEventDeadline));
    };
    for (int i = 0; i < load.restarts; ++i) {
        progress();
        const std::set<pid_t> before = instancePids(fdsupd.status(service));
        const ProcessResult restart = fdsupd.fdsupctl({"restart", service, "--wait"});
        std::cout << "[ restart  ] " << service << " " << (i + 1) << ": " << restart.out;
        EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err << fdsupd.log();
        const std::set<pid_t> after = instancePids(fdsupd.status(service));
        const bool replaced = !after.empty() && std::none_of(after.begin(), after.end(),
                                                             [&](pid_t pid) { return before.contains(pid); });
        figures.replaced += replaced ? 1 : 0;
    }
    progress();
    figures.fresh = fresh.stop();
    figures.keepAlive = keepAlive.stop();
    std::cout << "[ figures  ] " << service << ", " << load.restarts << " restarts (" << figures.replaced
              << " replaced every instance)\n"
              << "[ figures  ]   new connection per request (" << load.freshClients
              << " clients): " << figures.fresh.summary() << "\n"
              << "[ figures  ]   keep-alive (" << load.keepAliveClients
              << " clients): " << figures.keepAlive.summary() << "\n";
    return figures;
}

} // namespace fdsup::test
