// The worker channel as a service sees it: the handshake, listeners on request, readiness and handoffs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/channel.hpp"
#include "io/log_limit.hpp"
#include "io/sockets.hpp"
#include "model/channel_peer.hpp"
#include "model/handoff_broker.hpp"

namespace fdsup {

// Serves what any of a service's peers sends (docs/worker-channel.md):
// HELLO is answered with WELCOME (the capabilities asked for and allowed)
// or REJECT (no common version); LISTENERS_REQUEST with LISTENERS (the
// peer's configured sockets, as duplicates); READY goes to the peer;
// HANDOFF to the broker; ERROR closes the channel. Anything else, or
// anything before HELLO, is a protocol error: ERROR (EPROTO) and the
// channel is closed. Never destroys a peer: closing only marks the channel.
class ChannelSession {
public:
    ChannelSession(std::string service, const SocketSet &sockets, std::uint64_t stateLimit,
                   HandoffBroker &broker);

    void onMessage(ChannelPeer &peer, ChannelMessage &&message);
    void onClosed(ChannelPeer &peer, const std::string &why);
    // A message dropped with the channel kept: counted in dropped(), logged
    // a few lines a time (the worker decides how often).
    void onDropped(ChannelPeer &peer, const std::string &why);
    // DRAIN with the deadline: true when the peer joined for handoff and
    // the message was sent (then it hands its connections over).
    bool sendDrain(ChannelPeer &peer, Duration deadline);
    // Channels fdsupd closed over an error (WorkerChannel::fail()): a
    // malformed, flooding or unexpected message dropped, or an answer that
    // could not be sent; and messages dropped with the channel kept.
    [[nodiscard]] std::uint64_t dropped() const { return dropped_; }
    void restoreDropped(std::uint64_t dropped) { dropped_ = dropped; } // re-exec

private:
    void welcome(ChannelPeer &peer, const ChannelMessage &hello);
    void sendListeners(ChannelPeer &peer);
    void handoff(ChannelPeer &peer, ChannelMessage &message);

    std::string service_;
    const SocketSet &sockets_;
    // The addresses of the listeners of the peer whose HANDOFFs are being
    // read, worked out once for consecutive HANDOFFs of one read of its
    // channel (WorkerChannel::batch(); any other message forgets them).
    std::vector<ListenerAddress> listenerAddresses_;
    const ChannelPeer *addressesOf_ = nullptr;
    std::uint64_t addressesBatch_ = 0;
    std::uint64_t stateLimit_;
    HandoffBroker &broker_;
    std::uint64_t dropped_ = 0;
    LogLimit droppedLog_;
};

} // namespace fdsup
