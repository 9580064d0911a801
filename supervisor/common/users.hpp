// Users and groups: reentrant NSS lookups shared by the config loader, the spawner and the daemon.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "common/result.hpp"

namespace fdsup {

// A decimal uid/gid; (id_t)-1 is refused, it means "unchanged" to the kernel.
std::optional<std::uint32_t> parseNumericId(std::string_view text);

struct UserEntry {
    uid_t uid = 0;
    gid_t gid = 0;
    std::string name;
};

// getpwnam_r (getpwuid_r for a numeric user) with a growing buffer. nullopt
// when there is no such entry; an error only when NSS itself failed.
Result<std::optional<UserEntry>> lookUpUser(const std::string &user);

// The uid of a user name, for access lists: a numeric uid needs no entry
// (as with groups below). ESRCH when there is no such user.
Result<uid_t> lookUpUid(const std::string &user);

// getgrnam_r; a numeric group needs no entry. ESRCH when there is no such group.
Result<gid_t> lookUpGroup(const std::string &group);

// The supplementary groups of a user (getgrouplist), including gid.
Result<std::vector<gid_t>> userGroups(const std::string &name, gid_t gid);

} // namespace fdsup
