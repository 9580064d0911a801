// The preload socket of a wrapped service: the shim in its processes connects, is admitted by process tree
// and uid, gets the listeners and reports which it claimed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
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

// A live instance as the preload socket sees it.
struct PreloadOwner {
    std::uint64_t id = 0;
    unsigned slot = 0;
    pid_t mainPid = 0;  // the process fdsupd follows now
    pid_t spawnPid = 0; // the process it spawned (different once a pid_file was followed)
    std::shared_ptr<const Profile> profile;
};

// The process tree rule (docs/preload.md): the live instance whose main or
// spawned process is `pid` or an ancestor of it (the ppid chain, up to
// fdsupd or pid 1), or, for a process that fdsupd adopted as a child
// subreaper (its chain ends at fdsupd), the instance whose spawned process
// leads its process group, or else the instance (service, slot and
// generation) its starting environment names. Null when none.
const PreloadOwner *ownerOfProcess(pid_t pid, const std::vector<PreloadOwner> &owners);

// What the preload socket needs from its service.
class PreloadHost {
public:
    PreloadHost() = default;
    PreloadHost(const PreloadHost &) = delete;
    PreloadHost &operator=(const PreloadHost &) = delete;

    [[nodiscard]] virtual const std::string &preloadService() const = 0;
    // The service is wanted up; a stopped one turns the shim away (ESHUTDOWN).
    [[nodiscard]] virtual bool preloadAdmitting() const = 0;
    [[nodiscard]] virtual std::vector<PreloadOwner> preloadOwners() const = 0;
    // Every message of an admitted connection (the channel session's).
    virtual void onPreloadMessage(ChannelPeer &peer, ChannelMessage &&message) = 0;
    virtual void onPreloadClosed(ChannelPeer &peer, const std::string &why) = 0;
    // A message it sent was dropped, its channel kept (WorkerChannel::DropHandler).
    virtual void onPreloadDropped(ChannelPeer &peer, const std::string &why) = 0;
    // Every listener of the instance's service was claimed by its processes.
    virtual void onPreloadBound(std::uint64_t instance) = 0;

protected:
    ~PreloadHost() = default;
};

class PreloadSocket;

// One connection of the shim, in one process of one instance.
class PreloadConnection final : public ChannelPeer {
public:
    PreloadConnection(PreloadSocket &socket, const PreloadOwner &owner, const Peer &credentials);

    [[nodiscard]] std::uint64_t instance() const { return instance_; }
    [[nodiscard]] const config::ServiceConfig &peerConfig() const override { return profile_->config; }
    [[nodiscard]] unsigned peerGeneration() const override { return profile_->generation; }
    [[nodiscard]] std::uint32_t instanceNumber() const override { return slot_; }
    // The shim asks for the listeners and reports claims; nothing else.
    [[nodiscard]] std::uint32_t extraCapabilities() const override
    {
        return kChannelCapListeners | kChannelCapPreload;
    }
    [[nodiscard]] bool isExternal() const override { return false; }
    [[nodiscard]] std::string describe() const override;
    [[nodiscard]] bool adopting() const override { return false; }
    void channelReady(const std::string &status) override;
    void channelClaimed(const std::vector<std::string> &names) override;

private:
    PreloadSocket &socket_;
    std::uint64_t instance_;
    unsigned slot_;
    std::shared_ptr<const Profile> profile_;
};

// Per instance: who claimed which listener, and whether the shim came at all.
struct Adoption {
    unsigned connections = 0;               // admitted so far, open or closed
    unsigned open = 0;                      // open now
    std::map<std::string, pid_t> claimedBy; // listener name -> the first pid that claimed it
    bool deadlinePassed = false;            // start_timeout + ready_timeout since the spawn
};

// A listener of an instance as status shows it.
struct ListenerReport {
    std::string name;
    pid_t adoptedBy = 0;  // 0: not adopted
    bool pending = false; // not adopted yet, and the deadline has not passed
    std::string reason;   // when not adopted: the likely reason
};

// The pure rule of what to say: `blocker` is preloadBlocker()'s verdict on the
// executable, `library` the preload library when it is missing.
std::vector<ListenerReport> adoptionReport(const std::vector<std::string> &listeners,
                                           const Adoption &adoption,
                                           const std::optional<std::string> &blocker,
                                           const std::optional<std::string> &missingLibrary);

// Contract (docs/preload.md, "What fdsupd does"): an abstract SOCK_SEQPACKET
// socket "@fdsup-<prefix>-preload-<service>". Each connection's SO_PEERCRED
// is checked before anything is read: its pid must be in the process tree of
// a live instance (ownerOfProcess()) and its uid the uid the instance runs
// as. A refusal is REJECT with EACCES (not a process of the service, or the
// wrong uid), ESHUTDOWN (service stopped) or EUSERS (kMaxPerInstance
// connections of that instance open), kept readable as on the activation
// socket. Admitted connections speak the worker channel (HELLO, WELCOME
// with the instance's slot and generation, LISTENERS, CLAIMED).
class PreloadSocket {
public:
    static constexpr std::size_t kMaxPerInstance = 16;

    static Result<std::unique_ptr<PreloadSocket>> open(EventLoop &loop, Clock &clock,
                                                       const std::string &address, PreloadHost &host);
    PreloadSocket(const PreloadSocket &) = delete;
    PreloadSocket &operator=(const PreloadSocket &) = delete;

    // Across fdsupd's re-exec (preload_snapshot.cpp, docs/reexec.md): the
    // listening socket, every open shim connection and every instance's
    // claims, borrowed; adopt() takes them back without binding anything.
    // `fds` owns the snapshot's descriptors: the listener first, then one per
    // peer in order. Every peer's instance must be one of host.preloadOwners().
    [[nodiscard]] PreloadSnapshot snapshot() const;
    static Result<std::unique_ptr<PreloadSocket>> adopt(EventLoop &loop, Clock &clock, std::string address,
                                                        PreloadHost &host, const PreloadSnapshot &snapshot,
                                                        std::vector<UniqueFd> fds);
    // Takes back an instance's record: its claims, and a fresh deadline
    // when it had not passed and a listener is not claimed yet.
    void restoreClaims(const PreloadClaimSnapshot &claims, const std::string &who,
                       const std::vector<std::string> &listeners, Duration deadline);

    [[nodiscard]] const std::string &address() const { return address_; }
    // Starts the record of a new instance and its deadline (after `deadline`
    // without every listener claimed, a warning is logged once).
    void track(std::uint64_t instance, const std::string &who, const std::vector<std::string> &listeners,
               Duration deadline);
    // The instance is gone: its record and connections go too.
    void forget(std::uint64_t instance);
    [[nodiscard]] const Adoption *adoption(std::uint64_t instance) const;
    [[nodiscard]] std::size_t connections() const { return connections_.size(); }

    // From a connection.
    void claimed(PreloadConnection &connection, const std::vector<std::string> &names);
    void closed(PreloadConnection &connection, const std::string &why);

private:
    PreloadSocket(EventLoop &loop, Clock &clock, PreloadHost &host, std::string address)
        : loop_(loop), clock_(clock), host_(host), address_(std::move(address)), rejected_(loop)
    {}
    void admit(UniqueFd fd);
    Result<void> serve(UniqueFd fd, const PreloadOwner &owner, const Peer &peer);
    void reapLater();
    void reap();
    void deadlinePassed(std::uint64_t instance);

    struct Record {
        std::string who; // "web[1] (pid 42)"
        std::vector<std::string> listeners;
        Adoption adoption;
        Timer deadline;
    };

    EventLoop &loop_;
    Clock &clock_;
    PreloadHost &host_;
    std::string address_;
    std::map<std::uint64_t, Record> records_;
    std::vector<std::unique_ptr<PreloadConnection>> connections_;
    ChannelRejections rejected_;
    EventSource reaper_;
    std::unique_ptr<UnixListener> listener_; // last: it goes first
};

} // namespace fdsup
