// A listening unix socket fdsupd binds and accepts on: the control socket, a service's activation socket.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include <sys/types.h>

#include "common/result.hpp"
#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "io/log_limit.hpp"

namespace fdsup {

// Contract: bound at a path (created under umask so the file is never more
// open than `mode`; a stale socket file is replaced, anything else refused)
// or an abstract "@name"; non-blocking, so a connection reset between
// readiness and accept4() cannot block the loop. Every accepted connection
// (SOCK_CLOEXEC | SOCK_NONBLOCK) goes to the handler, at most kAcceptBatch
// per wake-up so a stampede cannot starve the loop; running out of
// descriptors pauses accepting for kAcceptBackoff (accepting again at once
// would spin on a listener that stays readable), with a warning a few lines
// a time (io/log_limit.hpp) and the rest at debug. The socket file is
// removed with the object, only if it is still the one bound here.
class UnixListener {
public:
    using AcceptHandler = std::function<void(UniqueFd connection)>;
    static constexpr int kAcceptBatch = 32;
    static constexpr Duration kAcceptBackoff = std::chrono::milliseconds(100);

    // address: "unix:PATH", "unix-seqpacket:@NAME"...; what: for the log,
    // "a control connection".
    static Result<std::unique_ptr<UnixListener>> bind(EventLoop &loop, const std::string &address,
                                                      mode_t mode, std::string what, AcceptHandler onAccept);
    // A listening socket passed in (socket activation): not ours to remove.
    static Result<std::unique_ptr<UnixListener>> adopt(EventLoop &loop, UniqueFd fd, std::string what,
                                                       AcceptHandler onAccept);
    // A socket fdsupd bound at `address` before it re-executed itself: its
    // file is still ours, removed with it. Refused when the socket is not
    // bound there.
    static Result<std::unique_ptr<UnixListener>> adoptOwned(EventLoop &loop, UniqueFd fd,
                                                            const std::string &address, std::string what,
                                                            AcceptHandler onAccept);
    ~UnixListener();
    UnixListener(const UnixListener &) = delete;
    UnixListener &operator=(const UnixListener &) = delete;

    [[nodiscard]] BorrowedFd fd() const { return fd_.borrow(); }

private:
    UnixListener(EventLoop &loop, std::string what, AcceptHandler onAccept)
        : loop_(loop), what_(std::move(what)), onAccept_(std::move(onAccept))
    {}
    Result<void> watch();
    void onReadable();

    EventLoop &loop_;
    std::string what_;
    AcceptHandler onAccept_;
    UniqueFd fd_;
    EventSource source_;
    Timer backoff_;
    LogLimit failedLog_; // accept() failing: every 100 ms while it lasts
    std::string path_;   // the file to remove: empty for an abstract or adopted socket
    dev_t dev_ = 0;
    ino_t ino_ = 0;
};

} // namespace fdsup
