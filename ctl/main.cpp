// fdsupctl: the command line client of fdsupd (this build: check-config and version).
#include <cstdlib>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "fdsup/config.hpp"
#include "fdsup_build_config.h"

namespace {

// Exit codes, documented in docs/fdsupctl.md and fdsupctl(1). Fixed now so
// scripts written against this build keep working when the daemon commands land.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

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
