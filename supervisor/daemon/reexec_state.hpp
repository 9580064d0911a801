// The state fdsupd carries across an in-place re-exec, and its versioned JSON format (docs/reexec.md).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "common/result.hpp"
#include "model/snapshot.hpp"

namespace fdsup {

// The format this build writes, and the ones it reads.
inline constexpr unsigned kReexecStateVersion = 1;
inline constexpr std::string_view kReexecStateFormat = "fdsup-state";
// A state larger than this is refused unread.
inline constexpr std::size_t kReexecStateMaxSize = 64U << 20;

struct SocketSnapshot {
    std::string name;
    std::vector<int> fds;
    std::vector<std::string> addresses;
    bool adopted = false;

    friend bool operator==(const SocketSnapshot &, const SocketSnapshot &) = default;
};

// The Reexec call waiting for its answer from the new image.
struct CallerSnapshot {
    int fd = -1;
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;

    friend bool operator==(const CallerSnapshot &, const CallerSnapshot &) = default;
};

// A `Logs --follow` call in progress: its connection and service.
struct FollowerSnapshot {
    int fd = -1;
    std::string service;

    friend bool operator==(const FollowerSnapshot &, const FollowerSnapshot &) = default;
};

struct ReexecState {
    unsigned version = kReexecStateVersion;
    std::string fdsupdVersion; // of the image that wrote it
    unsigned reexecs = 0;      // re-execs of this process, this one included
    std::string startedFrom;   // the binary path fdsupd was first started from
    std::string configPath;
    std::string configText; // renderConfig() of the configuration in force
    std::string notifyPrefix;
    std::uint64_t nextInstanceId = 1;
    std::uint64_t nofileCur = 0; // RLIMIT_NOFILE as the first image found it (workers get it)
    std::uint64_t nofileMax = 0;
    int controlFd = -1;
    int metricsFd = -1; // the metrics endpoint's listening socket; added within version 1
    // Reloads by ReloadOutcome::Kind (docs/metrics.md); added within version 1.
    std::array<std::uint64_t, 5> reloads{};
    std::optional<CallerSnapshot> caller;
    std::vector<int> controlClients; // idle control connections
    std::vector<FollowerSnapshot> followers;
    std::vector<SocketSnapshot> sockets;
    std::vector<ServiceSnapshot> services;

    // Every descriptor the state names, in order.
    [[nodiscard]] std::vector<int> fds() const;
    // Replaces every descriptor number by map(number).
    template <class Map>
    void remapFds(Map &&map)
    {
        eachFd(*this, [&](int &fd) { fd = map(fd); });
    }
    // Calls visit(fd) for every descriptor the state names (none is -1):
    // the one list fds() and remapFds() both walk.
    template <class Self, class Visit>
    static void eachFd(Self &self, Visit &&visit)
    {
        const auto one = [&](auto &fd) {
            if (fd >= 0) {
                visit(fd);
            }
        };
        one(self.controlFd);
        one(self.metricsFd);
        if (self.caller) {
            one(self.caller->fd);
        }
        for (auto &fd : self.controlClients) {
            one(fd);
        }
        for (auto &follower : self.followers) {
            one(follower.fd);
        }
        for (auto &socket : self.sockets) {
            for (auto &fd : socket.fds) {
                one(fd);
            }
        }
        for (auto &service : self.services) {
            eachServiceFd(service, one);
        }
    }

    friend bool operator==(const ReexecState &, const ReexecState &) = default;
};

std::string encodeState(const ReexecState &state);
// Reads and checks the whole document: the format and version, every field's
// presence and type, every descriptor a distinct number >= 3. The error names
// the field ("services[0].instances[1].pidfd: expected an integer").
Result<ReexecState> decodeState(std::string_view text);
// decodeState(), then every descriptor must be open in this process.
Result<ReexecState> decodeAndCheckState(std::string_view text);

} // namespace fdsup
