// A service's part of a transfer between fdsupds: the connections its broker holds, out and in.
#include <spdlog/spdlog.h>

#include "model/service.hpp"

namespace fdsup {

bool Service::waitsForSocket()
{
    // A `receive = true` socket that has not arrived (or was released to
    // another fdsupd): started once it is here (docs/transfer.md).
    waitingFor_.clear();
    for (const auto &socketName : config().sockets) {
        const HeldSocket *socket = context_.sockets.find(socketName);
        if (socket != nullptr && socket->fds.empty()) {
            waitingFor_ = socketName;
            spdlog::info("Service '{}' waits for socket '{}' before it starts", name(), socketName);
            changed();
            return true;
        }
    }
    return false;
}

std::vector<std::unique_ptr<HeldConnection>> Service::takeHeldConnections()
{
    return broker_.takeAll();
}

Result<void> Service::holdTransferred(std::unique_ptr<HeldConnection> held, Duration remaining)
{
    if (!config().handoff) {
        return Error{EPERM,
                     "service '" + name() + "' does not take handed-over connections (handoff = false)"};
    }
    // Accepted on one of this service's own listeners, as a worker's HANDOFF.
    std::vector<BorrowedFd> listeners;
    for (const auto &socketName : config().sockets) {
        if (const HeldSocket *socket = context_.sockets.find(socketName)) {
            for (const auto &fd : socket->fds) {
                listeners.push_back(fd.borrow());
            }
        }
    }
    return broker_.hold(std::move(held), remaining, listenerAddresses(listeners));
}

} // namespace fdsup
