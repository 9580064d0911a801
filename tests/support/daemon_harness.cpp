// DaemonHarness: runs a real fdsupd for integration tests and waits on its events.
#include "daemon_harness.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fdsup::test {

std::string quoted(const std::string &s)
{
    return nlohmann::json(s).dump();
}

DatagramInbox::DatagramInbox(std::filesystem::path path) : path_(std::move(path))
{
    fd_ = UniqueFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string p = path_.string();
    if (!fd_ || p.size() >= sizeof addr.sun_path) {
        throw std::runtime_error("cannot create datagram socket " + p);
    }
    p.copy(addr.sun_path, p.size());
    if (bind(fd_.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0) {
        throw std::system_error(errno, std::generic_category(), "bind " + p);
    }
}

std::optional<std::string> DatagramInbox::next(std::chrono::milliseconds deadline)
{
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        char buffer[8192];
        const ssize_t n = recv(fd_.get(), buffer, sizeof buffer, 0);
        if (n >= 0) {
            return std::string(buffer, static_cast<std::size_t>(n));
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            return std::nullopt;
        }
        pollfd pfd{fd_.get(), POLLIN, 0};
        poll(&pfd, 1, static_cast<int>(left.count()));
    }
}

std::optional<std::string> DatagramInbox::waitFor(const std::function<bool(const std::string &)> &match,
                                                  std::chrono::milliseconds deadline)
{
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        auto message = next(std::max(left, std::chrono::milliseconds(0)));
        if (!message) {
            return std::nullopt;
        }
        if (match(*message)) {
            return message;
        }
    }
}

DaemonHarness::DaemonHarness() : notify_(dir_ / "fdsupd-notify.sock"), reports_(dir_ / "reports.sock")
{}

DaemonHarness::~DaemonHarness()
{
    // As an operator stops it: SIGTERM, and fdsupd stops its workers. A
    // SIGKILL would orphan them (they lead their own process groups and
    // outlive fdsupd), and every test would leave its workers running.
    // SIGKILL only if it does not stop within the deadline.
    if (pid_ > 0) {
        (void)stop(kEventDeadline);
    }
}

std::string DaemonHarness::supervisorTable() const
{
    return "[supervisor]\ncontrol = " + quoted(controlPath()) + "\nlog_level = \"debug\"\n\n";
}

std::string DaemonHarness::supervisorTable(const std::string &preloadLibrary) const
{
    return "[supervisor]\ncontrol = " + quoted(controlPath()) +
           "\nlog_level = \"debug\"\npreload_library = " + quoted(preloadLibrary) + "\n\n";
}

std::string DaemonHarness::workerCommand(const std::string &mode, const std::vector<std::string> &extra) const
{
    std::string cmd = "[" + quoted(requireEnv("FDSUP_TEST_SD_WORKER")) + ", \"--mode\", " + quoted(mode) +
                      ", \"--report\", " + quoted(reportPath());
    for (const auto &e : extra) {
        cmd += ", " + quoted(e);
    }
    return cmd + "]";
}

bool DaemonHarness::start(const std::string &config, std::string &why,
                          const std::vector<std::string> &wrapper, const std::vector<std::string> &extraEnv)
{
    const auto configPath = dir_ / "fdsupd.toml";
    writeFile(configPath, config);
    std::vector<std::string> args = wrapper;
    args.emplace_back(requireEnv("FDSUPD"));
    args.emplace_back("-c");
    args.emplace_back(configPath.string());

    // extraEnv overrides what the test inherited: a process reads the first
    // of two same-named variables, so the inherited one is left out.
    const auto overridden = [&](std::string_view variable) {
        const std::string_view name = variable.substr(0, variable.find('=') + 1);
        return std::any_of(extraEnv.begin(), extraEnv.end(),
                           [&](const std::string &extra) { return extra.starts_with(name); });
    };
    std::vector<std::string> env;
    for (char **e = environ; *e != nullptr; ++e) {
        if (std::string_view(*e).starts_with("NOTIFY_SOCKET=") ||
            std::string_view(*e).starts_with("LISTEN_") || overridden(*e)) {
            continue;
        }
        env.emplace_back(*e);
    }
    env.push_back("NOTIFY_SOCKET=" + notify_.path().string());
    env.insert(env.end(), extraEnv.begin(), extraEnv.end());
    std::vector<char *> argp;
    std::vector<char *> envp;
    argp.reserve(args.size() + 1);
    envp.reserve(env.size() + 1);
    for (auto &a : args) {
        argp.push_back(a.data());
    }
    argp.push_back(nullptr);
    for (auto &e : env) {
        envp.push_back(e.data());
    }
    envp.push_back(nullptr);

    const std::string logPath = (dir_ / "fdsupd.log").string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int rc = posix_spawn(&pid_, argp[0], &actions, nullptr, argp.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        pid_ = -1;
        why = "posix_spawn: " + std::string(strerror(rc));
        return false;
    }
    pidfd_ = UniqueFd(static_cast<int>(syscall(SYS_pidfd_open, pid_, 0)));
    // Wait for READY=1 or for fdsupd to exit, whichever comes first.
    const auto until = std::chrono::steady_clock::now() + kEventDeadline;
    for (;;) {
        if (notify_.waitFor(
                [this](const std::string &m) {
                    noteStatus(m);
                    return m.find(awaited_) != std::string::npos;
                },
                std::chrono::milliseconds(0))) {
            return true;
        }
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            why = "fdsupd did not send " + awaited_ + " within " + std::to_string(kEventDeadline.count()) +
                  "s; its log:\n" + log();
            return false;
        }
        std::array<pollfd, 2> pfds{pollfd{notify_.fd().get(), POLLIN, 0}, pollfd{pidfd_.get(), POLLIN, 0}};
        poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
        if ((pfds[1].revents & POLLIN) != 0 && (pfds[0].revents & POLLIN) == 0) {
            int status = 0;
            waitpid(pid_, &status, 0);
            pid_ = -1;
            why = "fdsupd exited (" +
                  (WIFEXITED(status) ? "status " + std::to_string(WEXITSTATUS(status))
                                     : "signal " + std::to_string(WTERMSIG(status))) +
                  ") before " + awaited_ + "; its log:\n" + log();
            return false;
        }
    }
}

int DaemonHarness::stop(std::chrono::milliseconds deadline)
{
    if (pid_ <= 0) {
        return -1;
    }
    kill(pid_, SIGTERM);
    pollfd pfd{pidfd_.get(), POLLIN, 0};
    if (poll(&pfd, 1, static_cast<int>(deadline.count())) <= 0) {
        kill(pid_, SIGKILL);
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    // -SIGNAL when killed, so a crash shows which signal.
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::string DaemonHarness::log() const
{
    try {
        return readFile(dir_ / "fdsupd.log");
    } catch (const std::exception &) {
        return "";
    }
}

varlink::Reply DaemonHarness::call(const std::string &method, const nlohmann::json &parameters)
{
    auto client = varlink::Client::connect(controlPath(), std::chrono::seconds(10));
    if (!client) {
        throw std::runtime_error("connect: " + client.error().message);
    }
    varlink::Call c;
    c.method = method;
    c.parameters = parameters;
    auto reply = client->call(c);
    if (!reply) {
        throw std::runtime_error(method + ": " + reply.error().message);
    }
    return *reply;
}

nlohmann::json DaemonHarness::status(const std::string &service)
{
    const auto reply = call("io.fdsup.Manager.Status", {{"service", service}});
    if (!reply.error.empty()) {
        throw std::runtime_error("Status: " + reply.error);
    }
    return reply.parameters.at("services").at(0);
}

ProcessResult DaemonHarness::fdsupctl(std::vector<std::string> args, std::chrono::milliseconds deadline)
{
    args.insert(args.begin(), {requireEnv("FDSUPCTL"), "-s", controlPath()});
    return runProcess(args, {}, deadline);
}

std::string channelWebService(const std::string &binary, int instances)
{
    return R"(
[socket.web]
listen = "tcp://127.0.0.1:0"
backlog = 1024

[service.web]
command = [")" +
           binary + R"("]
sockets = ["web"]
instances = )" +
           std::to_string(instances) + R"(
ready = "channel"
handoff = true
drain_timeout = "10s"
)";
}

std::string socketAndService(const std::string &name, const std::string &listen, const std::string &command,
                             const std::string &extra)
{
    return "\n[socket." + name + "]\nlisten = " + quoted(listen) + "\n\n[service." + name +
           "]\ncommand = " + command + "\nsockets = [" + quoted(name) + "]\n" + extra;
}

std::string commandOf(const std::string &binary)
{
    return "[" + quoted(binary) + "]";
}

sockaddr_in loopbackAddress(int port)
{
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

bool loopbackAccepts(int port)
{
    const UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_in a = loopbackAddress(port);
    return fd && connect(fd.get(), reinterpret_cast<const sockaddr *>(&a), sizeof a) == 0;
}

bool loopbackPortFree(int port)
{
    const UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_in a = loopbackAddress(port);
    return fd && bind(fd.get(), reinterpret_cast<const sockaddr *>(&a), sizeof a) == 0;
}

UniqueFd connectLoopback(int port)
{
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const sockaddr_in a = loopbackAddress(port);
    if (!fd || connect(fd.get(), reinterpret_cast<const sockaddr *>(&a), sizeof a) != 0) {
        throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
    }
    const timeval timeout{10, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    return fd;
}

int DaemonHarness::port(const std::string &socket)
{
    const auto reply = call("io.fdsup.Manager.Sockets");
    for (const auto &s : reply.parameters.at("sockets")) {
        if (s.at("name") == socket) {
            const std::string address = s.at("bound").at(0).at("address");
            return std::stoi(address.substr(address.rfind(':') + 1));
        }
    }
    throw std::runtime_error("no socket " + socket);
}

bool DaemonHarness::waitStatus(const std::string &text, std::chrono::milliseconds deadline)
{
    if (status_.find(text) != std::string::npos) {
        return true;
    }
    return notify_
        .waitFor(
            [&](const std::string &m) {
                noteStatus(m);
                return m.find(text) != std::string::npos;
            },
            deadline)
        .has_value();
}

void DaemonHarness::noteStatus(const std::string &message)
{
    const auto at = message.find("STATUS=");
    if (at != std::string::npos && (at == 0 || message[at - 1] == '\n')) {
        const auto end = message.find('\n', at);
        status_ = message.substr(at + 7, end == std::string::npos ? std::string::npos : end - at - 7);
    }
}

std::set<pid_t> instancePids(const nlohmann::json &status)
{
    std::set<pid_t> pids;
    for (const auto &instance : status.at("instances")) {
        if (instance.at("pid").is_number()) {
            pids.insert(instance.at("pid").get<pid_t>());
        }
    }
    return pids;
}

std::optional<LoopbackServerSocket> loopbackServerSocket(int serverPort, int clientPort)
{
    std::ifstream tcp("/proc/net/tcp");
    std::string line;
    std::getline(tcp, line); // header
    char wantLocal[32];
    char wantRemote[32];
    (void)std::snprintf(wantLocal, sizeof wantLocal, "0100007F:%04X", serverPort);
    (void)std::snprintf(wantRemote, sizeof wantRemote, "0100007F:%04X", clientPort);
    while (std::getline(tcp, line)) {
        std::istringstream in(line);
        std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
        in >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >> timeout >> inode;
        if (local == wantLocal && remote == wantRemote && queues.find(':') != std::string::npos) {
            return LoopbackServerSocket{inode, std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16)};
        }
    }
    return std::nullopt;
}

CpuTimes cpuTimesOf(pid_t pid)
{
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    // Fields after the command name, which is in parentheses and may hold spaces.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::vector<std::string> fields;
    for (std::string f; rest >> f;) {
        fields.push_back(f);
    }
    // state is field 3 of stat(5), index 0 here; utime and stime are 14 and 15.
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    return {std::stod(fields.at(11)) / ticks, std::stod(fields.at(12)) / ticks};
}

double cpuSecondsOf(pid_t pid)
{
    const CpuTimes t = cpuTimesOf(pid);
    return t.user + t.system;
}

int countFdsOf(pid_t pid)
{
    try {
        return static_cast<int>(openFds(pid).size());
    } catch (const std::system_error &) {
        return -1;
    }
}

long rssKibOf(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with("VmRSS:")) {
            return std::stol(line.substr(6));
        }
    }
    return -1;
}

} // namespace fdsup::test
