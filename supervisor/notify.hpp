// The sd_notify protocol, served by fdsupd: one datagram socket per service.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "event_loop.hpp"
#include "fdsup/fd.hpp"
#include "fdsup/result.hpp"

namespace fdsup {

// One datagram as systemd's sd_notify() sends it: newline-separated
// ASSIGNMENTS, plus the sender's credentials (SCM_CREDENTIALS, from the
// kernel, never from the text) and any fds (SCM_RIGHTS, for FDSTORE=1).
struct NotifyMessage {
    pid_t pid = 0;
    uid_t uid = 0;
    gid_t gid = 0;

    bool ready = false;                             // READY=1
    bool reloading = false;                         // RELOADING=1
    bool stopping = false;                          // STOPPING=1
    bool watchdog = false;                          // WATCHDOG=1
    bool watchdogTrigger = false;                   // WATCHDOG=trigger
    std::optional<std::uint64_t> watchdogUsec;      // WATCHDOG_USEC=
    std::optional<std::string> status;              // STATUS=
    std::optional<int> errnoValue;                  // ERRNO=
    std::optional<std::uint64_t> extendTimeoutUsec; // EXTEND_TIMEOUT_USEC=
    std::optional<pid_t> mainPid;                   // MAINPID= (recorded, not trusted)

    bool fdStore = false;       // FDSTORE=1
    bool fdStoreRemove = false; // FDSTOREREMOVE=1
    std::string fdName;         // FDNAME= ("stored" when absent, as systemd)
    bool fdPoll = true;         // FDPOLL=0 turns off hang-up watching
    std::vector<UniqueFd> fds;

    // Assignments fdsupd does not act on (kept for debugging/logging).
    std::vector<std::string> unknown;
};

// Parses the text of one datagram. Errors (a line without '=', a malformed
// number, an invalid FDNAME, NUL bytes) make the whole datagram invalid, as
// systemd does; the message says which assignment and why.
Result<NotifyMessage> parseNotify(std::string_view text);

// Systemd's rule for FDNAME: 1-255 printable ASCII chars, no ':' (it is the
// LISTEN_FDNAMES separator).
bool validFdName(std::string_view name);

// Limits, as systemd's: a datagram is at most this large; at most this many
// fds ride along with one datagram.
inline constexpr std::size_t kNotifyMaxDatagram = 4096;
inline constexpr std::size_t kNotifyMaxFds = 768;

// A bound SOCK_DGRAM unix socket with SO_PASSCRED in the abstract namespace,
// dispatching each well-formed datagram to a handler. Malformed datagrams,
// datagrams without credentials, truncated ones (MSG_TRUNC/MSG_CTRUNC) and
// oversized ones are dropped (every fd that came with them closed) and
// counted, with one log line each at debug level.
class NotifyServer {
public:
    using Handler = std::function<void(NotifyMessage &&message)>;

    // name: the abstract socket name without the leading '@' (unique per
    // service and fdsupd instance).
    static Result<std::unique_ptr<NotifyServer>> create(EventLoop &loop, const std::string &name,
                                                        Handler handler);

    // The value for the worker's NOTIFY_SOCKET: "@name".
    [[nodiscard]] const std::string &socketPath() const { return path_; }
    [[nodiscard]] std::uint64_t dropped() const { return dropped_; }

    // Call when the handler rejects a datagram (e.g. from a foreign pid), so
    // that the count covers every datagram that was ignored.
    void countDropped() { ++dropped_; }

private:
    NotifyServer() = default;
    void onReadable();

    std::string path_;
    UniqueFd fd_;
    EventSource source_;
    Handler handler_;
    std::uint64_t dropped_ = 0;
};

} // namespace fdsup
