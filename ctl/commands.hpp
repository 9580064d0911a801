// fdsupctl's commands that talk to a running fdsupd over the control socket.
#pragma once

#include <optional>
#include <string>

#include "fdsup/units.hpp"

namespace fdsup::ctl {

// Exit codes, documented in docs/fdsupctl.md and fdsupctl(1); fixed for
// every command so scripts can rely on them.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitCannotConnect = 3;
inline constexpr int kExitRefused = 4;
inline constexpr int kExitNotFound = 5;

struct ClientOptions {
    std::string socket;
    Duration timeout = std::chrono::seconds(30); // connecting, and waiting for each reply
    bool json = false;
};

// Each prints its result on stdout (a table, or the reply's parameters as
// JSON) or one line on stderr, and returns the exit code.
int status(const ClientOptions &options, const std::optional<std::string> &service);
int sockets(const ClientOptions &options);
int startService(const ClientOptions &options, const std::string &service);
int stopService(const ClientOptions &options, const std::string &service);

} // namespace fdsup::ctl
