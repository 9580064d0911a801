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

#include "common/result.hpp"
#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "io/log_limit.hpp"

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
    bool fdStoreRemove = false; // FDSTOREREMOVE=1 (parseNotify requires FDNAME= with it)
    std::string fdName;         // FDNAME= ("stored" when absent, as systemd)
    bool fdPoll = true;         // FDPOLL=0 turns off hang-up watching
    // BARRIER=1 (sd_notify_barrier()): only ever alone in its datagram.
    // NotifyServer answers it itself by closing the fd; the handler never
    // sees one.
    bool barrier = false;
    // SCM_RIGHTS fds, in the order sent. NotifyServer hands fds to the
    // handler only with fdStore set; any other fds are closed on reception
    // (as systemd does), so a handler can trust an empty vector otherwise.
    std::vector<UniqueFd> fds;

    // Assignments fdsupd does not act on (kept for debugging/logging).
    std::vector<std::string> unknown;
};

// Parses the text of one datagram. Errors (a line without '=' or with an
// empty key, a malformed number, an invalid FDNAME, STATUS= that is not
// UTF-8, FDSTOREREMOVE=1 without FDNAME=, BARRIER=1 with anything else, NUL
// bytes) make the whole datagram invalid: stricter than systemd, which skips
// a bad assignment and applies the rest, so that a half-applied message never
// happens. The error (EINVAL) says which assignment and why. When a key
// repeats, the first value counts (as systemd's strv_find_startswith()); the
// later ones must still be valid. Values fdsupd does not act on (READY=0,
// WATCHDOG=2, BUSERROR=...) are kept in `unknown` as "KEY=VALUE".
Result<NotifyMessage> parseNotify(std::string_view text);

// Systemd's rule for a descriptor name (fdname_is_valid()), the one rule for
// FDNAME= here and LISTEN_FDNAMES in spawnWorker(): 1-255 printable ASCII
// chars, no ':' (it is the LISTEN_FDNAMES separator).
bool validFdName(std::string_view name);

// Limits, as systemd's: a datagram is at most this large; at most this many
// fds ride along with one datagram.
inline constexpr std::size_t kNotifyMaxDatagram = 4096;
inline constexpr std::size_t kNotifyMaxFds = 768;
// Datagrams NotifyServer reads per wake-up of the event loop.
inline constexpr std::size_t kNotifyMaxPerWakeup = 64;

// A bound SOCK_DGRAM unix socket with SO_PASSCRED in the abstract namespace,
// dispatching each well-formed datagram to a handler. Malformed datagrams,
// datagrams without credentials, truncated ones (MSG_TRUNC/MSG_CTRUNC) and
// oversized ones are dropped (every fd that came with them closed) and
// counted, with a warning naming the sender and the reason (at most
// LogLimit's burst per interval per socket, so that a flooding worker does
// not flood the log: the next line says how many were held back). At most
// kNotifyMaxPerWakeup datagrams are read per wake-up, so that one chatty
// service cannot starve the rest of the loop (the io source is
// level-triggered: the remainder is read on the next iteration).
class NotifyServer {
public:
    // Called for every well-formed datagram, pid/uid/gid filled from the
    // kernel's credentials (the sender's pid in fdsupd's pid namespace,
    // never 0). The handler may destroy the server; no further datagram is
    // read then. It must not throw: an exception is caught, logged and the
    // datagram counted as dropped.
    using Handler = std::function<void(NotifyMessage &&message)>;

    // name: the abstract socket name without the leading '@' (unique per
    // service and fdsupd instance): 1-107 bytes without NUL.
    // EADDRINUSE when the name is taken, EINVAL for a bad name.
    static Result<std::unique_ptr<NotifyServer>> create(EventLoop &loop, const std::string &name,
                                                        Handler handler);
    // Serves a notify socket bound by an earlier image of fdsupd (re-exec):
    // an abstract SOCK_DGRAM socket with SO_PASSCRED set, CLOEXEC, non-blocking.
    static Result<std::unique_ptr<NotifyServer>> adopt(EventLoop &loop, UniqueFd fd, Handler handler);
    [[nodiscard]] BorrowedFd fd() const { return fd_.borrow(); }

    // The value for the worker's NOTIFY_SOCKET: "@name".
    [[nodiscard]] const std::string &socketPath() const { return path_; }
    [[nodiscard]] std::uint64_t dropped() const { return dropped_; }

    // Call when the handler rejects a datagram (e.g. from a foreign pid), so
    // that the count covers every datagram that was ignored.
    void countDropped() { ++dropped_; }
    // Re-exec: the count of the previous image.
    void restoreDropped(std::uint64_t dropped) { dropped_ = dropped; }

    NotifyServer(const NotifyServer &) = delete;
    NotifyServer &operator=(const NotifyServer &) = delete;
    NotifyServer(NotifyServer &&) = delete;
    NotifyServer &operator=(NotifyServer &&) = delete;
    ~NotifyServer() = default;

private:
    NotifyServer() = default;
    void onReadable();
    // Reads one datagram: >0 one was read (dispatched or dropped), 0 none
    // pending, <0 -errno.
    static Result<std::unique_ptr<NotifyServer>> serve(EventLoop &loop, std::unique_ptr<NotifyServer> server,
                                                       Handler handler);
    int receiveOne(const std::weak_ptr<int> &alive);
    void drop(pid_t pid, const std::string &why);

    std::string path_;
    UniqueFd fd_;
    EventSource source_;
    // Shared so a handler that destroys the server is not destroyed while it
    // runs; lifetime_ tells onReadable() whether the server still exists.
    std::shared_ptr<Handler> handler_;
    std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
    std::uint64_t dropped_ = 0;
    LogLimit dropLog_;
    LogLimit strayFdsLog_; // fds without FDSTORE=1 (debug)
};

} // namespace fdsup
