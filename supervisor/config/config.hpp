// The configuration language: the model of a loaded fdsupd.toml and its loader.
#pragma once

#include <csignal>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "common/units.hpp"

namespace fdsup::config {

// Where a value was written, for messages: "units.d/web.toml:12:5". file is
// the path as given to loadConfig(), or for an included file the including
// file's directory joined with the include's text (lexically normalised), so
// messages name files the way the user wrote them. line and column are
// 1-based; line 0 means "the file as a whole" (e.g. it could not be read).
struct Location {
    std::string file;
    std::uint32_t line = 0;
    std::uint32_t column = 0;

    [[nodiscard]] std::string str() const; // "file:line:col", or "file" when line is 0
    friend bool operator==(const Location &, const Location &) = default;
};

// One problem found while loading. Printed as "file:line:col: message".
struct Diagnostic {
    Location where;
    std::string message;

    [[nodiscard]] std::string str() const;
    friend bool operator==(const Diagnostic &, const Diagnostic &) = default;
};

enum class LogTarget : std::uint8_t { Console, Journal };

struct SupervisorLimits {
    // RLIMIT_NOFILE soft limit fdsupd asks for; 0 means "raise to the hard limit".
    std::uint64_t nofile = 0;
    std::uint32_t heldConnections = 65536; // handed-over connections, all services
    std::uint32_t heldConnectionsPerService = 16384;
    std::uint64_t stateSize = std::uint64_t{64} * 1024;            // per handed-over connection
    std::uint64_t controlRequestSize = std::uint64_t{1024} * 1024; // one control API request
    std::uint32_t controlClients = 64;                             // concurrent control connections
    // A control connection with no call in progress and no request for this long is closed.
    Duration controlIdleTimeout = std::chrono::seconds(30); // Duration::max(): never

    friend bool operator==(const SupervisorLimits &, const SupervisorLimits &) = default;
};

// One [[supervisor.access]] entry (docs/access.md): the callers it names
// (users, or members of groups, primary or supplementary) get its rights,
// over the services listed (empty: over every service and the calls that
// name none).
struct AccessEntry {
    std::vector<std::string> users; // checked with NSS at load
    std::vector<std::string> groups;
    // "read", "operate", "admin" or a command ("restart", "rollout-cancel"),
    // as written; each checked at load.
    std::vector<std::string> rights;
    std::vector<std::string> services; // each a configured service
    Location where;

    friend bool operator==(const AccessEntry &, const AccessEntry &) = default;
};

struct SupervisorConfig {
    // Control socket path (FDSUP_DEFAULT_CONTROL); a relative path in the file
    // is resolved against that file's directory, so this is always absolute.
    std::string control;
    mode_t controlMode = 0660;
    std::vector<std::string> allowUsers; // besides root; checked with NSS at load
    std::vector<std::string> allowGroups;
    std::vector<AccessEntry> access; // [[supervisor.access]], in the order written
    std::string logLevel = "info";   // trace debug info warn error critical off
    LogTarget logTarget = LogTarget::Console;
    // The preload shim put in LD_PRELOAD of wrapped services (FDSUP_PRELOAD_LIBRARY:
    // <prefix>/<libdir>/fdsup/libactivate-preload.so); absolute.
    std::string preloadLibrary;
    SupervisorLimits limits;
    // The Prometheus metrics endpoint (docs/metrics.md): a unix stream socket
    // or a tcp:// address with a numeric host and a port; unset: none.
    std::optional<Address> metrics;
    // A tcp metrics address that is not loopback is refused unless this is set.
    bool metricsPublic = false;
    Location where; // of [supervisor]; empty when the table is absent

    friend bool operator==(const SupervisorConfig &, const SupervisorConfig &) = default;
};

struct SocketConfig {
    std::string name;
    // In the order written. A relative unix path is resolved against the
    // directory of the file it is written in.
    std::vector<Address> listen;
    SocketOptions options;
    // receive = true: fdsupd does not bind it; it comes from its own
    // LISTEN_FDS or from another fdsupd (Import, docs/transfer.md).
    bool receive = false;
    Location where;

    friend bool operator==(const SocketConfig &, const SocketConfig &) = default;
};

enum class Activation : std::uint8_t { ListenFds, Channel };
// Bound: a wrapped instance is ready once its processes claimed every listener.
enum class Readiness : std::uint8_t { Notify, Started, Channel, Bound };
// Preload: an unmodified server gets the listeners through the preload shim
// (docs/preload.md), not as inherited fds.
enum class Wrap : std::uint8_t { None, Preload };
enum class RestartPolicy : std::uint8_t { Always, OnFailure, Never };
enum class RolloutOrder : std::uint8_t { StartFirst, StopFirst };
enum class KillMode : std::uint8_t { ProcessGroup, Main };
enum class OutputMode : std::uint8_t { Log, Inherit };
// Conventions, besides LISTEN_FDS, in which a worker's listeners are announced.
enum class InheritConvention : std::uint8_t { Nginx, ServerStarter };

struct ResourceLimit {
    int resource = 0;       // RLIMIT_*
    std::uint64_t soft = 0; // RLIM_INFINITY for "infinity"
    std::uint64_t hard = 0;

    friend bool operator==(const ResourceLimit &, const ResourceLimit &) = default;
};

// The config name of an RLIMIT_* ("nofile", "as"...), empty if not one we know.
std::string_view resourceLimitName(int resource);

struct ServiceConfig {
    std::string name;
    // argv. An argv[0] with a '/' that is not absolute was resolved against
    // the directory of the file it is written in; one without a '/' is looked
    // up in PATH at spawn.
    std::vector<std::string> command;
    std::map<std::string, std::string> environment;
    std::vector<std::string> passEnvironment; // names copied from fdsupd's environment
    std::string workingDirectory = "/";       // always absolute
    std::optional<std::string> user;
    std::optional<std::string> group;
    std::vector<std::string> supplementaryGroups; // empty + user set: the user's groups
    mode_t umask = 0022;
    std::vector<ResourceLimit> limits; // sorted by name
    bool noNewPrivileges = false;

    std::vector<std::string> sockets; // names of [socket.*], in LISTEN_FDS order
    // The same listener fds announced in these conventions too (NGINX=,
    // SERVER_STARTER_PORT=), in the order written; see docs/servers.md.
    // {fd:NAME} and {addr:NAME} in command[1..] are expanded at spawn.
    std::vector<InheritConvention> inherit;
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
    // How long a handed-over connection waits in fdsupd for a ready
    // replacement to adopt it; then it is closed.
    Duration handoffTimeout = std::chrono::seconds(30);
    Duration stopTimeout = std::chrono::seconds(10);
    Duration watchdogTimeout = Duration::zero(); // zero: no watchdog

    int stopSignal = SIGTERM;
    int drainSignal = SIGTERM;
    // Sent when a deadline passes (start, ready, drain, stop).
    int killSignal = SIGKILL;
    KillMode killMode = KillMode::ProcessGroup;
    OutputMode output = OutputMode::Log;

    Wrap wrap = Wrap::None;
    // With wrap: "when the server binds this address, give it listener NAME"
    // (NAME is one of `sockets`).
    std::map<std::string, Address> preloadMap;
    // A daemonising server writes its real main process here; fdsupd follows
    // it once the started process exits successfully. Absolute.
    std::optional<std::string> pidFile;

    bool handoff = false;
    // Workers fdsupd did not spawn connect here (a SOCK_SEQPACKET socket
    // fdsupd creates; "@name" is abstract) to get the listeners and join the
    // handoff; see docs/worker-channel.md. A relative path is resolved
    // against the directory of the file it is written in.
    std::optional<std::string> activationSocket;
    // Who may connect (SO_PEERCRED), besides root and fdsupd's own user:
    // these users, or a process whose primary or supplementary group is one
    // of these groups. Checked with NSS at load.
    std::vector<std::string> activationUsers;
    std::vector<std::string> activationGroups;
    std::uint32_t rolloutBatch = 1;
    RolloutOrder rolloutOrder = RolloutOrder::StartFirst;

    Location where;

    friend bool operator==(const ServiceConfig &, const ServiceConfig &) = default;
};

struct Config {
    std::vector<std::string> files; // every file read, main file first
    SupervisorConfig supervisor;
    std::vector<SocketConfig> sockets;   // in the order written
    std::vector<ServiceConfig> services; // in the order written

    [[nodiscard]] const SocketConfig *findSocket(std::string_view name) const;
    [[nodiscard]] const ServiceConfig *findService(std::string_view name) const;

    // Compares locations and files too; clear them to compare meaning only.
    friend bool operator==(const Config &, const Config &) = default;
};

// Loads path and everything it includes, validates the whole of it and
// returns the model, or every problem found (not just the first), each with
// file:line:col, ordered by file (in the order read: the main file, then its
// includes depth first) and then by position. Touches nothing: no socket is
// bound, no file created; it only reads files and asks NSS about user and
// group names. The result does not depend on the environment.
struct LoadResult {
    std::optional<Config> config;
    std::vector<Diagnostic> diagnostics; // non-empty iff !config
};
LoadResult loadConfig(const std::string &path);
// The same for a document in memory; name is used in messages and relative
// paths (includes, command[0], control, unix sockets) resolve against baseDir.
LoadResult loadConfigString(std::string_view text, const std::string &name, const std::string &baseDir);

// The keys each table accepts, exactly as the loader's readers know them
// (every other key is refused as unknown), for the check that the man page
// documents each: table is "" for the top level, else "supervisor",
// "supervisor.limits", "socket.NAME", "service.NAME" or
// "service.NAME.limits".
struct TableKeys {
    std::string table;
    std::vector<std::string> keys;
};
std::vector<TableKeys> knownKeys();

// A TOML rendering of the effective configuration (defaults filled in,
// includes flattened, paths absolute), as fdsupd prints it and `fdsupctl
// check-config` shows it. loadConfigString() reads it back to an equal Config
// (apart from locations and files). Socket options left to the kernel
// default are not printed: TOML has no way to say "unset".
std::string renderConfig(const Config &config);

// Signal names as written in config ("SIGTERM", "TERM", "SIGRTMIN+2"); -1
// if unknown. signalName() gives the canonical "SIGTERM" form, or "" if sig
// is not a signal.
int signalFromName(std::string_view name);
std::string signalName(int sig);
// Every canonical name, for "did you mean".
std::vector<std::string_view> signalNames();

} // namespace fdsup::config
