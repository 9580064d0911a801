// The [supervisor] table and its [supervisor.limits].
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/loader.hpp"
#include "config/names.hpp"

namespace fdsup::config::detail {

namespace {

// Limits of the language itself; each is documented in docs/config/.
constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMaxStateSize = 16 * kKiB * kKiB;
constexpr std::uint64_t kMinControlRequestSize = 4 * kKiB;
constexpr std::uint64_t kMaxControlRequestSize = 64 * kKiB * kKiB;

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
         });
}

} // namespace fdsup::config::detail
