// The activation socket: workers fdsupd did not spawn connect, are admitted by credentials, and join the
// service.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/result.hpp"
#include "core/fd.hpp"
#include "io/channel_rejections.hpp"
#include "io/clock.hpp"
#include "io/event_loop.hpp"
#include "io/peer.hpp"
#include "io/unix_listener.hpp"
#include "model/channel_peer.hpp"
#include "model/profile.hpp"
#include "model/snapshot.hpp"

namespace fdsup {

class ExternalWorker;

// What the activation socket needs from its service.
class ActivationHost {
public:
    ActivationHost() = default;
    ActivationHost(const ActivationHost &) = delete;
    ActivationHost &operator=(const ActivationHost &) = delete;

    // The current generation: its name, configuration and access lists.
    [[nodiscard]] virtual const Profile &activeProfile() const = 0;
    // The service is wanted up; a stopped one turns workers away (ESHUTDOWN).
    [[nodiscard]] virtual bool admitting() const = 0;
    // An id unique within fdsupd, shared with instance ids.
    virtual std::uint64_t nextWorkerId() = 0;
    virtual void onExternalMessage(ChannelPeer &peer, ChannelMessage &&message) = 0;
    virtual void onExternalClosed(ChannelPeer &peer, const std::string &why) = 0;
    // A message it sent was dropped, its channel kept (WorkerChannel::DropHandler).
    virtual void onExternalDropped(ChannelPeer &peer, const std::string &why) = 0;
    // An external worker sent READY for the first time.
    virtual void onExternalReady(ExternalWorker &worker) = 0;
    // One joined or went away.
    virtual void onExternalsChanged() = 0;

protected:
    ~ActivationHost() = default;
};

// A worker fdsupd did not spawn, connected to the activation socket and
// admitted by its credentials. fdsupd never signals, drains or restarts it:
// it gets the listeners, adopts once READY, hands over when it chooses.
class ExternalWorker final : public ChannelPeer {
public:
    ExternalWorker(ActivationHost &host, std::uint64_t id, const Peer &credentials, Duration since);

    [[nodiscard]] std::uint64_t id() const { return id_; }
    [[nodiscard]] uid_t uid() const { return uid_; }
    [[nodiscard]] gid_t gid() const { return gid_; }
    [[nodiscard]] bool ready() const { return ready_; }
    // It handed a connection over: it is draining (on its own initiative)
    // and is given no more connections.
    [[nodiscard]] bool draining() const { return draining_; }
    [[nodiscard]] const std::optional<std::string> &status() const { return status_; }
    [[nodiscard]] Duration since() const { return since_; }

    [[nodiscard]] const config::ServiceConfig &peerConfig() const override;
    [[nodiscard]] unsigned peerGeneration() const override;
    [[nodiscard]] std::uint32_t instanceNumber() const override;
    [[nodiscard]] std::uint32_t extraCapabilities() const override;
    [[nodiscard]] bool isExternal() const override { return true; }
    [[nodiscard]] std::string describe() const override;
    [[nodiscard]] bool adopting() const override { return ready_ && !draining_; }
    void channelReady(const std::string &status) override;
    void handedOver() override;
    // Across fdsupd's re-exec: what it had said before.
    void restore(const ExternalWorkerSnapshot &snapshot);

private:
    ActivationHost &host_;
    std::uint64_t id_;
    uid_t uid_;
    gid_t gid_;
    bool ready_ = false;
    bool draining_ = false;
    std::optional<std::string> status_; // READY's text
    Duration since_;                    // when it connected
};

// Contract (docs/worker-channel.md, "External workers"): a SOCK_SEQPACKET
// socket (a path, mode 0666, or "@abstract"). Each connection's
// SO_PEERCRED/SO_PEERGROUPS is checked before anything is read: root,
// fdsupd's own user, activation_users and activation_groups are admitted.
// A refusal is REJECT with EACCES (credentials), ESHUTDOWN (service
// stopped) or EUSERS (kMaxWorkers connected), and the socket is kept, write
// side shut, until the worker's HELLO or hang-up (the ChannelRejections::kMax most
// recent), so it reads why. Accepting is a UnixListener's (its limits, and
// its socket file removed with it).
class ActivationSocket {
public:
    static constexpr std::size_t kMaxWorkers = 64;

    static Result<std::unique_ptr<ActivationSocket>> open(EventLoop &loop, const std::string &path,
                                                          ActivationHost &host);
    // Across fdsupd's re-exec (activation_snapshot.cpp, docs/reexec.md): the
    // listening socket and every admitted worker's channel, borrowed;
    // adopt() takes them back without binding anything. `fds` owns the
    // snapshot's descriptors: the listener first, then one per worker.
    [[nodiscard]] ActivationSnapshot snapshot() const;
    static Result<std::unique_ptr<ActivationSocket>> adopt(EventLoop &loop, const std::string &path,
                                                           ActivationHost &host,
                                                           const ActivationSnapshot &snapshot,
                                                           std::vector<UniqueFd> fds);
    ActivationSocket(const ActivationSocket &) = delete;
    ActivationSocket &operator=(const ActivationSocket &) = delete;

    [[nodiscard]] const std::vector<std::unique_ptr<ExternalWorker>> &workers() const { return workers_; }
    // Closes every worker's channel (a closed channel tells a worker to finish) and forgets them.
    void closeAll(const std::string &why);
    // Forgets the workers whose channel closed, later: a channel's close
    // handler runs inside the channel.
    void reapLater();

private:
    ActivationSocket(EventLoop &loop, ActivationHost &host) : loop_(loop), host_(host), rejected_(loop) {}
    void admit(UniqueFd fd);
    // Serves an admitted worker's channel.
    Result<ExternalWorker *> serve(UniqueFd fd, std::unique_ptr<ExternalWorker> worker);
    void reap();
    [[nodiscard]] const std::string &service() const { return host_.activeProfile().config.name; }

    EventLoop &loop_;
    ActivationHost &host_;
    std::vector<std::unique_ptr<ExternalWorker>> workers_;
    ChannelRejections rejected_;
    EventSource reaper_;
    std::unique_ptr<UnixListener> listener_; // last: it goes first, nothing is admitted into a dying socket
};

} // namespace fdsup
