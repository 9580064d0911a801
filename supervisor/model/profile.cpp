// A generation of a service: its configuration with everything a spawn needs resolved once.
#include "model/profile.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/users.hpp"
#include "core/channel.hpp"
#include "fdsup_build_config.h"
#include "io/executable_check.hpp"

namespace fdsup {
namespace {

constexpr const char *kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

Error named(const config::ServiceConfig &config, const Error &error)
{
    return Error{error.code, "Service '" + config.name + "': " + error.message};
}

// The cheap checks, at load and at every rollout: what cannot work is said
// before any instance runs, not guessed from a silence later.
void checkWrappable(Profile &profile, const std::string &preloadLibrary)
{
    const std::string &name = profile.config.name;
    profile.preloadLibrary = preloadLibrary.empty() ? std::string(FDSUP_PRELOAD_LIBRARY) : preloadLibrary;
    profile.preloadBlocker = preloadBlocker(profile.executable);
    if (profile.preloadBlocker) {
        spdlog::warn("Service '{}' is wrapped, but {}: its listeners will not be adopted", name,
                     *profile.preloadBlocker);
    }
    if (access(profile.preloadLibrary.c_str(), R_OK) < 0) {
        profile.preloadLibraryMissing = true;
        spdlog::warn("Service '{}' is wrapped, but the preload library {} cannot be read: {}", name,
                     profile.preloadLibrary, errnoText(errno));
    }
}

// "web=tcp://0.0.0.0:8080;admin=unix:/run/admin.sock"
std::string preloadMapText(const config::ServiceConfig &config)
{
    std::string out;
    for (const auto &[name, address] : config.preloadMap) {
        out += (out.empty() ? "" : ";") + name + "=" + formatAddress(address);
    }
    return out;
}

void addPreloadEnvironment(SpawnRequest &request, const Profile &profile, const std::string &preloadAddress)
{
    const config::ServiceConfig &config = profile.config;
    std::string preload = "LD_PRELOAD=" + profile.preloadLibrary;
    auto own = std::find_if(request.environment.begin(), request.environment.end(),
                            [](const std::string &v) { return v.starts_with("LD_PRELOAD="); });
    if (own != request.environment.end()) {
        const std::string theirs = own->substr(std::string_view("LD_PRELOAD=").size());
        if (!theirs.empty()) {
            preload += ":" + theirs;
        }
        request.environment.erase(own);
    }
    request.environment.push_back(preload);
    request.environment.push_back("FDSUP_PRELOAD=" + preloadAddress);
    if (!config.preloadMap.empty()) {
        request.environment.push_back("FDSUP_PRELOAD_MAP=" + preloadMapText(config));
    }
    request.environment.push_back("FDSUP_DRAIN_SIGNAL=" + std::to_string(config.drainSignal));
    request.environment.push_back("FDSUP_DRAIN_TIMEOUT_USEC=" + std::to_string(config.drainTimeout.count()));
}

} // namespace

Result<std::shared_ptr<const Profile>> makeProfile(const config::ServiceConfig &config, unsigned generation,
                                                   const std::string &preloadLibrary)
{
    auto profile = std::make_shared<Profile>();
    profile->generation = generation;
    profile->config = config;

    // Everything a spawn needs that can fail is resolved now, once: a missing
    // user or binary is an error naming the service, not a crash loop.
    auto credentials = resolveCredentials(config);
    if (!credentials) {
        return named(config, credentials.error());
    }
    profile->credentials = std::move(*credentials);

    std::string searchPath = kDefaultPath;
    if (auto it = config.environment.find("PATH"); it != config.environment.end()) {
        searchPath = it->second;
    }
    auto executable = findExecutable(config.command.front(), searchPath);
    if (!executable) {
        return named(config, executable.error());
    }
    profile->executable = std::move(*executable);
    profile->executableFd = UniqueFd(open(profile->executable.c_str(), O_PATH | O_CLOEXEC));
    if (!profile->executableFd) {
        return errnoError(errno, "Service '" + config.name + "': cannot open " + profile->executable);
    }

    bool hasPath = false;
    for (const auto &name : config.passEnvironment) {
        if (const char *value = std::getenv(name.c_str())) {
            profile->baseEnvironment.push_back(name + "=" + value);
            hasPath = hasPath || name == "PATH";
        }
    }
    for (const auto &[name, value] : config.environment) {
        profile->baseEnvironment.push_back(std::string(name).append("=").append(value));
        hasPath = hasPath || name == "PATH";
    }
    if (!hasPath) {
        profile->baseEnvironment.push_back(std::string("PATH=") + kDefaultPath);
    }
    for (const auto &user : config.activationUsers) {
        auto uid = lookUpUid(user);
        if (!uid) {
            return named(config, Error{uid.error().code, "activation_users: " + uid.error().message});
        }
        profile->activationUids.push_back(*uid);
    }
    for (const auto &group : config.activationGroups) {
        auto gid = lookUpGroup(group);
        if (!gid) {
            return named(config, Error{gid.error().code, "activation_groups: " + gid.error().message});
        }
        profile->activationGids.push_back(*gid);
    }
    if (config.wrap == config::Wrap::Preload) {
        checkWrappable(*profile, preloadLibrary);
    }
    return std::shared_ptr<const Profile>(std::move(profile));
}

SpawnRequest spawnRequest(const Profile &profile, unsigned slot, const std::string &notifySocket,
                          const std::vector<NamedFd> &fds, const config::ResourceLimit &originalNofile,
                          const std::string &preloadAddress)
{
    const config::ServiceConfig &config = profile.config;
    SpawnRequest request;
    request.executable = profile.executable;
    request.executableFd = profile.executableFd.borrow();
    request.argv = config.command;
    request.environment = profile.baseEnvironment;
    request.environment.push_back("NOTIFY_SOCKET=" + notifySocket);
    request.environment.push_back("FDSUP_SERVICE=" + config.name);
    request.environment.push_back("FDSUP_INSTANCE=" + std::to_string(slot));
    request.environment.push_back("FDSUP_GENERATION=" + std::to_string(profile.generation));
    if (config.watchdogTimeout > Duration::zero()) {
        request.environment.push_back("WATCHDOG_USEC=" + std::to_string(config.watchdogTimeout.count()));
    }
    if (config.wrap == config::Wrap::Preload) {
        addPreloadEnvironment(request, profile, preloadAddress);
    }
    for (const auto &named : fds) {
        request.fds.push_back(named.fd);
        request.fdNames.push_back(named.name);
    }
    request.workingDirectory = config.workingDirectory;
    request.uid = profile.credentials.uid;
    request.gid = profile.credentials.gid;
    request.supplementaryGroups = profile.credentials.groups;
    request.umask = config.umask;
    request.limits = config.limits;
    if (std::none_of(request.limits.begin(), request.limits.end(),
                     [](const config::ResourceLimit &l) { return l.resource == RLIMIT_NOFILE; })) {
        request.limits.push_back(originalNofile);
    }
    request.noNewPrivileges = config.noNewPrivileges;
    request.newProcessGroup = true;
    request.captureOutput = config.output == config::OutputMode::Log;
    return request;
}

bool wantsChannel(const config::ServiceConfig &config)
{
    return config.handoff || config.activation == config::Activation::Channel ||
           config.ready == config::Readiness::Channel;
}

std::uint32_t allowedCapabilities(const config::ServiceConfig &config)
{
    std::uint32_t allowed = 0;
    if (config.handoff) {
        allowed |= kChannelCapHandoff | kChannelCapAdopt;
    }
    if (config.activation == config::Activation::Channel) {
        allowed |= kChannelCapListeners;
    }
    return allowed;
}

} // namespace fdsup
