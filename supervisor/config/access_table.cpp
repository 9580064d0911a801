// [[supervisor.access]]: who may call which control methods, over which services (docs/access.md).
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "config/loader.hpp"
#include "config/names.hpp"

namespace fdsup::config::detail {

namespace {

constexpr std::string_view kTable = "[[supervisor.access]]";

std::vector<std::string_view> everyRight()
{
    std::vector<std::string_view> rights(names::kAccessLevels.begin(), names::kAccessLevels.end());
    rights.insert(rights.end(), names::kCommandRights.begin(), names::kCommandRights.end());
    return rights;
}

} // namespace

void Loader::loadAccess(const Entry &e)
{
    const auto *array = e.value->as_array();
    if (array == nullptr || !array->is_array_of_tables()) {
        error(e.valueAt, "'access' must be an array of tables, written [[supervisor.access]], not " +
                             std::string(typeName(e.value->type())));
        return;
    }
    for (const auto &element : *array) {
        loadAccessEntry(*element.as_table(), locate(element.source(), e.valueAt));
    }
}

void Loader::loadAccessEntry(const toml::table &table, const Location &at)
{
    AccessEntry entry;
    entry.where = at;
    std::vector<Location> servicesAt;
    walk(table, "in " + std::string(kTable), at,
         {
             {"users",
              [&](const Entry &e) {
                  checkUsers(e, entry.users, false);
              }},
             {"groups",
              [&](const Entry &e) {
                  checkUsers(e, entry.groups, true);
              }},
             {"rights",
              [&](const Entry &e) {
                  checkRights(e, entry.rights);
              }},
             {"services",
              [&](const Entry &e) {
                  const auto services = getStringArray(e);
                  if (!services) {
                      return;
                  }
                  if (services->empty()) {
                      error(e.valueAt, "'services' must name at least one service (leave it out for "
                                       "every service)");
                  }
                  for (const auto &[service, serviceAt] : *services) {
                      entry.services.push_back(service);
                      servicesAt.push_back(serviceAt);
                  }
              }},
         });
    // Written but empty counts as not written: an entry must name someone
    // and grant something, or it is a mistake.
    const auto given = [&](std::string_view key) {
        const auto *array = table.get_as<toml::array>(key);
        return table.contains(key) && (array == nullptr || !array->empty());
    };
    if (!given("users") && !given("groups")) {
        error(at, std::string(kTable) + " names nobody: give 'users', 'groups' or both, not empty");
    }
    if (!given("rights")) {
        error(at, std::string(kTable) + " grants nothing: 'rights' must list at least one right (read, "
                                        "operate, admin or a command)");
    }
    supervisor_.access.push_back(std::move(entry));
    accessServicesAt_.push_back(std::move(servicesAt));
}

void Loader::checkRights(const Entry &e, std::vector<std::string> &out)
{
    const auto rights = getStringArray(e);
    if (!rights) {
        return;
    }
    const auto known = everyRight();
    for (const auto &[right, at] : *rights) {
        if (std::find(known.begin(), known.end(), right) != known.end()) {
            out.push_back(right);
            continue;
        }
        error(at, "'rights': unknown right " + squote(right) +
                      " (allowed: read, operate, admin, or a command: " +
                      joined({names::kCommandRights.begin(), names::kCommandRights.end()}) + ")" +
                      didYouMean(right, known));
    }
}

void Loader::crossCheckAccess()
{
    std::vector<std::string_view> names;
    for (const auto &def : services_) {
        names.push_back(def.config.name);
    }
    for (std::size_t i = 0; i < supervisor_.access.size() && i < accessServicesAt_.size(); ++i) {
        const auto &services = supervisor_.access[i].services;
        for (std::size_t j = 0; j < services.size(); ++j) {
            if (std::find(names.begin(), names.end(), services[j]) == names.end()) {
                error(accessServicesAt_[i][j], "'services': no service " + squote(services[j]) +
                                                   " is configured" + didYouMean(services[j], names));
            }
        }
    }
}

} // namespace fdsup::config::detail
