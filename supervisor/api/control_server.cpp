// The control API server: binds or adopts the control socket, accepts clients, checks who they are.
#include "api/control_server.hpp"

#include <cerrno>
#include <exception>
#include <utility>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>
#include <systemd/sd-event.h>

#include "api/control_connection.hpp"

namespace fdsup {

namespace {

bool isAuthorised(const ControlOptions &options, const Peer &peer)
{
    return peerAllowed(peer, options.allowUids, options.allowGids);
}

// mkdir -p with 0755 for the components that are missing, so /run/fdsupd
// exists on a system without a RuntimeDirectory= for it.
int makeParents(const std::string &path)
{
    for (std::size_t slash = path.find('/', 1); slash != std::string::npos;
         slash = path.find('/', slash + 1)) {
        const std::string dir = path.substr(0, slash);
        if (mkdir(dir.c_str(), 0755) < 0 && errno != EEXIST) {
            return -errno;
        }
    }
    return 0;
}

} // namespace

ControlCore::~ControlCore()
{
    // Detach first: closing must not call back into a map being destroyed.
    auto connections = std::move(connections_);
    for (auto &[raw, connection] : connections) {
        connection->detach();
    }
}

void ControlCore::remove(ControlConnection *connection)
{
    connections_.erase(connection);
}

void ControlCore::accept(UniqueFd fd)
{
    Peer peer;
    if (const int r = peerOf(fd.borrow(), peer); r < 0) {
        spdlog::warn("Failed to get the credentials of a control client: {}, closing it", errnoText(r));
        return;
    }
    if (connections_.size() >= options_.maxClients) {
        if (std::string note; refusedLog_.allow(note)) {
            spdlog::warn("Refused control connection from {}: too many clients (limit {}){}",
                         describePeer(peer), options_.maxClients, note);
        }
        return;
    }
    const bool authorised = isAuthorised(options_, peer);
    auto connection = std::make_shared<ControlConnection>(*this, std::move(fd), std::move(peer), authorised);
    if (const int r = connection->start(); r < 0) {
        spdlog::error("Failed to watch a control connection: {}", errnoText(r));
        return;
    }
    connections_.emplace(connection.get(), std::move(connection));
}

struct ControlServer::State {
    explicit State(EventLoop &loop, ControlOptions options, Handler handler)
        : core(loop, std::move(options), std::move(handler))
    {}
    ControlCore core;
};

void ControlServer::setAccess(std::vector<uid_t> uids, std::vector<gid_t> gids)
{
    state_->core.options_.allowUids = std::move(uids);
    state_->core.options_.allowGids = std::move(gids);
}

Result<std::unique_ptr<ControlServer>> ControlServer::create(EventLoop &loop, ControlOptions options,
                                                             Handler handler, UniqueFd adopted)
{
    std::unique_ptr<ControlServer> server(new ControlServer());
    server->state_ = std::make_unique<State>(loop, std::move(options), std::move(handler));
    ControlCore &core = server->state_->core;
    const std::string &path = core.options_.path;

    const auto onAccept = [&core](UniqueFd fd) {
        try {
            core.accept(std::move(fd));
        } catch (const std::exception &e) {
            spdlog::error("Failed to accept a control connection: {}", e.what());
        }
    };
    if (adopted) {
        int type = 0;
        int listening = 0;
        socklen_t len = sizeof(type);
        socklen_t len2 = sizeof(listening);
        if (getsockopt(adopted.get(), SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
            getsockopt(adopted.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len2) < 0) {
            return errnoError(errno, "Failed to inspect the control socket passed in");
        }
        if (type != SOCK_STREAM || listening == 0) {
            return Error{EINVAL, "The control socket passed in is not a listening stream socket"};
        }
        // Bound at `path` by this fdsupd before it re-executed: still its file to remove.
        auto listener = UnixListener::adoptOwned(loop, std::move(adopted), "unix:" + path,
                                                 "a control connection", onAccept);
        if (!listener) {
            return listener.error();
        }
        server->listener_ = std::move(*listener);
        return server;
    }
    const bool abstract = !path.empty() && path.front() == '@';
    if (!abstract) {
        if (const int r = makeParents(path); r < 0) {
            return errnoError(r, "Failed to create the directory of control socket " + path);
        }
    }
    auto listener =
        UnixListener::bind(loop, "unix:" + path, core.options_.mode, "a control connection", onAccept);
    if (!listener) {
        return listener.error();
    }
    server->listener_ = std::move(*listener);
    return server;
}

ControlServer::~ControlServer()
{
    // Nothing is accepted into connections that are going.
    listener_.reset();
    state_.reset();
}

Result<std::shared_ptr<PendingCall>> ControlServer::resumeCall(UniqueFd fd, varlink::Call call)
{
    ControlCore &core = state_->core;
    Peer peer;
    if (const int r = peerOf(fd.borrow(), peer); r < 0) {
        return errnoError(-r, "Failed to get the credentials of the re-exec caller");
    }
    const bool authorised = isAuthorised(core.options_, peer);
    auto connection = std::make_shared<ControlConnection>(core, std::move(fd), std::move(peer), authorised);
    if (const int r = connection->start(); r < 0) {
        return errnoError(-r, "Failed to watch the re-exec caller's connection");
    }
    auto pending = connection->resume(std::move(call));
    core.connections_.emplace(connection.get(), std::move(connection));
    return pending;
}

std::vector<int> ControlServer::idleConnections() const
{
    std::vector<int> fds;
    for (const auto &[raw, connection] : state_->core.connections_) {
        if (connection->idle()) {
            fds.push_back(connection->fd().get());
        }
    }
    return fds;
}

void ControlServer::resumeIdle(UniqueFd fd)
{
    state_->core.accept(std::move(fd));
}

std::size_t ControlServer::clients() const
{
    return state_ ? state_->core.connections_.size() : 0;
}

} // namespace fdsup
