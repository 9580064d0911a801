// A server run the way systemd-socket-activate runs it (listeners as fds 3.., LISTEN_FDS), with the preload
// shim, for the preload tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include <gtest/gtest.h>

#include "core/fd.hpp"
#include "test_support.hpp"

namespace fdsup::test {

// A listening socket the test owns, as an activator would.
struct TestListener {
    UniqueFd fd;
    std::uint16_t port = 0; // inet only
};

// TCP on 127.0.0.1 (or ::1), an ephemeral port, blocking, backlog as given.
TestListener tcpListener(int backlog = 77, bool ipv6 = false);
// AF_UNIX stream at path.
TestListener unixListener(const std::filesystem::path &path, int backlog = 77);

// A listening TCP socket's accept queue as the kernel reports it (ss):
// connections waiting (Recv-Q) and the backlog (Send-Q); -1 when unknown.
struct ListenQueue {
    int queued = -1;
    int backlog = -1;
};
ListenQueue listenQueue(std::uint16_t port);

struct ShimOptions {
    std::vector<int> listeners;   // become fds 3.. with LISTEN_FDS/LISTEN_PID
    std::vector<std::string> env; // extra NAME=value
    bool preload = true;          // LD_PRELOAD the shim
    bool debug = true;            // FDSUP_PRELOAD_DEBUG=1
};

// Runs argv (argv[0] a path) in its own process group, stdout and stderr
// appended to logPath. The destructor kills the group with SIGKILL and reaps
// the process.
class ShimProcess {
public:
    ShimProcess(const std::vector<std::string> &argv, const ShimOptions &options,
                std::filesystem::path logPath);
    ~ShimProcess();
    ShimProcess(const ShimProcess &) = delete;
    ShimProcess &operator=(const ShimProcess &) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    void signal(int sig) const;
    // To its whole process group, as fdsupd's kill_mode does.
    void signalGroup(int sig) const;
    // Its wait status once it exited, nullopt at the deadline.
    std::optional<int> wait(std::chrono::milliseconds deadline);
    [[nodiscard]] std::string log() const;
    // Waits until the log contains text.
    bool waitForLog(const std::string &text, std::chrono::milliseconds deadline);

private:
    std::filesystem::path logPath_;
    pid_t pid_ = -1;
    UniqueFd pidfd_;
    std::optional<int> status_;
};

// A TCP client on 127.0.0.1:port (blocking), or invalid with errno.
UniqueFd connectTcp(std::uint16_t port);
UniqueFd connectUnix(const std::filesystem::path &path);
void sendAll(BorrowedFd fd, std::string_view data);
// Reads until EOF or the deadline.
std::string readAll(BorrowedFd fd, std::chrono::milliseconds deadline);
// One HTTP/1.0 GET; the whole response ("" when the connection failed).
std::string httpGet(std::uint16_t port, const std::string &path, std::chrono::milliseconds deadline);

// Debian's python3, not a pyenv shim script (a script would give the shim to
// its interpreter, which takes it out of the environment before the exec).
inline constexpr const char *kPython = "/usr/bin/python3";

// The preload tests' fixture: the test is the socket activator.
class PreloadTest : public ::testing::Test {
protected:
    [[nodiscard]] std::filesystem::path logPath(const std::string &name) const
    {
        return tmp_ / (name + ".log");
    }

    // A server on listener l (fd 3, LISTEN_FDS=1), with the shim and its debug lines.
    std::unique_ptr<ShimProcess> run(const std::vector<std::string> &argv, const TestListener &l,
                                     std::vector<std::string> env = {}, const std::string &name = "server");

    // The test's own accept on its listener: proves the listener still works.
    static UniqueFd acceptOwn(const TestListener &l);

    // Is O_NONBLOCK set on the shared file description (the test's own view)?
    static bool sharedNonBlocking(const TestListener &l);

    TempDir tmp_;
};

} // namespace fdsup::test
