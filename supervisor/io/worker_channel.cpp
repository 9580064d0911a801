// fdsupd's end of a worker channel.
#include "io/worker_channel.hpp"

#include <cerrno>

#include <sys/epoll.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

namespace fdsup {

Result<std::unique_ptr<WorkerChannel>> WorkerChannel::create(EventLoop &loop, UniqueFd &workerEnd,
                                                             MessageHandler onMessage, CloseHandler onClose)
{
    int pair[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
        return errnoError(errno, "Failed to create a worker channel");
    }
    UniqueFd ours(pair[0]);
    UniqueFd theirs(pair[1]);
    auto channel = adopt(loop, std::move(ours), std::move(onMessage), std::move(onClose));
    if (channel) {
        workerEnd = std::move(theirs);
    }
    return channel;
}

Result<std::unique_ptr<WorkerChannel>> WorkerChannel::adopt(EventLoop &loop, UniqueFd fd,
                                                            MessageHandler onMessage, CloseHandler onClose)
{
    std::unique_ptr<WorkerChannel> channel(
        new WorkerChannel(loop, std::move(fd), std::move(onMessage), std::move(onClose)));
    WorkerChannel *self = channel.get();
    auto source =
        loop.addIo(channel->fd_.borrow(), EPOLLIN, [self](std::uint32_t revents) { self->onIo(revents); });
    if (!source) {
        return source.error();
    }
    channel->source_ = std::move(*source);
    channel->refilled_ = loop.now();
    return channel;
}

WorkerChannel::WorkerChannel(EventLoop &loop, UniqueFd fd, MessageHandler onMessage, CloseHandler onClose)
    : loop_(loop), fd_(std::move(fd)), onMessage_(std::move(onMessage)), onClose_(std::move(onClose))
{}

WorkerChannel::~WorkerChannel() = default;

int WorkerChannel::send(ChannelMessage &message)
{
    if (!fd_) {
        return -EPIPE;
    }
    message.seq = seq_ + 1; // counted once sent: a message that did not go is not numbered
    const int r = sendChannelMessage(fd_.borrow(), message);
    if (r == 0) {
        ++seq_;
    }
    return r;
}

void WorkerChannel::sendInOrder(ChannelMessage message)
{
    if (pending_.empty() && send(message) != -EAGAIN) {
        return; // sent, or the worker is gone (its channel closes on the next read)
    }
    pending_.push_back(std::move(message));
    if (pending_.size() == 1) {
        (void)source_.setIoEvents(EPOLLOUT); // and stop reading until it went
    }
}

bool WorkerChannel::flush()
{
    while (!pending_.empty()) {
        if (send(pending_.front()) == -EAGAIN) {
            return false;
        }
        pending_.pop_front();
    }
    (void)source_.setIoEvents(EPOLLIN);
    return true;
}

void WorkerChannel::onIo(std::uint32_t revents)
{
    if (!pending_.empty() && !flush() && (revents & (EPOLLHUP | EPOLLERR)) == 0) {
        return; // still full: the worker reads its answers first
    }
    readPending();
}

void WorkerChannel::fail(std::uint32_t code, const std::string &reason)
{
    if (fd_) {
        failed = true;
        ChannelMessage error;
        error.type = ChannelType::Error;
        error.code = code;
        error.text = reason.substr(0, kChannelMaxText);
        (void)send(error);
    }
    close(reason);
}

void WorkerChannel::close(const std::string &why)
{
    if (!fd_) {
        return;
    }
    source_.reset();
    fd_.reset();
    pending_.clear();
    if (onClose_) {
        onClose_(why);
    }
}

bool WorkerChannel::takeToken(ChannelType type)
{
    const Duration now = loop_.now();
    const double refill = std::chrono::duration<double>(now - refilled_).count() * kPerSecond;
    refilled_ = now;
    tokens_ = std::min(kBurst, tokens_ + refill);
    handoffTokens_ = std::min(kHandoffBurst, handoffTokens_ + refill);
    double &bucket = type == ChannelType::Handoff ? handoffTokens_ : tokens_;
    if (bucket < 1) {
        return false;
    }
    bucket -= 1;
    return true;
}

void WorkerChannel::failFlooding()
{
    fail(EBUSY, "more than " + std::to_string(static_cast<int>(kPerSecond)) + " messages per second (burst " +
                    std::to_string(static_cast<int>(kBurst)) + ", " +
                    std::to_string(static_cast<int>(kHandoffBurst)) + " for HANDOFF)");
}

void WorkerChannel::readPending(int limit)
{
    batch_ = ++lastBatch_;
    // With answers waiting for room, the worker's next messages wait too
    // (but not when it exited: then everything it sent is read at once).
    for (int i = 0; (limit < 0 || i < limit) && fd_ && (limit < 0 || pending_.empty()); ++i) {
        ChannelMessage message;
        const int r = recvChannelMessage(fd_.borrow(), message);
        if (r == -EAGAIN || r == -EINTR) {
            return;
        }
        if (r == -ECONNRESET) {
            close("the worker closed its channel");
            return;
        }
        if (r == -ENOMSG) {
            // Not the end (that comes with RDHUP): malformed, but nothing
            // in it to act on, so dropped with the channel kept. Still
            // counts against the message rate.
            if (!takeToken(ChannelType::Error)) {
                failFlooding();
                return;
            }
            if (onDrop_) {
                onDrop_("malformed message: an empty datagram (see docs/worker-channel.md), ignoring it");
            }
            continue;
        }
        if (r == -EMFILE && message.type != ChannelType::Handoff) {
            fail(EMFILE, std::string("the descriptors of its ") + channelTypeName(message.type) +
                             " could not be received: " + errnoText(EMFILE) + " (fdsupd's RLIMIT_NOFILE)");
            return;
        }
        if (r < 0 && r != -EMFILE) {
            // recvChannelMessage closed whatever arrived with it.
            fail(static_cast<std::uint32_t>(-r),
                 std::string("malformed message: ") + errnoText(-r) + " (see docs/worker-channel.md)");
            return;
        }
        if (!takeToken(message.type)) {
            failFlooding();
            return;
        }
        onMessage_(std::move(message)); // may close (or destroy) this channel
        if (!fd_) {
            return;
        }
    }
}

} // namespace fdsup
