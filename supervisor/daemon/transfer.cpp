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

Result<std::vector<std::string>> Daemon::importSockets(std::vector<ImportedSocket> sockets)
{
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
    std::vector<std::string> started;
    for (auto &service : services_) {
        if (!service->waitingFor().empty() && service->config().instances > 0) {
            service->start();
            if (service->waitingFor().empty()) {
                started.push_back(service->name());
            }
        }
    }
    spdlog::info("Imported socket{} {}; started {}", received.size() == 1 ? "" : "s",
                 fmt::join(received, ", "),
                 started.empty() ? std::string("no service") : fmt::format("{}", fmt::join(started, ", ")));
    return started;
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
