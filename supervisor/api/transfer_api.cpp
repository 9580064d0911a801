// The control API's transfer methods: Export (fds on the reply), Import (fds on the call), Release.
#include <algorithm>
#include <cerrno>
#include <numeric>

#include <fcntl.h>

#include <spdlog/spdlog.h>

#include "api/control_api.hpp"
#include "io/peer.hpp"

namespace fdsup {
namespace {

using Json = nlohmann::json;
using CallPtr = std::shared_ptr<PendingCall>;

void refuse(const CallPtr &call, const std::string &reason)
{
    spdlog::warn("Refused {} from {}: {}", call->call().method, describePeer(call->peer()), reason);
    call->fail(varlink::kErrorTransferRefused, {{"reason", reason}});
}

// Import's `sockets`: name and fds count of each, in the order of the fds.
bool parseImport(const Json &parameters, std::vector<std::pair<std::string, std::size_t>> &out)
{
    const auto it = parameters.find("sockets");
    if (it == parameters.end() || !it->is_array()) {
        return false;
    }
    for (const Json &socket : *it) {
        const auto name = socket.find("name");
        const auto fds = socket.find("fds");
        if (!socket.is_object() || name == socket.end() || !name->is_string() || fds == socket.end() ||
            !fds->is_number_unsigned() || fds->get<std::uint64_t>() == 0 ||
            fds->get<std::uint64_t>() > varlink::kMaxCallFds) {
            return false;
        }
        out.emplace_back(name->get<std::string>(), fds->get<std::size_t>());
    }
    return true;
}

} // namespace

void ControlApi::callExport(const CallPtr &call, const CallParams & /*params*/, Service * /*service*/)
{
    Json list = Json::array();
    std::vector<UniqueFd> fds;
    for (const auto &socket : daemon_.exportSockets()) {
        list.push_back({{"name", socket.name}, {"addresses", socket.addresses}, {"fds", socket.fds.size()}});
        for (const auto &fd : socket.fds) {
            // Copies ride on the reply: fdsupd keeps its own and keeps serving.
            UniqueFd copy(fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
            if (!copy) {
                refuse(call, "failed to duplicate a descriptor of socket '" + socket.name +
                                 "': " + errnoText(errno));
                return;
            }
            fds.push_back(std::move(copy));
        }
    }
    if (fds.size() > varlink::kMaxCallFds) {
        refuse(call, "the sockets hold " + std::to_string(fds.size()) + " descriptors, more than " +
                         std::to_string(varlink::kMaxCallFds) + " a transfer carries");
        return;
    }
    spdlog::info("Exporting {} socket{} ({} descriptor{}) to {}", list.size(), list.size() == 1 ? "" : "s",
                 fds.size(), fds.size() == 1 ? "" : "s", describePeer(call->peer()));
    call->replyWithFds({{"sockets", list}}, std::move(fds));
}

void ControlApi::callImport(const CallPtr &call, const CallParams & /*params*/, Service * /*service*/)
{
    std::vector<UniqueFd> fds = call->takeFds();
    std::vector<std::pair<std::string, std::size_t>> wanted;
    if (!parseImport(call->call().parameters, wanted)) {
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", "sockets"}});
        return;
    }
    const std::size_t total = std::accumulate(wanted.begin(), wanted.end(), std::size_t{0},
                                              [](std::size_t n, const auto &w) { return n + w.second; });
    if (total != fds.size()) {
        refuse(call, "the call lists " + std::to_string(total) + " descriptors but carries " +
                         std::to_string(fds.size()));
        return;
    }
    std::vector<ImportedSocket> sockets;
    auto next = fds.begin();
    for (const auto &[name, count] : wanted) {
        ImportedSocket socket{name, {}};
        for (std::size_t i = 0; i < count; ++i, ++next) {
            socket.fds.push_back(std::move(*next));
        }
        sockets.push_back(std::move(socket));
    }
    auto started = daemon_.importSockets(std::move(sockets));
    if (!started) {
        refuse(call, started.error().message);
        return;
    }
    ImportWaiter waiter{call, {}, *started};
    for (const auto &[name, count] : wanted) {
        waiter.sockets.push_back(name);
    }
    importWaiters_.push_back(std::move(waiter));
    checkImports();
}

void ControlApi::checkImports()
{
    for (auto it = importWaiters_.begin(); it != importWaiters_.end();) {
        std::string failed;
        bool running = true;
        for (const auto &name : it->services) {
            const Service *service = daemon_.findService(name);
            if (service == nullptr || service->state() == ServiceState::Failed ||
                (!service->active() && service->state() == ServiceState::Stopped)) {
                failed = "service '" + name + "' " +
                         (service == nullptr                         ? std::string("was removed")
                          : service->state() == ServiceState::Failed ? "failed: " + service->failedReason()
                                                                     : std::string("was stopped")) +
                         " before it served; the sockets are held here too";
                break;
            }
            running = running && service->state() == ServiceState::Running;
        }
        if (!it->call->done() && !failed.empty()) {
            refuse(it->call, failed);
        } else if (!it->call->done() && running) {
            it->call->reply({{"sockets", it->sockets}, {"started", it->services}});
        } else if (!it->call->done()) {
            ++it;
            continue;
        }
        it = importWaiters_.erase(it);
    }
}

void ControlApi::callRelease(const CallPtr &call, const CallParams & /*params*/, Service * /*service*/)
{
    const Json &parameters = call->call().parameters;
    const auto it = parameters.find("sockets");
    std::vector<std::string> names;
    if (it == parameters.end() || !it->is_array() ||
        !std::all_of(it->begin(), it->end(), [](const Json &n) { return n.is_string(); })) {
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", "sockets"}});
        return;
    }
    for (const Json &name : *it) {
        names.push_back(name.get<std::string>());
    }
    auto stopped = daemon_.releaseSockets(names);
    if (!stopped) {
        refuse(call, stopped.error().message);
        return;
    }
    call->reply({{"sockets", names}, {"stopped", *stopped}});
}

} // namespace fdsup
