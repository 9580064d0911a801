// fdsupctl's commands that talk to a running fdsupd over the control socket.
#include "commands.hpp"

#include <cerrno>
#include <csignal>
#include <functional>
#include <iostream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "control/varlink.hpp"
#include "replies.hpp"

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

// fdsupd enforces the deadline of every step of a long operation itself:
// without --timeout, fdsupctl waits as long as that takes. With it, a little
// longer than the deadline fdsupd was given, so that its answer (a rollback,
// say) arrives before fdsupctl gives up.
constexpr Duration kReplyMargin = std::chrono::seconds(5);

Duration longReplyTimeout(const ClientOptions &options)
{
    if (!options.timeoutGiven || options.timeout >= Duration::max() - kReplyMargin) {
        return Duration::max();
    }
    return options.timeout + kReplyMargin;
}

// How a call waits for its replies.
struct Wait {
    Duration reply; // for each reply
    // Ask for progress replies (more); progress is called with each, and
    // returns false when stdout is gone, which ends the call successfully.
    bool more = false;
    std::function<bool(const Json &)> progress = nullptr;
    // fdsupd hanging up after progress ends the call (a stream) rather than
    // failing it.
    bool streaming = false;
};

// Output is flushed as it arrives; false once nobody reads it (EPIPE, with
// SIGPIPE ignored).
bool flushed()
{
    std::cout.flush();
    return static_cast<bool>(std::cout);
}

void printJson(const Json &j)
{
    std::cout << j.dump(2, ' ', false, Json::error_handler_t::replace) << '\n';
}

std::string stringOf(const Json &parameters, const char *key)
{
    const auto it = parameters.find(key);
    return it != parameters.end() && it->is_string() ? printable(it->get<std::string>()) : "?";
}

std::string serviceOf(const Json &parameters)
{
    return stringOf(parameters, "service");
}

std::string fileOf(const Json &parameters)
{
    return stringOf(parameters, "file");
}

// What went wrong, on stderr (for ReloadFailed also what was done, on
// stdout), for a varlink error reply, and the exit code it maps to.
int reportError(const std::string &method, const varlink::Reply &reply, bool json)
{
    const std::string &error = reply.error;
    const Json &p = reply.parameters;
    if (error == varlink::kErrorPermissionDenied) {
        std::cerr << "fdsupctl: permission denied: this user may not call " << method
                  << " (see allow_users and allow_groups in fdsupd.toml)\n";
        return kExitRefused;
    }
    if (error == varlink::kErrorManagerPermissionDenied) {
        // Connected, but without the right this call needs (docs/access.md).
        std::cerr << "fdsupctl: permission denied: " << stringOf(p, "message") << '\n';
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
    if (error == varlink::kErrorRolloutInProgress) {
        const auto id = p.find("rollout");
        std::cerr << "fdsupctl: a rollout of '" << serviceOf(p) << "' is already in progress"
                  << (id != p.end() && id->is_number_integer() ? " (rollout " + id->dump() + ")" : "")
                  << (method.ends_with(".Restart") ? "; use --queue to wait for it"
                                                   : "; try again when it has finished")
                  << '\n';
        return kExitFailed;
    }
    if (error == varlink::kErrorRolloutFailed) {
        std::cerr << formatRolloutFailed(p);
        return kExitFailed;
    }
    if (error == varlink::kErrorNoRollout) {
        std::cerr << "fdsupctl: no rollout of '" << serviceOf(p) << "' is in progress\n";
        return kExitFailed;
    }
    if (error == varlink::kErrorConfigInvalid) {
        std::cerr << formatConfigErrors(p);
        return kExitFailed;
    }
    if (error == varlink::kErrorReloadRefused) {
        std::cerr << formatReloadRefused(p);
        return kExitFailed;
    }
    if (error == varlink::kErrorReloadFailed) {
        // Some changes were applied: say which, where a success would.
        if (json) {
            printJson(p);
        } else {
            std::cout << formatChanges(p, useColour());
        }
        std::cout.flush();
        std::cerr << "fdsupctl: reload of " << fileOf(p) << " partly failed\n";
        return kExitFailed;
    }
    if (error == varlink::kErrorReexecFailed) {
        std::cerr << "fdsupctl: re-exec failed, fdsupd goes on as it was: "
                  << printable(stringOf(p, "reason")) << '\n';
        return kExitFailed;
    }
    if (error == varlink::kErrorReexecuting) {
        std::cerr << "fdsupctl: fdsupd is re-executing; try again when it is done\n";
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

// Calls io.fdsup.Manager.<name>; on success stores the (final) reply's
// parameters. Otherwise prints why and returns the exit code.
int callManager(const ClientOptions &options, const std::string &name, Json parameters, Json &out,
                const Wait &wait)
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
    client->setTimeout(clientTimeout(wait.reply));
    auto reply = client->call(varlink::Call{method, std::move(parameters), wait.more, false});
    bool progressed = false;
    while (reply && reply->error.empty() && reply->continues) {
        progressed = true;
        if (wait.progress && !wait.progress(reply->parameters)) {
            return kExitOk;
        }
        reply = client->next();
    }
    if (!reply) {
        if (reply.error().code == ETIMEDOUT) {
            std::cerr << "fdsupctl: no reply from fdsupd to " << method << " within "
                      << formatDuration(options.timeout) << " (--timeout)\n";
        } else if (wait.streaming && progressed && reply.error().code == ECONNRESET) {
            std::cerr << "fdsupctl: fdsupd ended the stream\n";
            return kExitOk;
        } else {
            std::cerr << "fdsupctl: " << reply.error().message << '\n';
        }
        return kExitFailed;
    }
    if (!reply->error.empty()) {
        return reportError(method, *reply, options.json);
    }
    out = std::move(reply->parameters);
    return kExitOk;
}

// Calls io.fdsup.Manager.<name> and prints its final reply with format, or
// as JSON.
int callAndPrint(const ClientOptions &options, const std::string &name, Json parameters, const Wait &wait,
                 const std::function<std::string(const Json &)> &format)
{
    Json reply;
    if (const int rc = callManager(options, name, std::move(parameters), reply, wait); rc != kExitOk) {
        return rc;
    }
    if (options.json) {
        printJson(reply);
    } else {
        std::cout << format(reply);
    }
    return kExitOk;
}

// Start, Stop: "web: running".
int changeService(const ClientOptions &options, const std::string &name, const std::string &service)
{
    return callAndPrint(options, name, {{"service", service}}, Wait{options.timeout},
                        [&service](const Json &reply) {
                            return printable(service) + ": " + stringOf(reply, "state") + "\n";
                        });
}

// Ctrl-C is how a user stops following: a normal end, with every line
// already written (output is flushed as it arrives).
extern "C" void endOnInterrupt(int /*signal*/)
{
    _exit(kExitOk);
}

// A stream (logs --follow, events) until interrupted: Ctrl-C ends it with
// success, and a closed pipe (`fdsupctl logs -f web | head`) shows as a
// failed write rather than killing fdsupctl.
void endStreamOnInterrupt()
{
    struct sigaction action = {};
    sigemptyset(&action.sa_mask);
    action.sa_handler = endOnInterrupt;
    sigaction(SIGINT, &action, nullptr);
    action.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &action, nullptr);
}

} // namespace

int status(const ClientOptions &options, const std::optional<std::string> &service)
{
    Json parameters = Json::object();
    if (service) {
        parameters["service"] = *service;
    }
    return callAndPrint(options, "Status", std::move(parameters), Wait{options.timeout},
                        [](const Json &reply) { return formatStatus(reply, useColour()); });
}

int sockets(const ClientOptions &options)
{
    return callAndPrint(options, "Sockets", Json::object(), Wait{options.timeout},
                        [](const Json &reply) { return formatSockets(reply, useColour()); });
}

int connections(const ClientOptions &options, const std::optional<std::string> &service)
{
    Json parameters = Json::object();
    if (service) {
        parameters["service"] = *service;
    }
    return callAndPrint(options, "Connections", std::move(parameters), Wait{options.timeout},
                        [](const Json &reply) { return formatConnections(reply, useColour()); });
}

int startService(const ClientOptions &options, const std::string &service)
{
    return changeService(options, "Start", service);
}

int stopService(const ClientOptions &options, const std::string &service)
{
    return changeService(options, "Stop", service);
}

int restartService(const ClientOptions &options, const std::string &service, const RestartOptions &restart)
{
    Json parameters = {{"service", service}, {"wait", restart.wait}};
    if (restart.batch) {
        parameters["batch"] = *restart.batch;
    }
    if (restart.order) {
        parameters["order"] = *restart.order;
    }
    if (restart.queue) {
        parameters["queue"] = true;
    }
    if (options.timeoutGiven && options.timeout != Duration::max()) {
        parameters["timeout_usec"] = options.timeout.count();
    }
    if (!restart.wait) {
        return callAndPrint(options, "Restart", std::move(parameters), Wait{options.timeout},
                            formatRolloutStarted);
    }
    // JSON readers get the result alone; people see the progress.
    const auto started = std::chrono::steady_clock::now();
    Wait wait{longReplyTimeout(options), !options.json};
    wait.progress = [started](const Json &reply) {
        const auto elapsed = std::chrono::duration_cast<Duration>(std::chrono::steady_clock::now() - started);
        std::cout << formatRolloutEvent(static_cast<std::uint64_t>(elapsed.count()), reply);
        return flushed();
    };
    return callAndPrint(options, "Restart", std::move(parameters), wait, formatRolloutDone);
}

int rolloutStatus(const ClientOptions &options, const std::string &service)
{
    return callAndPrint(
        options, "RolloutStatus", {{"service", service}}, Wait{options.timeout},
        [&service](const Json &reply) { return formatRolloutStatus(reply, service, useColour()); });
}

int rolloutCancel(const ClientOptions &options, const std::string &service)
{
    return callAndPrint(options, "RolloutCancel", {{"service", service}}, Wait{longReplyTimeout(options)},
                        formatRolloutCancelled);
}

int scaleService(const ClientOptions &options, const std::string &service, int instances)
{
    return callAndPrint(options, "Scale", {{"service", service}, {"instances", instances}},
                        Wait{longReplyTimeout(options)}, formatScaled);
}

int reload(const ClientOptions &options)
{
    return callAndPrint(options, "Reload", Json::object(), Wait{longReplyTimeout(options)},
                        [](const Json &reply) {
                            return formatChanges(reply, useColour()) + "reloaded " + fileOf(reply) + "\n";
                        });
}

int reexec(const ClientOptions &options, const std::optional<std::string> &binary)
{
    Json parameters = Json::object();
    if (binary) {
        parameters["binary"] = *binary;
    }
    if (options.timeoutGiven && options.timeout != Duration::max()) {
        parameters["timeout_usec"] = options.timeout.count();
    }
    return callAndPrint(options, "Reexec", std::move(parameters), Wait{longReplyTimeout(options)},
                        [](const Json &reply) {
                            const auto number = [&](const char *key) {
                                const auto it = reply.find(key);
                                return it != reply.end() && it->is_number() ? it->dump() : std::string("?");
                            };
                            return "fdsupd re-executed in place: version " + stringOf(reply, "version") +
                                   ", pid " + number("pid") + ", re-exec " + number("reexecs") +
                                   " of this process, binary " + stringOf(reply, "binary") + "\n";
                        });
}

int logs(const ClientOptions &options, const std::string &service, int lines, bool follow)
{
    Json parameters = {{"service", service}, {"lines", lines}, {"follow", follow}};
    const bool colour = useColour();
    const auto format = [&service, colour](const Json &reply) {
        return formatLogLines(reply, service, colour);
    };
    if (!follow) {
        return callAndPrint(options, "Logs", std::move(parameters), Wait{options.timeout}, format);
    }
    const auto print = [&options, &format](const Json &reply) {
        if (options.json) {
            // One object a line (JSON lines): a stream is read line by line.
            std::cout << reply.dump(-1, ' ', false, Json::error_handler_t::replace) << '\n';
        } else {
            std::cout << format(reply);
        }
        return flushed();
    };
    endStreamOnInterrupt();
    // Lines come when the service writes them: no reply deadline.
    const Wait wait{Duration::max(), true, print, true};
    Json last; // stays null when the stream ended without a final reply
    if (const int rc = callManager(options, "Logs", std::move(parameters), last, wait); rc != kExitOk) {
        return rc;
    }
    if (!last.is_null()) {
        print(last);
    }
    return kExitOk;
}

namespace {

// "23:15:02.000123Z instance-exited web pid=4242 status=exited with status 1".
std::string formatEvent(const Json &event)
{
    std::string time = stringOf(event, "time");
    if (const auto t = time.find('T'); t != std::string::npos) {
        time = time.substr(t + 1); // the clock time: a follower watches today
    }
    const auto service = event.find("service");
    std::string line = time + " " + stringOf(event, "event") + " " +
                       (service != event.end() && service->is_string() ? serviceOf(event) : "-");
    for (const auto &[key, value] : event.items()) {
        if (key == "time" || key == "event" || key == "service" || value.is_null()) {
            continue;
        }
        line += " " + key + "=" +
                printable(value.is_string() ? value.get<std::string>()
                                            : value.dump(-1, ' ', false, Json::error_handler_t::replace));
    }
    return line + "\n";
}

} // namespace

int events(const ClientOptions &options, const std::optional<std::string> &service)
{
    Json parameters = Json::object();
    if (service) {
        parameters["service"] = *service;
    }
    std::string lastEvent;
    const auto print = [&options, &lastEvent](const Json &reply) {
        const auto event = reply.find("event");
        if (event == reply.end() || !event->is_object()) {
            return true;
        }
        lastEvent = stringOf(*event, "event");
        // One object a line (JSON lines): what deploy tools read.
        std::cout << (options.json ? event->dump(-1, ' ', false, Json::error_handler_t::replace) + "\n"
                                   : formatEvent(*event));
        return flushed();
    };
    endStreamOnInterrupt();
    // Events come when they happen: no reply deadline. fdsupd ends the
    // stream before it re-executes itself: follow the new image on.
    const Wait wait{Duration::max(), true, print, true};
    do {
        lastEvent.clear();
        Json last;
        if (const int rc = callManager(options, "Events", parameters, last, wait); rc != kExitOk) {
            return rc;
        }
        if (!last.is_null() && !print(last)) {
            return kExitOk;
        }
    } while (lastEvent == "reexec");
    return kExitOk;
}

} // namespace fdsup::ctl
