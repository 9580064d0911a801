// fdsupctl transfer: moves the sockets one fdsupd holds to another (docs/transfer.md).
#include <algorithm>
#include <iostream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "control/varlink.hpp"
#include "replies.hpp"

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
    if (reply->error == varlink::kErrorManagerPermissionDenied) {
        const auto message = reply->parameters.find("message");
        return fail(side, "permission denied: " + (message != reply->parameters.end() && message->is_string()
                                                       ? printable(message->get<std::string>())
                                                       : name));
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

// What Export gave: the sockets (cut to `only` when given) and the held
// connections, each with its descriptors, in the reply's order.
struct Exported {
    Json sockets = Json::array();
    std::vector<UniqueFd> socketFds;
    Json connections = Json::array();
    std::vector<UniqueFd> connectionFds;
};

std::size_t countOf(const Json &list)
{
    std::size_t n = 0;
    for (const Json &item : list) {
        n += item.value("fds", std::size_t{0});
    }
    return n;
}

// False (with why) when the reply does not add up or lacks a socket asked for.
bool split(const Json &reply, std::vector<UniqueFd> fds, const std::vector<std::string> &only, Exported &out,
           std::string &why)
{
    const auto sockets = reply.find("sockets");
    const auto connections = reply.find("connections");
    if (sockets == reply.end() || !sockets->is_array()) {
        why = "Export's reply has no sockets";
        return false;
    }
    if (connections != reply.end() && connections->is_array()) {
        out.connections = *connections;
    }
    if (countOf(*sockets) + countOf(out.connections) != fds.size()) {
        why = "Export's reply lists " + std::to_string(countOf(*sockets) + countOf(out.connections)) +
              " descriptors but carries " + std::to_string(fds.size());
        return false;
    }
    std::size_t next = 0;
    for (const Json &socket : *sockets) {
        const std::size_t count = socket.value("fds", std::size_t{0});
        const bool wanted =
            only.empty() || std::find(only.begin(), only.end(), socket.value("name", "")) != only.end();
        if (wanted) {
            out.sockets.push_back(socket);
        }
        for (std::size_t i = 0; i < count; ++i, ++next) {
            if (wanted) {
                out.socketFds.push_back(std::move(fds[next]));
            }
        }
    }
    for (; next < fds.size(); ++next) {
        out.connectionFds.push_back(std::move(fds[next]));
    }
    for (const auto &name : only) {
        if (std::none_of(out.sockets.begin(), out.sockets.end(),
                         [&](const Json &s) { return s.value("name", "") == name; })) {
            why = "it holds no socket '" + printable(name) + "'";
            return false;
        }
    }
    if (out.sockets.empty() && out.connections.empty()) {
        why = "it holds no socket to transfer";
        return false;
    }
    return true;
}

std::vector<BorrowedFd> borrow(const std::vector<UniqueFd> &a, const std::vector<UniqueFd> &b)
{
    std::vector<BorrowedFd> out;
    out.reserve(a.size() + b.size());
    for (const auto *list : {&a, &b}) {
        for (const auto &fd : *list) {
            out.push_back(fd.borrow());
        }
    }
    return out;
}

// The target refused: the held connections go back to the source's brokers.
void giveBack(varlink::Client &from, const Side &source, const Exported &exported)
{
    if (exported.connections.empty()) {
        return;
    }
    Json back;
    const std::vector<UniqueFd> none;
    if (call(from, source, "Import", {{"sockets", Json::array()}, {"connections", exported.connections}},
             borrow(none, exported.connectionFds), back) == kExitOk) {
        std::cerr << "fdsupctl: transfer: " << back.value("connections", 0)
                  << " held connection(s) given back to the source\n";
    }
}

// What moved, on stdout; held connections the target closed, on stderr.
void printDone(const ClientOptions &options, const std::string &target, const Json &sockets,
               const Json &imported, const Json &released)
{
    for (const Json &refused : imported.value("refused_connections", Json::array())) {
        std::cerr << "fdsupctl: transfer: the target closed held " << printable(refused.get<std::string>())
                  << '\n';
    }
    if (options.json) {
        std::cout << Json{{"sockets", sockets},
                          {"connections", imported.value("connections", 0)},
                          {"started", imported.value("started", Json::array())},
                          {"stopped", released.value("stopped", Json::array())}}
                         .dump(2)
                  << '\n';
        return;
    }
    for (const Json &socket : sockets) {
        std::cout << "moved socket '" << printable(socket.value("name", "")) << "' ("
                  << socket.value("fds", 0) << " descriptor" << (socket.value("fds", 0) == 1 ? "" : "s")
                  << ") to " << target << '\n';
    }
    if (const int n = imported.value("connections", 0); n > 0) {
        std::cout << "moved " << n << " held connection" << (n == 1 ? "" : "s") << '\n';
    }
    for (const Json &name : imported.value("started", Json::array())) {
        std::cout << "started '" << printable(name.get<std::string>()) << "' on the target\n";
    }
    for (const Json &name : released.value("stopped", Json::array())) {
        std::cout << "stopping '" << printable(name.get<std::string>()) << "' on the source\n";
    }
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
    Json reply;
    if (const int r = call(*from, source, "Export", Json::object(), {}, reply); r != kExitOk) {
        return r;
    }
    Exported exported;
    if (std::string why; !split(reply, from->takeFds(), only, exported, why)) {
        return fail(source, why);
    }
    // 2. Import: the target adopts them and starts what waited for them.
    auto into = connectTo(to, options);
    if (!into) {
        giveBack(*from, source, exported);
        return fail(to, "cannot connect: " + errnoText(into.error().code) + "; the source is unchanged");
    }
    // Import is answered once the target's services are ready: as long as
    // their ready_timeout, which fdsupd enforces, unless --timeout says otherwise.
    if (!options.timeoutGiven) {
        into->setTimeout(std::chrono::milliseconds::max());
    }
    Json imported;
    if (const int r =
            call(*into, to, "Import", {{"sockets", exported.sockets}, {"connections", exported.connections}},
                 borrow(exported.socketFds, exported.connectionFds), imported);
        r != kExitOk) {
        giveBack(*from, source, exported);
        std::cerr << "fdsupctl: transfer: the source is unchanged and still serving\n";
        return r;
    }
    const Json &sockets = exported.sockets;
    exported.socketFds.clear();
    exported.connectionFds.clear();
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
    printDone(options, target, sockets, imported, released);
    return kExitOk;
}

} // namespace fdsup::ctl
