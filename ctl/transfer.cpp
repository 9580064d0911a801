// fdsupctl transfer: moves the sockets one fdsupd holds to another (docs/transfer.md).
#include <algorithm>
#include <iostream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "control/varlink.hpp"
#include "table.hpp"

namespace fdsup::ctl {
namespace {

using Json = nlohmann::json;

// One side of the transfer: its name in messages and the exit code that blames it.
struct Side {
    const char *name; // "source", "target"
    std::string socket;
    int exitCode;
};

int fail(const Side &side, const std::string &what)
{
    std::cerr << "fdsupctl: transfer: " << side.name << " fdsupd at " << side.socket << ": " << what << '\n';
    return side.exitCode;
}

// A call; on failure prints why, blaming the side, and returns its exit code.
int call(varlink::Client &client, const Side &side, const std::string &name, Json parameters,
         std::span<const BorrowedFd> fds, Json &out)
{
    const std::string method = std::string(varlink::kInterface) + "." + name;
    auto reply = client.call(varlink::Call{method, std::move(parameters), false, false}, fds);
    if (!reply) {
        return fail(side, name + " failed: " + reply.error().message);
    }
    if (reply->error == varlink::kErrorPermissionDenied) {
        return fail(side, "permission denied: this user may not call " + name +
                              " (see allow_users and allow_groups in its fdsupd.toml)");
    }
    if (reply->error == varlink::kErrorTransferRefused) {
        const auto reason = reply->parameters.find("reason");
        return fail(side, name + " refused: " +
                              (reason != reply->parameters.end() && reason->is_string()
                                   ? printable(reason->get<std::string>())
                                   : std::string("no reason given")));
    }
    if (!reply->error.empty()) {
        return fail(side,
                    name + " failed: " + printable(reply->error) + " " +
                        printable(reply->parameters.dump(-1, ' ', false, Json::error_handler_t::replace)));
    }
    out = std::move(reply->parameters);
    return kExitOk;
}

Result<varlink::Client> connectTo(const Side &side, const ClientOptions &options)
{
    const auto timeout = options.timeout == Duration::max()
                             ? std::chrono::milliseconds::max()
                             : std::chrono::ceil<std::chrono::milliseconds>(options.timeout);
    return varlink::Client::connect(side.socket, timeout);
}

// Export's sockets, cut to `only` when given, with their fds; false (after
// saying why) when the reply does not add up.
bool selectSockets(const Json &exported, std::vector<UniqueFd> fds, const std::vector<std::string> &only,
                   Json &selected, std::vector<UniqueFd> &kept, std::string &why)
{
    const auto sockets = exported.find("sockets");
    if (sockets == exported.end() || !sockets->is_array()) {
        why = "Export's reply has no sockets";
        return false;
    }
    std::size_t next = 0;
    selected = Json::array();
    for (const Json &socket : *sockets) {
        const std::size_t count = socket.value("fds", std::size_t{0});
        const std::string name = socket.value("name", std::string());
        if (next + count > fds.size()) {
            why =
                "Export's reply lists more descriptors than it carries (" + std::to_string(fds.size()) + ")";
            return false;
        }
        if (only.empty() || std::find(only.begin(), only.end(), name) != only.end()) {
            selected.push_back(socket);
            for (std::size_t i = 0; i < count; ++i) {
                kept.push_back(std::move(fds[next + i]));
            }
        }
        next += count;
    }
    if (next != fds.size()) {
        why = "Export's reply lists " + std::to_string(next) + " descriptors but carries " +
              std::to_string(fds.size());
        return false;
    }
    for (const auto &name : only) {
        if (std::none_of(selected.begin(), selected.end(),
                         [&](const Json &s) { return s.value("name", "") == name; })) {
            why = "it holds no socket '" + printable(name) + "'";
            return false;
        }
    }
    if (selected.empty()) {
        why = "it holds no socket to transfer";
        return false;
    }
    return true;
}

} // namespace

int transfer(const ClientOptions &options, const std::string &target, const std::vector<std::string> &only)
{
    const Side source{"source", options.socket, kExitTransferSource};
    const Side to{"target", target, kExitTransferTarget};
    auto from = connectTo(source, options);
    if (!from) {
        return fail(source, "cannot connect: " + errnoText(from.error().code));
    }
    // 1. Export: the source keeps its copies and keeps serving.
    Json exported;
    if (const int r = call(*from, source, "Export", Json::object(), {}, exported); r != kExitOk) {
        return r;
    }
    Json sockets;
    std::vector<UniqueFd> fds;
    if (std::string why; !selectSockets(exported, from->takeFds(), only, sockets, fds, why)) {
        return fail(source, why);
    }
    // 2. Import: the target adopts them and starts what waited for them.
    auto into = connectTo(to, options);
    if (!into) {
        return fail(to, "cannot connect: " + errnoText(into.error().code) + "; the source is unchanged");
    }
    // Import is answered once the target's services are ready: as long as
    // their ready_timeout, which fdsupd enforces, unless --timeout says otherwise.
    if (!options.timeoutGiven) {
        into->setTimeout(std::chrono::milliseconds::max());
    }
    std::vector<BorrowedFd> borrowed;
    borrowed.reserve(fds.size());
    for (const auto &fd : fds) {
        borrowed.push_back(fd.borrow());
    }
    Json imported;
    if (const int r = call(*into, to, "Import", {{"sockets", sockets}}, borrowed, imported); r != kExitOk) {
        std::cerr << "fdsupctl: transfer: the source is unchanged and still serving\n";
        return r;
    }
    fds.clear();
    // 3. Release, only now: no moment without a holder that serves.
    Json names = Json::array();
    for (const Json &socket : sockets) {
        names.push_back(socket.value("name", ""));
    }
    Json released;
    if (const int r = call(*from, source, "Release", {{"sockets", names}}, {}, released); r != kExitOk) {
        std::cerr << "fdsupctl: transfer: the target holds the sockets now, and the source still serves on "
                     "them too\n";
        return r;
    }
    if (options.json) {
        std::cout << Json{{"sockets", sockets},
                          {"started", imported.value("started", Json::array())},
                          {"stopped", released.value("stopped", Json::array())}}
                         .dump(2)
                  << '\n';
        return kExitOk;
    }
    for (const Json &socket : sockets) {
        std::cout << "moved socket '" << printable(socket.value("name", "")) << "' ("
                  << socket.value("fds", 0) << " descriptor" << (socket.value("fds", 0) == 1 ? "" : "s")
                  << ") to " << target << '\n';
    }
    for (const Json &name : imported.value("started", Json::array())) {
        std::cout << "started '" << printable(name.get<std::string>()) << "' on the target\n";
    }
    for (const Json &name : released.value("stopped", Json::array())) {
        std::cout << "stopping '" << printable(name.get<std::string>()) << "' on the source\n";
    }
    return kExitOk;
}

} // namespace fdsup::ctl
