// Clients of the seqnum protocol (libactivate/examples/seqnum-echo), and who serves a connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "core/fd.hpp"

namespace fdsup::test {

// Clients of the seqnum protocol: each sends 4-byte big-endian numbers
// 1, 2, 3... on its own connection and expects each echoed back, in order.
// Any reset, EOF, timeout or wrong number is an error of that client.
class SeqnumClients {
public:
    SeqnumClients(int port, int clients);
    ~SeqnumClients() { stop(); }
    SeqnumClients(const SeqnumClients &) = delete;
    SeqnumClients &operator=(const SeqnumClients &) = delete;

    void stop();
    void close();
    // Round trips so far, all clients together.
    [[nodiscard]] std::uint64_t rounds() const { return rounds_; }
    [[nodiscard]] std::vector<std::string> errors() const;
    // The local port of each client's connection.
    [[nodiscard]] std::vector<int> localPorts() const;

private:
    void run();
    void fail(std::size_t i, std::vector<bool> &dead, const std::string &why);

    std::vector<UniqueFd> fds_;
    std::vector<std::uint32_t> next_;
    mutable std::mutex mutex_;
    std::vector<std::string> errors_; // under mutex_: written by the clients' thread
    std::atomic<std::uint64_t> rounds_{0};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// The pid (among candidates) holding the server side of 127.0.0.1:serverPort
// <-> 127.0.0.1:clientPort, found by the socket's inode in /proc/net/tcp; 0
// when none of them does.
pid_t serverPidOf(int serverPort, int clientPort, const std::set<pid_t> &candidates);

} // namespace fdsup::test
