// The [supervisor] table and its [supervisor.limits].
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "common/address.hpp"
#include "config/loader.hpp"
#include "config/names.hpp"

namespace fdsup::config::detail {

namespace {

// Limits of the language itself; each is documented in docs/config/.
constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMaxStateSize = 16 * kKiB * kKiB;
constexpr std::uint64_t kMinControlRequestSize = 4 * kKiB;
constexpr std::uint64_t kMaxControlRequestSize = 64 * kKiB * kKiB;

// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: reachable from this host only.
bool isLoopbackHost(const std::string &host)
{
    in_addr v4{};
    in6_addr v6{};
    if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
        return (ntohl(v4.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    }
    return false;
}

} // namespace

void Loader::loadSupervisor(const toml::table &table, const Location &at, const FileContext &file)
{
    supervisor_.where = at;
    auto &s = supervisor_;
    walk(table, "in [supervisor]", at,
         {
             {"control",
              [&](const Entry &e) {
                  if (auto v = getString(e)) {
                      std::string path = resolvePath(*v, file);
                      if (path.size() > kMaxUnixPath) {
                          error(e.valueAt, "'control': socket path " + squote(path) + " is too long (" +
                                               std::to_string(path.size()) + " bytes, at most " +
                                               std::to_string(kMaxUnixPath) + ")");
                      } else {
                          s.control = std::move(path);
                      }
                  }
              }},
             {"preload_library",
              [&](const Entry &e) {
                  if (auto v = getString(e)) {
                      if (v->empty() || v->find_first_of(": ") != std::string::npos) {
                          error(e.valueAt, "'preload_library' must be a path without ':' or spaces (it goes "
                                           "into LD_PRELOAD), not " +
                                               squote(*v));
                      } else {
                          s.preloadLibrary = resolvePath(*v, file);
                      }
                  }
              }},
             {"control_mode",
              [&](const Entry &e) {
                  if (auto v = getOctal(e, 0777)) {
                      s.controlMode = *v;
                  }
              }},
             {"allow_users",
              [&](const Entry &e) {
                  checkUsers(e, s.allowUsers, false);
              }},
             {"allow_groups",
              [&](const Entry &e) {
                  checkUsers(e, s.allowGroups, true);
              }},
             {"access",
              [&](const Entry &e) {
                  loadAccess(e);
              }},
             {"log_level",
              [&](const Entry &e) {
                  auto v = getString(e);
                  if (!v) {
                      return;
                  }
                  std::vector<std::string_view> allowed(names::kLogLevels.begin(), names::kLogLevels.end());
                  if (std::find(allowed.begin(), allowed.end(), *v) == allowed.end()) {
                      badEnum(e, *v, allowed);
                  } else {
                      s.logLevel = *v;
                  }
              }},
             {"log_target",
              [&](const Entry &e) {
                  if (auto v = getEnum(e, names::kLogTarget)) {
                      s.logTarget = *v;
                  }
              }},
             {"metrics",
              [&](const Entry &e) {
                  if (auto v = getString(e)) {
                      loadMetricsAddress(e, *v, file);
                  }
              }},
             {"metrics_public",
              [&](const Entry &e) {
                  if (auto v = getBool(e)) {
                      s.metricsPublic = *v;
                  }
              }},
             {"limits",
              [&](const Entry &e) {
                  if (const auto *t = e.value->as_table()) {
                      loadSupervisorLimits(*t, e.valueAt);
                  } else {
                      wrongType(e, "a table");
                  }
              }},
         });
}

// "/run/fdsup/metrics.sock", "unix:PATH", "unix:@NAME", "tcp://HOST:PORT" or
// "HOST:PORT"; the host numeric (a name could resolve to anything) and the
// port given (a scraper must know it). Loopback is checked in
// checkMetricsExposure(), once metrics_public is known whatever the key order.
void Loader::loadMetricsAddress(const Entry &e, const std::string &text, const FileContext &file)
{
    std::string spelled = text;
    if (text.starts_with('/') || text.starts_with('.')) {
        spelled = "unix:" + text;
    } else if (!text.starts_with("unix") && text.find("://") == std::string::npos) {
        spelled = "tcp://" + text;
    }
    auto address = parseAddress(resolveUnixAddress(spelled, file));
    if (!address) {
        error(e.valueAt, "'metrics': " + address.error().message);
        return;
    }
    if (address->transport != Transport::Tcp && address->transport != Transport::UnixStream) {
        error(e.valueAt, "'metrics' must be a unix stream socket or a tcp:// address, not " + squote(text));
    } else if (address->isInet() && !address->isNumericHost()) {
        error(e.valueAt, "'metrics': the host of " + squote(text) +
                             " must be a numeric address such as 127.0.0.1 or [::1], not a name");
    } else if (address->isInet() && address->port == 0) {
        error(e.valueAt,
              "'metrics': " + squote(text) + " needs a port (a scraper must know where to connect)");
    } else if (address->isUnix() && !address->abstract && address->host.size() > kMaxUnixPath) {
        error(e.valueAt, "'metrics': socket path " + squote(address->host) + " is too long (at most " +
                             std::to_string(kMaxUnixPath) + " bytes)");
    } else {
        supervisor_.metrics = std::move(*address);
        metricsAt_ = e.valueAt;
    }
}

// Metrics name every service and its restarts: not for the network unless
// the operator says so in as many words.
void Loader::checkMetricsExposure()
{
    const auto &metrics = supervisor_.metrics;
    if (!metrics || !metrics->isInet() || supervisor_.metricsPublic || isLoopbackHost(metrics->host)) {
        return;
    }
    error(metricsAt_, "'metrics': " + squote(formatAddress(*metrics)) +
                          " is not a loopback address; set metrics_public = true to serve metrics on it");
}

void Loader::loadSupervisorLimits(const toml::table &table, const Location &at)
{
    auto &l = supervisor_.limits;
    walk(table, "in [supervisor.limits]", at,
         {
             {"nofile",
              [&](const Entry &e) {
                  if (const auto *s = e.value->as_string(); s != nullptr && s->get() == "max") {
                      l.nofile = 0;
                  } else if (e.value->is_string()) {
                      error(e.valueAt, "'nofile' must be a number of files or \"max\", not " +
                                           squote(nodeText(*e.value)));
                  } else if (e.value->is_integer()) {
                      if (auto v = getInt(e, 1, std::numeric_limits<std::int64_t>::max())) {
                          l.nofile = static_cast<std::uint64_t>(*v);
                      }
                  } else {
                      wrongType(e, "an integer or \"max\"");
                  }
              }},
             {"held_connections",
              [&](const Entry &e) {
                  if (auto v = getInt(e, 1, kMaxU32)) {
                      l.heldConnections = static_cast<std::uint32_t>(*v);
                  }
              }},
             {"held_connections_per_service",
              [&](const Entry &e) {
                  if (auto v = getInt(e, 1, kMaxU32)) {
                      l.heldConnectionsPerService = static_cast<std::uint32_t>(*v);
                  }
              }},
             {"state_size",
              [&](const Entry &e) {
                  if (auto v = getSize(e, 0, kMaxStateSize)) {
                      l.stateSize = *v;
                  }
              }},
             {"control_request_size",
              [&](const Entry &e) {
                  if (auto v = getSize(e, kMinControlRequestSize, kMaxControlRequestSize)) {
                      l.controlRequestSize = *v;
                  }
              }},
             {"control_clients",
              [&](const Entry &e) {
                  if (auto v = getInt(e, 1, kMaxU32)) {
                      l.controlClients = static_cast<std::uint32_t>(*v);
                  }
              }},
             {"control_idle_timeout",
              [&](const Entry &e) {
                  if (auto d = getDuration(e); d && d->count() > 0) {
                      l.controlIdleTimeout = *d;
                  } else if (d) {
                      error(e.valueAt, "'control_idle_timeout' must be longer than 0 (\"infinity\": never)");
                  }
              }},
         });
}

} // namespace fdsup::config::detail
