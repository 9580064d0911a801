// Per-command access to the control API: the rights of each caller and the one decision (docs/access.md).
#include "api/access.hpp"

#include <algorithm>
#include <cctype>

#include <spdlog/spdlog.h>

#include "common/users.hpp"

namespace fdsup {
namespace {

template <class List, class Item>
bool contains(const List &list, const Item &item)
{
    return std::find(list.begin(), list.end(), item) != list.end();
}

bool names(const Grant &grant, const Peer &peer)
{
    return contains(grant.uids, peer.uid) || contains(grant.gids, peer.gid) ||
           std::any_of(peer.groups.begin(), peer.groups.end(),
                       [&](gid_t g) { return contains(grant.gids, g); });
}

bool grants(const Grant &grant, std::string_view command, Access level,
            const std::optional<std::string> &service)
{
    const bool right = (grant.level && *grant.level >= level) || contains(grant.commands, command);
    const bool over = grant.services.empty() || (service && contains(grant.services, *service));
    return right && over;
}

// "read, restart on 'web', 'api'"
std::string describe(const Grant &grant)
{
    std::string text = grant.level ? accessName(*grant.level) : "";
    for (const auto &command : grant.commands) {
        text += (text.empty() ? "" : ", ") + command;
    }
    for (std::size_t i = 0; i < grant.services.size(); ++i) {
        text += (i == 0 ? " on '" : ", '") + grant.services[i] + "'";
    }
    return text;
}

void resolveNames(const std::vector<std::string> &users, const std::vector<std::string> &groups,
                  std::string_view where, Grant &grant)
{
    for (const auto &name : users) {
        if (auto uid = lookUpUid(name)) {
            grant.uids.push_back(*uid);
        } else {
            spdlog::warn("{}: {}, ignoring", where, uid.error().message);
        }
    }
    for (const auto &name : groups) {
        if (auto gid = lookUpGroup(name)) {
            grant.gids.push_back(*gid);
        } else {
            spdlog::warn("{}: {}, ignoring", where, gid.error().message);
        }
    }
}

} // namespace

const char *accessName(Access access)
{
    switch (access) {
    case Access::Read:
        return "read";
    case Access::Operate:
        return "operate";
    case Access::Admin:
        return "admin";
    }
    return "unknown";
}

std::string commandRight(std::string_view method)
{
    std::string right;
    for (const char c : method) {
        if (std::isupper(static_cast<unsigned char>(c)) != 0 && !right.empty()) {
            right += '-';
        }
        right += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return right;
}

std::vector<uid_t> AccessPolicy::uids() const
{
    std::vector<uid_t> all;
    for (const auto &grant : grants) {
        all.insert(all.end(), grant.uids.begin(), grant.uids.end());
    }
    return all;
}

std::vector<gid_t> AccessPolicy::gids() const
{
    std::vector<gid_t> all;
    for (const auto &grant : grants) {
        all.insert(all.end(), grant.gids.begin(), grant.gids.end());
    }
    return all;
}

AccessPolicy resolveAccessPolicy(const config::SupervisorConfig &supervisor)
{
    AccessPolicy policy;
    Grant all;
    all.level = Access::Admin;
    resolveNames(supervisor.allowUsers, supervisor.allowGroups, "allow_users/allow_groups", all);
    policy.grants.push_back(std::move(all));
    for (const auto &entry : supervisor.access) {
        Grant grant;
        resolveNames(entry.users, entry.groups, "[[supervisor.access]] at " + entry.where.str(), grant);
        for (const auto &right : entry.rights) {
            const Access levels[] = {Access::Read, Access::Operate, Access::Admin};
            const auto *level = std::find_if(std::begin(levels), std::end(levels),
                                             [&](Access a) { return right == accessName(a); });
            if (level == std::end(levels)) {
                grant.commands.push_back(right);
            } else if (!grant.level || *grant.level < *level) {
                grant.level = *level;
            }
        }
        grant.services = entry.services;
        policy.grants.push_back(std::move(grant));
    }
    return policy;
}

std::optional<Refusal> checkAccess(const AccessPolicy &policy, const Peer &peer, uid_t self,
                                   std::string_view method, Access level,
                                   const std::optional<std::string> &service)
{
    if (peer.uid == 0 || peer.uid == self) {
        return std::nullopt;
    }
    const std::string command = commandRight(method);
    std::string has;
    for (const auto &grant : policy.grants) {
        if (!names(grant, peer)) {
            continue;
        }
        if (grants(grant, command, level, service)) {
            return std::nullopt;
        }
        const std::string text = describe(grant);
        has += (has.empty() || text.empty() ? "" : "; ") + text;
    }
    Refusal refusal{std::string(method),           service, accessName(level), command,
                    has.empty() ? "nothing" : has, ""};
    refusal.message = command + (service ? " of '" + *service + "'" : std::string()) + " needs the right '" +
                      refusal.right + "' (or '" + command + "')" + (service ? "" : " over every service") +
                      "; uid " + std::to_string(peer.uid) + " has: " + refusal.has;
    return refusal;
}

} // namespace fdsup
