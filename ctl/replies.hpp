// fdsupctl's human output of each command, from the control API's JSON replies (docs/fdsupctl.md).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "table.hpp"

namespace fdsup::ctl {

// The output of fdsupctl's commands, from the parameters of the
// io.fdsup.Manager replies (and error replies) named. Missing or mistyped
// members print as "-": output never fails on a reply shape. Each returns
// whole lines, ending in a newline.

// Status, Sockets: `fdsupctl status`, `fdsupctl sockets`. A service with a
// rollout in progress gets a line saying how far it is.
std::string formatStatus(const nlohmann::json &reply, bool colour);
std::string formatSockets(const nlohmann::json &reply, bool colour);
// Connections: per service, the counters, the instances on the channel and
// the connections held (oldest first).
std::string formatConnections(const nlohmann::json &reply, bool colour);

// RolloutStatus: the rollout (state, generations, timing, failure and a
// table of its steps) and the restarts queued behind it.
std::string formatRolloutStatus(const nlohmann::json &reply, std::string_view service, bool colour);
// Restart: one progress event (a reply with continues) elapsedUsec after
// the call: "[ 1.23s] web[0]: ...". Empty when the reply carries no event.
std::string formatRolloutEvent(std::uint64_t elapsedUsec, const nlohmann::json &reply);
// Restart: the final reply without wait ("web: rollout 7 started
// (generation 2 → 3)") and with it ("web: rolled out to generation 3 in
// 2.1s (4 instances)").
std::string formatRolloutStarted(const nlohmann::json &reply);
std::string formatRolloutDone(const nlohmann::json &reply);
// RolloutCancel: "web: rollout 7 cancelled, rolled back to generation 2".
std::string formatRolloutCancelled(const nlohmann::json &reply);
// The RolloutFailed error: why, which replacement failed with its last
// output lines, and which generation keeps serving. For stderr.
std::string formatRolloutFailed(const nlohmann::json &error);
// Scale: "web: 4 instances, running".
std::string formatScaled(const nlohmann::json &reply);
// Reload (and the ReloadFailed error): a table of the changes, or
// "no changes".
std::string formatChanges(const nlohmann::json &reply, bool colour);
// The ReloadRefused error: every reason, then "nothing changed". For stderr.
std::string formatReloadRefused(const nlohmann::json &error);
// The ConfigInvalid error: "file:line:column: message" each, then a count.
// For stderr.
std::string formatConfigErrors(const nlohmann::json &error);
// Logs: "12:00:01.234 web[0] 1234: text" a line; lines the worker wrote to
// stderr are marked "(stderr)".
std::string formatLogLines(const nlohmann::json &reply, std::string_view service, bool colour);

} // namespace fdsup::ctl
