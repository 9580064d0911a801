// The audit line: who called what on which service, and the result (docs/access.md).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <sys/types.h>

#include <nlohmann/json.hpp>

#include "control/varlink.hpp"

namespace fdsup {

// At most this many bytes of the caller's command line, and of the
// parameters, go into a line (then "...").
inline constexpr std::size_t kAuditFieldMax = 256;

// What an audit line says besides its result; taken when the call arrives.
struct AuditRecord {
    uid_t uid = 0;
    pid_t pid = 0;
    std::string command; // the caller's /proc/PID/cmdline, escaped; "?" when gone
    std::string method;  // "Restart"
    std::string service; // empty: the call names none
    std::string params;  // its other parameters, compact JSON
};

// The record of a call: the caller's command line read now, its parameters
// without "service", each capped at kAuditFieldMax.
AuditRecord auditRecord(uid_t uid, pid_t pid, std::string_view method, const nlohmann::json &parameters);

// A command line's arguments joined by spaces: control characters, '"',
// '\\' and bytes above 0x7e escaped (\n, \", \\, \xNN), capped.
std::string escapeCommandLine(std::string_view cmdline);

// "ok", "denied: <message>", or "error <name>: <parameters>" (capped).
std::string auditResult(const varlink::Reply &reply);

// Logs at info: `audit: uid=1001 pid=42 cmd="fdsupctl restart web"
// method=Restart service=web params={} result=ok`; in the journal with
// FDSUP_AUDIT=1, FDSUP_UID=, FDSUP_PID=, FDSUP_SERVICE=, FDSUP_METHOD=,
// FDSUP_RESULT= (ok, denied or error) and FDSUP_CALLER= (the command line).
void logAudit(const AuditRecord &record, std::string_view result);

} // namespace fdsup
