// Moving sockets between fdsupds: what Export gives, what Import takes, what Release lets go.
#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "daemon/daemon.hpp"

namespace fdsup {

std::vector<ExportedSocket> Daemon::exportSockets() const
{
    std::vector<ExportedSocket> exported;
    for (const auto &held : sockets_.sockets()) {
        if (held.fds.empty()) {
            continue; // not received yet, or released
        }
        ExportedSocket socket{held.config.name, held.addresses, {}};
        for (const auto &fd : held.fds) {
            socket.fds.push_back(fd.borrow());
        }
        exported.push_back(std::move(socket));
    }
    return exported;
}

std::vector<TransferredConnection> Daemon::exportConnections()
{
    std::vector<TransferredConnection> exported;
    for (auto &service : services_) {
        const Duration timeout = service->broker().holdTimeout();
        for (auto &held : service->takeHeldConnections()) {
            const Duration remaining = std::max(Duration::zero(), timeout - (loop_.now() - held->since));
            exported.push_back({service->name(), std::move(held), remaining});
        }
    }
    return exported;
}

Result<ImportOutcome> Daemon::importSockets(std::vector<ImportedSocket> sockets,
                                            std::vector<TransferredConnection> connections)
{
    for (const auto &connection : connections) {
        const Service *service = findService(connection.service);
        if (service == nullptr || !service->config().handoff) {
            return Error{ENOENT,
                         fmt::format("no service '{}' with handoff = true here for its held connections",
                                     connection.service)};
        }
    }
    std::vector<std::string> received;
    for (auto &socket : sockets) {
        if (std::count_if(sockets.begin(), sockets.end(),
                          [&](const auto &s) { return s.name == socket.name; }) > 1) {
            return Error{EINVAL, fmt::format("socket '{}' is in the transfer twice", socket.name)};
        }
    }
    for (auto &socket : sockets) {
        if (auto r = sockets_.receive(socket.name, std::move(socket.fds)); !r) {
            // All or nothing: what was taken already goes back (closed here;
            // the sender still holds its copies).
            for (const auto &name : received) {
                (void)sockets_.release(name);
            }
            return r.error();
        }
        received.push_back(socket.name);
    }
    ImportOutcome outcome;
    for (auto &service : services_) {
        if (!service->waitingFor().empty() && service->config().instances > 0) {
            service->start();
            if (service->waitingFor().empty()) {
                outcome.started.push_back(service->name());
            }
        }
    }
    for (auto &connection : connections) {
        const std::uint64_t id = connection.held->id;
        auto held = findService(connection.service)
                        ->holdTransferred(std::move(connection.held), connection.remaining);
        if (!held) {
            outcome.refusedConnections.push_back(
                fmt::format("connection {} of '{}': {}", id, connection.service, held.error().message));
            spdlog::warn("Refused held connection {} of '{}': {}, closing it", id, connection.service,
                         held.error().message);
            continue;
        }
        ++outcome.connections;
    }
    spdlog::info("Imported {} socket{} ({}) and {} held connection{}; started {}", received.size(),
                 received.size() == 1 ? "" : "s", fmt::join(received, ", "), outcome.connections,
                 outcome.connections == 1 ? "" : "s",
                 outcome.started.empty() ? std::string("no service")
                                         : fmt::format("{}", fmt::join(outcome.started, ", ")));
    return outcome;
}

Result<std::vector<std::string>> Daemon::releaseSockets(const std::vector<std::string> &names)
{
    for (const auto &name : names) {
        if (sockets_.find(name) == nullptr) {
            return Error{ENOENT, fmt::format("no socket '{}' here", name)};
        }
    }
    std::vector<std::string> stopped;
    for (auto &service : services_) {
        const auto &uses = service->config().sockets;
        const bool affected = std::any_of(names.begin(), names.end(), [&](const std::string &name) {
            return std::find(uses.begin(), uses.end(), name) != uses.end();
        });
        if (affected && (service->active() || service->liveInstances() > 0)) {
            service->stop();
            stopped.push_back(service->name());
        }
    }
    for (const auto &name : names) {
        (void)sockets_.release(name);
    }
    spdlog::info("Released socket{} {} to another fdsupd; stopping {}", names.size() == 1 ? "" : "s",
                 fmt::join(names, ", "),
                 stopped.empty() ? std::string("no service") : fmt::format("{}", fmt::join(stopped, ", ")));
    return stopped;
}

} // namespace fdsup
