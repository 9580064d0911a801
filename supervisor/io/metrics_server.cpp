// The metrics endpoint: accepting, reading one request, answering it, closing.
#include "io/metrics_server.hpp"

#include <array>
#include <cerrno>
#include <utility>

#include <sys/epoll.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include "common/socket.hpp"
#include "io/http_request.hpp"

namespace fdsup {

struct MetricsServer::Connection {
    UniqueFd fd;
    EventSource io;
    Timer deadline;
    std::string in;
    std::string out;
    std::size_t sent = 0;
    bool responding = false; // the response is being sent
    bool lingering = false;  // sent and shut down: reading until EOF so unread bytes cause no reset
};

Result<UniqueFd> MetricsServer::bind(const Address &address)
{
    SocketOptions options;
    if (address.isInet()) {
        options.reuseAddress = true;
    } else if (!address.abstract) {
        options.mode = 0666;
    }
    auto fds = bindAll(address, options);
    if (!fds) {
        return Error{fds.error().code, "Failed to bind the metrics endpoint: " + fds.error().message};
    }
    if (fds->size() != 1) {
        return Error{EINVAL, "Failed to bind the metrics endpoint: " + formatAddress(address) + " gave " +
                                 std::to_string(fds->size()) + " sockets, not one"};
    }
    return std::move(fds->front());
}

MetricsServer::MetricsServer(EventLoop &loop, Address address, Render render)
    : loop_(loop), address_(std::move(address)), render_(std::move(render))
{}

MetricsServer::~MetricsServer() = default;

Result<std::unique_ptr<MetricsServer>> MetricsServer::serve(EventLoop &loop, UniqueFd listener,
                                                            const Address &address, Render render)
{
    std::unique_ptr<MetricsServer> server(new MetricsServer(loop, address, std::move(render)));
    auto onAccept = [s = server.get()](UniqueFd fd) {
        s->accept(std::move(fd));
    };
    auto watched = address.isUnix() && !address.abstract
                       ? UnixListener::adoptOwned(loop, std::move(listener), formatAddress(address),
                                                  "a metrics connection", onAccept)
                       : UnixListener::adopt(loop, std::move(listener), "a metrics connection", onAccept);
    if (!watched) {
        return Error{watched.error().code,
                     "Failed to serve metrics on " + formatAddress(address) + ": " + watched.error().message};
    }
    server->listener_ = std::move(*watched);
    return server;
}

void MetricsServer::accept(UniqueFd fd)
{
    if (connections_.size() >= kMaxClients) {
        spdlog::debug("Closing a metrics connection at once: {} are open (the limit)", connections_.size());
        return;
    }
    const std::uint64_t id = nextId_++;
    auto c = std::make_unique<Connection>();
    c->fd = std::move(fd);
    auto io = loop_.addIo(c->fd.borrow(), EPOLLIN | EPOLLRDHUP,
                          [this, id](std::uint32_t revents) { onIo(id, revents); });
    auto deadline = loop_.startTimer(kDeadline, [this, id] { close(id); });
    if (!io || !deadline) {
        spdlog::warn("Failed to watch a metrics connection: {}",
                     (!io ? io.error() : deadline.error()).message);
        return;
    }
    c->io = std::move(*io);
    c->deadline = std::move(*deadline);
    connections_.emplace(id, std::move(c));
}

void MetricsServer::onIo(std::uint64_t id, std::uint32_t revents)
{
    const auto found = connections_.find(id);
    if (found == connections_.end()) {
        return;
    }
    Connection &c = *found->second;
    bool keep = true;
    if (c.responding) {
        keep = (revents & (EPOLLERR | EPOLLHUP)) == 0 && flush(c);
    } else {
        keep = readRequest(c);
    }
    if (!keep) {
        close(id);
    }
}

bool MetricsServer::readRequest(Connection &c)
{
    std::array<char, 4096> buffer{};
    for (;;) {
        const ssize_t n = recv(c.fd.get(), buffer.data(), buffer.size(), MSG_DONTWAIT);
        if (n < 0) {
            return errno == EAGAIN || errno == EINTR;
        }
        if (n == 0) {
            return false; // gone (or, lingering, done)
        }
        if (c.lingering) {
            continue; // what it sends after the response is discarded
        }
        c.in.append(buffer.data(), static_cast<std::size_t>(n));
        const HttpParse parse = parseHttpRequest(c.in, kMaxRequest);
        if (parse.kind == HttpParse::Kind::Incomplete) {
            continue;
        }
        if (parse.kind == HttpParse::Kind::Error) {
            respond(c, parse.status, parse.reason, false);
        } else {
            respond(c, routeMetricsRequest(parse.request), "", parse.request.method == "HEAD");
        }
        return flush(c);
    }
}

void MetricsServer::respond(Connection &c, int status, const std::string &reason, bool head)
{
    c.responding = true;
    c.in.clear();
    if (status == 200) {
        c.out = httpResponse(status, kContentType, render_(), head);
        return;
    }
    std::string body = reason;
    if (body.empty()) {
        body = status == 404 ? "not found: the metrics are at /metrics" : "only GET and HEAD are served";
    }
    c.out = httpResponse(status, "text/plain; charset=utf-8", body + "\n", head);
}

bool MetricsServer::flush(Connection &c)
{
    while (c.sent < c.out.size()) {
        const ssize_t n =
            send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                return c.io.setIoEvents(EPOLLOUT) >= 0;
            }
            return false;
        }
        c.sent += static_cast<std::size_t>(n);
    }
    // Everything sent: half-close, then read until the client closes, so
    // that request bytes left unread do not turn our close into a reset
    // that could discard the response before the client read it.
    (void)shutdown(c.fd.get(), SHUT_WR);
    c.responding = false;
    c.lingering = true;
    c.out.clear();
    return c.io.setIoEvents(EPOLLIN | EPOLLRDHUP) >= 0;
}

void MetricsServer::close(std::uint64_t id)
{
    connections_.erase(id);
}

} // namespace fdsup
