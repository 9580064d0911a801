// The control API server: Varlink over a unix stream socket, callers checked with SO_PEERCRED.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "api/audit.hpp"
#include "common/result.hpp"
#include "control/varlink.hpp"
#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "io/peer.hpp"
#include "io/unix_listener.hpp"

namespace fdsup {

class ControlConnection;

// A call being served. The handler may reply at once or keep the shared_ptr
// and reply later (a stop waits for the workers to exit); replies to a
// connection that has gone are dropped. For more=true calls, reply with
// continues=true any number of times, then once without.
class PendingCall {
public:
    PendingCall(std::weak_ptr<ControlConnection> connection, varlink::Call call, Peer peer);
    // Dropping an unfinished call (not oneway) without a reply is a bug: it
    // is logged and the connection closed, so the client is not left waiting.
    ~PendingCall();
    PendingCall(const PendingCall &) = delete;
    PendingCall &operator=(const PendingCall &) = delete;
    [[nodiscard]] const varlink::Call &call() const { return call_; }
    [[nodiscard]] const Peer &peer() const { return peer_; }
    // The connection's socket while it is open (re-exec); -1 otherwise.
    [[nodiscard]] int connectionFd() const;
    // The same when everything was sent and nothing more was read (it can be
    // carried across a re-exec with this call in progress); -1 otherwise.
    [[nodiscard]] int carriableFd() const;
    // Bytes written for the client that it has not read yet (0 once gone).
    [[nodiscard]] std::size_t unsent() const;
    void reply(nlohmann::json parameters, bool continues = false);
    // The final reply with fds attached (Export), at most varlink::kMaxCallFds.
    void replyWithFds(nlohmann::json parameters, std::vector<UniqueFd> fds);
    // The fds that arrived with the call (Import; closed with the call when
    // nobody takes them).
    std::vector<UniqueFd> takeFds() { return std::exchange(fds_, {}); }
    void setFds(std::vector<UniqueFd> fds) { fds_ = std::move(fds); }
    void fail(std::string_view error, nlohmann::json parameters = nlohmann::json::object());
    // True once the final reply was sent or the client went away.
    [[nodiscard]] bool done() const;
    // True once the final reply was given, whether or not the client was
    // still there to read it.
    [[nodiscard]] bool answered() const { return finished_; }
    // Logs the audit line of this call with its result when it is answered
    // (or, when it never is, as abandoned when it is dropped).
    void audit(AuditRecord record) { audit_ = std::move(record); }

private:
    // Sends a reply or an error unless the call is finished or its client gone.
    void deliver(const varlink::Reply &reply, std::vector<UniqueFd> fds = {});

    std::weak_ptr<ControlConnection> connection_;
    varlink::Call call_;
    Peer peer_;
    std::vector<UniqueFd> fds_;
    std::optional<AuditRecord> audit_;
    bool finished_ = false;
};

struct ControlOptions {
    std::string path;             // unix socket path (stale socket file replaced)
    mode_t mode = 0660;           // of the socket file
    std::vector<uid_t> allowUids; // besides 0
    std::vector<gid_t> allowGids; // primary or supplementary group of the caller
    std::size_t maxRequest = 1U << 20;
    unsigned maxClients = 64;
    // Replies not yet taken by a slow client; past it the client is dropped.
    std::size_t maxOutput = 16U << 20;
    // A connection with no call in progress that sends no complete request
    // for this long is closed, so that idle clients cannot hold every one of
    // maxClients and lock the operator out. Duration::max(): never.
    Duration idleTimeout = std::chrono::seconds(30);
    // For org.varlink.service.GetInfo.
    std::string version;
    std::string url;
};

class ControlServer {
public:
    using Handler = std::function<void(const std::shared_ptr<PendingCall> &call)>;

    // Binds the socket (or adopts an already bound, listening fd when
    // `adopted` is valid) and serves org.varlink.service.* itself; every
    // io.fdsup.Manager.* call of an authorised peer goes to handler. An
    // unauthorised peer's calls are answered with PermissionDenied and the
    // connection closed; a request that is not valid JSON or not a call gets
    // InvalidRequest; one over maxRequest gets RequestTooLarge and the
    // connection is closed; past maxClients new connections are closed at
    // once; idle past idleTimeout they are closed. Each is logged, at most a
    // few lines a time (LogLimit). None of these affect other clients or the
    // daemon.
    // `adopted`: the listening socket this fdsupd bound at options.path before
    // it re-executed itself (its file is still removed with the server).
    static Result<std::unique_ptr<ControlServer>> create(EventLoop &loop, ControlOptions options,
                                                         Handler handler, UniqueFd adopted = UniqueFd());
    ~ControlServer();
    ControlServer(const ControlServer &) = delete;
    ControlServer &operator=(const ControlServer &) = delete;

    [[nodiscard]] BorrowedFd listener() const { return listener_->fd(); }
    // Who besides root may call (reload): applies to connections made from now on.
    void setAccess(std::vector<uid_t> uids, std::vector<gid_t> gids);
    [[nodiscard]] std::size_t clients() const;
    // Re-exec: the connection a call came on, read by the previous image of
    // fdsupd, served again; the returned call is answered by this one.
    Result<std::shared_ptr<PendingCall>> resumeCall(UniqueFd fd, varlink::Call call);
    // Re-exec: the connections with nothing in progress (carried to the next
    // image), and in the new image serving one again.
    [[nodiscard]] std::vector<int> idleConnections() const;
    void resumeIdle(UniqueFd fd);

private:
    ControlServer() = default;
    struct State;
    std::unique_ptr<State> state_;
    std::unique_ptr<UnixListener> listener_;
};

} // namespace fdsup
