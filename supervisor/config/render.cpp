// renderConfig(): the effective configuration as TOML, written by hand so
// that the output is stable, commented and needs no TOML library.
#include <algorithm>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <sys/resource.h>

#include "config/config.hpp"
#include "config/names.hpp"

namespace fdsup::config {

namespace {

// A TOML basic string: every character that TOML does not allow raw is escaped.
std::string str(std::string_view s)
{
    std::string out = "\"";
    for (char c : s) {
        const auto u = static_cast<unsigned char>(c);
        switch (c) {
        case '"':
            out += "\\\"";
            break;
        case '\\':
            out += "\\\\";
            break;
        case '\b':
            out += "\\b";
            break;
        case '\t':
            out += "\\t";
            break;
        case '\n':
            out += "\\n";
            break;
        case '\f':
            out += "\\f";
            break;
        case '\r':
            out += "\\r";
            break;
        default:
            if (u < 0x20 || u == 0x7f) {
                char buffer[8];
                (void)std::snprintf(buffer, sizeof buffer, "\\u%04X", u);
                out += buffer;
            } else {
                out += c;
            }
        }
    }
    out += '"';
    return out;
}

// Environment variable names may be anything but '=' and NUL; TOML only
// allows letters, digits, '-' and '_' in bare keys.
std::string key(std::string_view k)
{
    const bool bare = !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_';
    });
    return bare ? std::string(k) : str(k);
}

std::string array(const std::vector<std::string> &items)
{
    std::string out = "[";
    for (std::size_t i = 0; i < items.size(); ++i) {
        out += (i == 0 ? "" : ", ") + str(items[i]);
    }
    return out + "]";
}

std::string octal(mode_t mode)
{
    char buffer[16];
    (void)std::snprintf(buffer, sizeof buffer, "\"%04o\"", static_cast<unsigned>(mode));
    return buffer;
}

std::string boolean(bool b)
{
    return b ? "true" : "false";
}

std::string duration(Duration d)
{
    return str(formatDuration(d));
}

std::string seconds(std::chrono::seconds s)
{
    return duration(std::chrono::duration_cast<Duration>(s));
}

std::string limitValue(std::uint64_t value, names::LimitKind kind)
{
    if (value == RLIM_INFINITY) {
        return "\"infinity\"";
    }
    // Counts and times as plain integers (seconds, microseconds), which read
    // back exactly; sizes in their unit form for the reader.
    if (kind == names::LimitKind::Size) {
        return str(formatSize(value));
    }
    return std::to_string(value);
}

class Writer {
public:
    void line(std::string_view k, const std::string &value)
    {
        out_ += k;
        out_ += " = ";
        out_ += value;
        out_ += '\n';
    }
    void header(const std::string &name) { out_ += "\n[" + name + "]\n"; }
    void comment(const std::string &text) { out_ += "# " + text + "\n"; }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

void renderSocket(Writer &w, const SocketConfig &socket)
{
    w.header("socket." + socket.name);
    std::vector<std::string> listen;
    for (const auto &address : socket.listen) {
        listen.push_back(formatAddress(address));
    }
    w.line("listen", array(listen));
    if (socket.receive) {
        w.line("receive", boolean(true));
    }
    const auto &o = socket.options;
    // Set or not: a datagram socket must not get a backlog when read back.
    if (o.backlog) {
        w.line("backlog", std::to_string(*o.backlog));
    }
    auto flag = [&](std::string_view k, const std::optional<bool> &v) {
        if (v) {
            w.line(k, boolean(*v));
        }
    };
    flag("reuse_address", o.reuseAddress);
    flag("reuse_port", o.reusePort);
    flag("ipv6_only", o.ipv6Only);
    flag("free_bind", o.freeBind);
    flag("transparent", o.transparent);
    if (o.deferAccept) {
        w.line("defer_accept", seconds(*o.deferAccept));
    }
    if (o.fastOpen) {
        w.line("fastopen", std::to_string(*o.fastOpen));
    }
    flag("keepalive", o.keepAlive);
    if (o.keepAliveTime) {
        w.line("keepalive_time", seconds(*o.keepAliveTime));
    }
    if (o.keepAliveInterval) {
        w.line("keepalive_interval", seconds(*o.keepAliveInterval));
    }
    if (o.keepAliveCount) {
        w.line("keepalive_count", std::to_string(*o.keepAliveCount));
    }
    flag("nodelay", o.noDelay);
    if (o.sendBuffer) {
        w.line("send_buffer", str(formatSize(static_cast<std::uint64_t>(*o.sendBuffer))));
    }
    if (o.receiveBuffer) {
        w.line("receive_buffer", str(formatSize(static_cast<std::uint64_t>(*o.receiveBuffer))));
    }
    if (o.bindToDevice) {
        w.line("bind_to_device", str(*o.bindToDevice));
    }
    if (o.mode) {
        w.line("mode", octal(*o.mode));
    }
    // Resolved ids, not names: the names were looked up once, at load.
    if (o.owner) {
        w.line("owner", std::to_string(*o.owner));
    }
    if (o.group) {
        w.line("group", std::to_string(*o.group));
    }
    w.line("remove_stale", boolean(o.removeStale));
}

void renderService(Writer &w, const ServiceConfig &s)
{
    w.header("service." + s.name);
    w.line("command", array(s.command));
    std::string env = "{";
    bool first = true;
    for (const auto &[k, v] : s.environment) {
        env += (first ? " " : ", ") + key(k) + " = " + str(v);
        first = false;
    }
    w.line("environment", env + (first ? "}" : " }"));
    w.line("pass_environment", array(s.passEnvironment));
    w.line("working_directory", str(s.workingDirectory));
    if (s.user) {
        w.line("user", str(*s.user));
    }
    if (s.group) {
        w.line("group", str(*s.group));
    }
    w.line("supplementary_groups", array(s.supplementaryGroups));
    w.line("umask", octal(s.umask));
    w.line("no_new_privileges", boolean(s.noNewPrivileges));
    w.line("sockets", array(s.sockets));
    w.line("instances", std::to_string(s.instances));
    w.line("activation", str(names::nameOf(names::kActivation, s.activation)));
    w.line("ready", str(names::nameOf(names::kReadiness, s.ready)));
    std::vector<std::string> inherit;
    for (const auto convention : s.inherit) {
        inherit.emplace_back(names::nameOf(names::kInherit, convention));
    }
    w.line("inherit", array(inherit));
    w.line("restart", str(names::nameOf(names::kRestart, s.restart)));
    w.line("restart_delay", duration(s.restartDelay));
    w.line("restart_delay_max", duration(s.restartDelayMax));
    w.line("start_limit_burst", std::to_string(s.startLimitBurst));
    w.line("start_limit_interval", duration(s.startLimitInterval));
    w.line("start_timeout", duration(s.startTimeout));
    w.line("ready_timeout", duration(s.readyTimeout));
    w.line("drain_timeout", duration(s.drainTimeout));
    w.line("stop_timeout", duration(s.stopTimeout));
    w.line("watchdog_timeout", duration(s.watchdogTimeout));
    w.line("stop_signal", str(signalName(s.stopSignal)));
    w.line("drain_signal", str(signalName(s.drainSignal)));
    w.line("kill_signal", str(signalName(s.killSignal)));
    w.line("kill_mode", str(names::nameOf(names::kKillMode, s.killMode)));
    w.line("output", str(names::nameOf(names::kOutput, s.output)));
    w.line("handoff", boolean(s.handoff));
    w.line("handoff_timeout", duration(s.handoffTimeout));
    if (s.activationSocket) {
        w.line("activation_socket", str(*s.activationSocket));
    }
    w.line("activation_users", array(s.activationUsers));
    w.line("activation_groups", array(s.activationGroups));
    w.line("rollout_batch", std::to_string(s.rolloutBatch));
    w.line("rollout_order", str(names::nameOf(names::kRolloutOrder, s.rolloutOrder)));
    w.line("wrap", str(names::nameOf(names::kWrap, s.wrap)));
    if (!s.preloadMap.empty()) {
        std::string map = "{";
        for (const auto &[k, v] : s.preloadMap) {
            map += (map.size() == 1 ? " " : ", ") + key(k) + " = " + str(formatAddress(v));
        }
        w.line("preload_map", map + " }");
    }
    if (s.pidFile) {
        w.line("pid_file", str(*s.pidFile));
    }
    // Subtables last: after a [header] every key belongs to that header.
    if (!s.limits.empty()) {
        w.header("service." + s.name + ".limits");
        for (const auto &limit : s.limits) {
            const auto *entry = names::limitByResource(limit.resource);
            if (entry == nullptr) {
                continue;
            }
            if (limit.soft == limit.hard) {
                w.line(entry->name, limitValue(limit.soft, entry->kind));
            } else {
                w.line(entry->name, "{ soft = " + limitValue(limit.soft, entry->kind) +
                                        ", hard = " + limitValue(limit.hard, entry->kind) + " }");
            }
        }
    }
}

} // namespace

std::string renderConfig(const Config &config)
{
    Writer w;
    w.comment("fdsupd effective configuration: defaults filled in, includes flattened.");
    if (!config.files.empty()) {
        std::string from;
        for (const auto &file : config.files) {
            from += (from.empty() ? "" : ", ") + file;
        }
        w.comment("Read from: " + from);
    }
    const auto &s = config.supervisor;
    w.header("supervisor");
    w.line("control", str(s.control));
    w.line("control_mode", octal(s.controlMode));
    w.line("allow_users", array(s.allowUsers));
    w.line("allow_groups", array(s.allowGroups));
    w.line("log_level", str(s.logLevel));
    w.line("log_target", str(names::nameOf(names::kLogTarget, s.logTarget)));
    w.line("preload_library", str(s.preloadLibrary));
    if (s.metrics) {
        w.line("metrics", str(formatAddress(*s.metrics)));
    }
    if (s.metricsPublic) {
        w.line("metrics_public", "true");
    }
    const auto &l = s.limits;
    w.header("supervisor.limits");
    w.line("nofile", l.nofile == 0 ? std::string("\"max\"") : std::to_string(l.nofile));
    w.line("held_connections", std::to_string(l.heldConnections));
    w.line("held_connections_per_service", std::to_string(l.heldConnectionsPerService));
    w.line("state_size", str(formatSize(l.stateSize)));
    w.line("control_request_size", str(formatSize(l.controlRequestSize)));
    w.line("control_clients", std::to_string(l.controlClients));
    w.line("control_idle_timeout", duration(l.controlIdleTimeout));
    for (const auto &entry : s.access) {
        w.header("[supervisor.access]"); // an array of tables: [[supervisor.access]]
        w.line("users", array(entry.users));
        w.line("groups", array(entry.groups));
        w.line("rights", array(entry.rights));
        if (!entry.services.empty()) {
            w.line("services", array(entry.services));
        }
    }
    for (const auto &socket : config.sockets) {
        renderSocket(w, socket);
    }
    for (const auto &service : config.services) {
        renderService(w, service);
    }
    return w.take();
}

} // namespace fdsup::config
