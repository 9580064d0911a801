// Notifications to fdsupd's own manager (systemd): non-blocking, so a slow manager never stalls the daemon.
#pragma once

#include <string>
#include <string_view>

#include "core/fd.hpp"

namespace fdsup {

// sd_notify() blocks in sendmsg() when the manager's queue is full; a
// supervisor must not. This sends with MSG_DONTWAIT and drops what does not
// fit (logged): STATUS= is best effort, and READY=1/STOPPING=1 are sent
// once, when the queue is empty in practice.
class ManagerNotifier {
public:
    // Reads NOTIFY_SOCKET (path or @abstract); without it every send is a no-op.
    ManagerNotifier();
    [[nodiscard]] bool enabled() const { return fd_.isValid(); }
    // Returns 0, or -errno (-EAGAIN: the manager's queue was full).
    int send(std::string_view message);
    // Sends STATUS=text only when it differs from the last one sent.
    void status(const std::string &text);

private:
    UniqueFd fd_;
    std::string lastStatus_;
};

} // namespace fdsup
