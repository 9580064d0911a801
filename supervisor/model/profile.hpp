// A generation of a service: its configuration with everything a spawn needs resolved once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/result.hpp"
#include "config/config.hpp"
#include "core/fd.hpp"
#include "io/spawn.hpp"

namespace fdsup {

// What one generation of a service runs: its configuration, with everything
// a spawn needs that can fail resolved once (binary, user, groups). A
// rollout moves a service from one profile to the next; every instance keeps
// the profile it was started from.
struct Profile {
    unsigned generation = 1;
    config::ServiceConfig config;
    std::string executable;
    // The binary itself, opened when the generation was made: its instances
    // (crash restarts, a rollback's) run that file even if a deploy has
    // since put another one at `executable`. Scripts run by path.
    UniqueFd executableFd;
    Credentials credentials;
    std::vector<std::string> baseEnvironment; // pass_environment + environment + PATH
    // activation_users and activation_groups, resolved.
    std::vector<uid_t> activationUids;
    std::vector<gid_t> activationGids;
    // wrap = "preload": the shim's path ([supervisor] preload_library), why
    // it cannot load into this executable (static, setuid, capabilities),
    // and whether the library was missing when the generation was made.
    std::string preloadLibrary;
    std::optional<std::string> preloadBlocker;
    bool preloadLibraryMissing = false;
};

// The error names the service: "Service 'web': ...".
// A wrapped service's blockers are logged as warnings here, once per generation.
Result<std::shared_ptr<const Profile>> makeProfile(const config::ServiceConfig &config, unsigned generation,
                                                   const std::string &preloadLibrary = {});

// A descriptor a worker receives among its LISTEN_FDS, with its LISTEN_FDNAMES name.
struct NamedFd {
    BorrowedFd fd;
    std::string name;
};

// What an instance of this generation in `slot` is started with: its
// binary, argv, environment (NOTIFY_SOCKET, FDSUP_SERVICE, FDSUP_INSTANCE,
// FDSUP_GENERATION, WATCHDOG_USEC), credentials, limits (RLIMIT_NOFILE as
// fdsupd found it unless [limits] set one) and `fds` as fds 3, 4, ...;
// the caller adds the worker channel and decides listenFds. A wrapped
// service (docs/preload.md) gets no listeners but LD_PRELOAD (the shim in
// front of its own), FDSUP_PRELOAD=preloadAddress, FDSUP_PRELOAD_MAP,
// FDSUP_DRAIN_SIGNAL and FDSUP_DRAIN_TIMEOUT_USEC.
SpawnRequest spawnRequest(const Profile &profile, unsigned slot, const std::string &notifySocket,
                          const std::vector<NamedFd> &fds, const config::ResourceLimit &originalNofile,
                          const std::string &preloadAddress = {});

// The worker channel: granted to workers of services that use it (handoff,
// activation or readiness over the channel); others see exactly the fds
// they always did.
[[nodiscard]] bool wantsChannel(const config::ServiceConfig &config);
// The capabilities (kChannelCap*) a spawned worker of this configuration may be granted.
[[nodiscard]] std::uint32_t allowedCapabilities(const config::ServiceConfig &config);

} // namespace fdsup
