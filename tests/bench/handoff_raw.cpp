// handoff-bench's denominator: connected sockets passed between two processes, no supervisor.
#include "handoff_raw.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fdsup::bench {
namespace {

constexpr int kPerMessage = 253; // SCM_MAX_FD

std::int64_t nowNs()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

bool readExact(int fd, void *data, std::size_t size)
{
    auto *p = static_cast<char *>(data);
    while (size > 0) {
        const ssize_t n = read(fd, p, size);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

bool writeExact(int fd, const void *data, std::size_t size)
{
    return write(fd, data, size) == static_cast<ssize_t>(size);
}

[[noreturn]] void die(const char *what)
{
    (void)std::fprintf(stderr, "handoff-bench raw: %s: %s\n", what, std::strerror(errno));
    _exit(1);
}

// The receiver: says it is ready, receives n descriptors, answers the time it had them all.
[[noreturn]] void receiver(int sock, int n)
{
    if (!writeExact(sock, "r", 1)) {
        die("ready");
    }
    std::vector<int> received;
    received.reserve(static_cast<std::size_t>(n));
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kPerMessage)];
    while (static_cast<int>(received.size()) < n) {
        char byte = 0;
        iovec iov{&byte, 1};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        const ssize_t r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0 || (msg.msg_flags & MSG_CTRUNC) != 0) {
            die("recvmsg");
        }
        for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                const auto *fds = reinterpret_cast<const int *>(CMSG_DATA(c));
                received.insert(received.end(), fds, fds + count);
            }
        }
    }
    const std::int64_t done = nowNs();
    if (!writeExact(sock, &done, sizeof done)) {
        die("answer");
    }
    _exit(0); // the kernel closes what was received: not timed
}

// The clients: n connections to port, held until `hold` reads EOF.
[[noreturn]] void clients(int port, int n, int ready, int hold)
{
    std::vector<int> fds;
    for (int i = 0; i < n; ++i) {
        const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || connect(fd, reinterpret_cast<const sockaddr *>(&a), sizeof a) < 0) {
            die("connect");
        }
        fds.push_back(fd);
    }
    if (!writeExact(ready, "c", 1)) {
        die("ready");
    }
    char byte = 0;
    (void)readExact(hold, &byte, 1); // EOF: the helper is done
    _exit(0);
}

pid_t forkOrThrow()
{
    const pid_t pid = fork();
    if (pid < 0) {
        throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    }
    return pid;
}

bool reaped(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            return false;
        }
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Sends fds 253 per message; false on an error.
bool sendAll(int sock, const std::vector<UniqueFd> &fds)
{
    std::vector<int> raw;
    raw.reserve(fds.size());
    for (const auto &fd : fds) {
        raw.push_back(fd.get());
    }
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kPerMessage)];
    for (std::size_t at = 0; at < raw.size(); at += kPerMessage) {
        const std::size_t count = std::min<std::size_t>(kPerMessage, raw.size() - at);
        char byte = 'f';
        iovec iov{&byte, 1};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * count);
        cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * count);
        std::memcpy(CMSG_DATA(c), raw.data() + at, sizeof(int) * count);
        ssize_t r = 0;
        do {
            r = sendmsg(sock, &msg, MSG_NOSIGNAL);
        } while (r < 0 && errno == EINTR);
        if (r != 1) {
            return false;
        }
    }
    return true;
}

// One measurement in the helper; a negative rate when it failed (why on stderr).
double measureOnce(int n, int control)
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
        return -1;
    }
    UniqueFd ours(pair[0]);
    UniqueFd theirs(pair[1]);
    const pid_t recvPid = forkOrThrow();
    if (recvPid == 0) {
        (void)close(control);
        ours.reset();
        receiver(theirs.get(), n);
    }
    theirs.reset();
    UniqueFd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof a;
    if (!listener || bind(listener.get(), reinterpret_cast<const sockaddr *>(&a), sizeof a) < 0 ||
        listen(listener.get(), 4096) < 0 ||
        getsockname(listener.get(), reinterpret_cast<sockaddr *>(&a), &length) < 0) {
        die("listener");
    }
    int ready[2];
    int hold[2];
    if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(hold, O_CLOEXEC) < 0) {
        die("pipe");
    }
    const pid_t clientPid = forkOrThrow();
    if (clientPid == 0) {
        (void)close(control);
        ours.reset();
        listener.reset();
        (void)close(hold[1]);
        clients(ntohs(a.sin_port), n, ready[1], hold[0]);
    }
    (void)close(ready[1]);
    (void)close(hold[0]);
    std::vector<UniqueFd> accepted;
    accepted.reserve(static_cast<std::size_t>(n));
    while (static_cast<int>(accepted.size()) < n) {
        UniqueFd fd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!fd && errno != EINTR) {
            die("accept");
        }
        if (fd) {
            accepted.push_back(std::move(fd));
        }
    }
    char byte = 0;
    bool ok = readExact(ready[0], &byte, 1) && readExact(ours.get(), &byte, 1);
    const std::int64_t t0 = nowNs();
    std::int64_t t1 = 0;
    ok = ok && sendAll(ours.get(), accepted) && readExact(ours.get(), &t1, sizeof t1);
    accepted.clear();
    (void)close(hold[1]);
    (void)close(ready[0]);
    ours.reset();
    ok = reaped(recvPid) && ok;
    ok = reaped(clientPid) && ok;
    return ok && t1 > t0 ? n / (static_cast<double>(t1 - t0) / 1e9) : -1;
}

[[noreturn]] void helperMain(int control)
{
    for (;;) {
        std::int32_t n = 0;
        if (!readExact(control, &n, sizeof n) || n <= 0) {
            _exit(0);
        }
        double rate = -1;
        try {
            rate = measureOnce(n, control);
        } catch (const std::exception &e) {
            (void)std::fprintf(stderr, "handoff-bench raw: %s\n", e.what());
        }
        if (!writeExact(control, &rate, sizeof rate)) {
            _exit(1);
        }
    }
}

} // namespace

RawHandoff::RawHandoff()
{
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) < 0) {
        throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
    }
    UniqueFd ours(pair[0]);
    UniqueFd theirs(pair[1]);
    pid_ = forkOrThrow();
    if (pid_ == 0) {
        ours.reset();
        helperMain(theirs.get());
    }
    control_ = std::move(ours);
}

RawHandoff::~RawHandoff()
{
    control_.reset(); // EOF: the helper exits
    if (pid_ > 0) {
        (void)reaped(pid_);
    }
}

double RawHandoff::measure(int n)
{
    const std::int32_t request = n;
    double rate = -1;
    if (!writeExact(control_.get(), &request, sizeof request) ||
        !readExact(control_.get(), &rate, sizeof rate) || rate <= 0) {
        throw std::runtime_error("the raw measurement of " + std::to_string(n) +
                                 " sockets failed (see above)");
    }
    return rate;
}

} // namespace fdsup::bench
