// fdsupctl: the command line client of fdsupd.
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common/units.hpp"
#include "config/config.hpp"
#include "fdsup_build_config.h"

namespace {

using fdsup::ctl::kExitFailed;
using fdsup::ctl::kExitOk;
using fdsup::ctl::kExitUsage;

int checkConfig(const std::string &path, bool json, bool print)
{
    const fdsup::config::LoadResult loaded = fdsup::config::loadConfig(path);
    if (json) {
        nlohmann::json out;
        out["file"] = path;
        out["valid"] = loaded.config.has_value();
        out["errors"] = nlohmann::json::array();
        for (const auto &d : loaded.diagnostics) {
            out["errors"].push_back({{"file", d.where.file},
                                     {"line", d.where.line},
                                     {"column", d.where.column},
                                     {"message", d.message}});
        }
        if (loaded.config) {
            out["files"] = loaded.config->files;
            out["sockets"] = nlohmann::json::array();
            for (const auto &s : loaded.config->sockets) {
                nlohmann::json listen = nlohmann::json::array();
                for (const auto &a : s.listen) {
                    listen.push_back(fdsup::formatAddress(a));
                }
                out["sockets"].push_back({{"name", s.name}, {"listen", listen}});
            }
            out["services"] = nlohmann::json::array();
            for (const auto &s : loaded.config->services) {
                out["services"].push_back(
                    {{"name", s.name}, {"instances", s.instances}, {"sockets", s.sockets}});
            }
        }
        std::cout << out.dump(2) << '\n';
        return loaded.config ? kExitOk : kExitFailed;
    }
    if (!loaded.config) {
        for (const auto &d : loaded.diagnostics) {
            std::cerr << d.str() << '\n';
        }
        std::cerr << path << ": " << loaded.diagnostics.size() << " error"
                  << (loaded.diagnostics.size() == 1 ? "" : "s") << '\n';
        return kExitFailed;
    }
    if (print) {
        std::cout << fdsup::config::renderConfig(*loaded.config);
    } else {
        std::cout << path << ": OK (" << loaded.config->sockets.size() << " sockets, "
                  << loaded.config->services.size() << " services, " << loaded.config->files.size()
                  << " files)\n";
    }
    return kExitOk;
}

int run(int argc, char **argv)
{
    CLI::App app{"fdsupctl: control fdsupd, the socket-owning supervisor.", "fdsupctl"};
    app.require_subcommand(1);
    app.set_version_flag("-V,--version", "fdsupctl " FDSUP_VERSION);
    // Global options may also follow the command: `fdsupctl status -s PATH`.
    app.fallthrough();

    fdsup::ctl::ClientOptions client;
    client.socket = FDSUP_DEFAULT_CONTROL;
    app.add_option("-s,--socket", client.socket, "Control socket of fdsupd")
        ->envname("FDSUP_CONTROL")
        ->capture_default_str();
    std::string timeout = "30s";
    auto *timeoutOption =
        app.add_option(
               "--timeout", timeout,
               "How long to wait for fdsupd to accept and to answer (e.g. 5s, infinity); for restart, "
               "also the rollout's deadline. Without it, restart --wait, scale, reload and rollout "
               "cancel wait as long as fdsupd takes")
            ->capture_default_str()
            ->check([](const std::string &text) {
                const auto d = fdsup::parseDuration(text);
                return d ? std::string() : d.error().message;
            });

    auto *check =
        app.add_subcommand("check-config", "Validate a configuration file without touching the daemon");
    std::string checkPath = FDSUP_DEFAULT_CONFIG;
    bool checkJson = false;
    bool checkPrint = false;
    check->add_option("file", checkPath, "Configuration file")->capture_default_str();
    check->add_flag("--json", checkJson, "Print the result as JSON");
    check->add_flag("--print", checkPrint, "Print the effective configuration (defaults filled in)");

    auto *version = app.add_subcommand("version", "Print the version of fdsupctl");
    bool versionJson = false;
    version->add_flag("--json", versionJson, "Print the result as JSON");

    auto *status = app.add_subcommand("status", "Show the services and their instances");
    std::optional<std::string> statusService;
    bool statusJson = false;
    status->add_option("service", statusService, "Only this service");
    status->add_flag("--json", statusJson, "Print the reply as JSON");

    auto *sockets = app.add_subcommand("sockets", "Show the sockets fdsupd owns");
    bool socketsJson = false;
    sockets->add_flag("--json", socketsJson, "Print the reply as JSON");

    auto *connections = app.add_subcommand(
        "connections", "Show the connections handed over by draining workers, held for adoption");
    std::optional<std::string> connectionsService;
    bool connectionsJson = false;
    connections->add_option("service", connectionsService, "Only this service");
    connections->add_flag("--json", connectionsJson, "Print the reply as JSON");

    auto *start = app.add_subcommand("start", "Start a service and wait until it is running");
    std::string startService;
    bool startJson = false;
    start->add_option("service", startService, "The service")->required();
    start->add_flag("--json", startJson, "Print the reply as JSON");

    auto *stop = app.add_subcommand("stop", "Stop a service and wait until every instance has exited");
    std::string stopService;
    bool stopJson = false;
    stop->add_option("service", stopService, "The service")->required();
    stop->add_flag("--json", stopJson, "Print the reply as JSON");

    auto *restart = app.add_subcommand(
        "restart", "Roll a service out to a new generation, replacing its instances batch by batch");
    std::string restartService;
    fdsup::ctl::RestartOptions restartOptions;
    bool restartJson = false;
    restart->add_option("service", restartService, "The service")->required();
    restart
        ->add_option("--batch", restartOptions.batch,
                     "Instances replaced at a time (default: the service's rollout_batch)")
        ->check(CLI::Range(1, 1024));
    restart
        ->add_option("--order", restartOptions.order,
                     "start-first: start the replacement, then drain the old instance; stop-first: the "
                     "other way round (default: the service's setting)")
        ->check(CLI::IsMember({"start-first", "stop-first"}));
    restart->add_flag("--queue", restartOptions.queue,
                      "When a rollout is in progress, queue behind it instead of failing");
    auto *restartWait =
        restart->add_flag("--wait,!--no-wait", restartOptions.wait,
                          "Wait for the rollout to finish, printing its progress (default on a terminal), or "
                          "return once it has started (default otherwise)");
    restart->add_flag("--json", restartJson, "Print the reply as JSON (with --wait: the final reply only)");

    auto *rollout = app.add_subcommand("rollout", "Show or cancel a service's rollout");
    rollout->require_subcommand(1);
    rollout->fallthrough();
    auto *rolloutStatus =
        rollout->add_subcommand("status", "Show the rollout in progress, else the last one, step by step");
    std::string rolloutStatusService;
    bool rolloutStatusJson = false;
    rolloutStatus->add_option("service", rolloutStatusService, "The service")->required();
    rolloutStatus->add_flag("--json", rolloutStatusJson, "Print the reply as JSON");
    auto *rolloutCancel = rollout->add_subcommand(
        "cancel", "Stop the rollout in progress and roll it back; returns when rolled back");
    std::string rolloutCancelService;
    bool rolloutCancelJson = false;
    rolloutCancel->add_option("service", rolloutCancelService, "The service")->required();
    rolloutCancel->add_flag("--json", rolloutCancelJson, "Print the reply as JSON");

    auto *scale =
        app.add_subcommand("scale", "Start or drain instances until the service has N; returns when it has");
    std::string scaleService;
    int scaleInstances = 0;
    bool scaleJson = false;
    scale->add_option("service", scaleService, "The service")->required();
    scale->add_option("instances", scaleInstances, "How many instances (0 to 1024)")
        ->required()
        ->check(CLI::Range(0, 1024));
    scale->add_flag("--json", scaleJson, "Print the reply as JSON");

    auto *reload = app.add_subcommand(
        "reload", "Make fdsupd read its configuration again and apply the difference; returns when done");
    bool reloadJson = false;
    reload->add_flag("--json", reloadJson, "Print the reply as JSON");

    auto *reexec = app.add_subcommand(
        "reexec", "Make fdsupd re-execute its binary in place, keeping every socket, worker and connection");
    std::string reexecBinary;
    bool reexecJson = false;
    reexec
        ->add_option("--binary", reexecBinary,
                     "The fdsupd binary to run (absolute path; default: the one "
                     "fdsupd was started from)")
        ->check([](const std::string &path) {
            return !path.empty() && path.front() == '/' ? std::string()
                                                        : std::string("must be an absolute path");
        });
    reexec->add_flag("--json", reexecJson, "Print the reply as JSON");

    auto *logs = app.add_subcommand("logs", "Show a service's most recent output lines");
    std::string logsService;
    int logsLines = 50;
    bool logsFollow = false;
    bool logsJson = false;
    logs->add_option("service", logsService, "The service")->required();
    logs->add_option("-n,--lines", logsLines, "How many lines")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    logs->add_flag("-f,--follow", logsFollow, "Go on printing new lines as they come, until Ctrl-C");
    logs->add_flag("--json", logsJson, "Print the reply as JSON (with --follow: one reply a line)");

    auto *events = app.add_subcommand("events", "Follow fdsupd's events as they happen, until Ctrl-C");
    std::string eventsService;
    bool eventsJson = false;
    events->add_option("service", eventsService, "Only this service's events (and fdsupd's own)");
    events->add_flag("--json", eventsJson, "Print each event as one JSON object a line (JSON lines)");

    auto *transfer = app.add_subcommand(
        "transfer",
        "Move the sockets this fdsupd holds to another running fdsupd, then stop their services here");
    std::string transferTarget;
    std::vector<std::string> transferSockets;
    bool transferJson = false;
    transfer->add_option("--to", transferTarget, "Control socket of the fdsupd that takes them")->required();
    transfer->add_option("--socket", transferSockets, "Only this socket (repeatable; default: every one)");
    transfer->add_flag("--json", transferJson, "Print the result as JSON");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        const int rc = app.exit(e);
        return rc == 0 ? kExitOk : kExitUsage;
    }

    if (check->parsed()) {
        return checkConfig(checkPath, checkJson, checkPrint);
    }
    if (version->parsed()) {
        if (versionJson) {
            std::cout << nlohmann::json{{"fdsupctl", FDSUP_VERSION}}.dump() << '\n';
        } else {
            std::cout << "fdsupctl " FDSUP_VERSION "\n";
        }
        return kExitOk;
    }
    // The validator above accepted it already.
    client.timeout = *fdsup::parseDuration(timeout);
    client.timeoutGiven = timeoutOption->count() > 0;
    if (status->parsed()) {
        client.json = statusJson;
        return fdsup::ctl::status(client, statusService);
    }
    if (sockets->parsed()) {
        client.json = socketsJson;
        return fdsup::ctl::sockets(client);
    }
    if (connections->parsed()) {
        client.json = connectionsJson;
        return fdsup::ctl::connections(client, connectionsService);
    }
    if (start->parsed()) {
        client.json = startJson;
        return fdsup::ctl::startService(client, startService);
    }
    if (stop->parsed()) {
        client.json = stopJson;
        return fdsup::ctl::stopService(client, stopService);
    }
    if (restart->parsed()) {
        client.json = restartJson;
        if (restartWait->count() == 0) {
            // Someone watching sees the progress; a script gets on with it.
            restartOptions.wait = isatty(STDOUT_FILENO) == 1;
        }
        return fdsup::ctl::restartService(client, restartService, restartOptions);
    }
    if (rolloutStatus->parsed()) {
        client.json = rolloutStatusJson;
        return fdsup::ctl::rolloutStatus(client, rolloutStatusService);
    }
    if (rolloutCancel->parsed()) {
        client.json = rolloutCancelJson;
        return fdsup::ctl::rolloutCancel(client, rolloutCancelService);
    }
    if (scale->parsed()) {
        client.json = scaleJson;
        return fdsup::ctl::scaleService(client, scaleService, scaleInstances);
    }
    if (reload->parsed()) {
        client.json = reloadJson;
        return fdsup::ctl::reload(client);
    }
    if (transfer->parsed()) {
        client.json = transferJson;
        return fdsup::ctl::transfer(client, transferTarget, transferSockets);
    }
    if (reexec->parsed()) {
        client.json = reexecJson;
        return fdsup::ctl::reexec(client, reexecBinary.empty() ? std::nullopt
                                                               : std::optional<std::string>(reexecBinary));
    }
    if (logs->parsed()) {
        client.json = logsJson;
        return fdsup::ctl::logs(client, logsService, logsLines, logsFollow);
    }
    if (events->parsed()) {
        client.json = eventsJson;
        return fdsup::ctl::events(client, eventsService.empty() ? std::nullopt
                                                                : std::optional<std::string>(eventsService));
    }
    return kExitUsage;
}

} // namespace

int main(int argc, char **argv)
{
    try {
        return run(argc, argv);
    } catch (const std::exception &e) {
        std::cerr << "fdsupctl: internal error: " << e.what() << '\n';
    } catch (...) {
        std::cerr << "fdsupctl: internal error\n";
    }
    return kExitFailed;
}
