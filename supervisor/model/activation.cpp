// The activation socket: workers fdsupd did not spawn connect, are admitted by credentials, and join the
// service.
#include "model/activation.hpp"

#include <algorithm>
#include <cerrno>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace fdsup {

ExternalWorker::ExternalWorker(ActivationHost &host, std::uint64_t id, const Peer &credentials,
                               Duration since)
    : host_(host), id_(id), uid_(credentials.uid), gid_(credentials.gid), since_(since)
{
    setPid(credentials.pid);
}

const config::ServiceConfig &ExternalWorker::peerConfig() const
{
    return host_.activeProfile().config;
}

unsigned ExternalWorker::peerGeneration() const
{
    return host_.activeProfile().generation;
}

std::uint32_t ExternalWorker::instanceNumber() const
{
    return kChannelExternalInstance;
}

std::uint32_t ExternalWorker::extraCapabilities() const
{
    // It connected for its listeners: it always may ask for them.
    return kChannelCapListeners;
}

std::string ExternalWorker::describe() const
{
    return peerConfig().name + " external worker " + std::to_string(id_) + " (pid " + std::to_string(pid()) +
           ", uid " + std::to_string(uid_) + ")";
}

void ExternalWorker::channelReady(const std::string &status)
{
    if (!status.empty()) {
        status_ = status;
    }
    if (ready_) {
        return;
    }
    ready_ = true;
    spdlog::info("{} is ready{}", describe(), status.empty() ? "" : ": " + status);
    host_.onExternalReady(*this);
}

void ExternalWorker::handedOver()
{
    // Nobody tells an external worker to drain: handing over is how it says
    // it does. Its connections must not come straight back.
    if (!draining_) {
        draining_ = true;
        spdlog::info("{} is draining", describe());
    }
}

Result<std::unique_ptr<ActivationSocket>> ActivationSocket::open(EventLoop &loop, const std::string &path,
                                                                 ActivationHost &host)
{
    std::unique_ptr<ActivationSocket> socket(new ActivationSocket(loop, host));
    ActivationSocket *self = socket.get();
    // Who may connect is decided by SO_PEERCRED (activation_users and
    // activation_groups), not by the file's permissions.
    auto listener = UnixListener::bind(loop, "unix-seqpacket:" + path, 0666,
                                       host.activeProfile().config.name + "'s external worker",
                                       [self](UniqueFd fd) { self->admit(std::move(fd)); });
    if (!listener) {
        return Error{listener.error().code, "activation_socket: " + listener.error().message};
    }
    socket->listener_ = std::move(*listener);
    spdlog::debug("{}: external workers connect to {}", host.activeProfile().config.name, path);
    return socket;
}

void ActivationSocket::admit(UniqueFd fd)
{
    Peer peer;
    if (const int r = peerOf(fd.borrow(), peer); r < 0) {
        spdlog::warn("{}: cannot get the credentials of an external worker: {}, closing it", service(),
                     errnoText(r));
        return;
    }
    const Profile &profile = host_.activeProfile();
    std::string why;
    int code = 0;
    if (!host_.admitting()) {
        code = ESHUTDOWN;
        why = "service '" + service() + "' is stopped";
    } else if (!peerAllowed(peer, profile.activationUids, profile.activationGids)) {
        code = EACCES;
        why = "uid " + std::to_string(peer.uid) + " (gid " + std::to_string(peer.gid) +
              ") may not join service '" + service() + "': not in its activation_users or activation_groups";
    } else if (workers_.size() >= kMaxWorkers) {
        code = EUSERS;
        why = "service '" + service() + "' has " + std::to_string(workers_.size()) +
              " external workers already (the limit)";
    }
    if (code != 0) {
        spdlog::warn("{}: refused external worker {}: {}", service(), describePeer(peer), why);
        rejected_.reject(std::move(fd), code, why);
        return;
    }
    auto worker = serve(std::move(fd),
                        std::make_unique<ExternalWorker>(host_, host_.nextWorkerId(), peer, loop_.now()));
    if (!worker) {
        spdlog::error("{}: cannot serve external worker {}: {}", service(), describePeer(peer),
                      worker.error().message);
        return;
    }
    spdlog::info("{} connected", (*worker)->describe());
    host_.onExternalsChanged();
}

Result<ExternalWorker *> ActivationSocket::serve(UniqueFd fd, std::unique_ptr<ExternalWorker> worker)
{
    ExternalWorker *raw = worker.get();
    auto channel = WorkerChannel::adopt(
        loop_, std::move(fd),
        [this, raw](ChannelMessage &&message) { host_.onExternalMessage(*raw, std::move(message)); },
        [this, raw](const std::string &reason) {
            host_.onExternalClosed(*raw, reason);
            reapLater();
        });
    if (!channel) {
        return channel.error();
    }
    (*channel)->setDropHandler([this, raw](const std::string &why) { host_.onExternalDropped(*raw, why); });
    worker->setChannel(std::move(*channel));
    workers_.push_back(std::move(worker));
    return raw;
}

void ActivationSocket::closeAll(const std::string &why)
{
    for (auto &worker : workers_) {
        if (worker->channel() != nullptr) {
            worker->channel()->close(why); // logged by the close handler
        }
    }
    workers_.clear();
    reaper_.reset();
}

void ActivationSocket::reapLater()
{
    if (reaper_) {
        return;
    }
    if (auto defer = loop_.addDefer([this] { reap(); })) {
        reaper_ = std::move(*defer);
    }
}

void ActivationSocket::reap()
{
    reaper_.reset();
    const auto gone = std::remove_if(workers_.begin(), workers_.end(), [](const auto &worker) {
        return worker->channel() == nullptr || !worker->channel()->isOpen();
    });
    if (gone == workers_.end()) {
        return;
    }
    workers_.erase(gone, workers_.end());
    host_.onExternalsChanged();
}

} // namespace fdsup
