// Taking over after a crash: the listeners a dead fdsupd's workers still hold, and those workers.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "config/config.hpp"
#include "io/sockets.hpp"

namespace fdsup {

// A process of a dead predecessor to replace: a holder of one of our
// listeners, or a member of a holder's process group.
struct FoundOrphan {
    pid_t pid = 0;
    pid_t pgid = 0;
    std::string command;
};

// What SocketSet asks when an address is in use (docs/fdsupd.md, "Taking
// over after a crash"). For that address: refuse if an fdsupd answers on
// our control socket; find the listening socket bound there in /proc/net
// and every process holding it (/proc/*/fd); refuse unless each one is a
// worker of one of our services started by an fdsupd with our control
// socket (judgeHolder()); then take the socket with pidfd_open() +
// pidfd_getfd() and check it is the very socket found (inode). Refusals
// name the pid, its command and why. Nothing is signalled here: the
// orphans are only recorded, for the daemon to replace once the services'
// new instances are ready.
class Takeover final : public ListenerRecovery {
public:
    explicit Takeover(const config::Config &config);

    Result<std::vector<UniqueFd>> recover(const config::SocketConfig &socket, const Address &address,
                                          const Error &bindError, bool probe) override;

    // The orphans found so far, by service.
    [[nodiscard]] const std::map<std::string, std::vector<FoundOrphan>> &orphans() const { return orphans_; }

private:
    Result<void> predecessorGone();
    Result<UniqueFd> takeInode(ino_t inode, const std::string &where);
    void record(const std::string &service, pid_t pid);

    std::string control_;
    std::vector<std::string> services_;
    std::map<std::string, config::KillMode> killModes_;
    std::map<std::string, std::vector<FoundOrphan>> orphans_;
    std::optional<Result<void>> predecessor_; // asked once
};

} // namespace fdsup
