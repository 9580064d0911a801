// HttpLoad: continuous HTTP/1.1 load from client threads that classify every request's outcome exactly.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace fdsup::test {

// What the clients saw, request by request. requests == the sum of the rest.
struct HttpLoadReport {
    std::size_t requests = 0;
    std::size_t ok = 0;               // a complete 2xx answer
    std::size_t refused = 0;          // connect() refused: nobody listened
    std::size_t resetFresh = 0;       // reset or EOF before any byte of the answer, on a new connection
    std::size_t keepAliveRace = 0;    // the same on a reused keep-alive connection: the server closed
                                      // it as idle while the request was on its way (safe to replay)
    std::size_t midResponse = 0;      // reset or EOF after part of the answer
    std::size_t timeout = 0;          // no complete answer within the request timeout
    std::size_t non2xx = 0;           // a complete answer whose status is not 2xx
    std::size_t otherError = 0;       // anything else (a malformed answer, another connect error)
    std::vector<std::string> samples; // the first failures, one line each, with when (since start())

    // Every failure but the keep-alive race.
    [[nodiscard]] std::size_t failed() const
    {
        return resetFresh + midResponse + timeout + non2xx + otherError;
    }
    // "requests 812: ok 812, refused 0, reset-fresh 0, keepalive-race 0, ..."
    [[nodiscard]] std::string summary() const;
};

// One GET / on a new connection to 127.0.0.1:port: whether a complete 2xx answer came.
bool answersOk(int port, std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Where the clients connect: 127.0.0.1:port, or a unix stream socket's path when unixPath is set.
struct LoadTarget {
    int port = 0;
    std::string unixPath;
};

// A protocol other than HTTP: each request is `request`, and the answer must
// be exactly `reply` (e.g. RESP's "PING\r\n" -> "+PONG\r\n"); anything else
// is counted as non2xx (a wrong answer). The server keeps the connection.
struct RawExchange {
    std::string request;
    std::string reply;
};

// Clients sending GET / to 127.0.0.1:port from start() until stop(), each
// in its own thread. Mode::Fresh opens a new connection per request (and
// sends Connection: close); Mode::KeepAlive reuses its connection until the
// server closes it or a request fails, then opens a new one. A failed
// request is counted, never retried. Answers are read by Content-Length (or
// to EOF for Connection: close without one); chunked answers are refused as
// otherError (the test servers send lengths).
class HttpLoad {
public:
    enum class Mode { Fresh, KeepAlive };
    HttpLoad(int port, int clients, Mode mode,
             std::chrono::milliseconds requestTimeout = std::chrono::seconds(5));
    // The same load on another target, and with `raw`, another protocol.
    HttpLoad(LoadTarget target, int clients, Mode mode, std::chrono::milliseconds requestTimeout,
             std::optional<RawExchange> raw = std::nullopt);
    ~HttpLoad();
    HttpLoad(const HttpLoad &) = delete;
    HttpLoad &operator=(const HttpLoad &) = delete;

    void start();
    // Requests finished so far (any outcome).
    [[nodiscard]] std::size_t requests() const { return requests_.load(); }
    // Waits until n more requests finished after `since` (a requests() value); false at the deadline.
    bool waitForRequests(std::size_t since, std::size_t n, std::chrono::milliseconds deadline);
    HttpLoadReport stop();

private:
    void run();
    void record(HttpLoadReport &local, std::size_t HttpLoadReport::*counter, const std::string &sample);

    LoadTarget target_;
    std::optional<RawExchange> raw_;
    int clients_;
    Mode mode_;
    std::chrono::milliseconds timeout_;
    std::atomic<bool> stop_{false};
    std::atomic<std::size_t> requests_{0};
    std::vector<std::thread> threads_;
    std::mutex mutex_;
    HttpLoadReport report_;
    std::chrono::steady_clock::time_point started_;
};

} // namespace fdsup::test
