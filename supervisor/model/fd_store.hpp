// A service's descriptor store: fds its workers keep in fdsupd (FDSTORE=1) and get back when they start.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "io/log_limit.hpp"
#include "io/notify.hpp"

namespace fdsup {

// A descriptor held in the store, given to every instance started later,
// after its listeners, named by LISTEN_FDNAMES.
struct StoredFd {
    std::string name;
    UniqueFd fd;
    EventSource poll; // FDPOLL: dropped when the fd reports EPOLLHUP/EPOLLERR
};

// systemd's semantics (docs/notify.md): FDSTORE=1 with FDNAME= adds every
// fd of the message under that name ("stored" without one); FDSTOREREMOVE=1
// removes every fd of the name; FDPOLL=0 turns off the hang-up watch.
class FdStore {
public:
    // systemd's FileDescriptorStoreMax is per service too; a worker cannot
    // make fdsupd hold more than this.
    static constexpr std::size_t kMaxFds = 1024;

    FdStore(EventLoop &loop, std::string service);
    FdStore(const FdStore &) = delete;
    FdStore &operator=(const FdStore &) = delete;

    // Applies FDSTORE=1 / FDSTOREREMOVE=1, taking the message's fds.
    void apply(NotifyMessage &message);
    [[nodiscard]] const std::vector<StoredFd> &fds() const { return fds_; }
    [[nodiscard]] bool empty() const { return fds_.empty(); }
    // How many fds each name holds, in the order the names were first stored.
    [[nodiscard]] std::vector<std::pair<std::string, std::size_t>> summary() const;

private:
    EventLoop &loop_;
    std::string service_;
    std::vector<StoredFd> fds_;
    // A worker storing past the limit in a loop gets a few warnings a time.
    LogLimit fullLog_;
};

} // namespace fdsup
