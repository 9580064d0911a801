// The metrics endpoint: one HTTP/1.1 request per connection on the event loop, answered from a render
// function.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/address.hpp"
#include "common/result.hpp"
#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "io/unix_listener.hpp"

namespace fdsup {

// Contract: never blocks the loop. Every connection is non-blocking and
// bounded: kMaxRequest bytes of request line and headers (431 past it),
// kDeadline from accept to the last byte sent (a client that is slow to send
// or to read is closed then), kMaxClients at once (one more is closed at
// once, unanswered). Each connection gets exactly one response and
// `Connection: close`; its request is parsed by parseHttpRequest() (pure).
// GET or HEAD of /metrics or / is answered 200 with render()'s text as
// `text/plain; version=0.0.4` (the Prometheus text format); other requests
// get 400/404/405/414/431/505 with a one-line reason. The limits are
// documented in docs/metrics.md.
class MetricsServer {
public:
    using Render = std::function<std::string()>;
    static constexpr std::size_t kMaxRequest = 8192;
    static constexpr unsigned kMaxClients = 16;
    static constexpr Duration kDeadline = std::chrono::seconds(10);
    static constexpr const char *kContentType = "text/plain; version=0.0.4; charset=utf-8";

    // Binds and listens: a unix socket file (mode 0666, like a loopback
    // port: any local user may scrape; a stale socket file is replaced) or a
    // tcp address with SO_REUSEADDR. The error names the address.
    static Result<UniqueFd> bind(const Address &address);
    // Serves a listening socket bound at `address` (by bind(), or by this
    // fdsupd before a re-exec). A unix socket's file is removed with the server.
    static Result<std::unique_ptr<MetricsServer>> serve(EventLoop &loop, UniqueFd listener,
                                                        const Address &address, Render render);
    ~MetricsServer();
    MetricsServer(const MetricsServer &) = delete;
    MetricsServer &operator=(const MetricsServer &) = delete;

    [[nodiscard]] const Address &address() const { return address_; }
    [[nodiscard]] BorrowedFd listener() const { return listener_->fd(); }
    [[nodiscard]] std::size_t clients() const { return connections_.size(); }

private:
    struct Connection;
    MetricsServer(EventLoop &loop, Address address, Render render);
    void accept(UniqueFd fd);
    void onIo(std::uint64_t id, std::uint32_t revents);
    // Reads what is there; false when the connection is to be closed.
    bool readRequest(Connection &c);
    void respond(Connection &c, int status, const std::string &reason, bool head);
    // Sends what is left; false when the connection is to be closed.
    bool flush(Connection &c);
    void close(std::uint64_t id);

    EventLoop &loop_;
    Address address_;
    Render render_;
    std::unique_ptr<UnixListener> listener_;
    std::map<std::uint64_t, std::unique_ptr<Connection>> connections_;
    std::uint64_t nextId_ = 1;
};

} // namespace fdsup
