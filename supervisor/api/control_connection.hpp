// One control client's connection, and the server state every connection shares.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "api/control_server.hpp"
#include "control/varlink.hpp"
#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "io/log_limit.hpp"
#include "io/peer.hpp"

namespace fdsup {

// The server's state, shared by its connections through a plain pointer:
// the core outlives every connection it owns, and connections only reach it
// while they are registered.
class ControlCore {
public:
    ControlCore(EventLoop &loop, ControlOptions options, ControlServer::Handler handler)
        : loop_(loop), options_(std::move(options)), handler_(std::move(handler))
    {}
    ~ControlCore();
    ControlCore(const ControlCore &) = delete;
    ControlCore &operator=(const ControlCore &) = delete;

    // A client connected: checked, counted, served.
    void accept(UniqueFd fd);
    void remove(ControlConnection *connection);

    EventLoop &loop_;
    ControlOptions options_;
    ControlServer::Handler handler_;
    std::map<ControlConnection *, std::shared_ptr<ControlConnection>> connections_;
    // Clients decide how often these lines come: a few a time each.
    LogLimit refusedLog_; // connections past maxClients
    LogLimit clientLog_;  // a client dropped: oversized, unread replies, idle, descriptors, not allowed
    LogLimit invalidLog_; // malformed requests (debug)
};

class ControlConnection : public std::enable_shared_from_this<ControlConnection> {
public:
    ControlConnection(ControlCore &core, UniqueFd fd, Peer peer, bool authorised)
        : core_(&core), fd_(std::move(fd)), peer_(std::move(peer)), authorised_(authorised),
          reader_(core.options_.maxRequest)
    {}

    int start();
    // Re-exec: a call read by the previous image of fdsupd, answered by this
    // one; the connection is busy with it (reads nothing more) until then.
    std::shared_ptr<PendingCall> resume(varlink::Call call);
    [[nodiscard]] BorrowedFd fd() const { return fd_.borrow(); }
    // Nothing in progress, nothing read and not answered, nothing to send:
    // the connection can be handed to the next image as it is.
    [[nodiscard]] bool idle() const { return !busy_ && carriable(); }
    // Everything sent, nothing read and not yet handled: the socket can go
    // to the next image with the call in progress (a Logs follower).
    [[nodiscard]] bool carriable() const
    {
        return !closing_ && !closed_ && !readClosed_ && out_.empty() && reader_.pending() == 0;
    }
    [[nodiscard]] std::size_t unsent() const { return unsent_; }
    void onIo(std::uint32_t revents);
    // A reply of the call in progress (or of a oneway call, which is dropped).
    void send(const varlink::Reply &reply, std::vector<UniqueFd> fds = {});
    // The call in progress got its final reply: serve the next one, from the
    // event loop so a handler is never re-entered from inside a reply().
    void finished();
    // The daemon dropped a call without replying: a bug; the client would
    // otherwise wait forever.
    void abandoned(const varlink::Call &call);
    [[nodiscard]] bool closed() const { return closed_; }
    // Unregisters from the server and closes the socket.
    void close();
    // Called by the server when it goes away first.
    void detach();

private:
    void readSome();
    void process();
    void dispatch(const std::string &message);
    void serveService(const varlink::Call &call);
    void sendError(std::string_view error, nlohmann::json parameters = nlohmann::json::object());
    void flush();
    // Writes what the socket takes from the front of out_: the bytes written, or -errno.
    ssize_t writeSome();
    // n bytes written: the replies they finish leave the queue.
    void consume(std::size_t n);
    void closeWhenFlushed();
    void updateEvents();
    // (Re)starts the idle deadline: no call in progress from now on.
    void armIdle();
    void onIdle();

    ControlCore *core_;
    UniqueFd fd_;
    Peer peer_;
    bool authorised_;
    varlink::FrameReader reader_;
    EventSource io_;
    EventSource resume_;
    EventSource idle_; // armed while no call is in progress
    // One encoded reply waiting to be written, with the descriptors that go
    // with its first byte.
    struct Outgoing {
        std::string bytes;
        std::vector<UniqueFd> fds;
    };
    // Replies in a queue, not one string: appending to a string that grows
    // by doubling (and copies itself each time) took a client that never
    // reads to twice maxOutput before it was dropped.
    std::deque<Outgoing> out_;
    std::size_t outStart_ = 0;    // bytes of out_.front() already written
    std::size_t unsent_ = 0;      // bytes in out_ not yet written
    std::vector<UniqueFd> inFds_; // arrived since the last call was dispatched
    bool busy_ = false;           // a call is waiting for its final reply
    bool processing_ = false;     // inside process(): guards re-entry
    bool readClosed_ = false;     // the client shut down its sending side
    bool closing_ = false;        // close once out_ is written
    bool closed_ = false;
};

} // namespace fdsup
