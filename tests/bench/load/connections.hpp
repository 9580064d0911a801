// Connections: every client connection's state machine (HTTP or seqnum), non-blocking, on one epoll.
#pragma once

#include <chrono>
#include <cstdint>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "core/fd.hpp"
#include "http_response.hpp"
#include "options.hpp"
#include "results.hpp"
#include "seqnum.hpp"

namespace fdsup::load {

// A connection is closed, connecting, sending a request, awaiting its
// response (or echo), or thinking (idle between two requests, watched for
// the server closing it). After any failure, a forced reconnect or (newconn)
// each response it is closed and a new one opened on the next turn.
enum class ConnState { Closed, Connecting, Sending, Awaiting, Thinking };

struct Connection {
    UniqueFd fd;
    ConnState state = ConnState::Closed;
    bool reused = false;    // a response already completed on this socket
    bool wantWrite = false; // EPOLLOUT is registered
    size_t sent = 0;        // bytes of the request written
    Clock::time_point requestStart;
    Clock::time_point wake = Clock::time_point::max(); // the request deadline, or the end of a pause
    uint64_t queuedSeq = 0;                            // the live timer entry (0: none)
    Clock::time_point queuedAt;                        // when that entry comes due
    HttpResponseParser http;
    SeqnumStream stream;
};

// The state machine of all connections. The caller runs epoll (each
// connection registered with its index as data), passes each event to
// onEvent(), calls expire() with the time and reopen() on each turn; the
// outcomes go to results. phase() says where an ok falls.
class Connections {
public:
    Connections(const Options &options, BorrowedFd epoll, Results &results);

    void onEvent(size_t index, uint32_t events, Clock::time_point now, Phase phase);
    // Handles the timers due at now: timeouts and ends of pauses.
    void expire(Clock::time_point now);
    // Opens every connection that is closed.
    void reopen(Clock::time_point now);
    // The earliest timer, or time_point::max().
    [[nodiscard]] Clock::time_point nextTimer();
    // Whether some connection waits to be opened (poll, do not block).
    [[nodiscard]] bool reopenPending() const { return !closed_.empty(); }

private:
    struct Timer {
        Clock::time_point when;
        size_t index;
        uint64_t seq;
        bool operator>(const Timer &other) const { return when > other.when; }
    };

    void open(size_t index, Clock::time_point now);
    void close(size_t index);
    void fail(size_t index, Clock::time_point now, Outcome outcome, int error = 0);
    void failIo(size_t index, Clock::time_point now, int error, bool eof);
    void schedule(size_t index, Clock::time_point when);
    void watchWrite(size_t index, bool on);
    void startRequest(size_t index, Clock::time_point now);
    void trySend(size_t index, Clock::time_point now);
    void onConnected(size_t index, Clock::time_point now);
    void onReadable(size_t index, uint32_t events, Clock::time_point now, Phase phase);
    void onIdleReadable(size_t index, Clock::time_point now);
    // A complete response or echo: counted, then the next request (or a new connection).
    void onComplete(size_t index, uint32_t events, Clock::time_point now, Phase phase);
    void nextRequest(size_t index, Clock::time_point now);
    [[nodiscard]] std::string_view request(const Connection &c) const;
    [[nodiscard]] bool http() const { return options_.mode != Mode::Stream; }

    const Options &options_;
    BorrowedFd epoll_;
    Results &results_;
    std::string request_; // the HTTP request, the same every time
    std::vector<Connection> conns_;
    std::vector<size_t> closed_;
    std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
    uint64_t timerSeq_ = 0;
    std::mt19937_64 random_{std::random_device{}()};
    std::vector<char> buffer_ = std::vector<char>(size_t{64} * 1024);
};

} // namespace fdsup::load
