// The control API's transfer methods: Export (fds on the reply), Import (fds on the call), Release.
#include <algorithm>
#include <cerrno>
#include <numeric>

#include <fcntl.h>

#include <spdlog/spdlog.h>

#include "api/control_api.hpp"
#include "core/channel.hpp"
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

std::string hex(const std::vector<std::byte> &bytes)
{
    static constexpr char kDigits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (const std::byte b : bytes) {
        out += kDigits[std::to_integer<unsigned>(b) >> 4U];
        out += kDigits[std::to_integer<unsigned>(b) & 0xfU];
    }
    return out;
}

bool unhex(const std::string &text, std::vector<std::byte> &out)
{
    if (text.size() % 2 != 0) {
        return false;
    }
    for (std::size_t i = 0; i < text.size(); i += 2) {
        unsigned value = 0;
        for (const char c : text.substr(i, 2)) {
            const auto digit = std::string_view("0123456789abcdef").find(c);
            if (digit == std::string_view::npos) {
                return false;
            }
            value = value * 16 + static_cast<unsigned>(digit);
        }
        out.push_back(static_cast<std::byte>(value));
    }
    return true;
}

// A held connection as Export lists it; its fds (the connection, then the
// state's memfd when it has one) follow the sockets' in the message.
Json describeConnection(const TransferredConnection &c)
{
    const HeldConnection &h = *c.held;
    return {{"service", c.service},
            {"id", h.id},
            {"state_flags", h.stateFlags},
            {"state_size", h.stateSize},
            {"state", hex(h.state)},
            {"remaining_usec", std::chrono::duration_cast<std::chrono::microseconds>(c.remaining).count()},
            {"fds", h.stateMemfd ? 2 : 1}};
}

// Import's `connections` (optional), taking their fds from `next` on.
bool parseConnections(const Json &parameters, std::vector<UniqueFd> &fds, std::size_t &next,
                      std::vector<TransferredConnection> &out)
{
    const auto it = parameters.find("connections");
    if (it == parameters.end()) {
        return true;
    }
    if (!it->is_array()) {
        return false;
    }
    for (const Json &c : *it) {
        TransferredConnection connection;
        auto held = std::make_unique<HeldConnection>();
        try {
            connection.service = c.at("service").get<std::string>();
            held->id = c.at("id").get<std::uint64_t>();
            held->stateFlags = c.at("state_flags").get<std::uint32_t>();
            held->stateSize = c.at("state_size").get<std::uint64_t>();
            connection.remaining = std::chrono::microseconds(c.at("remaining_usec").get<std::int64_t>());
            const auto count = c.at("fds").get<std::size_t>();
            const bool memfd = (held->stateFlags & kChannelStateMemfd) != 0;
            if (!unhex(c.at("state").get<std::string>(), held->state) || count != (memfd ? 2U : 1U) ||
                next + count > fds.size()) {
                return false;
            }
        } catch (const nlohmann::json::exception &) {
            return false;
        }
        held->fd = std::move(fds[next++]);
        if ((held->stateFlags & kChannelStateMemfd) != 0) {
            held->stateMemfd = std::move(fds[next++]);
        }
        connection.held = std::move(held);
        out.push_back(std::move(connection));
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
    std::size_t connectionFds = 0;
    for (const auto &service : daemon_.services()) {
        for (const auto &held : service->broker().held()) {
            connectionFds += held->stateMemfd ? 2 : 1;
        }
    }
    if (fds.size() + connectionFds > varlink::kMaxCallFds) {
        refuse(call, "the sockets and held connections come to " +
                         std::to_string(fds.size() + connectionFds) + " descriptors, more than " +
                         std::to_string(varlink::kMaxCallFds) + " a transfer carries");
        return;
    }
    // Held connections move: from here on the caller has them.
    Json connections = Json::array();
    for (auto &connection : daemon_.exportConnections()) {
        connections.push_back(describeConnection(connection));
        fds.push_back(std::move(connection.held->fd));
        if (connection.held->stateMemfd) {
            fds.push_back(std::move(connection.held->stateMemfd));
        }
    }
    spdlog::info("Exporting {} socket{} and {} held connection{} ({} descriptor{}) to {}", list.size(),
                 list.size() == 1 ? "" : "s", connections.size(), connections.size() == 1 ? "" : "s",
                 fds.size(), fds.size() == 1 ? "" : "s", describePeer(call->peer()));
    call->replyWithFds({{"sockets", list}, {"connections", connections}}, std::move(fds));
}

void ControlApi::callImport(const CallPtr &call, const CallParams & /*params*/, Service * /*service*/)
{
    std::vector<UniqueFd> fds = call->takeFds();
    std::vector<std::pair<std::string, std::size_t>> wanted;
    if (!parseImport(call->call().parameters, wanted)) {
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", "sockets"}});
        return;
    }
    std::vector<ImportedSocket> sockets;
    std::size_t next = 0;
    for (const auto &[name, count] : wanted) {
        if (next + count > fds.size()) {
            break;
        }
        ImportedSocket socket{name, {}};
        for (std::size_t i = 0; i < count; ++i) {
            socket.fds.push_back(std::move(fds[next++]));
        }
        sockets.push_back(std::move(socket));
    }
    std::vector<TransferredConnection> connections;
    if (!parseConnections(call->call().parameters, fds, next, connections)) {
        call->fail(varlink::kErrorInvalidParameter, {{"parameter", "connections"}});
        return;
    }
    if (sockets.size() != wanted.size() || next != fds.size()) {
        refuse(call, "the call lists " + std::to_string(next) + " descriptors (or more) but carries " +
                         std::to_string(fds.size()));
        return;
    }
    auto outcome = daemon_.importSockets(std::move(sockets), std::move(connections));
    if (!outcome) {
        refuse(call, outcome.error().message);
        return;
    }
    ImportWaiter waiter{call, {}, outcome->started, outcome->connections, outcome->refusedConnections};
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
        if (!it->call->answered() && !failed.empty()) {
            refuse(it->call, failed);
        } else if (!it->call->answered() && running) {
            it->call->reply({{"sockets", it->sockets},
                             {"started", it->services},
                             {"connections", it->connections},
                             {"refused_connections", it->refusedConnections}});
        } else if (!it->call->answered()) {
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
