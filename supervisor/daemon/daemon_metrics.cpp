// The daemon's metrics endpoint: bound at start, moved by a reload, carried across a re-exec.
#include <utility>

#include <spdlog/spdlog.h>

#include "daemon/daemon.hpp"

namespace fdsup {

Result<void> Daemon::serveMetrics(UniqueFd listener)
{
    const auto &address = config_.supervisor.metrics;
    if (!address) {
        metrics_.reset();
        return {};
    }
    // Through this, so that the API layer may set the render function after
    // the endpoint exists (nothing is served before the loop runs).
    auto render = [this] {
        return metricsRender_ ? metricsRender_() : std::string();
    };
    auto server = MetricsServer::serve(loop_, std::move(listener), *address, std::move(render));
    if (!server) {
        return server.error();
    }
    metrics_ = std::move(*server);
    spdlog::info("Serving metrics on {}", formatAddress(*address));
    return {};
}

Result<void> Daemon::openMetrics()
{
    if (!config_.supervisor.metrics) {
        return {};
    }
    auto bound = MetricsServer::bind(*config_.supervisor.metrics);
    if (!bound) {
        return bound.error();
    }
    return serveMetrics(std::move(*bound));
}

ReloadChange::Status Daemon::applyMetrics(const config::SupervisorConfig &supervisor, UniqueFd bound)
{
    // The old endpoint goes first: a unix socket file it leaves behind is
    // removed only when it is still the one it bound.
    metrics_.reset();
    config_.supervisor.metrics = supervisor.metrics;
    config_.supervisor.metricsPublic = supervisor.metricsPublic;
    if (auto served = serveMetrics(std::move(bound)); !served) {
        spdlog::error("Reload: {}", served.error().message);
        return ReloadChange::Status::Failed;
    }
    if (!supervisor.metrics) {
        spdlog::info("Metrics are no longer served");
    }
    return ReloadChange::Status::Done;
}

} // namespace fdsup
