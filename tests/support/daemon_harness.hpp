// DaemonHarness: runs a real fdsupd for integration tests and waits on its events.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <sys/types.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/varlink.hpp"
#include "core/fd.hpp"
#include "test_support.hpp"

namespace fdsup::test {

// A unix datagram socket the test owns, to receive sd_notify-style messages
// (fdsupd's own READY=1/STATUS=) or the test worker's event reports.
class DatagramInbox {
public:
    explicit DatagramInbox(std::filesystem::path path);
    [[nodiscard]] const std::filesystem::path &path() const { return path_; }
    [[nodiscard]] BorrowedFd fd() const { return fd_.borrow(); }
    // The next datagram, or nullopt at the deadline.
    std::optional<std::string> next(std::chrono::milliseconds deadline);
    // Skips datagrams until one satisfies match; nullopt at the deadline.
    std::optional<std::string> waitFor(const std::function<bool(const std::string &)> &match,
                                       std::chrono::milliseconds deadline);

private:
    std::filesystem::path path_;
    UniqueFd fd_;
};

class DaemonHarness {
public:
    DaemonHarness();
    ~DaemonHarness();
    DaemonHarness(const DaemonHarness &) = delete;
    DaemonHarness &operator=(const DaemonHarness &) = delete;

    [[nodiscard]] const TempDir &dir() const { return dir_; }
    [[nodiscard]] std::string controlPath() const { return (dir_ / "control.sock").string(); }
    [[nodiscard]] std::string reportPath() const { return reports_.path().string(); }
    // The [supervisor] table every test config starts with (control socket in the temp dir).
    [[nodiscard]] std::string supervisorTable() const;
    // The same with `preload_library = library` (wrapped services).
    [[nodiscard]] std::string supervisorTable(const std::string &preloadLibrary) const;
    // The test worker's command line as a TOML array: sd-worker --mode MODE --report PATH extra...
    [[nodiscard]] std::string workerCommand(const std::string &mode,
                                            const std::vector<std::string> &extra = {}) const;

    // Writes the configuration, starts fdsupd (argv prefix allows wrapping it,
    // e.g. in systemd-socket-activate; extraEnv's NAME=VALUE replace the
    // inherited NAME) and waits for its READY=1. Returns false
    // (with the log in `why`) if it exits or does not get ready in time.
    bool start(const std::string &config, std::string &why, const std::vector<std::string> &wrapper = {},
               const std::vector<std::string> &extraEnv = {});
    // start() waits for a message containing `text` instead of READY=1:
    // "STATUS=" when a service never becomes ready (fdsupd says READY=1 only
    // once every service's first start is over; its STATUS= comes at once).
    void awaitAtStart(std::string text) { awaited_ = std::move(text); }
    // SIGTERM and wait; returns the exit status, or -SIGNAL if it died of one
    // (SIGKILL after the deadline).
    int stop(std::chrono::milliseconds deadline = std::chrono::seconds(30));
    [[nodiscard]] pid_t pid() const { return pid_; }
    [[nodiscard]] std::string log() const;

    // A control API call; throws on transport errors, returns the reply (which may carry an error).
    varlink::Reply call(const std::string &method,
                        const nlohmann::json &parameters = nlohmann::json::object());
    nlohmann::json status(const std::string &service);
    // The port of the first bound address of a socket.
    int port(const std::string &socket);
    // Runs the real fdsupctl ($FDSUPCTL) against this daemon's control socket.
    ProcessResult fdsupctl(std::vector<std::string> args,
                           std::chrono::milliseconds deadline = std::chrono::seconds(60));

    // Worker events ("start PID USEC", "ready PID").
    DatagramInbox &reports() { return reports_; }
    // fdsupd's own sd_notify messages (STATUS=...).
    DatagramInbox &notifications() { return notify_; }
    // Waits until fdsupd's STATUS= contains text: the last one read (start()
    // reads up to READY=1, which carries one) or one still to come.
    bool waitStatus(const std::string &text, std::chrono::milliseconds deadline = kEventDeadline);

private:
    // Remembers the STATUS= of a message read from notify_.
    void noteStatus(const std::string &message);

    TempDir dir_;
    std::string status_;              // the last STATUS= read
    std::string awaited_ = "READY=1"; // what start() waits for
    DatagramInbox notify_;
    DatagramInbox reports_;
    pid_t pid_ = -1;
    UniqueFd pidfd_;
};

// The base of the integration fixtures: a fdsupd per test, whose log is
// printed when the test failed.
template <typename Base = ::testing::Test>
class DaemonTest : public Base {
protected:
    void TearDown() override
    {
        if (Base::HasFailure()) {
            std::cerr << "---- fdsupd log ----\n" << fdsupd_.log() << "--------------------\n";
        }
    }

    DaemonHarness fdsupd_;
};

// [socket.web] on an ephemeral loopback port and [service.web] running
// `binary` with `instances` instances on the worker channel (ready =
// "channel", handoff = true, drain_timeout = "10s").
std::string channelWebService(const std::string &binary, int instances);

// [socket.NAME] listening on `listen` and [service.NAME] running `command`
// (a TOML array: commandOf() a binary, or DaemonHarness::workerCommand())
// on it; `extra`: more lines of the service table.
std::string socketAndService(const std::string &name, const std::string &listen, const std::string &command,
                             const std::string &extra = "");
// The TOML array that runs `binary` without arguments.
std::string commandOf(const std::string &binary);

// s as a TOML (and JSON) basic string: quoted, with escapes.
std::string quoted(const std::string &s);

// 127.0.0.1:port.
sockaddr_in loopbackAddress(int port);
// A TCP connection to 127.0.0.1:port with 10 s send and receive timeouts (a
// connection nobody serves for 10 s is a failure); throws when it fails.
UniqueFd connectLoopback(int port);
// Whether a TCP connection to 127.0.0.1:port is accepted (by the kernel: a
// listener is there).
bool loopbackAccepts(int port);
// Whether 127.0.0.1:port can be bound: nobody holds it any more.
bool loopbackPortFree(int port);

// The pids of a service's live instances, from a Status entry.
std::set<pid_t> instancePids(const nlohmann::json &status);

// The server side of the loopback TCP connection 127.0.0.1:serverPort <->
// 127.0.0.1:clientPort, from /proc/net/tcp: its socket inode and the bytes
// in its receive queue (sent by the client, not read by the server yet).
struct LoopbackServerSocket {
    std::string inode;
    unsigned long receiveQueue = 0;
};
std::optional<LoopbackServerSocket> loopbackServerSocket(int serverPort, int clientPort);

// Counts /proc/PID/fd entries of another process.
int countFdsOf(pid_t pid);
// utime and stime of another process, in seconds (from /proc, clock ticks).
struct CpuTimes {
    double user = 0;
    double system = 0;
};
CpuTimes cpuTimesOf(pid_t pid);
// utime + stime of another process, in seconds.
double cpuSecondsOf(pid_t pid);
// VmRSS of another process in KiB.
long rssKibOf(pid_t pid);

} // namespace fdsup::test
