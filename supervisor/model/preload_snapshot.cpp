// A wrapped service's preload socket across fdsupd's re-exec: its snapshot, and taking it back.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "model/preload.hpp"

namespace fdsup {

PreloadSnapshot PreloadSocket::snapshot() const
{
    PreloadSnapshot s;
    s.fd = listener_->fd().get();
    for (const auto &connection : connections_) {
        const WorkerChannel *channel = connection->channel();
        if (channel != nullptr && channel->isOpen()) {
            s.peers.push_back(PreloadPeerSnapshot{channel->fd().get(), connection->instance(),
                                                  connection->pid(), channel->welcomed,
                                                  channel->capabilities});
        }
    }
    for (const auto &[id, record] : records_) {
        PreloadClaimSnapshot claims{id, record.adoption.connections, record.adoption.deadlinePassed, {}};
        claims.claimedBy.assign(record.adoption.claimedBy.begin(), record.adoption.claimedBy.end());
        s.claims.push_back(std::move(claims));
    }
    return s;
}

Result<std::unique_ptr<PreloadSocket>> PreloadSocket::adopt(EventLoop &loop, Clock &clock,
                                                            std::string address, PreloadHost &host,
                                                            const PreloadSnapshot &snapshot,
                                                            std::vector<UniqueFd> fds)
{
    const std::string &service = host.preloadService();
    std::unique_ptr<PreloadSocket> socket(new PreloadSocket(loop, clock, host, std::move(address)));
    PreloadSocket *self = socket.get();
    auto listener = UnixListener::adopt(loop, std::move(fds.at(0)), service + "'s preload shim",
                                        [self](UniqueFd fd) { self->admit(std::move(fd)); });
    if (!listener) {
        return Error{listener.error().code, "preload socket: " + listener.error().message};
    }
    socket->listener_ = std::move(*listener);
    const std::vector<PreloadOwner> owners = host.preloadOwners();
    for (std::size_t k = 0; k < snapshot.peers.size(); ++k) {
        const PreloadPeerSnapshot &p = snapshot.peers[k];
        const auto owner = std::find_if(owners.begin(), owners.end(),
                                        [&](const PreloadOwner &o) { return o.id == p.instance; });
        if (owner == owners.end()) {
            return Error{EINVAL, "preload peer (pid " + std::to_string(p.pid) + "): instance " +
                                     std::to_string(p.instance) + " is not carried"};
        }
        Peer credentials;
        credentials.pid = p.pid;
        if (auto served = socket->serve(std::move(fds.at(k + 1)), *owner, credentials); !served) {
            return Error{served.error().code,
                         "preload peer (pid " + std::to_string(p.pid) + "): " + served.error().message};
        }
        socket->connections_.back()->channel()->welcomed = p.welcomed;
        socket->connections_.back()->channel()->capabilities = p.capabilities;
    }
    spdlog::info("{}: adopted the preload socket {} and {} shim connection(s) across re-exec", service,
                 socket->address_, snapshot.peers.size());
    return socket;
}

void PreloadSocket::restoreClaims(const PreloadClaimSnapshot &claims, const std::string &who,
                                  const std::vector<std::string> &listeners, Duration deadline)
{
    Record &record = records_[claims.instance];
    record.who = who;
    record.listeners = listeners;
    record.adoption.connections = claims.connections;
    record.adoption.deadlinePassed = claims.deadlinePassed;
    record.adoption.claimedBy.insert(claims.claimedBy.begin(), claims.claimedBy.end());
    if (claims.deadlinePassed || record.adoption.claimedBy.size() >= listeners.size()) {
        return;
    }
    // The deadline's remaining time is not carried: it starts again.
    const std::uint64_t instance = claims.instance;
    if (auto timer = clock_.startTimer(deadline, [this, instance] { deadlinePassed(instance); })) {
        record.deadline = std::move(*timer);
    }
}

} // namespace fdsup
