// fdsupd as its manager's service (docs/systemd.md): when it is ready, its status line, its descriptor store.
#include "daemon/manager.hpp"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "common/result.hpp"

namespace fdsup {

bool firstStartSettled(const Service &service)
{
    if (service.state() != ServiceState::Starting) {
        return true;
    }
    const auto &slots = service.slots();
    for (unsigned i = 0; i < slots.size(); ++i) {
        const bool ready =
            std::any_of(service.instances().begin(), service.instances().end(),
                        [i](const auto &p) { return p->slot() == i && p->state() == InstanceState::Ready; });
        if (!ready && !slots[i].done && slots[i].lastExit.empty()) {
            return false;
        }
    }
    return true;
}

std::string statusLine(const std::vector<std::unique_ptr<Service>> &services)
{
    std::size_t running = 0;
    std::size_t failed = 0;
    for (const auto &service : services) {
        running += service->state() == ServiceState::Running ? 1 : 0;
        failed += service->state() == ServiceState::Failed ? 1 : 0;
    }
    return std::to_string(running) + "/" + std::to_string(services.size()) + " services running" +
           (failed > 0 ? ", " + std::to_string(failed) + " failed" : "");
}

std::size_t storeListeners(ManagerNotifier &manager, const SocketSet &sockets)
{
    if (!manager.enabled()) {
        return 0;
    }
    std::size_t sent = 0;
    for (const auto &socket : sockets.sockets()) {
        if (socket.adopted) {
            continue;
        }
        std::vector<BorrowedFd> fds;
        for (const auto &fd : socket.fds) {
            fds.push_back(fd.borrow());
        }
        if (const int r = manager.store(socket.config.name, fds); r < 0) {
            spdlog::warn("Failed to put socket '{}' in the manager's descriptor store: {}, ignoring",
                         socket.config.name, errnoText(-r));
            continue;
        }
        sent += fds.size();
    }
    if (sent > 0) {
        spdlog::info("Sent {} listener{} to the manager's descriptor store (kept when the unit sets "
                     "FileDescriptorStoreMax=)",
                     sent, sent == 1 ? "" : "s");
    }
    return sent;
}

void forgetUnmatched(ManagerNotifier &manager, const config::Config &config, const InheritedFds &inherited)
{
    std::set<std::string> names;
    for (const auto &[name, fd] : inherited.byName) {
        if (config.findSocket(name) == nullptr) {
            names.insert(name);
        }
    }
    for (const auto &name : names) {
        (void)manager.removeStored(name);
    }
}

} // namespace fdsup
