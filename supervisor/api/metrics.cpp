// The daemon as Prometheus metrics (docs/metrics.md): collecting a snapshot, and its text.
#include "api/metrics.hpp"

#include <fmt/format.h>

#include "daemon/daemon.hpp"
#include "daemon/reload.hpp"
#include "fdsup_build_config.h"

namespace fdsup {
namespace {

// Label values are escaped as the text format asks: backslash, quote, newline.
std::string escaped(const std::string &value)
{
    std::string out;
    for (const char c : value) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

class Writer {
public:
    void family(const char *name, const char *type, const char *help)
    {
        out_ += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }
    template <class Value>
    void sample(std::string_view name, const std::string &labels, Value value)
    {
        out_ += labels.empty() ? fmt::format("{} {}\n", name, value)
                               : fmt::format("{}{{{}}} {}\n", name, labels, value);
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

std::string serviceLabel(const ServiceMetrics &s)
{
    return "service=\"" + escaped(s.name) + "\"";
}

void renderProcess(Writer &w, const MetricsSnapshot &m)
{
    w.family("fdsup_build_info", "gauge", "The fdsupd build serving these metrics; always 1.");
    w.sample("fdsup_build_info", "version=\"" + escaped(m.version) + "\"", 1);
    w.family("fdsup_config_reloads_total", "counter", "Configuration reloads by outcome.");
    for (std::size_t k = 0; k < m.reloads.size(); ++k) {
        w.sample("fdsup_config_reloads_total",
                 fmt::format("result=\"{}\"", reloadOutcomeName(static_cast<ReloadOutcome::Kind>(k))),
                 m.reloads.at(k));
    }
    const SelfStats &p = m.process;
    w.family("process_cpu_seconds_total", "counter", "User and system CPU time spent by fdsupd in seconds.");
    w.sample("process_cpu_seconds_total", "", p.cpuSeconds);
    w.family("process_open_fds", "gauge", "Open file descriptors of fdsupd.");
    w.sample("process_open_fds", "", p.openFds);
    w.family("process_max_fds", "gauge", "The most file descriptors fdsupd may open (RLIMIT_NOFILE).");
    w.sample("process_max_fds", "", p.maxFds);
    w.family("process_resident_memory_bytes", "gauge", "Resident memory of fdsupd in bytes.");
    w.sample("process_resident_memory_bytes", "", p.residentBytes);
    w.family("process_virtual_memory_bytes", "gauge", "Virtual memory of fdsupd in bytes.");
    w.sample("process_virtual_memory_bytes", "", p.virtualBytes);
    w.family("fdsup_process_private_memory_bytes", "gauge",
             "Memory only fdsupd maps (Private_Clean + Private_Dirty of smaps_rollup) in bytes.");
    w.sample("fdsup_process_private_memory_bytes", "", p.privateBytes);
    w.family("process_start_time_seconds", "gauge", "Start time of fdsupd since the epoch in seconds.");
    w.sample("process_start_time_seconds", "", p.startTimeSeconds);
}

void renderInstances(Writer &w, const MetricsSnapshot &m)
{
    w.family("fdsup_instances", "gauge", "Live instances of the service by lifecycle state.");
    for (const auto &s : m.services) {
        for (std::size_t i = 0; i < kInstanceStates; ++i) {
            w.sample("fdsup_instances",
                     fmt::format("{},state=\"{}\"", serviceLabel(s),
                                 lifecycleStateName(static_cast<InstanceState>(i))),
                     s.instances.at(i));
        }
    }
    w.family("fdsup_restarts_total", "counter", "Automatic restarts of the service's instances by cause.");
    for (const auto &s : m.services) {
        for (std::size_t c = 0; c < kRestartCauses; ++c) {
            w.sample("fdsup_restarts_total",
                     fmt::format("{},cause=\"{}\"", serviceLabel(s),
                                 restartCauseName(static_cast<RestartCause>(c))),
                     s.restarts.at(c));
        }
    }
}

void renderRollouts(Writer &w, const MetricsSnapshot &m)
{
    w.family("fdsup_rollouts_started_total", "counter", "Rollouts begun (restarts and reloads).");
    for (const auto &s : m.services) {
        w.sample("fdsup_rollouts_started_total", serviceLabel(s), s.rollouts.started);
    }
    w.family("fdsup_rollouts_total", "counter", "Rollouts finished by result.");
    for (const auto &s : m.services) {
        const RolloutCounters &r = s.rollouts;
        w.sample("fdsup_rollouts_total", serviceLabel(s) + ",result=\"succeeded\"", r.succeeded);
        w.sample("fdsup_rollouts_total", serviceLabel(s) + ",result=\"rolled_back\"", r.rolledBack);
        w.sample("fdsup_rollouts_total", serviceLabel(s) + ",result=\"cancelled\"", r.cancelled);
    }
    w.family("fdsup_rollout_duration_seconds", "histogram", "Durations of finished rollouts in seconds.");
    for (const auto &s : m.services) {
        const RolloutCounters &r = s.rollouts;
        std::uint64_t cumulative = 0;
        for (std::size_t b = 0; b < RolloutCounters::kDurationBuckets.size(); ++b) {
            cumulative += r.durations.at(b);
            w.sample("fdsup_rollout_duration_seconds_bucket",
                     fmt::format("{},le=\"{}\"", serviceLabel(s), RolloutCounters::kDurationBuckets.at(b)),
                     cumulative);
        }
        cumulative += r.durations.back();
        w.sample("fdsup_rollout_duration_seconds_bucket", serviceLabel(s) + ",le=\"+Inf\"", cumulative);
        w.sample("fdsup_rollout_duration_seconds_sum", serviceLabel(s), r.durationSeconds);
        w.sample("fdsup_rollout_duration_seconds_count", serviceLabel(s), cumulative);
    }
}

void renderHandoff(Writer &w, const MetricsSnapshot &m)
{
    w.family("fdsup_handoff_connections_total", "counter",
             "Connections handed over by workers (handed), and how held ones or refused ones ended.");
    for (const auto &s : m.services) {
        const HandoffCounters &h = s.handoff;
        w.sample("fdsup_handoff_connections_total", serviceLabel(s) + ",result=\"handed\"", h.handed);
        w.sample("fdsup_handoff_connections_total", serviceLabel(s) + ",result=\"adopted\"", h.adopted);
        w.sample("fdsup_handoff_connections_total", serviceLabel(s) + ",result=\"expired\"", h.expired);
        w.sample("fdsup_handoff_connections_total", serviceLabel(s) + ",result=\"hung_up\"", h.hungUp);
        w.sample("fdsup_handoff_connections_total", serviceLabel(s) + ",result=\"refused\"", h.refused);
    }
    w.family("fdsup_handoff_held_connections", "gauge", "Connections fdsupd holds now for the service.");
    for (const auto &s : m.services) {
        w.sample("fdsup_handoff_held_connections", serviceLabel(s), s.held);
    }
    w.family("fdsup_notify_messages_dropped_total", "counter",
             "Notify datagrams dropped: not from an instance, malformed or oversized.");
    for (const auto &s : m.services) {
        w.sample("fdsup_notify_messages_dropped_total", serviceLabel(s), s.notifyDropped);
    }
    w.family(
        "fdsup_channel_messages_dropped_total", "counter",
        "Worker channel messages fdsupd dropped: a malformed, flooding or unexpected one that closed its "
        "channel, or an empty datagram.");
    for (const auto &s : m.services) {
        w.sample("fdsup_channel_messages_dropped_total", serviceLabel(s), s.channelDropped);
    }
}

} // namespace

MetricsSnapshot collectMetrics(const Daemon &daemon, std::string version)
{
    MetricsSnapshot m;
    m.version = std::move(version);
    m.process = readSelfStats();
    m.reloads = daemon.reloadsByResult();
    for (const auto &service : daemon.services()) {
        ServiceMetrics s;
        s.name = service->name();
        for (const auto &instance : service->instances()) {
            ++s.instances.at(static_cast<std::size_t>(instance->state()));
        }
        s.restarts = service->restartsByCause();
        s.rollouts = service->rollouts().counters();
        s.handoff = service->broker().counters();
        s.held = service->broker().held().size();
        s.notifyDropped = service->notify().dropped();
        s.channelDropped = service->channelMessagesDropped();
        m.services.push_back(std::move(s));
    }
    return m;
}

std::string renderMetrics(const MetricsSnapshot &snapshot)
{
    Writer w;
    renderProcess(w, snapshot);
    renderInstances(w, snapshot);
    renderRollouts(w, snapshot);
    renderHandoff(w, snapshot);
    return w.take();
}

void installMetrics(Daemon &daemon)
{
    daemon.setMetricsRender([&daemon] { return renderMetrics(collectMetrics(daemon, FDSUP_VERSION)); });
}

} // namespace fdsup
