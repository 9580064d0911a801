// fdsupd as its manager's service (docs/systemd.md): when it is ready, its status line, its descriptor store.
#include "daemon/manager.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <string_view>
#include <vector>

#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "common/result.hpp"

namespace fdsup {
namespace {

constexpr std::string_view kStoredSocketPrefix = "fdsup.socket.";

} // namespace

bool firstStartSettled(const Service &service)
{
    if (service.state() != ServiceState::Starting) {
        return true;
    }
    // One pass over the instances, not one per slot: asked at every event
    // while the first start goes on (quadratic per event with 1,000 instances).
    const auto &slots = service.slots();
    std::vector<bool> ready(slots.size());
    for (const auto &p : service.instances()) {
        if (p->slot() < ready.size() && p->state() == InstanceState::Ready) {
            ready[p->slot()] = true;
        }
    }
    for (unsigned i = 0; i < slots.size(); ++i) {
        if (!ready[i] && !slots[i].done && slots[i].lastExit.empty()) {
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
        const ServiceState state = service->state(); // O(instances): once
        running += state == ServiceState::Running ? 1 : 0;
        failed += state == ServiceState::Failed ? 1 : 0;
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
        if (const int r = manager.store(storedSocketName(socket.config.name), fds); r < 0) {
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

std::string storedSocketName(std::string_view socket)
{
    return std::string(kStoredSocketPrefix) + std::string(socket);
}

namespace {

// Why a stored listener of socket `name` cannot be adopted, or "".
std::string unusable(const config::Config &config, const InheritedFds &inherited, const std::string &name,
                     const std::vector<UniqueFd> &fds)
{
    const config::SocketConfig *socket = config.findSocket(name);
    if (socket == nullptr) {
        return "it matches no [socket." + name + "]";
    }
    if (inherited.byName.count(name) > 0) {
        return "a .socket unit passes socket '" + name + "' (FileDescriptorName=" + name + ")";
    }
    if (auto checked = checkBoundAsConfigured(*socket, fds, "stored"); !checked) {
        return checked.error().message;
    }
    return "";
}

} // namespace

void reclaimStored(ManagerNotifier &manager, const config::Config &config, InheritedFds &inherited)
{
    std::map<std::string, std::vector<UniqueFd>> stored;
    for (auto it = inherited.byName.begin(); it != inherited.byName.end();) {
        if (!it->first.starts_with(kStoredSocketPrefix)) {
            ++it;
            continue;
        }
        stored[it->first.substr(kStoredSocketPrefix.size())].push_back(std::move(it->second));
        it = inherited.byName.erase(it);
    }
    for (auto &[name, fds] : stored) {
        const std::string why = unusable(config, inherited, name, fds);
        if (why.empty()) {
            for (auto &fd : fds) {
                inherited.byName.emplace(name, std::move(fd));
            }
            continue;
        }
        spdlog::info("Not adopting the stored listener{} of socket '{}': {}; closing {} and removing {} from "
                     "the manager's descriptor store",
                     fds.size() == 1 ? "" : "s", name, why, fds.size() == 1 ? "it" : "them",
                     fds.size() == 1 ? "it" : "them");
        for (const auto &fd : fds) {
            // The manager's copy keeps the socket open until it handles
            // FDSTOREREMOVE=1: shut down, it stops listening now.
            (void)shutdown(fd.get(), SHUT_RDWR);
        }
        (void)manager.removeStored(storedSocketName(name));
    }
}

void forgetStored(ManagerNotifier &manager, std::string_view socket)
{
    (void)manager.removeStored(storedSocketName(socket));
    (void)manager.removeStored(socket);
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
