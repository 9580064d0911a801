// Connections: connect, send, read and classify, for every client connection, never blocking.
#include "connections.hpp"

#include <cerrno>
#include <cstring>

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

namespace fdsup::load {

namespace {

constexpr uint32_t kPeerGone = EPOLLRDHUP | EPOLLHUP | EPOLLERR;

const char *errnoName(int error)
{
    const char *name = strerrorname_np(error);
    return name != nullptr ? name : "unknown";
}

} // namespace

Connections::Connections(const Options &options, BorrowedFd epoll, Results &results)
    : options_(options), epoll_(epoll), results_(results), conns_(static_cast<size_t>(options.connections))
{
    request_ = "GET " + options.path + " HTTP/1.1\r\nHost: " + options.target.text + "\r\n";
    if (options.mode == Mode::Newconn) {
        request_ += "Connection: close\r\n";
    }
    request_ += "\r\n";
    for (size_t i = 0; i < conns_.size(); ++i) {
        closed_.push_back(i);
    }
}

std::string_view Connections::request(const Connection &c) const
{
    return http() ? std::string_view(request_) : c.stream.request();
}

void Connections::reopen(Clock::time_point now)
{
    std::vector<size_t> todo;
    todo.swap(closed_);
    for (size_t i : todo) {
        open(i, now);
    }
}

void Connections::open(size_t index, Clock::time_point now)
{
    Connection &c = conns_[index];
    c = Connection();
    c.requestStart = now;
    results_.connectionOpened();
    c.fd.reset(socket(options_.target.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!c.fd) {
        fail(index, now, Outcome::Other, errno);
        return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.u64 = index;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c.fd.get(), &ev) < 0) {
        fail(index, now, Outcome::Other, errno);
        return;
    }
    c.wantWrite = true;
    c.state = ConnState::Connecting;
    schedule(index, now + options_.timeout);
    if (connect(c.fd.get(), reinterpret_cast<const sockaddr *>(&options_.target.address),
                options_.target.length) < 0 &&
        errno != EINPROGRESS) {
        failIo(index, now, errno, false);
    }
}

void Connections::close(size_t index)
{
    Connection &c = conns_[index];
    c.fd.reset(); // closing removes it from epoll
    c.state = ConnState::Closed;
    c.wake = Clock::time_point::max();
    closed_.push_back(index);
}

void Connections::fail(size_t index, Clock::time_point now, Outcome outcome, int error)
{
    if (!http() && outcome != Outcome::Refused) {
        outcome = Outcome::BrokenStream;
    }
    results_.failure(now, outcome, outcome == Outcome::Other ? errnoName(error) : "");
    close(index);
}

// An error (or EOF) from the socket while a request is outstanding.
void Connections::failIo(size_t index, Clock::time_point now, int error, bool eof)
{
    const Connection &c = conns_[index];
    if (!eof && error == ECONNREFUSED) {
        fail(index, now, Outcome::Refused);
    } else if (!eof && error == ETIMEDOUT) {
        fail(index, now, Outcome::Timeout);
    } else if (!eof && error != ECONNRESET && error != EPIPE) {
        fail(index, now, Outcome::Other, error);
    } else if (http() ? c.http.started() : c.stream.started()) {
        fail(index, now, Outcome::MidResponse);
    } else if (!c.reused) {
        fail(index, now, eof ? Outcome::FreshEof : Outcome::FreshReset);
    } else {
        fail(index, now, Outcome::KeepaliveRace);
    }
}

// One live heap entry per connection: a deadline that moves later (the next
// request of a keep-alive connection) keeps the entry it has, which re-arms
// itself when it comes due; an earlier one (a pause) pushes a new entry and
// the old one is skipped as stale.
void Connections::schedule(size_t index, Clock::time_point when)
{
    Connection &c = conns_[index];
    c.wake = when;
    if (c.queuedSeq == 0 || when < c.queuedAt) {
        c.queuedSeq = ++timerSeq_;
        c.queuedAt = when;
        timers_.push({when, index, c.queuedSeq});
    }
}

Clock::time_point Connections::nextTimer()
{
    return timers_.empty() ? Clock::time_point::max() : timers_.top().when;
}

void Connections::expire(Clock::time_point now)
{
    while (!timers_.empty() && timers_.top().when <= now) {
        Timer t = timers_.top();
        timers_.pop();
        Connection &c = conns_[t.index];
        if (t.seq != c.queuedSeq) {
            continue; // replaced by an earlier one
        }
        c.queuedSeq = 0;
        if (c.wake == Clock::time_point::max() || c.state == ConnState::Closed) {
            continue;
        }
        if (c.wake > now) {
            schedule(t.index, c.wake); // the deadline moved on since this entry
            continue;
        }
        c.wake = Clock::time_point::max();
        if (c.state == ConnState::Thinking) {
            startRequest(t.index, now);
        } else {
            fail(t.index, now, Outcome::Timeout);
        }
    }
}

void Connections::watchWrite(size_t index, bool on)
{
    Connection &c = conns_[index];
    if (c.wantWrite == on) {
        return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0U);
    ev.data.u64 = index;
    epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev);
    c.wantWrite = on;
}

void Connections::onEvent(size_t index, uint32_t events, Clock::time_point now, Phase phase)
{
    switch (conns_[index].state) {
    case ConnState::Closed:
        return;
    case ConnState::Connecting:
        onConnected(index, now);
        return;
    case ConnState::Sending:
        if ((events & EPOLLOUT) != 0) {
            trySend(index, now);
        }
        if ((events & (EPOLLIN | kPeerGone)) != 0 && conns_[index].state != ConnState::Closed) {
            onReadable(index, events, now, phase);
        }
        return;
    case ConnState::Awaiting:
        onReadable(index, events, now, phase);
        return;
    case ConnState::Thinking:
        onIdleReadable(index, now);
        return;
    }
}

void Connections::onConnected(size_t index, Clock::time_point now)
{
    Connection &c = conns_[index];
    int error = 0;
    socklen_t len = sizeof error;
    if (getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &error, &len) < 0) {
        error = errno;
    }
    if (error != 0) {
        failIo(index, now, error, false);
        return;
    }
    c.state = ConnState::Sending;
    trySend(index, now);
}

void Connections::startRequest(size_t index, Clock::time_point now)
{
    Connection &c = conns_[index];
    c.requestStart = now;
    c.sent = 0;
    c.state = ConnState::Sending;
    schedule(index, now + options_.timeout);
    trySend(index, now);
}

void Connections::trySend(size_t index, Clock::time_point now)
{
    Connection &c = conns_[index];
    std::string_view req = request(c);
    while (c.sent < req.size()) {
        ssize_t n = send(c.fd.get(), req.data() + c.sent, req.size() - c.sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            watchWrite(index, true);
            return;
        }
        if (n < 0) {
            failIo(index, now, errno, false);
            return;
        }
        c.sent += static_cast<size_t>(n);
    }
    watchWrite(index, false);
    c.state = ConnState::Awaiting;
}

void Connections::onReadable(size_t index, uint32_t events, Clock::time_point now, Phase phase)
{
    Connection &c = conns_[index];
    for (;;) {
        ssize_t n = recv(c.fd.get(), buffer_.data(), buffer_.size(), 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            return;
        }
        if (n <= 0) {
            bool eof = n == 0;
            if (eof && http() && c.state == ConnState::Awaiting &&
                c.http.finish() == HttpResponseParser::Progress::Complete) {
                onComplete(index, events | EPOLLRDHUP, now, phase); // a close-delimited body
                return;
            }
            failIo(index, now, eof ? 0 : errno, eof);
            return;
        }
        std::string_view data(buffer_.data(), static_cast<size_t>(n));
        size_t used = 0;
        bool complete = false;
        if (c.state != ConnState::Awaiting) {
            fail(index, now, Outcome::Other, EPROTO); // an answer before the request was whole
            return;
        }
        if (http()) {
            auto p = c.http.feed(data, used);
            if (p == HttpResponseParser::Progress::Error) {
                fail(index, now, Outcome::Other, EBADMSG);
                return;
            }
            complete = p == HttpResponseParser::Progress::Complete;
        } else {
            auto p = c.stream.feed(data, used);
            if (p == SeqnumStream::Progress::Error) {
                fail(index, now, Outcome::BrokenStream); // a wrong echo
                return;
            }
            complete = p == SeqnumStream::Progress::Complete;
        }
        if (complete && used < data.size()) {
            fail(index, now, Outcome::Other, EPROTO); // bytes nobody asked for
            return;
        }
        if (complete) {
            onComplete(index, events, now, phase);
            return;
        }
        // A short read emptied the socket: the next bytes come with a new event.
        if (static_cast<size_t>(n) < buffer_.size() && (events & kPeerGone) == 0) {
            return;
        }
    }
}

void Connections::onComplete(size_t index, uint32_t events, Clock::time_point now, Phase phase)
{
    Connection &c = conns_[index];
    if (http() && (c.http.status() < 200 || c.http.status() > 299)) {
        fail(index, now, Outcome::Non2xx);
        return;
    }
    results_.ok(now, now - c.requestStart, phase);
    c.reused = true;
    c.wake = Clock::time_point::max();
    if (http() && options_.mode == Mode::Newconn) {
        close(index);
        return;
    }
    if (http() && !c.http.keepAlive()) {
        results_.forcedReconnect(now);
        close(index);
        return;
    }
    c.http.reset();
    c.state = ConnState::Thinking;
    if ((events & kPeerGone) != 0) {
        // The server's FIN or RST came with the response: the connection is
        // known to be gone before the next request is sent.
        onIdleReadable(index, now);
        if (c.state == ConnState::Closed) {
            return;
        }
    }
    nextRequest(index, now);
}

void Connections::nextRequest(size_t index, Clock::time_point now)
{
    bool pause = options_.mode == Mode::Think || options_.mode == Mode::Stream;
    if (!pause || options_.think.count() == 0) {
        startRequest(index, now);
        return;
    }
    std::uniform_int_distribution<int64_t> us(0, std::chrono::microseconds(options_.think).count());
    conns_[index].state = ConnState::Thinking;
    schedule(index, now + std::chrono::microseconds(us(random_)));
}

// The connection is idle (no request outstanding) and readable: the server
// closed it (politely: a forced reconnect; with RST: a failure) or sent bytes
// nobody asked for.
void Connections::onIdleReadable(size_t index, Clock::time_point now)
{
    Connection &c = conns_[index];
    char byte = 0;
    ssize_t n = recv(c.fd.get(), &byte, 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    if (n == 0 && http()) {
        results_.forcedReconnect(now);
        close(index);
        return;
    }
    fail(index, now, Outcome::Other, n < 0 ? errno : EPROTO);
}

} // namespace fdsup::load
