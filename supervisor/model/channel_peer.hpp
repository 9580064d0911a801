// The far end of a worker channel: an instance fdsupd spawned or an external worker, alike to the broker.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include "config/config.hpp"
#include "core/channel.hpp"
#include "io/worker_channel.hpp"

namespace fdsup {

// The channel session and the handoff broker work on peers only; what
// differs between a spawned instance and a worker that connected to the
// activation socket is asked of the peer (docs/worker-channel.md).
class ChannelPeer {
public:
    ChannelPeer() = default;
    ChannelPeer(const ChannelPeer &) = delete;
    ChannelPeer &operator=(const ChannelPeer &) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    // Null when the service uses no channel.
    [[nodiscard]] WorkerChannel *channel() const { return channel_.get(); }
    void setChannel(std::unique_ptr<WorkerChannel> channel) { channel_ = std::move(channel); }
    // Said HELLO and was welcomed, and the channel is still open.
    [[nodiscard]] bool joined() const { return channel_ && channel_->isOpen() && channel_->welcomed; }
    [[nodiscard]] bool granted(std::uint32_t capability) const
    {
        return joined() && (channel_->capabilities & capability) != 0;
    }
    // Connections given to it so far, for balancing.
    [[nodiscard]] std::uint64_t adopted() const { return adopted_; }
    void countAdopted() { ++adopted_; }

    // The configuration it works for, and its generation: an instance's
    // own; the service's current one for an external worker.
    [[nodiscard]] virtual const config::ServiceConfig &peerConfig() const = 0;
    [[nodiscard]] virtual unsigned peerGeneration() const = 0;
    // WELCOME's instance number (kChannelExternalInstance for an external worker).
    [[nodiscard]] virtual std::uint32_t instanceNumber() const = 0;
    // Capabilities granted beyond the configuration's (an external worker
    // connected for its listeners: it always may ask for them).
    [[nodiscard]] virtual std::uint32_t extraCapabilities() const { return 0; }
    [[nodiscard]] virtual bool isExternal() const = 0;
    // "web[1] (pid 42)", "web external worker 7 (pid 42, uid 33)": for logs.
    [[nodiscard]] virtual std::string describe() const = 0;
    // Takes connections now (besides being granted ADOPT): a ready instance
    // that is not being retired; an external worker that sent READY and has
    // not begun to hand over.
    [[nodiscard]] virtual bool adopting() const = 0;
    // READY over the channel, with its text.
    virtual void channelReady(const std::string &status) = 0;
    // It handed a connection over (an external worker drains this way).
    virtual void handedOver() {}
    // The preload shim reports the listeners its process has bound so far
    // (CLAIMED, only with kChannelCapPreload granted).
    virtual void channelClaimed(const std::vector<std::string> & /*names*/) {}

protected:
    ~ChannelPeer() = default;
    void setPid(pid_t pid) { pid_ = pid; }

private:
    pid_t pid_ = 0;
    std::unique_ptr<WorkerChannel> channel_;
    std::uint64_t adopted_ = 0;
};

// A peer that can be given connections now: granted ADOPT and adopting.
[[nodiscard]] inline bool canAdopt(const ChannelPeer &peer)
{
    return peer.granted(kChannelCapAdopt) && peer.adopting();
}

} // namespace fdsup
