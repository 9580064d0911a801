// The worker channel as a service sees it: the handshake, listeners on request, readiness and handoffs.
#include "model/channel_session.hpp"

#include <algorithm>
#include <cerrno>
#include <vector>

#include <fcntl.h>

#include <spdlog/spdlog.h>

#include "model/profile.hpp"

namespace fdsup {

ChannelSession::ChannelSession(std::string service, const SocketSet &sockets, std::uint64_t stateLimit,
                               HandoffBroker &broker)
    : service_(std::move(service)), sockets_(sockets), stateLimit_(stateLimit), broker_(broker)
{}

void ChannelSession::onMessage(ChannelPeer &peer, ChannelMessage &&message)
{
    WorkerChannel &channel = *peer.channel();
    if (!channel.welcomed && message.type != ChannelType::Hello) {
        channel.fail(EPROTO,
                     std::string("the first message must be HELLO, not ") + channelTypeName(message.type));
        return;
    }
    if (message.type != ChannelType::Handoff) {
        addressesOf_ = nullptr;
    }
    switch (message.type) {
    case ChannelType::Hello:
        welcome(peer, message);
        return;
    case ChannelType::ListenersRequest:
        sendListeners(peer);
        return;
    case ChannelType::Ready:
        peer.channelReady(message.text);
        return;
    case ChannelType::Handoff:
        handoff(peer, message);
        return;
    case ChannelType::Done:
        spdlog::debug("{} has handed over everything", peer.describe());
        return;
    case ChannelType::Claimed:
        if (!peer.granted(kChannelCapPreload)) {
            channel.fail(EPROTO, "CLAIMED is only for the preload shim of a wrapped service");
            return;
        }
        peer.channelClaimed(message.names);
        return;
    case ChannelType::Error:
        spdlog::warn("{} reports a channel error: {} ({})", peer.describe(), message.text,
                     errnoText(static_cast<int>(message.code)));
        channel.close("the worker reported an error");
        return;
    case ChannelType::Welcome:
    case ChannelType::Reject:
    case ChannelType::Listeners:
    case ChannelType::Drain:
    case ChannelType::HandoffResult:
    case ChannelType::Adopt:
        break;
    }
    channel.fail(EPROTO, std::string(channelTypeName(message.type)) + " is not sent by workers");
}

void ChannelSession::onClosed(ChannelPeer &peer, const std::string &why)
{
    if (peer.channel() != nullptr && peer.channel()->failed) {
        ++dropped_;
    }
    spdlog::info("{}: channel closed: {}", peer.describe(), why);
}

void ChannelSession::onDropped(ChannelPeer &peer, const std::string &why)
{
    ++dropped_;
    if (std::string note; droppedLog_.allow(note)) {
        spdlog::warn("{}: {}{}", peer.describe(), why, note);
    }
}

void ChannelSession::welcome(ChannelPeer &peer, const ChannelMessage &hello)
{
    WorkerChannel &channel = *peer.channel();
    if (channel.welcomed) {
        channel.fail(EPROTO, "HELLO sent twice");
        return;
    }
    if (hello.minVersion > kChannelVersion || hello.maxVersion < kChannelVersion) {
        ChannelMessage reject;
        reject.type = ChannelType::Reject;
        reject.code = EPROTONOSUPPORT;
        reject.text = "fdsupd speaks worker channel version " + std::to_string(kChannelVersion) +
                      ", the worker " + std::to_string(hello.minVersion) + " to " +
                      std::to_string(hello.maxVersion);
        (void)channel.send(reject);
        channel.close(reject.text);
        return;
    }
    const std::uint32_t allowed = allowedCapabilities(peer.peerConfig()) | peer.extraCapabilities();
    ChannelMessage welcome;
    welcome.type = ChannelType::Welcome;
    welcome.version = kChannelVersion;
    welcome.capabilities = hello.capabilities & allowed;
    welcome.service = service_;
    welcome.instance = peer.instanceNumber();
    welcome.generation = peer.peerGeneration();
    welcome.maxInlineState =
        static_cast<std::uint32_t>(std::min<std::uint64_t>(kChannelMaxInlineState, stateLimit_));
    welcome.maxMemfdState = std::min<std::uint64_t>(kChannelMaxMemfdState, stateLimit_);
    if (const int r = channel.send(welcome); r < 0) {
        channel.fail(static_cast<std::uint32_t>(-r), std::string("cannot send WELCOME: ") + errnoText(-r));
        return;
    }
    channel.welcomed = true;
    channel.capabilities = welcome.capabilities;
    spdlog::debug("{} joined its channel (capabilities {:#x})", peer.describe(), channel.capabilities);
    broker_.deliver();
}

void ChannelSession::sendListeners(ChannelPeer &peer)
{
    WorkerChannel &channel = *peer.channel();
    if ((channel.capabilities & kChannelCapListeners) == 0) {
        channel.fail(EPERM, "listeners over the channel need activation = \"channel\"");
        return;
    }
    ChannelMessage listeners;
    listeners.type = ChannelType::Listeners;
    for (const auto &socketName : peer.peerConfig().sockets) {
        const HeldSocket *socket = sockets_.find(socketName);
        for (std::size_t i = 0; socket != nullptr && i < socket->fds.size(); ++i) {
            UniqueFd copy(fcntl(socket->fds[i].get(), F_DUPFD_CLOEXEC, 3));
            if (!copy) {
                channel.fail(static_cast<std::uint32_t>(errno), "cannot duplicate a listener");
                return;
            }
            listeners.names.push_back(socketName);
            listeners.fds.push_back(std::move(copy));
        }
    }
    if (const int r = channel.send(listeners); r < 0) {
        channel.fail(static_cast<std::uint32_t>(-r), std::string("cannot send LISTENERS: ") + errnoText(-r));
    }
}

void ChannelSession::handoff(ChannelPeer &peer, ChannelMessage &message)
{
    if (addressesOf_ != &peer || addressesBatch_ != peer.channel()->batch()) {
        std::vector<BorrowedFd> listeners;
        for (const auto &socketName : peer.peerConfig().sockets) {
            if (const HeldSocket *socket = sockets_.find(socketName)) {
                for (const auto &fd : socket->fds) {
                    listeners.push_back(fd.borrow());
                }
            }
        }
        listenerAddresses_ = listenerAddresses(listeners);
        addressesOf_ = &peer;
        addressesBatch_ = peer.channel()->batch();
    }
    broker_.accept(peer, message, listenerAddresses_);
}

bool ChannelSession::sendDrain(ChannelPeer &peer, Duration deadline)
{
    if (!peer.granted(kChannelCapHandoff)) {
        return false;
    }
    ChannelMessage drain;
    drain.type = ChannelType::Drain;
    drain.deadlineUsec = static_cast<std::uint64_t>(deadline.count());
    return peer.channel()->send(drain) == 0;
}

} // namespace fdsup
