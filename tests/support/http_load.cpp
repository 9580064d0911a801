// HttpLoad: continuous HTTP/1.1 load from client threads that classify every request's outcome exactly.
#include "http_load.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/fd.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

constexpr std::size_t kMaxSamples = 10;
constexpr std::size_t kMaxHeader = std::size_t{64} * 1024;

enum class Outcome { Ok, Refused, Reset, MidResponse, Timeout, Non2xx, Other };

struct Answer {
    Outcome outcome = Outcome::Other;
    bool serverCloses = false; // Connection: close, or read to EOF
    std::string detail;
};

std::string lower(std::string text)
{
    for (char &c : text) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return text;
}

std::optional<std::size_t> headerNumber(const std::string &headers, const std::string &name)
{
    const std::size_t at = headers.find("\r\n" + name + ":");
    if (at == std::string::npos) {
        return std::nullopt;
    }
    return std::stoul(headers.substr(at + name.size() + 3));
}

Outcome failureOf(int error, bool anyByte)
{
    if (error == EAGAIN || error == EWOULDBLOCK) {
        return Outcome::Timeout;
    }
    if (error == 0 || error == ECONNRESET || error == EPIPE) {
        return anyByte ? Outcome::MidResponse : Outcome::Reset;
    }
    return Outcome::Other;
}

// Reads one answer: the head, then Content-Length bytes or (without one) to EOF.
Answer readAnswer(BorrowedFd fd)
{
    std::string data;
    std::optional<std::size_t> headEnd;
    std::optional<std::size_t> length;
    char buffer[16384];
    for (;;) {
        if (headEnd && length && data.size() >= *headEnd + *length) {
            break;
        }
        const ssize_t n = recv(fd.get(), buffer, sizeof buffer, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0 && headEnd && !length) {
            return Answer{Outcome::Ok, true, {}};
        }
        if (n <= 0) {
            const int error = n == 0 ? 0 : errno;
            return Answer{failureOf(error, !data.empty()), true,
                          (n == 0 ? std::string("EOF") : std::string(std::strerror(error))) + " after " +
                              std::to_string(data.size()) + " bytes"};
        }
        data.append(buffer, static_cast<std::size_t>(n));
        if (!headEnd) {
            const std::size_t end = data.find("\r\n\r\n");
            if (end == std::string::npos) {
                if (data.size() > kMaxHeader) {
                    return Answer{Outcome::Other, true, "header too long"};
                }
                continue;
            }
            headEnd = end + 4;
            const std::string headers = lower(data.substr(0, end + 2));
            if (headers.find("\r\ntransfer-encoding: chunked") != std::string::npos) {
                return Answer{Outcome::Other, true, "chunked answer"};
            }
            length = headerNumber(headers, "content-length");
        }
    }
    const std::string head = lower(data.substr(0, *headEnd));
    Answer answer;
    // HTTP/1.0 closes after the answer unless it says keep-alive (python's http.server).
    answer.serverCloses =
        head.find("\r\nconnection: close") != std::string::npos ||
        (head.starts_with("http/1.0") && head.find("\r\nconnection: keep-alive") == std::string::npos);
    const bool ok2xx = head.starts_with("http/1.1 2") || head.starts_with("http/1.0 2");
    answer.outcome = ok2xx ? Outcome::Ok : Outcome::Non2xx;
    if (!ok2xx) {
        answer.detail = data.substr(0, data.find("\r\n"));
    }
    return answer;
}

// Reads the answer of a RawExchange: exactly as many bytes as the expected reply.
Answer readRawAnswer(BorrowedFd fd, const std::string &reply)
{
    std::string data;
    char buffer[4096];
    while (data.size() < reply.size()) {
        const ssize_t n = recv(fd.get(), buffer, std::min(sizeof buffer, reply.size() - data.size()), 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            const int error = n == 0 ? 0 : errno;
            return Answer{failureOf(error, !data.empty()), true,
                          (n == 0 ? std::string("EOF") : std::string(std::strerror(error))) + " after " +
                              std::to_string(data.size()) + " bytes"};
        }
        data.append(buffer, static_cast<std::size_t>(n));
    }
    if (data != reply) {
        return Answer{Outcome::Non2xx, true, "wrong answer: " + data};
    }
    return Answer{Outcome::Ok, false, {}};
}

void setTimeouts(BorrowedFd fd, std::chrono::milliseconds timeout)
{
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    (void)setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

std::pair<UniqueFd, int> connectUnix(const std::string &path, std::chrono::milliseconds timeout)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    if (!fd || path.size() >= sizeof addr.sun_path) {
        return {UniqueFd(), fd ? ENAMETOOLONG : errno};
    }
    setTimeouts(fd.borrow(), timeout);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.data(), path.size());
    if (connect(fd.get(), reinterpret_cast<const sockaddr *>(&addr), sizeof addr) != 0) {
        return {UniqueFd(), errno};
    }
    return {std::move(fd), 0};
}

std::pair<UniqueFd, int> connectTo(int port, std::chrono::milliseconds timeout)
{
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) {
        return {UniqueFd(), errno};
    }
    setTimeouts(fd.borrow(), timeout);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd.get(), reinterpret_cast<const sockaddr *>(&addr), sizeof addr) != 0) {
        return {UniqueFd(), errno};
    }
    return {std::move(fd), 0};
}

} // namespace

bool answersOk(int port, std::chrono::milliseconds timeout)
{
    auto [fd, error] = connectTo(port, timeout);
    if (!fd) {
        return false;
    }
    const std::string_view request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
        return false;
    }
    return readAnswer(fd.borrow()).outcome == Outcome::Ok;
}

std::string HttpLoadReport::summary() const
{
    std::string text = "requests " + std::to_string(requests) + ": ok " + std::to_string(ok) + ", refused " +
                       std::to_string(refused) + ", reset-fresh " + std::to_string(resetFresh) +
                       ", keepalive-race " + std::to_string(keepAliveRace) + ", mid-response " +
                       std::to_string(midResponse) + ", timeout " + std::to_string(timeout) + ", non-2xx " +
                       std::to_string(non2xx) + ", other " + std::to_string(otherError);
    for (const auto &sample : samples) {
        text += "\n  " + sample;
    }
    return text;
}

HttpLoad::HttpLoad(int port, int clients, Mode mode, std::chrono::milliseconds requestTimeout)
    : HttpLoad(LoadTarget{port, {}}, clients, mode, requestTimeout)
{}

HttpLoad::HttpLoad(LoadTarget target, int clients, Mode mode, std::chrono::milliseconds requestTimeout,
                   std::optional<RawExchange> raw)
    : target_(std::move(target)), raw_(std::move(raw)), clients_(clients), mode_(mode),
      timeout_(requestTimeout)
{}

HttpLoad::~HttpLoad()
{
    stop_ = true;
    for (auto &thread : threads_) {
        if (thread.joinable()) {
            thread.join();
        }
    }
}

void HttpLoad::start()
{
    started_ = std::chrono::steady_clock::now();
    for (int i = 0; i < clients_; ++i) {
        threads_.emplace_back([this] { run(); });
    }
}

bool HttpLoad::waitForRequests(std::size_t since, std::size_t n, std::chrono::milliseconds deadline)
{
    return waitUntil([&] { return requests_.load() >= since + n; }, deadline);
}

HttpLoadReport HttpLoad::stop()
{
    stop_ = true;
    for (auto &thread : threads_) {
        thread.join();
    }
    threads_.clear();
    const std::lock_guard lock(mutex_);
    return report_;
}

void HttpLoad::record(HttpLoadReport &local, std::size_t HttpLoadReport::*counter, const std::string &sample)
{
    ++(local.*counter);
    ++local.requests;
    if (!sample.empty() && local.samples.size() < kMaxSamples) {
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::steady_clock::now() - started_);
        local.samples.push_back("at " + std::to_string(ms.count()) + " ms: " + sample);
    }
    requests_.fetch_add(1);
}

void HttpLoad::run()
{
    const bool keepAlive = mode_ == Mode::KeepAlive;
    const std::string request = raw_ ? raw_->request
                                     : std::string("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n") +
                                           (keepAlive ? "" : "Connection: close\r\n") + "\r\n";
    HttpLoadReport local;
    UniqueFd connection;
    std::size_t served = 0; // answers on this connection so far
    while (!stop_) {
        if (!connection) {
            auto [fd, error] = target_.unixPath.empty() ? connectTo(target_.port, timeout_)
                                                        : connectUnix(target_.unixPath, timeout_);
            if (!fd) {
                record(local, error == ECONNREFUSED ? &HttpLoadReport::refused : &HttpLoadReport::otherError,
                       std::string("connect: ") + std::strerror(error));
                continue;
            }
            connection = std::move(fd);
            served = 0;
        }
        const bool reused = served > 0;
        Answer answer;
        if (send(connection.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
            static_cast<ssize_t>(request.size())) {
            answer = Answer{failureOf(errno, false), true, std::string("send: ") + std::strerror(errno)};
        } else {
            answer = raw_ ? readRawAnswer(connection.borrow(), raw_->reply) : readAnswer(connection.borrow());
        }
        const std::string where =
            reused ? " (reused connection, answer " + std::to_string(served + 1) + ")" : " (new connection)";
        switch (answer.outcome) {
        case Outcome::Ok:
            record(local, &HttpLoadReport::ok, {});
            break;
        case Outcome::Reset:
            record(local, reused ? &HttpLoadReport::keepAliveRace : &HttpLoadReport::resetFresh,
                   "no answer: " + answer.detail + where);
            break;
        case Outcome::MidResponse:
            record(local, &HttpLoadReport::midResponse, "cut answer: " + answer.detail + where);
            break;
        case Outcome::Timeout:
            record(local, &HttpLoadReport::timeout, "timeout: " + answer.detail + where);
            break;
        case Outcome::Non2xx:
            record(local, &HttpLoadReport::non2xx, answer.detail + where);
            break;
        case Outcome::Refused:
        case Outcome::Other:
            record(local, &HttpLoadReport::otherError, answer.detail + where);
            break;
        }
        ++served;
        if (!keepAlive || answer.serverCloses || answer.outcome != Outcome::Ok) {
            connection.reset();
        }
    }
    const std::lock_guard lock(mutex_);
    report_.requests += local.requests;
    report_.ok += local.ok;
    report_.refused += local.refused;
    report_.resetFresh += local.resetFresh;
    report_.keepAliveRace += local.keepAliveRace;
    report_.midResponse += local.midResponse;
    report_.timeout += local.timeout;
    report_.non2xx += local.non2xx;
    report_.otherError += local.otherError;
    for (auto &sample : local.samples) {
        if (report_.samples.size() < kMaxSamples) {
            report_.samples.push_back(std::move(sample));
        }
    }
}

} // namespace fdsup::test
