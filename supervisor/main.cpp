// fdsupd: loads and validates the configuration, then (from the daemon issue on) serves it.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "fdsup/config.hpp"
#include "fdsup_build_config.h"
#include "log.hpp"

namespace {

// Exit codes, documented in fdsupd(8).
constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;
constexpr int kExitConfig = 3;

int run(int argc, char **argv)
{
    CLI::App app{"fdsupd: owns listening sockets and runs the services behind them, so they can be "
                 "restarted without dropping a connection.",
                 "fdsupd"};
    std::string configPath = FDSUP_DEFAULT_CONFIG;
    bool checkOnly = false;
    bool quiet = false;
    std::string logLevel;
    app.add_option("-c,--config", configPath, "Configuration file")->capture_default_str();
    app.add_flag("--check", checkOnly, "Validate the configuration, report every error and exit");
    app.add_flag("-q,--quiet", quiet, "Do not print the effective configuration after loading it");
    app.add_option("--log-level", logLevel, "Override [supervisor] log_level")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
    app.set_version_flag("-V,--version", "fdsupd " FDSUP_VERSION);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError &e) {
        const int rc = app.exit(e);
        return rc == 0 ? kExitOk : kExitUsage;
    }

    // Log to the console until the configuration says otherwise.
    fdsup::setupLogging(logLevel.empty() ? "info" : logLevel, fdsup::config::LogTarget::Console);

    const fdsup::config::LoadResult loaded = fdsup::config::loadConfig(configPath);
    if (!loaded.config) {
        for (const auto &d : loaded.diagnostics) {
            std::cerr << d.str() << '\n';
        }
        spdlog::error("Configuration {} is invalid: {} error{}, nothing started", configPath,
                      loaded.diagnostics.size(), loaded.diagnostics.size() == 1 ? "" : "s");
        return kExitConfig;
    }
    const fdsup::config::Config &config = *loaded.config;
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
    if (!quiet) {
        std::cout << fdsup::config::renderConfig(config) << std::flush;
    }
    // This build validates and prints; binding and serving arrive with the
    // daemon (docs/roadmap.md), so there is nothing to keep running yet.
    spdlog::info("This fdsupd build only validates configuration; exiting");
    return kExitOk;
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
