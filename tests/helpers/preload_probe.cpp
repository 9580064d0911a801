// preload-probe: calls the interposed functions straight from C, checks errno and the per-process views,
// prints one line per check.
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {

constexpr int kSentinel = 4242; // errno before each call that succeeds
int failures = 0;

void check(const char *what, bool ok)
{
    (void)std::printf("%s %s (errno %d)\n", ok ? "ok" : "FAIL", what, errno);
    failures += ok ? 0 : 1;
    errno = kSentinel;
}

bool nonBlocking(int fd)
{
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

// "race PORT": eight forked children poll() the claimed socket with a
// non-blocking view and accept as soon as it is readable, all woken by each
// connection: the tightest race for the shim's accept.
int race(int fd)
{
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) {
        return 1;
    }
    for (int i = 0; i < 8; ++i) {
        if (fork() == 0) {
            (void)std::printf("child %d\n", static_cast<int>(getpid()));
            (void)std::fflush(stdout);
            for (;;) {
                pollfd p{fd, POLLIN, 0};
                (void)poll(&p, 1, -1);
                int conn = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
                if (conn >= 0) {
                    (void)!write(conn, "raced\n", 6);
                    close(conn);
                }
            }
        }
    }
    pause();
    return 0;
}

// "epoll PORT": an event loop on epoll (level-triggered, non-blocking
// view) that accepts and keeps every connection open, so that a drain waits.
int epollLoop(int fd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (ep < 0 || fcntl(fd, F_SETFL, O_NONBLOCK) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        return 1;
    }
    (void)std::printf("epoll %d listener %d\n", ep, fd);
    (void)std::fflush(stdout);
    for (;;) {
        epoll_event got{};
        if (epoll_wait(ep, &got, 1, -1) == 1 && accept4(fd, nullptr, nullptr, SOCK_CLOEXEC) >= 0) {
            (void)std::printf("accepted\n");
            (void)std::fflush(stdout);
        }
    }
}

// "fclose PORT": serves one connection, closing it with fclose(), which
// closes inside libc without the interposed close(); then waits for signals.
int fcloseOne(int fd)
{
    int conn = accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
    FILE *file = conn < 0 ? nullptr : fdopen(conn, "r+");
    if (file == nullptr) {
        return 1;
    }
    (void)std::printf("accepted\n");
    (void)std::fflush(stdout);
    char line[64];
    if (std::fgets(line, sizeof(line), file) != nullptr) {
        (void)std::fputs("bye\n", file);
    }
    (void)std::fclose(file);
    (void)std::printf("fclosed\n");
    (void)std::fflush(stdout);
    for (;;) {
        pause();
    }
}

} // namespace

int main(int argc, char **argv)
{
    std::string_view mode = argc == 3 ? argv[1] : "";
    if (mode == "race" || mode == "epoll" || mode == "fclose") {
        ++argv;
    } else if (argc != 2) {
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[1])));
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!mode.empty()) {
        if (bind(fd, reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) < 0) {
            return 1;
        }
        if (mode == "race") {
            return race(fd);
        }
        return mode == "epoll" ? epollLoop(fd) : fcloseOne(fd);
    }
    int value = 4096;
    errno = kSentinel;
    check("bind claims the listener",
          bind(fd, reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) == 0 && errno == kSentinel);
    check("listen is a no-op", listen(fd, 1) == 0 && errno == kSentinel);
    check("setsockopt is ignored",
          setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &value, sizeof(value)) == 0 && errno == kSentinel);
    check("shutdown is not passed on", shutdown(fd, SHUT_RDWR) == 0 && errno == kSentinel);
    check("the view starts blocking", !nonBlocking(fd) && errno == kSentinel);
    check("F_SETFL sets the view",
          fcntl(fd, F_SETFL, O_NONBLOCK) == 0 && nonBlocking(fd) && errno == kSentinel);
    check("a non-blocking accept without a connection fails with EAGAIN at once",
          accept4(fd, nullptr, nullptr, SOCK_CLOEXEC) < 0 && errno == EAGAIN);
    int off = 0;
    check("FIONBIO sets the view", ioctl(fd, FIONBIO, &off) == 0 && !nonBlocking(fd) && errno == kSentinel);
    int copy = dup(fd);
    check("a dup is a claim with the same view", copy >= 0 && !nonBlocking(copy) && errno == kSentinel);
    (void)std::printf("waiting\n");
    (void)std::fflush(stdout);
    errno = kSentinel;
    int conn = accept4(copy, nullptr, nullptr, SOCK_CLOEXEC);
    check("a blocking accept on the dup waits for the connection", conn >= 0 && errno == kSentinel);
    check("the connection works", write(conn, "probe\n", 6) == 6 && close(conn) == 0);
    check("close drops the app's fds only", close(copy) == 0 && close(fd) == 0 && errno == kSentinel);
    check("close_range skips the shim's fds", close_range(3, ~0U, 0) == 0 && errno == kSentinel);
    (void)std::printf("done, %d failure(s)\n", failures);
    return failures == 0 ? 0 : 1;
}
