// handoff-bench's numerator: connections moved through a real fdsupd.
#include "handoff_fdsupd.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_support.hpp"

namespace fdsup::bench {
namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point t0)
{
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

bool sendNumber(const UniqueFd &fd, std::uint32_t number)
{
    const std::uint32_t wire = htonl(number);
    ssize_t sent = 0;
    do {
        sent = send(fd.get(), &wire, sizeof wire, MSG_NOSIGNAL);
    } while (sent < 0 && errno == EINTR);
    return sent == sizeof wire;
}

// The echo of number (the sockets have 10 s receive timeouts).
bool receiveEcho(const UniqueFd &fd, std::uint32_t number)
{
    std::uint32_t echo = 0;
    std::size_t got = 0;
    while (got < sizeof echo) {
        const ssize_t n = recv(fd.get(), reinterpret_cast<char *>(&echo) + got, sizeof echo - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        got += static_cast<std::size_t>(n);
    }
    return ntohl(echo) == number;
}

// "2026-12-06 20:15:29.123 info ...": milliseconds since midnight, or -1.
double stampMs(const std::string &line)
{
    int h = 0;
    int m = 0;
    int s = 0;
    int ms = 0;
    if (line.size() < 23 || std::sscanf(line.c_str() + 11, "%2d:%2d:%2d.%3d", &h, &m, &s, &ms) != 4) {
        return -1;
    }
    return ((h * 60.0 + m) * 60.0 + s) * 1000.0 + ms;
}

// The handoff's span in fdsupd's log lines after `from`: first DRAIN to the last drained worker reaped.
double handoffSpanMs(const std::string &log, std::size_t from)
{
    double first = -1;
    double last = -1;
    std::istringstream lines(log.substr(from));
    for (std::string line; std::getline(lines, line);) {
        if (line.find(": draining old pid ") != std::string::npos && first < 0) {
            first = stampMs(line);
        } else if (line.find(": old pid ") != std::string::npos && line.ends_with(" exited")) {
            last = stampMs(line);
        }
    }
    if (first < 0 || last < first) {
        throw std::runtime_error("no DRAIN ... exited span in fdsupd's log");
    }
    return last - first;
}

std::string configFor(const test::DaemonHarness &fdsupd, const std::string &seqnumEcho)
{
    // log_level "info", as in production: the harness's "debug" would log every adoption.
    return "[supervisor]\ncontrol = \"" + fdsupd.controlPath() + "\"\nlog_level = \"info\"\n" + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"
backlog = 8192

[service.web]
command = [")" +
           seqnumEcho +
           R"("]
sockets = ["web"]
instances = )" +
           std::to_string(HandoffFixture::kInstances) +
           R"(
ready = "channel"
handoff = true
drain_timeout = "60s"

[service.web.limits]
nofile = 20000
)";
}

// What fdsupd warned about during a rollout that lost connections (the first 20 lines).
void printWarnings(const std::string &log, std::size_t from)
{
    std::istringstream lines(log.substr(from));
    int printed = 0;
    for (std::string line; std::getline(lines, line) && printed < 20;) {
        if (line.find(" warning ") != std::string::npos || line.find(" error ") != std::string::npos ||
            line.find("channel") != std::string::npos) {
            (void)std::fprintf(stderr, "  fdsupd: %s\n", line.c_str());
            ++printed;
        }
    }
}

} // namespace

double cpuMsOf(pid_t pid)
{
    double ns = 0;
    for (const auto &task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
        std::ifstream in(task.path() / "schedstat");
        double onCpu = 0;
        if (in >> onCpu) {
            ns += onCpu;
        }
    }
    return ns / 1e6;
}

HandoffFixture::HandoffFixture(const std::string &seqnumEcho, int connections)
{
    std::string why;
    if (!fdsupd_.start(configFor(fdsupd_, seqnumEcho), why)) {
        throw std::runtime_error("fdsupd did not start: " + why);
    }
    if (const auto started = fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}});
        !started.error.empty()) {
        throw std::runtime_error("web did not start: " + started.error + "\n" + fdsupd_.log());
    }
    connectClients(connections);
}

HandoffFixture::~HandoffFixture()
{
    clients_.clear(); // idle connections would hold up the workers' SIGTERM
    fdsupd_.stop();
}

void HandoffFixture::connectClients(int connections)
{
    const int port = fdsupd_.port("web");
    for (int i = 0; i < connections; ++i) {
        clients_.push_back(test::connectLoopback(port));
    }
    if (const int failed = checkClients(); failed != 0) {
        throw std::runtime_error(std::to_string(failed) + " of " + std::to_string(connections) +
                                 " connections were not served before the handoff");
    }
}

// One round trip on every connection, pipelined; the number that failed.
int HandoffFixture::checkClients()
{
    const std::uint32_t number = round_++;
    int failed = 0;
    std::vector<bool> sent(clients_.size());
    for (std::size_t i = 0; i < clients_.size(); ++i) {
        sent[i] = sendNumber(clients_[i], number);
    }
    for (std::size_t i = 0; i < clients_.size(); ++i) {
        failed += sent[i] && receiveEcho(clients_[i], number) ? 0 : 1;
    }
    return failed;
}

std::uint64_t HandoffFixture::adopted()
{
    const auto reply = fdsupd_.call("io.fdsup.Manager.Connections", {{"service", "web"}});
    return reply.parameters.at("services").at(0).at("adopted").get<std::uint64_t>();
}

HandoffSample HandoffFixture::rollout()
{
    HandoffSample sample;
    const std::uint64_t adoptedBefore = adopted();
    const std::size_t logFrom = fdsupd_.log().size();
    const double cpu0 = cpuMsOf(fdsupd_.pid());
    const auto [user0, system0] = test::cpuTimesOf(fdsupd_.pid());
    const auto t0 = Clock::now();
    const auto reply =
        fdsupd_.call("io.fdsup.Manager.Restart", {{"service", "web"}, {"wait", true}, {"batch", kInstances}});
    sample.rolloutMs = msSince(t0);
    sample.cpuMs = cpuMsOf(fdsupd_.pid()) - cpu0;
    const auto [user1, system1] = test::cpuTimesOf(fdsupd_.pid());
    sample.userMs = (user1 - user0) * 1000.0;
    sample.systemMs = (system1 - system0) * 1000.0;
    if (!reply.error.empty()) {
        throw std::runtime_error("rollout failed: " + reply.error + " " + reply.parameters.dump());
    }
    sample.handoffMs = handoffSpanMs(fdsupd_.log(), logFrom);
    sample.failed = checkClients();
    const std::uint64_t moved = adopted() - adoptedBefore;
    if (moved != clients_.size()) {
        (void)std::fprintf(stderr, "handoff-bench: %zu connections, %llu adopted\n", clients_.size(),
                           static_cast<unsigned long long>(moved));
        sample.failed += static_cast<int>(clients_.size() > moved ? clients_.size() - moved : 1);
    }
    if (sample.failed != 0) {
        printWarnings(fdsupd_.log(), logFrom);
    }
    return sample;
}

} // namespace fdsup::bench
