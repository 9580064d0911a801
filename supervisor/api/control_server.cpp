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
#include "common/address.hpp"
#include "common/socket.hpp"

namespace fdsup {

namespace {

// Connections accepted per wake-up: enough to clear a burst, few enough
// that a flood of connections cannot starve the clients already served.
constexpr int kAcceptBatch = 32;
// How long to stop accepting after running out of descriptors; accepting
// again at once would spin on a listener that stays readable.
constexpr Duration kAcceptBackoff = std::chrono::milliseconds(100);

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
    if (!boundPath_.empty()) {
        struct stat st {};
        if (lstat(boundPath_.c_str(), &st) == 0 && st.st_dev == boundDev_ && st.st_ino == boundIno_) {
            unlink(boundPath_.c_str());
        }
    }
}

void ControlCore::remove(ControlConnection *connection)
{
    connections_.erase(connection);
}

void ControlCore::onAccept(BorrowedFd listener)
{
    for (int i = 0; i < kAcceptBatch; ++i) {
        UniqueFd fd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd) {
            const int err = errno;
            if (err == EAGAIN || err == EINTR || err == ECONNABORTED || err == EPROTO) {
                return;
            }
            spdlog::warn("Failed to accept a control connection: {}, pausing for {}", errnoText(err),
                         formatDuration(kAcceptBackoff));
            listenSource_.setEnabled(SD_EVENT_OFF);
            auto timer = loop_.addTimer(kAcceptBackoff, [this] {
                listenSource_.setEnabled(SD_EVENT_ON);
                backoff_.reset();
            });
            if (timer) {
                backoff_ = std::move(*timer);
            } else {
                listenSource_.setEnabled(SD_EVENT_ON);
            }
            return;
        }
        Peer peer;
        if (const int r = peerOf(fd.borrow(), peer); r < 0) {
            spdlog::warn("Failed to get the credentials of a control client: {}, closing it", errnoText(r));
            continue;
        }
        if (connections_.size() >= options_.maxClients) {
            spdlog::warn("Refused control connection from {}: too many clients (limit {})",
                         describePeer(peer), options_.maxClients);
            continue;
        }
        const bool authorised = isAuthorised(options_, peer);
        auto connection =
            std::make_shared<ControlConnection>(*this, std::move(fd), std::move(peer), authorised);
        if (const int r = connection->start(); r < 0) {
            spdlog::error("Failed to watch a control connection: {}", errnoText(r));
            continue;
        }
        connections_.emplace(connection.get(), std::move(connection));
    }
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
        server->listener_ = std::move(adopted);
    } else {
        const bool abstract = !path.empty() && path.front() == '@';
        if (!abstract) {
            if (const int r = makeParents(path); r < 0) {
                return errnoError(r, "Failed to create the directory of control socket " + path);
            }
        }
        auto address = parseAddress("unix:" + path);
        if (!address) {
            return Error{EINVAL, "Invalid control socket path: " + address.error().message};
        }
        SocketOptions socketOptions;
        if (!abstract) {
            socketOptions.mode = core.options_.mode;
        }
        socketOptions.removeStale = true;
        auto bound = bindAll(*address, socketOptions);
        if (!bound) {
            return bound.error();
        }
        if (bound->size() != 1) {
            return Error{EINVAL, "Control socket " + path + " resolved to more than one address"};
        }
        server->listener_ = std::move(bound->front());
        struct stat st {};
        if (!abstract && lstat(path.c_str(), &st) == 0) {
            core.boundPath_ = path;
            core.boundDev_ = st.st_dev;
            core.boundIno_ = st.st_ino;
        }
    }
    // Non-blocking so that a connection reset between readiness and accept4()
    // cannot block the loop.
    const int flags = fcntl(server->listener_.get(), F_GETFL);
    if (flags < 0 || fcntl(server->listener_.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
        return errnoError(errno, "Failed to make the control socket non-blocking");
    }
    const BorrowedFd listener = server->listener_.borrow();
    auto source = loop.addIo(listener, EPOLLIN, [&core, listener](std::uint32_t) {
        try {
            core.onAccept(listener);
        } catch (const std::exception &e) {
            spdlog::error("Failed to accept a control connection: {}", e.what());
        }
    });
    if (!source) {
        return source.error();
    }
    core.listenSource_ = std::move(*source);
    return server;
}

ControlServer::~ControlServer()
{
    // The sources go before the listener they watch.
    state_.reset();
}

std::size_t ControlServer::clients() const
{
    return state_ ? state_->core.connections_.size() : 0;
}

} // namespace fdsup
