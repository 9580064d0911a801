// What a worker runs as, resolved once per generation in the parent: PATH search, user and group lookups.
#include <cerrno>
#include <filesystem>
#include <optional>
#include <string_view>
#include <system_error>
#include <utility>

#include <sys/stat.h>
#include <unistd.h>

#include "common/users.hpp"
#include "io/spawn.hpp"

namespace fdsup {

Result<std::string> findExecutable(const std::string &command, const std::string &searchPath)
{
    if (command.empty()) {
        return Error{ENOENT, "empty command"};
    }
    // Why a candidate cannot be run: 0 when it can. Directories and other
    // non-regular files count as EACCES, as execve() sees them.
    auto check = [](const std::string &path) {
        struct stat st {};
        if (stat(path.c_str(), &st) != 0) {
            return errno;
        }
        if (!S_ISREG(st.st_mode)) {
            return EACCES;
        }
        return access(path.c_str(), X_OK) == 0 ? 0 : errno;
    };
    if (command.find('/') != std::string::npos) {
        std::error_code ec;
        const std::string path = command.front() == '/'
                                     ? command
                                     : std::filesystem::absolute(command, ec).lexically_normal().string();
        if (ec) {
            return errnoError(ec.value(), "Failed to make '" + command + "' absolute");
        }
        if (const int error = check(path)) {
            return errnoError(error, "'" + path + "' is not executable");
        }
        return path;
    }
    // execvp semantics: the first executable hit wins; if none, a candidate
    // that exists but may not be run is reported rather than "not found".
    std::optional<std::pair<std::string, int>> refused;
    std::string_view rest = searchPath;
    while (!rest.empty()) {
        const std::size_t colon = rest.find(':');
        const std::string_view dir = rest.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
        if (!dir.empty() && dir.front() == '/') {
            std::string candidate(dir);
            if (candidate.back() != '/') {
                candidate += '/';
            }
            candidate += command;
            const int error = check(candidate);
            if (error == 0) {
                return candidate;
            }
            if (error != ENOENT && error != ENOTDIR && !refused) {
                refused.emplace(std::move(candidate), error);
            }
        }
    }
    if (refused) {
        return errnoError(refused->second, "'" + refused->first + "' is not executable");
    }
    return Error{ENOENT, "command '" + command + "' not found in PATH (" + searchPath + ")"};
}

Result<Credentials> resolveCredentials(const config::ServiceConfig &service)
{
    Credentials credentials;
    std::optional<std::string> userName;
    if (service.user) {
        auto entry = lookUpUser(*service.user);
        if (!entry) {
            return entry.error();
        }
        if (entry->has_value()) {
            credentials.uid = (*entry)->uid;
            credentials.gid = (*entry)->gid;
            userName = (*entry)->name;
        } else if (const std::optional<uid_t> numeric = parseNumericId(*service.user)) {
            // No primary group to take from a missing entry, and keeping
            // fdsupd's (root's) would be worse than refusing.
            if (!service.group) {
                return Error{ESRCH, "user " + *service.user + " has no passwd entry; set a group"};
            }
            credentials.uid = *numeric;
        } else {
            return Error{ESRCH, "user '" + *service.user + "' not found"};
        }
    }
    if (service.group) {
        auto gid = lookUpGroup(*service.group);
        if (!gid) {
            return gid.error();
        }
        credentials.gid = *gid;
    }
    if (!service.supplementaryGroups.empty()) {
        std::vector<gid_t> groups;
        groups.reserve(service.supplementaryGroups.size());
        for (const auto &group : service.supplementaryGroups) {
            auto gid = lookUpGroup(group);
            if (!gid) {
                return gid.error();
            }
            groups.push_back(*gid);
        }
        credentials.groups = std::move(groups);
    } else if (service.user) {
        if (userName) {
            auto groups = userGroups(*userName, *credentials.gid);
            if (!groups) {
                return groups.error();
            }
            credentials.groups = std::move(*groups);
        } else {
            credentials.groups = std::vector<gid_t>();
        }
    }
    return credentials;
}

} // namespace fdsup
