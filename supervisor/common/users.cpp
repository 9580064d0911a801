// Users and groups: reentrant NSS lookups shared by the config loader, the spawner and the daemon.
#include "common/users.hpp"

#include <cerrno>
#include <charconv>

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

namespace fdsup {

// Parses a decimal uid/gid; (id_t)-1 is refused, it means "unchanged" to the kernel.
std::optional<std::uint32_t> parseNumericId(std::string_view text)
{
    std::uint32_t value{};
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
        value == static_cast<std::uint32_t>(-1)) {
        return std::nullopt;
    }
    return value;
}

namespace {

std::size_t nssBufferSize(int name)
{
    const long size = sysconf(name);
    return size > 0 ? static_cast<std::size_t>(size) : 16384;
}

// getpwnam_r(3): 0, ENOENT, ESRCH, EBADF and EPERM all mean "no such entry";
// anything else is NSS failing, which must not read as "unknown user".
bool isNotFound(int rc)
{
    return rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM;
}

} // namespace

Result<std::optional<UserEntry>> lookUpUser(const std::string &user)
{
    const std::optional<uid_t> numeric = parseNumericId(user);
    std::vector<char> buffer(nssBufferSize(_SC_GETPW_R_SIZE_MAX));
    for (;;) {
        passwd entry{};
        passwd *found = nullptr;
        const int rc = numeric ? getpwuid_r(*numeric, &entry, buffer.data(), buffer.size(), &found)
                               : getpwnam_r(user.c_str(), &entry, buffer.data(), buffer.size(), &found);
        if (rc == ERANGE && buffer.size() < (std::size_t{1} << 24)) {
            buffer.resize(buffer.size() * 2);
            continue;
        }
        if (!isNotFound(rc)) {
            return errnoError(rc, "Failed to look up user '" + user + "'");
        }
        if (found == nullptr) {
            return std::optional<UserEntry>();
        }
        return std::optional<UserEntry>(UserEntry{entry.pw_uid, entry.pw_gid, entry.pw_name});
    }
}

Result<uid_t> lookUpUid(const std::string &user)
{
    if (const std::optional<std::uint32_t> numeric = parseNumericId(user)) {
        return static_cast<uid_t>(*numeric);
    }
    auto entry = lookUpUser(user);
    if (!entry) {
        return entry.error();
    }
    if (!*entry) {
        return Error{ESRCH, "user '" + user + "' not found"};
    }
    return (*entry)->uid;
}

Result<gid_t> lookUpGroup(const std::string &group)
{
    if (const std::optional<gid_t> numeric = parseNumericId(group)) {
        return *numeric; // a group needs no entry to be set
    }
    std::vector<char> buffer(nssBufferSize(_SC_GETGR_R_SIZE_MAX));
    for (;;) {
        struct group entry {};
        struct group *found = nullptr;
        const int rc = getgrnam_r(group.c_str(), &entry, buffer.data(), buffer.size(), &found);
        if (rc == ERANGE && buffer.size() < (std::size_t{1} << 24)) {
            buffer.resize(buffer.size() * 2);
            continue;
        }
        if (!isNotFound(rc)) {
            return errnoError(rc, "Failed to look up group '" + group + "'");
        }
        if (found == nullptr) {
            return Error{ESRCH, "group '" + group + "' not found"};
        }
        return entry.gr_gid;
    }
}

Result<std::vector<gid_t>> userGroups(const std::string &name, gid_t gid)
{
    std::vector<gid_t> groups(32);
    for (;;) {
        int n = static_cast<int>(groups.size());
        const int before = n;
        if (getgrouplist(name.c_str(), gid, groups.data(), &n) >= 0) {
            groups.resize(static_cast<std::size_t>(n));
            return groups;
        }
        // n now holds the number needed; guard against an NSS module that
        // does not update it.
        if (n <= before) {
            if (before >= 65536) {
                return Error{E2BIG, "user '" + name + "' is in too many groups"};
            }
            n = before * 2;
        }
        groups.resize(static_cast<std::size_t>(n));
    }
}

} // namespace fdsup
