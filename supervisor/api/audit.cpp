// The audit line: who called what on which service, and the result (docs/access.md).
#include "api/audit.hpp"

#include <cstdio>
#include <fstream>
#include <iterator>

#include <spdlog/spdlog.h>

#include "io/log_context.hpp"

namespace fdsup {
namespace {

std::string capped(std::string text)
{
    if (text.size() > kAuditFieldMax) {
        text.resize(kAuditFieldMax);
        text += "...";
    }
    return text;
}

std::string readCmdline(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
    std::string raw;
    // Read no more than what is kept: a command line can be megabytes.
    raw.resize(kAuditFieldMax * 4 + 1);
    in.read(raw.data(), static_cast<std::streamsize>(raw.size()));
    raw.resize(static_cast<std::size_t>(in.gcount()));
    return raw;
}

} // namespace

std::string escapeCommandLine(std::string_view cmdline)
{
    while (!cmdline.empty() && cmdline.back() == '\0') {
        cmdline.remove_suffix(1);
    }
    std::string out;
    for (const char c : cmdline) {
        const auto byte = static_cast<unsigned char>(c);
        if (c == '\0') {
            out += ' ';
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (byte < 0x20 || byte > 0x7e) {
            char hex[5];
            (void)std::snprintf(hex, sizeof hex, "\\x%02x", byte);
            out += hex;
        } else {
            out += c;
        }
        if (out.size() > kAuditFieldMax) {
            break;
        }
    }
    return capped(std::move(out));
}

AuditRecord auditRecord(uid_t uid, pid_t pid, std::string_view method, const nlohmann::json &parameters)
{
    AuditRecord record{uid, pid, "?", std::string(method), "", "{}"};
    const std::string raw = pid > 0 ? readCmdline(pid) : std::string();
    if (!raw.empty()) {
        record.command = escapeCommandLine(raw);
    }
    nlohmann::json rest = parameters.is_object() ? parameters : nlohmann::json::object();
    if (const auto it = rest.find("service"); it != rest.end()) {
        if (it->is_string()) {
            record.service = escapeCommandLine(it->get<std::string>());
        }
        rest.erase(it);
    }
    record.params = capped(rest.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace));
    return record;
}

std::string auditResult(const varlink::Reply &reply)
{
    if (reply.error.empty()) {
        return "ok";
    }
    const auto message = reply.parameters.find("message");
    if (reply.error == varlink::kErrorManagerPermissionDenied && message != reply.parameters.end() &&
        message->is_string()) {
        return "denied: " + message->get<std::string>();
    }
    if (reply.error == varlink::kErrorPermissionDenied) {
        return "denied: not allowed to use the control API";
    }
    return "error " + reply.error + ": " +
           capped(reply.parameters.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace));
}

void logAudit(const AuditRecord &record, std::string_view result)
{
    const std::string_view kind = result == "ok" ? "ok" : result.starts_with("denied") ? "denied" : "error";
    LogScope scope(LogSubject{record.service,
                              std::nullopt,
                              record.pid,
                              0,
                              {"FDSUP_AUDIT=1", "FDSUP_UID=" + std::to_string(record.uid),
                               "FDSUP_METHOD=" + record.method, "FDSUP_RESULT=" + std::string(kind),
                               "FDSUP_CALLER=" + record.command}});
    spdlog::info("audit: uid={} pid={} cmd=\"{}\" method={} service={} params={} result={}", record.uid,
                 record.pid, record.command, record.method, record.service.empty() ? "-" : record.service,
                 record.params, result);
}

} // namespace fdsup
