// The spelling of every enum value and resource limit in fdsupd.toml, shared
// by the loader and renderConfig() so the two can never disagree.
#pragma once

#include <array>
#include <string_view>
#include <utility>

#include <sys/resource.h>

#include "config/config.hpp"

namespace fdsup::config::names {

template <typename E, std::size_t N>
using EnumTable = std::array<std::pair<std::string_view, E>, N>;

inline constexpr EnumTable<LogTarget, 2> kLogTarget{
    {{"console", LogTarget::Console}, {"journal", LogTarget::Journal}}};
inline constexpr EnumTable<Activation, 2> kActivation{
    {{"listen-fds", Activation::ListenFds}, {"channel", Activation::Channel}}};
inline constexpr EnumTable<Readiness, 4> kReadiness{{{"notify", Readiness::Notify},
                                                     {"started", Readiness::Started},
                                                     {"channel", Readiness::Channel},
                                                     {"bound", Readiness::Bound}}};
inline constexpr EnumTable<Wrap, 2> kWrap{{{"none", Wrap::None}, {"preload", Wrap::Preload}}};
inline constexpr EnumTable<RestartPolicy, 3> kRestart{{{"always", RestartPolicy::Always},
                                                       {"on-failure", RestartPolicy::OnFailure},
                                                       {"never", RestartPolicy::Never}}};
inline constexpr EnumTable<RolloutOrder, 2> kRolloutOrder{
    {{"start-first", RolloutOrder::StartFirst}, {"stop-first", RolloutOrder::StopFirst}}};
inline constexpr EnumTable<KillMode, 2> kKillMode{
    {{"process-group", KillMode::ProcessGroup}, {"main", KillMode::Main}}};
inline constexpr EnumTable<OutputMode, 2> kOutput{
    {{"log", OutputMode::Log}, {"inherit", OutputMode::Inherit}}};
inline constexpr EnumTable<InheritConvention, 2> kInherit{
    {{"nginx", InheritConvention::Nginx}, {"server-starter", InheritConvention::ServerStarter}}};

// Not an enum in the model (spdlog owns the type), but spelled the same way.
inline constexpr std::array<std::string_view, 7> kLogLevels{"trace", "debug",    "info", "warn",
                                                            "error", "critical", "off"};

// The rights of [[supervisor.access]] (docs/access.md): the three levels,
// then one per io.fdsup.Manager method, its name in lower case with '-'
// between words (a unit test keeps these equal to the method table).
inline constexpr std::array<std::string_view, 3> kAccessLevels{"read", "operate", "admin"};
inline constexpr std::array<std::string_view, 16> kCommandRights{
    "status", "sockets", "connections", "start",  "stop",   "restart", "rollout-status", "rollout-cancel",
    "scale",  "reload",  "events",      "export", "import", "release", "logs",           "reexec"};

template <typename E, std::size_t N>
constexpr std::string_view nameOf(const EnumTable<E, N> &table, E value)
{
    for (const auto &[name, v] : table) {
        if (v == value) {
            return name;
        }
    }
    return {};
}

// How a limit's value is written: sizes accept "64MiB", times a duration.
enum class LimitKind : std::uint8_t { Count, Size, Seconds, Microseconds };

struct LimitEntry {
    std::string_view name;
    int resource;
    LimitKind kind;
};

// Sorted by name: the model keeps limits in this order.
inline constexpr std::array<LimitEntry, 16> kLimits{{
    {"as", RLIMIT_AS, LimitKind::Size},
    {"core", RLIMIT_CORE, LimitKind::Size},
    {"cpu", RLIMIT_CPU, LimitKind::Seconds},
    {"data", RLIMIT_DATA, LimitKind::Size},
    {"fsize", RLIMIT_FSIZE, LimitKind::Size},
    {"locks", RLIMIT_LOCKS, LimitKind::Count},
    {"memlock", RLIMIT_MEMLOCK, LimitKind::Size},
    {"msgqueue", RLIMIT_MSGQUEUE, LimitKind::Size},
    {"nice", RLIMIT_NICE, LimitKind::Count},
    {"nofile", RLIMIT_NOFILE, LimitKind::Count},
    {"nproc", RLIMIT_NPROC, LimitKind::Count},
    {"rss", RLIMIT_RSS, LimitKind::Size},
    {"rtprio", RLIMIT_RTPRIO, LimitKind::Count},
    {"rttime", RLIMIT_RTTIME, LimitKind::Microseconds},
    {"sigpending", RLIMIT_SIGPENDING, LimitKind::Count},
    {"stack", RLIMIT_STACK, LimitKind::Size},
}};

inline const LimitEntry *limitByResource(int resource)
{
    for (const auto &entry : kLimits) {
        if (entry.resource == resource) {
            return &entry;
        }
    }
    return nullptr;
}

} // namespace fdsup::config::names
