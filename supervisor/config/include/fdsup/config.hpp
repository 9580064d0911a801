// The configuration language: the model of a loaded fdsupd.toml and its loader.
#pragma once

#include <csignal>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "fdsup/address.hpp"
#include "fdsup/socket.hpp"
#include "fdsup/units.hpp"

namespace fdsup::config {

// Where a value was written, for messages: "units.d/web.toml:12:5".
struct Location {
    std::string file;
    std::uint32_t line = 0;
    std::uint32_t column = 0;

    [[nodiscard]] std::string str() const;
    friend bool operator==(const Location &, const Location &) = default;
};

// One problem found while loading. Printed as "file:line:col: message".
struct Diagnostic {
    Location where;
    std::string message;

    [[nodiscard]] std::string str() const;
};

enum class LogTarget : std::uint8_t { Console, Journal };

struct SupervisorLimits {
    // RLIMIT_NOFILE soft limit fdsupd asks for; 0 means "raise to the hard limit".
    std::uint64_t nofile = 0;
    std::uint32_t heldConnections = 65536;          // handed-over connections, all services
    std::uint32_t heldConnectionsPerService = 16384;
    std::uint64_t stateSize = 64 * 1024;            // per handed-over connection
    std::uint64_t controlRequestSize = 1024 * 1024; // one control API request
    std::uint32_t controlClients = 64;              // concurrent control connections
};

struct SupervisorConfig {
    std::string control;     // control socket path (FDSUP_DEFAULT_CONTROL)
    mode_t controlMode = 0660;
    std::vector<std::string> allowUsers;  // besides root
    std::vector<std::string> allowGroups;
    std::string logLevel = "info"; // trace debug info warn error critical off
    LogTarget logTarget = LogTarget::Console;
    SupervisorLimits limits;
    Location where;
};

struct SocketConfig {
    std::string name;
    std::vector<Address> listen;
    SocketOptions options;
    Location where;
};

enum class Activation : std::uint8_t { ListenFds, Channel };
enum class Readiness : std::uint8_t { Notify, Started, Channel };
enum class RestartPolicy : std::uint8_t { Always, OnFailure, Never };
enum class RolloutOrder : std::uint8_t { StartFirst, StopFirst };
enum class KillMode : std::uint8_t { ProcessGroup, Main };
enum class OutputMode : std::uint8_t { Log, Inherit };

struct ResourceLimit {
    int resource = 0;        // RLIMIT_*
    std::uint64_t soft = 0;  // RLIM_INFINITY for "infinity"
    std::uint64_t hard = 0;
};

struct ServiceConfig {
    std::string name;
    std::vector<std::string> command; // argv; argv[0] absolute or found in PATH at spawn
    std::map<std::string, std::string> environment;
    std::vector<std::string> passEnvironment; // names copied from fdsupd's environment
    std::string workingDirectory;             // empty: "/"
    std::optional<std::string> user;
    std::optional<std::string> group;
    std::vector<std::string> supplementaryGroups; // empty + user set: the user's groups
    mode_t umask = 0022;
    std::vector<ResourceLimit> limits;
    bool noNewPrivileges = false;

    std::vector<std::string> sockets; // names of [socket.*], in LISTEN_FDS order
    std::uint32_t instances = 1;
    Activation activation = Activation::ListenFds;
    Readiness ready = Readiness::Notify;

    RestartPolicy restart = RestartPolicy::OnFailure;
    Duration restartDelay = std::chrono::milliseconds(100);
    Duration restartDelayMax = std::chrono::seconds(30);
    std::uint32_t startLimitBurst = 5;
    Duration startLimitInterval = std::chrono::seconds(10);

    Duration startTimeout = std::chrono::seconds(5);  // spawn until exec succeeded
    Duration readyTimeout = std::chrono::seconds(30); // exec until ready
    Duration drainTimeout = std::chrono::seconds(30);
    Duration stopTimeout = std::chrono::seconds(10);
    Duration watchdogTimeout = Duration::zero(); // zero: no watchdog

    int stopSignal = SIGTERM;
    int drainSignal = SIGTERM;
    KillMode killMode = KillMode::ProcessGroup;
    OutputMode output = OutputMode::Log;

    bool handoff = false;
    std::uint32_t rolloutBatch = 1;
    RolloutOrder rolloutOrder = RolloutOrder::StartFirst;

    Location where;
};

struct Config {
    std::vector<std::string> files; // every file read, main file first
    SupervisorConfig supervisor;
    std::vector<SocketConfig> sockets;   // in the order written
    std::vector<ServiceConfig> services; // in the order written

    [[nodiscard]] const SocketConfig *findSocket(std::string_view name) const;
    [[nodiscard]] const ServiceConfig *findService(std::string_view name) const;
};

// Loads path and everything it includes, validates the whole of it and
// returns the model, or every problem found (not just the first), each with
// file:line:col. Touches nothing: no socket is bound, no file created.
struct LoadResult {
    std::optional<Config> config;
    std::vector<Diagnostic> diagnostics; // non-empty iff !config
};
LoadResult loadConfig(const std::string &path);
// The same for a document in memory; name is used in messages and relative
// includes resolve against baseDir.
LoadResult loadConfigString(std::string_view text, const std::string &name, const std::string &baseDir);

// A TOML rendering of the effective configuration (defaults filled in), as
// fdsupd prints it and `fdsupctl check-config` shows it.
std::string renderConfig(const Config &config);

// Signal names as written in config ("SIGTERM", "TERM"); -1 if unknown.
int signalFromName(std::string_view name);
std::string signalName(int sig);

} // namespace fdsup::config
