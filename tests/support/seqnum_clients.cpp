// Clients of the seqnum protocol (libactivate/examples/seqnum-echo), and who serves a connection.
#include "seqnum_clients.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon_harness.hpp"

namespace fdsup::test {

SeqnumClients::SeqnumClients(int port, int clients)
{
    for (int i = 0; i < clients; ++i) {
        fds_.push_back(connectLoopback(port));
    }
    next_.assign(fds_.size(), 1);
    thread_ = std::thread([this] { run(); });
}

void SeqnumClients::stop()
{
    stop_ = true;
    if (thread_.joinable()) {
        thread_.join();
    }
}

void SeqnumClients::close()
{
    stop();
    fds_.clear();
}

std::vector<std::string> SeqnumClients::errors() const
{
    const std::lock_guard lock(mutex_);
    return errors_;
}

std::vector<int> SeqnumClients::localPorts() const
{
    std::vector<int> ports;
    for (const auto &fd : fds_) {
        sockaddr_in a{};
        socklen_t len = sizeof a;
        getsockname(fd.get(), reinterpret_cast<sockaddr *>(&a), &len);
        ports.push_back(ntohs(a.sin_port));
    }
    return ports;
}

void SeqnumClients::run()
{
    std::vector<bool> dead(fds_.size(), false);
    while (!stop_) {
        for (std::size_t i = 0; i < fds_.size() && !stop_; ++i) {
            if (dead[i]) {
                continue;
            }
            // EINTR is no error of the connection: a socket with a timeout
            // (connectLoopback's) reports it even for SA_RESTART handlers.
            const std::uint32_t wire = htonl(next_[i]);
            ssize_t sent = 0;
            do {
                sent = send(fds_[i].get(), &wire, sizeof wire, MSG_NOSIGNAL);
            } while (sent < 0 && errno == EINTR);
            if (sent != sizeof wire) {
                fail(i, dead, std::string("send: ") + std::strerror(errno));
                continue;
            }
            std::uint32_t echo = 0;
            std::size_t got = 0;
            ssize_t n = 0;
            while (got < sizeof echo) {
                n = recv(fds_[i].get(), reinterpret_cast<char *>(&echo) + got, sizeof echo - got, 0);
                if (n < 0 && errno == EINTR) {
                    continue;
                }
                if (n <= 0) {
                    break;
                }
                got += static_cast<std::size_t>(n);
            }
            if (got < sizeof echo) {
                fail(i, dead, n == 0 ? "EOF" : std::string("recv: ") + std::strerror(errno));
                continue;
            }
            if (ntohl(echo) != next_[i]) {
                fail(i, dead,
                     "expected " + std::to_string(next_[i]) + ", got " + std::to_string(ntohl(echo)));
                continue;
            }
            ++next_[i];
            ++rounds_;
        }
    }
}

void SeqnumClients::fail(std::size_t i, std::vector<bool> &dead, const std::string &why)
{
    dead[i] = true;
    const std::lock_guard lock(mutex_);
    errors_.push_back("client " + std::to_string(i) + " at " + std::to_string(next_[i]) + ": " + why);
}

pid_t serverPidOf(int serverPort, int clientPort, const std::set<pid_t> &candidates)
{
    const auto socket = loopbackServerSocket(serverPort, clientPort);
    if (!socket) {
        return 0;
    }
    const std::string target = "socket:[" + socket->inode + "]";
    for (const pid_t pid : candidates) {
        std::map<int, std::string> fds;
        try {
            fds = openFds(pid);
        } catch (const std::system_error &) {
            continue; // gone
        }
        for (const auto &[fd, what] : fds) {
            if (what == target) {
                return pid;
            }
        }
    }
    return 0;
}

} // namespace fdsup::test
