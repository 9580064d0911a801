// Servers run with the preload shim and listeners passed as fds 3.. (systemd's protocol), and small clients
// for them.
#include "shim_process.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_support.hpp"

namespace fdsup::test {

namespace {

[[noreturn]] void fail(const char *what)
{
    throw std::system_error(errno, std::generic_category(), what);
}

// In the child between fork and exec: "LISTEN_PID=<pid>" into buf, async-signal-safe.
void formatListenPid(char *buf, std::size_t size)
{
    const char prefix[] = "LISTEN_PID=";
    std::memcpy(buf, prefix, sizeof(prefix) - 1);
    char digits[16];
    int n = 0;
    for (pid_t p = getpid(); p > 0 && n < 15; p /= 10) {
        digits[n++] = static_cast<char>('0' + p % 10);
    }
    std::size_t at = sizeof(prefix) - 1;
    while (n > 0 && at + 1 < size) {
        buf[at++] = digits[--n];
    }
    buf[at] = '\0';
}

} // namespace

TestListener tcpListener(int backlog, bool ipv6)
{
    TestListener l;
    l.fd = UniqueFd(socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!l.fd) {
        fail("socket");
    }
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (ipv6) {
        auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
        sin6->sin6_family = AF_INET6;
        sin6->sin6_addr = in6addr_loopback;
        len = sizeof(*sin6);
    } else {
        auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*sin);
    }
    if (bind(l.fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0 || listen(l.fd.get(), backlog) < 0) {
        fail("bind/listen");
    }
    len = sizeof(ss);
    getsockname(l.fd.get(), reinterpret_cast<sockaddr *>(&ss), &len);
    l.port = ntohs(ipv6 ? reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port
                        : reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
    return l;
}

TestListener unixListener(const std::filesystem::path &path, int backlog)
{
    TestListener l;
    l.fd = UniqueFd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
    if (!l.fd || bind(l.fd.get(), reinterpret_cast<sockaddr *>(&sun), sizeof(sun)) < 0 ||
        listen(l.fd.get(), backlog) < 0) {
        fail("unix listener");
    }
    return l;
}

ListenQueue listenQueue(std::uint16_t port)
{
    auto r = runProcess({"/usr/bin/ss", "-Hltn", "sport = :" + std::to_string(port)});
    // State Recv-Q Send-Q Local Peer: for a listener Send-Q is the backlog.
    char state[32] = {};
    int recvQ = -1;
    int sendQ = -1;
    if (std::sscanf(r.out.c_str(), "%31s %d %d", state, &recvQ, &sendQ) != 3) {
        return {};
    }
    return {recvQ, sendQ};
}

ShimProcess::ShimProcess(const std::vector<std::string> &argv, const ShimOptions &options,
                         std::filesystem::path logPath)
    : logPath_(std::move(logPath))
{
    std::vector<std::string> envStrings;
    for (char **e = environ; *e != nullptr; ++e) {
        std::string_view entry(*e);
        if (!entry.starts_with("LD_PRELOAD=") && !entry.starts_with("LISTEN_") &&
            !entry.starts_with("FDSUP_PRELOAD")) {
            envStrings.emplace_back(entry);
        }
    }
    if (options.preload) {
        envStrings.push_back("LD_PRELOAD=" + requireEnv("FDSUP_TEST_PRELOAD"));
    }
    if (options.debug) {
        envStrings.emplace_back("FDSUP_PRELOAD_DEBUG=1");
    }
    envStrings.insert(envStrings.end(), options.env.begin(), options.env.end());
    if (!options.listeners.empty()) {
        envStrings.push_back("LISTEN_FDS=" + std::to_string(options.listeners.size()));
        envStrings.emplace_back(32, '\0'); // LISTEN_PID, written in the child
    }
    std::vector<std::string> argStrings = argv;
    auto args = pointersTo(argStrings);
    auto envp = pointersTo(envStrings);
    char *listenPid = options.listeners.empty() ? nullptr : envp[envp.size() - 2];
    UniqueFd log(open(logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    UniqueFd devNull(open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!log || !devNull) {
        fail("open log");
    }
    // Moved above every target first, so laying out 3.. never overwrites a source.
    std::vector<UniqueFd> high;
    for (int fd : options.listeners) {
        high.emplace_back(fcntl(fd, F_DUPFD_CLOEXEC, 100));
    }
    pid_ = fork();
    if (pid_ < 0) {
        fail("fork");
    }
    if (pid_ == 0) {
        setpgid(0, 0);
        dup2(devNull.get(), 0);
        dup2(log.get(), 1);
        dup2(log.get(), 2);
        for (std::size_t i = 0; i < high.size(); ++i) {
            dup2(high[i].get(), 3 + static_cast<int>(i));
        }
        if (listenPid != nullptr) {
            formatListenPid(listenPid, 32);
        }
        execve(args[0], args.data(), envp.data());
        _exit(127);
    }
    setpgid(pid_, pid_);
    pidfd_ = UniqueFd(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
}

ShimProcess::~ShimProcess()
{
    if (pid_ > 0) {
        kill(-pid_, SIGKILL);
        if (!status_) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
}

void ShimProcess::signal(int sig) const
{
    kill(pid_, sig);
}

void ShimProcess::signalGroup(int sig) const
{
    kill(-pid_, sig);
}

std::optional<int> ShimProcess::wait(std::chrono::milliseconds deadline)
{
    if (status_) {
        return status_;
    }
    pollfd p{pidfd_.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(deadline.count())) <= 0) {
        return std::nullopt;
    }
    int status = 0;
    if (waitpid(pid_, &status, 0) == pid_) {
        status_ = status;
    }
    return status_;
}

std::string ShimProcess::log() const
{
    return readFile(logPath_);
}

bool ShimProcess::waitForLog(const std::string &text, std::chrono::milliseconds deadline)
{
    return waitUntil([&] { return log().find(text) != std::string::npos; }, deadline);
}

UniqueFd connectTcp(std::uint16_t port)
{
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!fd || connect(fd.get(), reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) < 0) {
        return {};
    }
    return fd;
}

UniqueFd connectUnix(const std::filesystem::path &path)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::strncpy(sun.sun_path, path.c_str(), sizeof(sun.sun_path) - 1);
    if (!fd || connect(fd.get(), reinterpret_cast<sockaddr *>(&sun), sizeof(sun)) < 0) {
        return {};
    }
    return fd;
}

void sendAll(BorrowedFd fd, std::string_view data)
{
    while (!data.empty()) {
        ssize_t n = send(fd.get(), data.data(), data.size(), MSG_NOSIGNAL);
        if (n <= 0) {
            return;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
}

std::string readAll(BorrowedFd fd, std::chrono::milliseconds deadline)
{
    std::string out;
    auto end = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        pollfd p{fd.get(), POLLIN, 0};
        if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) {
            return out;
        }
        char buf[4096];
        ssize_t n = read(fd.get(), buf, sizeof(buf));
        if (n <= 0) {
            return out;
        }
        out.append(buf, static_cast<std::size_t>(n));
    }
}

std::unique_ptr<ShimProcess> PreloadTest::run(const std::vector<std::string> &argv, const TestListener &l,
                                              std::vector<std::string> env, const std::string &name)
{
    ShimOptions options;
    options.listeners = {l.fd.get()};
    options.env = std::move(env);
    return std::make_unique<ShimProcess>(argv, options, logPath(name));
}

UniqueFd PreloadTest::acceptOwn(const TestListener &l)
{
    pollfd p{l.fd.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::chrono::milliseconds(kEventDeadline).count())) <= 0) {
        return {};
    }
    return UniqueFd(accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
}

bool PreloadTest::sharedNonBlocking(const TestListener &l)
{
    return (fcntl(l.fd.get(), F_GETFL) & O_NONBLOCK) != 0;
}

std::string httpGet(std::uint16_t port, const std::string &path, std::chrono::milliseconds deadline)
{
    UniqueFd fd = connectTcp(port);
    if (!fd) {
        return {};
    }
    sendAll(fd.borrow(), "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    return readAll(fd.borrow(), deadline);
}

} // namespace fdsup::test
