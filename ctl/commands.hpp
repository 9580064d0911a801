// fdsupctl's commands that talk to a running fdsupd over the control socket.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/units.hpp"

namespace fdsup::ctl {

// Exit codes, documented in docs/fdsupctl.md and fdsupctl(1); fixed for
// every command so scripts can rely on them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitCannotConnect = 3;
inline constexpr int kExitRefused = 4;
inline constexpr int kExitNotFound = 5;
// transfer: which side refused or failed (a connection, an access check, a
// refusal, a failure).
inline constexpr int kExitTransferSource = 3;
inline constexpr int kExitTransferTarget = 4;

struct ClientOptions {
    std::string socket;
    Duration timeout = std::chrono::seconds(30); // connecting, and waiting for each reply
    // --timeout was on the command line. Operations that take as long as
    // they take (restart with wait, scale, reload, rollout cancel) then wait
    // that long (plus a margin); otherwise they wait for fdsupd, which
    // enforces every step's deadline itself.
    bool timeoutGiven = false;
    bool json = false;
};

struct RestartOptions {
    std::optional<int> batch;
    std::optional<std::string> order; // "start-first", "stop-first"
    bool queue = false;
    // Wait for the rollout to finish, printing its progress; otherwise
    // return once it has started (or is queued).
    bool wait = false;
};

// Each prints its result on stdout (a table, or the reply's parameters as
// JSON) or what went wrong on stderr, and returns the exit code.
int status(const ClientOptions &options, const std::optional<std::string> &service);
int sockets(const ClientOptions &options);
int connections(const ClientOptions &options, const std::optional<std::string> &service);
int startService(const ClientOptions &options, const std::string &service);
int stopService(const ClientOptions &options, const std::string &service);
int restartService(const ClientOptions &options, const std::string &service, const RestartOptions &restart);
int rolloutStatus(const ClientOptions &options, const std::string &service);
int rolloutCancel(const ClientOptions &options, const std::string &service);
int scaleService(const ClientOptions &options, const std::string &service, int instances);
int reload(const ClientOptions &options);
// Re-executes fdsupd in place (binary: absolute path; default: the one it
// was started from); --timeout bounds the wait for quiet.
int reexec(const ClientOptions &options, const std::optional<std::string> &binary);
// With follow, prints new lines as fdsupd sends them until it ends the
// stream (or SIGINT, or stdout is closed: all exit 0).
int logs(const ClientOptions &options, const std::string &service, int lines, bool follow);
// Follows fdsupd's events (all, or one service's and fdsupd's own) until
// fdsupd ends the stream by shutting down (or SIGINT, or stdout is closed:
// all exit 0); across a re-exec it calls again. A line per event: a compact
// human form, or with options.json the event as one JSON object.
int events(const ClientOptions &options, const std::optional<std::string> &service);
// Export from options.socket, Import into target, then Release on the
// source (docs/transfer.md); only: the sockets to move (default: all).
int transfer(const ClientOptions &options, const std::string &target, const std::vector<std::string> &only);

} // namespace fdsup::ctl
