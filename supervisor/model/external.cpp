// External workers: processes fdsupd did not spawn that connect to a
// service's activation socket, are admitted by their credentials, receive the
// listeners and join the handoff (docs/worker-channel.md, "External workers").
#include <algorithm>
#include <cerrno>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <spdlog/spdlog.h>
#include <systemd/sd-event.h>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "io/peer.hpp"
#include "model/service.hpp"

namespace fdsup {
namespace {

// External workers one service admits at a time; past it, EUSERS.
constexpr std::size_t kMaxExternalWorkers = 64;
// Connections accepted per wake-up, so a stampede cannot starve the loop.
constexpr int kAcceptBatch = 16;
// How long to stop accepting after running out of descriptors: accepting
// again at once would spin on a listener that stays readable.
constexpr Duration kAcceptBackoff = std::chrono::milliseconds(100);
// A refused worker's socket is kept until it sent HELLO or hung up; of
// those kept, only the most recent this many (older ones are closed).
constexpr std::size_t kMaxRejected = 64;

} // namespace

Result<void> Service::openActivationSocket()
{
    const std::optional<std::string> &path = profile_->config.activationSocket;
    if (!path) {
        return {};
    }
    auto address = parseAddress("unix-seqpacket:" + *path);
    if (!address) {
        return Error{EINVAL, "activation_socket: " + address.error().message};
    }
    const bool abstract = path->starts_with('@');
    SocketOptions options;
    if (!abstract) {
        // Who may connect is decided by SO_PEERCRED (activation_users and
        // activation_groups), not by the file's permissions.
        options.mode = 0666;
    }
    options.removeStale = true;
    auto bound = bindAll(*address, options);
    if (!bound) {
        return Error{bound.error().code, "activation_socket: " + bound.error().message};
    }
    UniqueFd listener = std::move(bound->front());
    const int flags = fcntl(listener.get(), F_GETFL);
    if (flags < 0 || fcntl(listener.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
        return errnoError(errno, "activation_socket: cannot make " + *path + " non-blocking");
    }
    auto source =
        context_.loop.addIo(listener.borrow(), EPOLLIN, [this](std::uint32_t) { onActivationAccept(); });
    if (!source) {
        return source.error();
    }
    if (!abstract) {
        struct stat st {};
        if (lstat(path->c_str(), &st) == 0) {
            activationPath_ = *path;
            activationDev_ = st.st_dev;
            activationIno_ = st.st_ino;
        }
    }
    activationListener_ = std::move(listener);
    activationSource_ = std::move(*source);
    spdlog::debug("{}: external workers connect to {}", name(), *path);
    return {};
}

void Service::onActivationAccept()
{
    for (int i = 0; i < kAcceptBatch; ++i) {
        UniqueFd fd(accept4(activationListener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (fd) {
            admitExternal(std::move(fd));
            continue;
        }
        const int err = errno;
        if (err == EAGAIN || err == EINTR || err == ECONNABORTED || err == EPROTO) {
            return;
        }
        spdlog::warn("{}: cannot accept an external worker: {}, pausing for {}", name(), errnoText(err),
                     formatDuration(kAcceptBackoff));
        activationSource_.setEnabled(SD_EVENT_OFF);
        if (auto timer = context_.loop.addTimer(kAcceptBackoff, [this] {
                activationSource_.setEnabled(SD_EVENT_ON);
                activationBackoff_.reset();
            })) {
            activationBackoff_ = std::move(*timer);
        } else {
            activationSource_.setEnabled(SD_EVENT_ON);
        }
        return;
    }
}

void Service::rejectExternal(UniqueFd fd, int code, const std::string &why)
{
    // REJECT before HELLO was read: the worker's library reports it as an
    // ERROR event whatever it sent (docs/worker-channel.md).
    ChannelMessage reject;
    reject.type = ChannelType::Reject;
    reject.seq = 1;
    reject.code = static_cast<std::uint32_t>(code);
    reject.text = why.substr(0, kChannelMaxText);
    if (sendChannelMessage(fd.borrow(), reject) < 0) {
        return;
    }
    // The worker sends HELLO right after connecting; if the socket were
    // closed before that, its send would fail with EPIPE and it would never
    // read why. So it is kept, write side shut, until HELLO (or anything,
    // or a hang-up) arrives. A worker that never sends is closed once
    // kMaxRejected newer ones are waiting: no timer, no unbounded list.
    (void)shutdown(fd.get(), SHUT_WR);
    if (rejected_.size() >= kMaxRejected) {
        rejected_.erase(rejected_.begin());
    }
    auto entry = std::make_unique<Rejected>();
    const void *key = entry.get();
    auto io = context_.loop.addIo(fd.borrow(), EPOLLIN | EPOLLRDHUP,
                                  [this, key](std::uint32_t) { dropRejected(key); });
    if (!io) {
        return;
    }
    entry->fd = std::move(fd);
    entry->io = std::move(*io);
    rejected_.push_back(std::move(entry));
}

void Service::dropRejected(const void *key)
{
    const auto it = std::find_if(rejected_.begin(), rejected_.end(),
                                 [key](const auto &entry) { return entry.get() == key; });
    if (it == rejected_.end()) {
        return;
    }
    // Read what the worker sent (closing any fds with it), so that closing
    // does not report ECONNRESET to it before the REJECT.
    for (int i = 0; i < 4; ++i) {
        ChannelMessage discarded;
        const int r = recvChannelMessage((*it)->fd.borrow(), discarded);
        if (r == -EAGAIN || r == -ECONNRESET) {
            break;
        }
    }
    rejected_.erase(it); // destroys the source that called us: allowed
}

void Service::admitExternal(UniqueFd fd)
{
    Peer peer;
    if (const int r = peerOf(fd.borrow(), peer); r < 0) {
        spdlog::warn("{}: cannot get the credentials of an external worker: {}, closing it", name(),
                     errnoText(r));
        return;
    }
    std::string why;
    int code = 0;
    if (!active_) {
        code = ESHUTDOWN;
        why = "service '" + name() + "' is stopped";
    } else if (!peerAllowed(peer, profile_->activationUids, profile_->activationGids)) {
        code = EACCES;
        why = "uid " + std::to_string(peer.uid) + " (gid " + std::to_string(peer.gid) +
              ") may not join service '" + name() + "': not in its activation_users or activation_groups";
    } else if (external_.size() >= kMaxExternalWorkers) {
        code = EUSERS;
        why = "service '" + name() + "' has " + std::to_string(external_.size()) +
              " external workers already (the limit)";
    }
    if (code != 0) {
        spdlog::warn("{}: refused external worker {}: {}", name(), describePeer(peer), why);
        rejectExternal(std::move(fd), code, why);
        return;
    }
    auto external = std::make_unique<ExternalWorker>();
    ExternalWorker *raw = external.get();
    external->id = context_.nextInstanceId++;
    external->uid = peer.uid;
    external->gid = peer.gid;
    external->since = context_.loop.now();
    external->peer.pid = peer.pid;
    external->peer.external = raw;
    auto channel = WorkerChannel::adopt(
        context_.loop, std::move(fd),
        [this, raw](ChannelMessage &&message) { onChannelMessage(raw->peer, std::move(message)); },
        [this, raw](const std::string &reason) { onChannelClosed(raw->peer, reason); });
    if (!channel) {
        spdlog::error("{}: cannot serve external worker {}: {}", name(), describePeer(peer),
                      channel.error().message);
        return;
    }
    external->peer.channel = std::move(*channel);
    external_.push_back(std::move(external));
    spdlog::info("{} connected", peerName(raw->peer));
    changed();
}

void Service::closeExternal(const std::string &why)
{
    for (auto &external : external_) {
        if (external->peer.channel) {
            external->peer.channel->close(why); // logged by onChannelClosed
        }
    }
    external_.clear();
    externalReaper_.reset();
}

void Service::reapExternal()
{
    externalReaper_.reset();
    const auto gone = std::remove_if(external_.begin(), external_.end(), [](const auto &external) {
        return !external->peer.channel || !external->peer.channel->isOpen();
    });
    if (gone == external_.end()) {
        return;
    }
    external_.erase(gone, external_.end());
    changed();
}

nlohmann::json Service::externalJson() const
{
    const Duration now = context_.loop.now();
    nlohmann::json list = nlohmann::json::array();
    for (const auto &external : external_) {
        list.push_back({{"id", external->id},
                        {"pid", external->peer.pid},
                        {"uid", external->uid},
                        {"gid", external->gid},
                        {"ready", external->ready},
                        {"draining", external->draining},
                        {"status", external->status ? nlohmann::json(*external->status) : nlohmann::json()},
                        {"adopted", external->peer.adopted},
                        {"connected_usec", (now - external->since).count()}});
    }
    return list;
}

} // namespace fdsup
