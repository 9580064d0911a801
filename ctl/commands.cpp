// fdsupctl's commands that talk to a running fdsupd over the control socket.
#include "commands.hpp"

#include <cerrno>
#include <iostream>

#include <nlohmann/json.hpp>

#include "fdsup/varlink.hpp"
#include "table.hpp"

namespace fdsup::ctl {
namespace {

using Json = nlohmann::json;

std::chrono::milliseconds clientTimeout(Duration timeout)
{
    if (timeout == Duration::max()) {
        return std::chrono::milliseconds::max();
    }
    return std::chrono::ceil<std::chrono::milliseconds>(timeout);
}

std::string serviceOf(const Json &parameters)
{
    const auto it = parameters.find("service");
    return it != parameters.end() && it->is_string() ? printable(it->get<std::string>()) : "?";
}

// One line on stderr for a varlink error reply, and the exit code it maps to.
int reportError(const std::string &method, const varlink::Reply &reply)
{
    const std::string &error = reply.error;
    const Json &p = reply.parameters;
    if (error == varlink::kErrorPermissionDenied) {
        std::cerr << "fdsupctl: permission denied: this user may not call " << method
                  << " (see allow_users and allow_groups in fdsupd.toml)\n";
        return kExitRefused;
    }
    if (error == varlink::kErrorNoSuchService) {
        std::cerr << "fdsupctl: no such service: '" << serviceOf(p) << "'\n";
        return kExitNotFound;
    }
    if (error == varlink::kErrorServiceFailed) {
        const auto reason = p.find("reason");
        std::cerr << "fdsupctl: service '" << serviceOf(p) << "' failed"
                  << (reason != p.end() && reason->is_string() ? ": " + printable(reason->get<std::string>())
                                                               : std::string())
                  << '\n';
        return kExitFailed;
    }
    if (error == varlink::kErrorShuttingDown) {
        std::cerr << "fdsupctl: fdsupd is shutting down\n";
        return kExitFailed;
    }
    if (error == varlink::kErrorMethodNotFound || error == varlink::kErrorInterfaceNotFound) {
        std::cerr << "fdsupctl: fdsupd does not support " << method << " (is it older than fdsupctl?)\n";
        return kExitFailed;
    }
    std::cerr << "fdsupctl: " << method << " failed: " << printable(error);
    if (!p.empty()) {
        std::cerr << ' ' << printable(p.dump(-1, ' ', false, Json::error_handler_t::replace));
    }
    std::cerr << '\n';
    return kExitFailed;
}

// Calls io.fdsup.Manager.<name>; on success stores the reply's parameters.
// Otherwise prints why and returns the exit code.
int callManager(const ClientOptions &options, const std::string &name, Json parameters, Json &out)
{
    const std::string method = std::string(varlink::kInterface) + "." + name;
    auto client = varlink::Client::connect(options.socket, clientTimeout(options.timeout));
    if (!client) {
        const int code = client.error().code;
        if (code == EACCES || code == EPERM) {
            std::cerr << "fdsupctl: permission denied connecting to fdsupd at " << options.socket << ": "
                      << errnoText(code) << '\n';
            return kExitRefused;
        }
        std::cerr << "fdsupctl: cannot connect to fdsupd at " << options.socket << ": " << errnoText(code)
                  << (code == ENOENT || code == ECONNREFUSED ? " (is fdsupd running?)" : "") << '\n';
        return kExitCannotConnect;
    }
    auto reply = client->call(varlink::Call{method, std::move(parameters), false, false});
    if (!reply) {
        if (reply.error().code == ETIMEDOUT) {
            std::cerr << "fdsupctl: no reply from fdsupd to " << method << " within "
                      << formatDuration(options.timeout) << " (--timeout)\n";
        } else {
            std::cerr << "fdsupctl: " << reply.error().message << '\n';
        }
        return kExitFailed;
    }
    if (!reply->error.empty()) {
        return reportError(method, *reply);
    }
    out = std::move(reply->parameters);
    return kExitOk;
}

void printJson(const Json &j)
{
    std::cout << j.dump(2, ' ', false, Json::error_handler_t::replace) << '\n';
}

int changeService(const ClientOptions &options, const std::string &name, const std::string &service)
{
    Json reply;
    if (const int rc = callManager(options, name, {{"service", service}}, reply); rc != kExitOk) {
        return rc;
    }
    if (options.json) {
        printJson(reply);
    } else {
        const auto state = reply.find("state");
        std::cout << printable(service) << ": "
                  << (state != reply.end() && state->is_string() ? printable(state->get<std::string>()) : "?")
                  << '\n';
    }
    return kExitOk;
}

} // namespace

int status(const ClientOptions &options, const std::optional<std::string> &service)
{
    Json parameters = Json::object();
    if (service) {
        parameters["service"] = *service;
    }
    Json reply;
    if (const int rc = callManager(options, "Status", std::move(parameters), reply); rc != kExitOk) {
        return rc;
    }
    if (options.json) {
        printJson(reply);
    } else {
        std::cout << formatStatus(reply, useColour());
    }
    return kExitOk;
}

int sockets(const ClientOptions &options)
{
    Json reply;
    if (const int rc = callManager(options, "Sockets", Json::object(), reply); rc != kExitOk) {
        return rc;
    }
    if (options.json) {
        printJson(reply);
    } else {
        std::cout << formatSockets(reply, useColour());
    }
    return kExitOk;
}

int startService(const ClientOptions &options, const std::string &service)
{
    return changeService(options, "Start", service);
}

int stopService(const ClientOptions &options, const std::string &service)
{
    return changeService(options, "Stop", service);
}

} // namespace fdsup::ctl
