// docs/security.md's limits table against the defaults in the code: every row, and no row the code lacks.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "api/control_server.hpp"
#include "api/event_stream.hpp"
#include "config/config.hpp"
#include "control/varlink.hpp"
#include "core/scm.hpp"
#include "io/channel_rejections.hpp"
#include "io/notify.hpp"
#include "io/worker_channel.hpp"
#include "model/activation.hpp"
#include "model/fd_store.hpp"
#include "model/output.hpp"
#include "model/preload.hpp"
#include "model/rollout.hpp"
#include "model/service.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = kKiB * kKiB;

// Sizes as the table writes them: "1 MiB", "64 KiB", "100 B".
std::string bytes(std::uint64_t n)
{
    if (n != 0 && n % kMiB == 0) {
        return std::to_string(n / kMiB) + " MiB";
    }
    if (n != 0 && n % kKiB == 0) {
        return std::to_string(n / kKiB) + " KiB";
    }
    return std::to_string(n) + " B";
}

// Durations: "30 s", "100 ms".
std::string duration(Duration d)
{
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
    return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

template <class N>
std::string count(N n)
{
    return std::to_string(static_cast<std::uint64_t>(n));
}

// What the code says, by the table's names.
std::map<std::string, std::string> codeLimits()
{
    const config::SupervisorLimits supervisor;
    const config::ServiceConfig service;
    const ControlOptions control;
    return {
        {"control.request_size", bytes(supervisor.controlRequestSize)},
        {"control.clients", count(supervisor.controlClients)},
        {"control.unread_replies", bytes(control.maxOutput)},
        {"control.events_unread", bytes(EventStream::kMaxBacklog)},
        {"control.call_fds", count(varlink::kMaxCallFds)},
        {"handoff.held_connections", count(supervisor.heldConnections)},
        {"handoff.held_per_service", count(supervisor.heldConnectionsPerService)},
        {"handoff.state_size", bytes(supervisor.stateSize)},
        {"handoff.timeout", duration(service.handoffTimeout)},
        {"channel.burst", count(WorkerChannel::kBurst)},
        {"channel.per_second", count(WorkerChannel::kPerSecond)},
        {"channel.handoff_burst", count(WorkerChannel::kHandoffBurst)},
        {"channel.reads_per_wakeup", count(WorkerChannel::kReadsPerWakeup)},
        {"channel.message_payload", bytes(kMaxMessagePayload)},
        {"channel.message_fds", count(kMaxMessageFds)},
        {"channel.datagram_payload", bytes(kMaxDatagramPayload)},
        {"channel.datagram_fds", count(kMaxFdsPerDatagram)},
        {"notify.datagram", bytes(kNotifyMaxDatagram)},
        {"notify.datagram_fds", count(kNotifyMaxFds)},
        {"notify.per_wakeup", count(kNotifyMaxPerWakeup)},
        {"notify.fdstore_fds", count(FdStore::kMaxFds)},
        {"activation.workers", count(ActivationSocket::kMaxWorkers)},
        {"activation.pending_rejections", count(ChannelRejections::kMax)},
        {"preload.per_instance", count(PreloadSocket::kMaxPerInstance)},
        {"service.instances", count(kMaxInstances)},
        {"service.queued_restarts", count(Rollouts::kMaxQueued)},
        {"service.output_lines", count(OutputLog::kMaxLines)},
        {"service.output_bytes", bytes(OutputLog::kMaxBytes)},
        {"service.start_timeout", duration(service.startTimeout)},
        {"service.ready_timeout", duration(service.readyTimeout)},
        {"service.drain_timeout", duration(service.drainTimeout)},
        {"service.stop_timeout", duration(service.stopTimeout)},
        {"service.watchdog_timeout", duration(service.watchdogTimeout)},
        {"service.restart_delay", duration(service.restartDelay)},
        {"service.restart_delay_max", duration(service.restartDelayMax)},
        {"service.start_limit_burst", count(service.startLimitBurst)},
        {"service.start_limit_interval", duration(service.startLimitInterval)},
        // 0: raised to the hard limit.
        {"supervisor.nofile", supervisor.nofile == 0 ? "the hard limit" : count(supervisor.nofile)},
    };
}

// The rows of the table under "## Limits": `name` -> default.
std::map<std::string, std::string> documentedLimits()
{
    const auto path = std::filesystem::path(requireEnv("FDSUP_SOURCE_ROOT")) / "docs" / "security.md";
    std::istringstream in(readFile(path));
    std::map<std::string, std::string> rows;
    const std::regex row(R"(^\| `([a-z_.]+)` \| ([^|]+?) \| .*\|$)");
    bool inside = false;
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with("## ")) {
            inside = line == "## Limits";
            continue;
        }
        std::smatch m;
        if (inside && std::regex_match(line, m, row)) {
            EXPECT_TRUE(rows.emplace(m[1], m[2]).second) << m[1] << " is in the table twice";
        }
    }
    return rows;
}

TEST(SecurityDoc, TheLimitsTableHasEveryLimitWithTheDefaultOfTheCode)
{
    const auto code = codeLimits();
    const auto doc = documentedLimits();
    ASSERT_FALSE(doc.empty()) << "no limits table under ## Limits in docs/security.md";
    for (const auto &[name, value] : code) {
        const auto it = doc.find(name);
        if (it == doc.end()) {
            ADD_FAILURE() << name << " (" << value << ") is missing from docs/security.md";
            continue;
        }
        EXPECT_EQ(it->second, value) << name;
    }
    for (const auto &[name, value] : doc) {
        EXPECT_TRUE(code.contains(name)) << name << " is documented but not checked against the code";
    }
}

} // namespace
} // namespace fdsup::test
