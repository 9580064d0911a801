// fdsupd: loads and validates the configuration, binds its sockets and runs its services.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "api/control_api.hpp"
#include "api/metrics.hpp"
#include "config/config.hpp"
#include "daemon/daemon.hpp"
#include "fdsup_build_config.h"
#include "io/event_loop.hpp"
#include "io/log.hpp"
#include "io/manager_notify.hpp"
#include "reexec_main.hpp"

namespace {

// Exit codes, documented in fdsupd(8).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitConfig = 3;
constexpr int kExitStartup = 4;
// 5: Daemon::kExitStopKilled, from run().

int run(int argc, char **argv)
{
    CLI::App app{"fdsupd: owns listening sockets and runs the services behind them, so they can be "
                 "restarted without dropping a connection.",
                 "fdsupd"};
    std::string configPath = FDSUP_DEFAULT_CONFIG;
    bool checkOnly = false;
    bool printConfig = false;
    std::string logLevel;
    app.add_option("-c,--config", configPath, "Configuration file")->capture_default_str();
    app.add_flag("--check", checkOnly, "Validate the configuration, report every error and exit");
    app.add_flag("--print-config", printConfig,
                 "Print the effective configuration (defaults filled in) and exit");
    app.add_option("--log-level", logLevel, "Override [supervisor] log_level")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
    bool reexecCheck = false;
    app.add_flag("--reexec-check", reexecCheck,
                 "Print the version and the re-exec state versions this binary reads (JSON) and exit");
    app.set_version_flag("-V,--version", "fdsupd " FDSUP_VERSION);
    // Started by our own re-exec: the state is taken before anything else.
    fdsup::ReexecImage::init(argc, argv);
    auto incoming = fdsup::takeIncomingState();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        const int rc = app.exit(e);
        return rc == 0 ? kExitOk : kExitUsage;
    }

    if (reexecCheck) {
        std::cout << R"({"version":")" FDSUP_VERSION R"(","state_versions":[)" << fdsup::kReexecStateVersion
                  << "]}" << std::endl;
        return kExitOk;
    }
    if (incoming) {
        return fdsup::runRestored(std::move(*incoming), logLevel);
    }

    // Log to the console until the configuration says otherwise.
    fdsup::setupLogging(logLevel.empty() ? "info" : logLevel, fdsup::config::LogTarget::Console);

    fdsup::config::LoadResult loaded = fdsup::config::loadConfig(configPath);
    if (!loaded.config) {
        for (const auto &d : loaded.diagnostics) {
            std::cerr << d.str() << '\n';
        }
        spdlog::error("Configuration {} is invalid: {} error{}, nothing started", configPath,
                      loaded.diagnostics.size(), loaded.diagnostics.size() == 1 ? "" : "s");
        return kExitConfig;
    }
    const fdsup::config::Config &config = *loaded.config; // moved into the daemon last
    if (!fdsup::setupLogging(logLevel.empty() ? config.supervisor.logLevel : logLevel,
                             config.supervisor.logTarget)) {
        spdlog::error("Unknown log level '{}'", config.supervisor.logLevel);
        return kExitConfig;
    }
    spdlog::info("Loaded {} ({} file{}): {} socket{}, {} service{}", configPath, config.files.size(),
                 config.files.size() == 1 ? "" : "s", config.sockets.size(),
                 config.sockets.size() == 1 ? "" : "s", config.services.size(),
                 config.services.size() == 1 ? "" : "s");
    if (checkOnly) {
        return kExitOk;
    }
    if (printConfig) {
        std::cout << fdsup::config::renderConfig(config) << std::flush;
        return kExitOk;
    }

    // Read before anything else can touch the environment: it is unset here,
    // so workers never see fdsupd's own LISTEN_FDS.
    auto inherited = fdsup::InheritedFds::fromEnvironment();
    if (!inherited) {
        spdlog::error("{}", inherited.error().message);
        return kExitStartup;
    }
    auto loop = fdsup::EventLoop::create();
    if (!loop) {
        spdlog::error("{}", loop.error().message);
        return kExitStartup;
    }
    const auto failed = [](const fdsup::Error &error) {
        spdlog::error("{}; nothing started", error.message);
        fdsup::ManagerNotifier().send("STATUS=Failed to start: " + error.message +
                                      "\nERRNO=" + std::to_string(error.code));
        return kExitStartup;
    };
    auto daemon = fdsup::Daemon::create(**loop, std::move(*loaded.config), std::move(*inherited));
    if (!daemon) {
        return failed(daemon.error());
    }
    fdsup::installMetrics(**daemon);
    // The control socket last: once it answers, everything it reports exists.
    auto api = fdsup::ControlApi::create(**loop, **daemon);
    if (!api) {
        return failed(api.error());
    }
    return (*daemon)->run();
}

} // namespace

int main(int argc, char **argv)
{
    // Exceptions stop at this boundary: a failure the code did not foresee
    // (out of memory, a library throwing) is reported, never a bare abort.
    try {
        return run(argc, argv);
    } catch (const std::exception &e) {
        std::cerr << "fdsupd: internal error: " << e.what() << '\n';
    } catch (...) {
        std::cerr << "fdsupd: internal error\n";
    }
    return kExitFailure;
}
