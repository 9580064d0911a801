// HTTP keep-alive across restarts: a real fdsupd running libactivate's
// http-keepalive example with handoff, real clients (wrk and an in-test
// HTTP/1.1 client) on loopback. Established connections move from each
// draining worker to its replacement; no client may notice.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr const char *kWrk = "/usr/bin/wrk";
constexpr const char *kRequest = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

// Lines of fdsupd's log (the workers' stderr included) reporting a refused handoff.
std::vector<std::string> refusedHandoffs(const std::string &log)
{
    std::vector<std::string> out;
    std::istringstream in(log);
    std::string line;
    while (std::getline(in, line)) {
        if (line.find("handoff of connection") != std::string::npos &&
            line.find("refused") != std::string::npos) {
            out.push_back(line);
        }
    }
    return out;
}

int localPort(BorrowedFd fd)
{
    sockaddr_in a{};
    socklen_t len = sizeof a;
    getsockname(fd.get(), reinterpret_cast<sockaddr *>(&a), &len);
    return ntohs(a.sin_port);
}

// Sends all of data; an empty string, or why not. EINTR is retried here and
// in readResponse(): no error of the connection, but what a socket with a
// timeout (connectLoopback's) reports when the process is interrupted.
std::string sendAll(BorrowedFd fd, std::string_view data)
{
    while (!data.empty()) {
        const ssize_t n = send(fd.get(), data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return std::string("send: ") + std::strerror(errno);
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return {};
}

// One HTTP/1.1 response, read whole (headers, then Content-Length bytes).
struct Response {
    int status = 0;
    pid_t pid = 0;
    std::string generation; // the JSON's "generation"
    std::string error;      // set when the connection failed: EOF, reset, timeout, garbage
};

Response readResponse(BorrowedFd fd)
{
    Response r;
    std::string data;
    char buffer[4096];
    auto fill = [&]() -> bool {
        ssize_t n = 0;
        do {
            errno = 0;
            n = recv(fd.get(), buffer, sizeof buffer, 0);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            r.error = n == 0 ? "EOF" : std::string("recv: ") + std::strerror(errno);
            return false;
        }
        data.append(buffer, static_cast<std::size_t>(n));
        return true;
    };
    std::size_t end;
    while ((end = data.find("\r\n\r\n")) == std::string::npos) {
        if (!fill()) {
            return r;
        }
    }
    const std::string head = data.substr(0, end + 2);
    if (std::sscanf(head.c_str(), "HTTP/1.1 %d", &r.status) != 1) {
        r.error = "not an HTTP/1.1 status line: " + head;
        return r;
    }
    std::size_t length = 0;
    bool haveLength = false;
    std::istringstream lines(head);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.size() > 15 && strncasecmp(line.c_str(), "Content-Length:", 15) == 0) {
            length = std::stoul(line.substr(15));
            haveLength = true;
        }
    }
    if (!haveLength) {
        r.error = "no Content-Length: " + head;
        return r;
    }
    while (data.size() < end + 4 + length) {
        if (!fill()) {
            return r;
        }
    }
    if (data.size() > end + 4 + length) {
        r.error = "bytes after the response: " + data.substr(end + 4 + length);
        return r;
    }
    const std::string body = data.substr(end + 4);
    const auto json = nlohmann::json::parse(body, nullptr, false);
    if (r.status == 200) {
        if (json.is_discarded() || !json.contains("pid") || !json.at("pid").is_number_integer() ||
            !json.contains("generation") || !json.at("generation").is_string()) {
            r.error = "200 without the worker's JSON: " + body;
            return r;
        }
        r.pid = json.at("pid").get<pid_t>();
        r.generation = json.at("generation").get<std::string>();
    }
    return r;
}

// wrk with keep-alive (no Connection: close), one thread. Its Lua script
// prints, on a line-buffered stdout read here by a thread:
//   "fdsup-gen G"  whenever the answering generation differs from the previous answer's,
//   "fdsup-n N"    after every 500 answers,
//   "fdsup-totals requests R connect C read R write W timeout T status S" at the end (SIGINT).
class KeepAliveWrk {
public:
    KeepAliveWrk(int port, int connections, const TempDir &dir)
    {
        if (access(kWrk, X_OK) != 0) {
            throw std::runtime_error("/usr/bin/wrk is missing; install the Debian package wrk");
        }
        const auto script = dir / "keepalive.lua";
        writeFile(script, R"lua(-- keepalive_test.cpp's wrk script
io.stdout:setvbuf("line")
local answers = 0
local last = nil
function response(status, headers, body)
    answers = answers + 1
    local g = body:match('"generation":"(%d*)"') or ("status-" .. status)
    if g ~= last then
        last = g
        io.write("fdsup-gen ", g, "\n")
    end
    if answers % 500 == 0 then
        io.write("fdsup-n ", answers, "\n")
    end
end
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("fdsup-totals requests %d connect %d read %d write %d timeout %d status %d\n",
        summary.requests, e.connect, e.read, e.write, e.timeout, e.status))
end
)lua");
        std::vector<std::string> args{kWrk,
                                      "-t1",
                                      "-c",
                                      std::to_string(connections),
                                      "-d",
                                      "90s",
                                      "--timeout",
                                      "5s",
                                      "-s",
                                      script.string(),
                                      "http://127.0.0.1:" + std::to_string(port) + "/"};
        std::vector<char *> argv;
        for (auto &a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) != 0) {
            throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
        }
        const pid_t parent = getpid();
        pid_ = fork();
        if (pid_ < 0) {
            throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
        }
        if (pid_ == 0) {
            // Dies with the test, whatever happens to it.
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent) {
                _exit(127);
            }
            const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
            dup2(null, 0);
            dup2(pipefd[1], 1);
            dup2(pipefd[1], 2);
            execv(argv[0], argv.data());
            _exit(127);
        }
        close(pipefd[1]);
        out_ = UniqueFd(pipefd[0]);
        reader_ = std::thread([this] { read(); });
    }
    ~KeepAliveWrk()
    {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        if (reader_.joinable()) {
            reader_.join();
        }
    }
    KeepAliveWrk(const KeepAliveWrk &) = delete;
    KeepAliveWrk &operator=(const KeepAliveWrk &) = delete;

    // Everything wrk printed so far.
    std::string output()
    {
        std::lock_guard lock(mutex_);
        return output_;
    }
    // Waits until match(output) holds; false at the deadline or once wrk's stdout is closed.
    bool waitFor(const std::function<bool(const std::string &)> &match, std::chrono::milliseconds deadline)
    {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, deadline, [&] { return match(output_) || closed_; }) && match(output_);
    }
    // SIGINT (wrk prints its totals), then waits for it; returns its exit status or -SIGNAL.
    int stop(std::chrono::milliseconds deadline = 30s)
    {
        kill(pid_, SIGINT);
        {
            std::unique_lock lock(mutex_);
            if (!changed_.wait_for(lock, deadline, [&] { return closed_; })) {
                kill(pid_, SIGKILL);
            }
        }
        int status = 0;
        waitpid(pid_, &status, 0);
        pid_ = -1;
        reader_.join();
        return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }

private:
    void read()
    {
        char buffer[4096];
        for (;;) {
            const ssize_t n = ::read(out_.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            std::lock_guard lock(mutex_);
            if (n <= 0) {
                closed_ = true;
                changed_.notify_all();
                return;
            }
            output_.append(buffer, static_cast<std::size_t>(n));
            changed_.notify_all();
        }
    }

    pid_t pid_ = -1;
    UniqueFd out_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::string output_;
    bool closed_ = false;
    std::thread reader_;
};

// The values of every "PREFIX VALUE" line of wrk's output, from offset on.
std::vector<std::string> wrkLines(const std::string &output, const std::string &prefix,
                                  std::size_t offset = 0)
{
    std::vector<std::string> values;
    std::istringstream in(output.substr(std::min(offset, output.size())));
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with(prefix + " ")) {
            values.push_back(line.substr(prefix.size() + 1));
        }
    }
    return values;
}

// N keep-alive connections, each sending GET and reading the whole answer,
// round robin, in a background thread. A connection that fails (EOF, reset,
// timeout, a bad answer) is never reconnected: it is a failure, recorded.
class KeepAliveClients {
public:
    KeepAliveClients(int port, int connections)
    {
        for (int i = 0; i < connections; ++i) {
            fds_.push_back(connectLoopback(port));
        }
        answers_.resize(fds_.size());
        thread_ = std::thread([this] { run(); });
    }
    ~KeepAliveClients() { stop(); }
    KeepAliveClients(const KeepAliveClients &) = delete;
    KeepAliveClients &operator=(const KeepAliveClients &) = delete;

    void stop()
    {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    void close()
    {
        stop();
        fds_.clear();
    }
    [[nodiscard]] std::uint64_t total() const { return total_; }
    // The answers of each connection so far.
    std::vector<std::vector<Response>> answers()
    {
        std::lock_guard lock(mutex_);
        return answers_;
    }
    // Connections that failed and would have had to reconnect, with why.
    std::vector<std::string> failures()
    {
        std::lock_guard lock(mutex_);
        return failures_;
    }
    // Waits until every connection has at least counts[i] + more answers
    // (false at the deadline or at a failure).
    bool waitForEach(const std::vector<std::size_t> &counts, std::size_t more,
                     std::chrono::milliseconds deadline)
    {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, deadline, [&] {
            if (!failures_.empty()) {
                return true;
            }
            for (std::size_t i = 0; i < answers_.size(); ++i) {
                if (answers_[i].size() < counts.at(i) + more) {
                    return false;
                }
            }
            return true;
        }) && failures_.empty();
    }

private:
    void run()
    {
        std::vector<bool> dead(fds_.size(), false);
        while (!stop_) {
            for (std::size_t i = 0; i < fds_.size() && !stop_; ++i) {
                if (dead[i]) {
                    continue;
                }
                Response r;
                r.error = sendAll(fds_[i].borrow(), kRequest);
                if (r.error.empty()) {
                    r = readResponse(fds_[i].borrow());
                }
                std::lock_guard lock(mutex_);
                if (!r.error.empty()) {
                    dead[i] = true;
                    failures_.push_back("connection " + std::to_string(i) + " after " +
                                        std::to_string(answers_[i].size()) + " answers: " + r.error);
                } else {
                    answers_[i].push_back(r);
                    ++total_;
                }
                changed_.notify_all();
            }
        }
    }

    std::vector<UniqueFd> fds_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::vector<Response>> answers_;
    std::vector<std::string> failures_;
    std::atomic<std::uint64_t> total_{0};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

// The receive queue of the server side of 127.0.0.1:serverPort <->
// 127.0.0.1:clientPort (bytes the worker has not read yet).
std::optional<unsigned long> serverReceiveQueue(int serverPort, int clientPort)
{
    const auto socket = loopbackServerSocket(serverPort, clientPort);
    return socket ? std::optional<unsigned long>(socket->receiveQueue) : std::nullopt;
}

class KeepAlive : public DaemonTest<> {
protected:
    void startService(int instances)
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() +
                                      channelWebService(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE"), instances),
                                  why))
            << why;
        ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    }

    ProcessResult fdsupctl(std::vector<std::string> args) { return fdsupd_.fdsupctl(std::move(args)); }

    nlohmann::json connections()
    {
        const auto reply = fdsupd_.call("io.fdsup.Manager.Connections", {{"service", "web"}});
        EXPECT_EQ(reply.error, "");
        return reply.parameters.at("services").at(0);
    }

    // [service.web] (one http-keepalive instance, handoff) under a
    // [supervisor.limits] table; a long drain_timeout, so that only a
    // client's close ends the old worker during the test.
    // n keep-alive connections, each answered once by generation 1 (whose pid is `old`).
    static void openServed(int port, int n, std::vector<UniqueFd> &fds, pid_t &old)
    {
        for (int i = 0; i < n; ++i) {
            fds.push_back(connectLoopback(port));
            ASSERT_EQ(sendAll(fds.back().borrow(), kRequest), "");
            const Response r = readResponse(fds.back().borrow());
            ASSERT_EQ(r.error, "");
            ASSERT_EQ(r.generation, "1");
            old = r.pid;
        }
    }

    void startWithLimits(const std::string &limits)
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + "[supervisor.limits]\n" + limits + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[service.web]
command = [")" + requireEnv("FDSUP_TEST_HTTP_KEEPALIVE") +
                                      R"("]
sockets = ["web"]
ready = "channel"
handoff = true
drain_timeout = "60s"
)",
                                  why))
            << why;
        ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    }

    // Waits until fdsupd's log (the workers' stderr included) holds text.
    bool waitForLog(const std::string &text)
    {
        return waitUntil([&] { return fdsupd_.log().find(text) != std::string::npos; });
    }

    // Waits until fdsupd's handoff counters for the service satisfy match.
    bool waitForConnections(const std::function<bool(const nlohmann::json &)> &match)
    {
        return waitUntil([&] { return match(connections()); });
    }

    // Waits until the service runs exactly the instances pids (the old one gone).
    bool waitForInstances(const std::set<pid_t> &pids)
    {
        return waitUntil([&] { return instancePids(fdsupd_.status("web")) == pids; });
    }

    // Waits until the worker has read everything the client of clientPort
    // sent: the server side's receive queue as last seen (0 once empty),
    // nullopt when there is no server side for that client.
    static std::optional<unsigned long> waitForReceiveQueueEmpty(int port, int clientPort)
    {
        std::optional<unsigned long> queued;
        (void)waitUntil([&] {
            queued = serverReceiveQueue(port, clientPort);
            return !queued || *queued == 0;
        });
        return queued;
    }
};

TEST_F(KeepAlive, WrkKeepAliveAcrossThreeRestarts)
{
    startService(4);
    TempDir dir;
    KeepAliveWrk wrk(fdsupd_.port("web"), 16, dir);
    auto progress = [](std::size_t offset) {
        return [offset](const std::string &out) {
            return !wrkLines(out, "fdsup-n", offset).empty();
        };
    };
    ASSERT_TRUE(wrk.waitFor(progress(0), kEventDeadline)) << "wrk made no progress:\n" << wrk.output();
    std::set<pid_t> previous = instancePids(fdsupd_.status("web"));
    for (int round = 1; round <= 3; ++round) {
        const auto restart = fdsupctl({"restart", "--wait", "web"});
        ASSERT_EQ(restart.exitCode, 0) << "restart " << round << ": " << restart.out << restart.err;
        EXPECT_THAT(restart.out, HasSubstr("over its channel"));
        const std::set<pid_t> now = instancePids(fdsupd_.status("web"));
        for (const pid_t pid : now) {
            EXPECT_EQ(previous.count(pid), 0U) << "restart " << round;
        }
        previous = now;
        // The load goes on after each restart.
        const std::size_t mark = wrk.output().size();
        ASSERT_TRUE(wrk.waitFor(progress(mark), kEventDeadline))
            << "wrk made no progress after restart " << round << ":\n"
            << wrk.output();
    }
    // Two more progress lines (1000 answers) on the last generation, then stop.
    const std::size_t settled = wrk.output().size();
    EXPECT_TRUE(
        wrk.waitFor([&](const std::string &out) { return wrkLines(out, "fdsup-n", settled).size() >= 2; },
                    kEventDeadline));
    EXPECT_EQ(wrk.stop(), 0);
    const std::string out = wrk.output();

    const auto totals = wrkLines(out, "fdsup-totals");
    ASSERT_EQ(totals.size(), 1U) << out;
    std::istringstream in(totals.front());
    std::string word;
    long requests = -1, connect = -1, read = -1, write = -1, timeout = -1, status = -1;
    in >> word >> requests >> word >> connect >> word >> read >> word >> write >> word >> timeout >> word >>
        status;
    ASSERT_FALSE(in.fail()) << totals.front();
    std::cerr << "wrk: " << totals.front() << "\n";
    EXPECT_EQ(connect, 0) << out;
    EXPECT_EQ(read, 0) << out;
    EXPECT_EQ(write, 0) << out;
    EXPECT_EQ(timeout, 0) << out;
    EXPECT_EQ(status, 0) << "non-2xx answers\n" << out;
    EXPECT_GE(requests, 2000) << out;
    // Every generation answered, and the last answers came from generation 4.
    const auto generations = wrkLines(out, "fdsup-gen");
    ASSERT_FALSE(generations.empty()) << out;
    EXPECT_EQ(generations.back(), "4") << out;
    EXPECT_EQ(std::set<std::string>(generations.begin(), generations.end()),
              (std::set<std::string>{"1", "2", "3", "4"}))
        << out;

    const auto web = connections();
    std::cerr << "connections: " << web.dump() << "\n";
    EXPECT_GT(web.at("handed"), 0);
    EXPECT_EQ(web.at("handed"), 48); // 16 connections, three times
    EXPECT_EQ(web.at("adopted"), web.at("handed"));
    EXPECT_EQ(web.at("refused"), 0);
    EXPECT_TRUE(web.at("held").empty());
    EXPECT_THAT(refusedHandoffs(fdsupd_.log()), ::testing::IsEmpty());
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(KeepAlive, KeepAliveClientNeverReconnects)
{
    startService(4);
    KeepAliveClients clients(fdsupd_.port("web"), 20);
    ASSERT_TRUE(clients.waitForEach(std::vector<std::size_t>(20, 0), 1, kEventDeadline))
        << ::testing::PrintToString(clients.failures());
    std::set<pid_t> previous = instancePids(fdsupd_.status("web"));
    for (int round = 1; round <= 3; ++round) {
        const std::uint64_t before = clients.total();
        const auto restart = fdsupctl({"restart", "--wait", "web"});
        ASSERT_EQ(restart.exitCode, 0) << "restart " << round << ": " << restart.out << restart.err;
        EXPECT_THAT(restart.out, HasSubstr("over its channel"));
        const std::set<pid_t> now = instancePids(fdsupd_.status("web"));
        for (const pid_t pid : now) {
            EXPECT_EQ(previous.count(pid), 0U) << "restart " << round;
        }
        previous = now;
        EXPECT_GT(clients.total(), before) << "no answer during restart " << round;
        // Each connection asks the new generation before the next restart:
        // a connection handed to a worker that the next rollout drains first
        // (a few milliseconds later) would otherwise skip that generation
        // when one round of the 20 clients is slower than that, as under load.
        // The answer after the one in flight at this mark was asked after the restart.
        std::vector<std::size_t> seen;
        for (const auto &a : clients.answers()) {
            seen.push_back(a.size());
        }
        ASSERT_TRUE(clients.waitForEach(seen, 2, kEventDeadline))
            << ::testing::PrintToString(clients.failures());
        const auto answers = clients.answers();
        for (std::size_t i = 0; i < answers.size(); ++i) {
            EXPECT_EQ(answers[i].at(seen[i] + 1).generation, std::to_string(round + 1))
                << "restart " << round << ", connection " << i;
        }
    }
    // Every connection gets two more answers; the one after its answer in
    // flight at this mark was certainly asked after the last restart.
    std::vector<std::size_t> mark;
    for (const auto &a : clients.answers()) {
        mark.push_back(a.size());
    }
    EXPECT_TRUE(clients.waitForEach(mark, 2, kEventDeadline)) << ::testing::PrintToString(clients.failures());
    clients.stop();

    EXPECT_THAT(clients.failures(), ::testing::IsEmpty()) << "connections that would have had to reconnect";
    const auto answers = clients.answers();
    std::size_t total = 0;
    for (std::size_t i = 0; i < answers.size(); ++i) {
        std::set<std::string> generations;
        for (std::size_t k = 0; k < answers[i].size(); ++k) {
            const Response &r = answers[i][k];
            EXPECT_EQ(r.status, 200) << "connection " << i << " answer " << k;
            generations.insert(r.generation);
            if (k > mark[i]) {
                EXPECT_EQ(r.generation, "4") << "connection " << i << " answer " << k;
                EXPECT_EQ(previous.count(r.pid), 1U) << "connection " << i << " answer " << k << " from pid "
                                                     << r.pid << ", not one of the last generation";
            }
        }
        // The same connection was served by every generation.
        EXPECT_EQ(generations, (std::set<std::string>{"1", "2", "3", "4"})) << "connection " << i;
        total += answers[i].size();
    }
    std::cerr << "answers: " << total << "\n";

    const auto web = connections();
    clients.close();                 // idle connections would hold up the workers' SIGTERM
    EXPECT_EQ(web.at("handed"), 60); // 20 connections, three times
    EXPECT_EQ(web.at("adopted"), 60);
    EXPECT_EQ(web.at("refused"), 0);
    EXPECT_TRUE(web.at("held").empty());
    EXPECT_THAT(refusedHandoffs(fdsupd_.log()), ::testing::IsEmpty());
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(KeepAlive, HalfRequestCompletedAfterTheDrainIsAnsweredByTheReplacement)
{
    startService(1);
    const int port = fdsupd_.port("web");
    const UniqueFd fd = connectLoopback(port);
    ASSERT_EQ(sendAll(fd.borrow(), kRequest), "");
    const Response first = readResponse(fd.borrow());
    ASSERT_EQ(first.error, "");
    ASSERT_EQ(first.status, 200);
    EXPECT_EQ(first.generation, "1");
    EXPECT_EQ(instancePids(fdsupd_.status("web")), std::set<pid_t>{first.pid});

    // Half a request, read by the first worker (its receive queue empties),
    // so that it travels as the handoff's state.
    const std::string half = "GET / HTTP/1.1\r\nHo";
    ASSERT_EQ(sendAll(fd.borrow(), half), "");
    const int clientPort = localPort(fd.borrow());
    const auto queued = waitForReceiveQueueEmpty(port, clientPort);
    ASSERT_TRUE(queued.has_value()) << "no server side for client port " << clientPort;
    ASSERT_EQ(*queued, 0U) << "the worker never read the first half";

    const auto restart = fdsupctl({"restart", "--wait", "web"});
    ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    EXPECT_THAT(restart.out, HasSubstr("over its channel"));
    const std::set<pid_t> now = instancePids(fdsupd_.status("web"));
    ASSERT_EQ(now.size(), 1U);
    EXPECT_EQ(now.count(first.pid), 0U);

    // The rest, after the drain: the replacement answers on the same connection.
    ASSERT_EQ(sendAll(fd.borrow(), "st: x\r\n\r\n"), "");
    const Response second = readResponse(fd.borrow());
    ASSERT_EQ(second.error, "");
    EXPECT_EQ(second.status, 200);
    EXPECT_EQ(second.generation, "2");
    EXPECT_NE(second.pid, first.pid);
    EXPECT_EQ(now, std::set<pid_t>{second.pid});
    // And it keeps serving that connection.
    ASSERT_EQ(sendAll(fd.borrow(), kRequest), "");
    const Response third = readResponse(fd.borrow());
    ASSERT_EQ(third.error, "");
    EXPECT_EQ(third.status, 200);
    EXPECT_EQ(third.pid, second.pid);

    const auto web = connections();
    EXPECT_EQ(web.at("handed"), 1);
    EXPECT_EQ(web.at("adopted"), 1);
    EXPECT_EQ(web.at("refused"), 0);
    EXPECT_TRUE(web.at("held").empty());
    const std::string log = fdsupd_.log();
    EXPECT_THAT(refusedHandoffs(log), ::testing::IsEmpty());
    // The old worker handed the first half over as the connection's state.
    EXPECT_THAT(log, HasSubstr("over (" + std::to_string(half.size()) + " state bytes)"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// The index of the first of fds with something to read (bytes, EOF or an
// error), or -1 at the deadline.
int firstReadable(const std::vector<UniqueFd> &fds, std::chrono::milliseconds deadline)
{
    std::vector<pollfd> pfds;
    for (const auto &fd : fds) {
        pfds.push_back(pollfd{fd.get(), POLLIN, 0});
    }
    if (poll(pfds.data(), pfds.size(), static_cast<int>(deadline.count())) <= 0) {
        return -1;
    }
    for (std::size_t i = 0; i < pfds.size(); ++i) {
        if (pfds[i].revents != 0) {
            return static_cast<int>(i);
        }
    }
    return -1;
}

TEST_F(KeepAlive, AConnectionWhoseHandoffFdsupdRefusesIsServedByTheOldWorker)
{
    // Stop-first: nobody adopts while the old worker drains, so fdsupd holds
    // what it hands over, two at most; the third HANDOFF is refused
    // (ENOBUFS). The old worker kept that connection's fd until the
    // HANDOFF_RESULT and serves it on; the held two wait for the replacement,
    // which starts once the old worker is gone.
    startWithLimits("held_connections_per_service = 2\n");
    const int port = fdsupd_.port("web");
    std::vector<UniqueFd> fds;
    pid_t old = 0;
    ASSERT_NO_FATAL_FAILURE(openServed(port, 3, fds, old));
    ASSERT_EQ(instancePids(fdsupd_.status("web")), std::set<pid_t>{old});

    // --no-wait: the rollout goes on only once the old worker has exited.
    const auto restart = fdsupctl({"restart", "--order", "stop-first", "--no-wait", "web"});
    ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    ASSERT_TRUE(waitForConnections([](const nlohmann::json &web) { return web.at("refused") == 1; }))
        << connections().dump();
    auto web = connections();
    EXPECT_EQ(web.at("handed"), 2);
    EXPECT_EQ(web.at("held").size(), 2U);

    // A request on each: only the refused connection has a worker now.
    for (const auto &fd : fds) {
        ASSERT_EQ(sendAll(fd.borrow(), kRequest), "");
    }
    const int local = firstReadable(fds, kEventDeadline);
    ASSERT_GE(local, 0) << "no connection was answered";
    const Response answer = readResponse(fds[local].borrow());
    ASSERT_EQ(answer.error, "") << "the refused connection was not served on";
    EXPECT_EQ(answer.status, 200);
    EXPECT_EQ(answer.pid, old);
    EXPECT_EQ(answer.generation, "1");
    ASSERT_EQ(sendAll(fds[local].borrow(), kRequest), "");
    const Response again = readResponse(fds[local].borrow());
    ASSERT_EQ(again.error, "");
    EXPECT_EQ(again.pid, old);
    EXPECT_TRUE(waitForLog("(No buffer space available), serving it here until the deadline"));
    // DONE went out although a connection is still served: nothing more will be handed over.
    EXPECT_TRUE(waitForLog("done: nothing more to hand over, serving 1 connection here"));
    EXPECT_TRUE(waitForLog("has handed over everything"));

    // Its client leaves: the old worker exits, the replacement adopts the
    // held two and answers the requests that waited in their sockets.
    fds[local].reset();
    for (std::size_t i = 0; i < fds.size(); ++i) {
        if (!fds[i]) {
            continue;
        }
        const Response r = readResponse(fds[i].borrow());
        ASSERT_EQ(r.error, "") << "held connection " << i;
        EXPECT_EQ(r.status, 200);
        EXPECT_EQ(r.generation, "2");
        EXPECT_NE(r.pid, old);
    }
    EXPECT_TRUE(waitForLog("refused 1, served locally 1, closed 1"));
    web = connections();
    EXPECT_EQ(web.at("adopted"), 2);
    EXPECT_TRUE(web.at("held").empty());
    fds.clear(); // idle connections would hold up the worker's SIGTERM
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(KeepAlive, AConnectionWhoseStateIsOverTheLimitIsServedByTheOldWorker)
{
    // state_size 1 KiB: a connection holding 4 KiB of an unfinished request
    // cannot be handed over (fdsupd announced the limit in WELCOME, so
    // libactivate refuses it with EMSGSIZE before sending). The old worker
    // serves it until its client closes; the idle ones move on.
    startWithLimits("state_size = \"1KiB\"\n");
    const int port = fdsupd_.port("web");
    std::vector<UniqueFd> fds;
    pid_t old = 0;
    ASSERT_NO_FATAL_FAILURE(openServed(port, 3, fds, old));
    const BorrowedFd big = fds[0].borrow();
    const std::string head = "GET / HTTP/1.1\r\nHost: x\r\nX-Padding: " + std::string(4096, 'p');
    ASSERT_EQ(sendAll(big, head), "");
    const int clientPort = localPort(big);
    // Read by the worker: it is the connection's state, not bytes in the socket.
    const auto queued = waitForReceiveQueueEmpty(port, clientPort);
    ASSERT_TRUE(queued.has_value()) << "no server side for client port " << clientPort;
    ASSERT_EQ(*queued, 0U) << "the worker never read the request's head";

    // --no-wait: the old worker lives on as long as the big connection.
    const auto restart = fdsupctl({"restart", "--no-wait", "web"});
    ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    ASSERT_TRUE(waitForConnections([](const nlohmann::json &web) { return web.at("adopted") == 2; }))
        << connections().dump();

    // The idle ones were adopted by the replacement.
    pid_t replacement = 0;
    for (std::size_t i = 1; i < fds.size(); ++i) {
        ASSERT_EQ(sendAll(fds[i].borrow(), kRequest), "");
        const Response r = readResponse(fds[i].borrow());
        ASSERT_EQ(r.error, "") << "idle connection " << i;
        EXPECT_EQ(r.status, 200);
        EXPECT_EQ(r.generation, "2");
        EXPECT_NE(r.pid, old);
        replacement = r.pid;
    }
    // The rest of the big request: answered by the old worker, on the same connection.
    ASSERT_EQ(sendAll(big, "\r\n\r\n"), "");
    const Response answer = readResponse(big);
    ASSERT_EQ(answer.error, "") << "the connection over the limit was not served on";
    EXPECT_EQ(answer.status, 200);
    EXPECT_EQ(answer.pid, old);
    EXPECT_EQ(answer.generation, "1");
    EXPECT_TRUE(waitForLog("Message too long, serving it here until the deadline"));
    EXPECT_TRUE(waitForLog("done: nothing more to hand over, serving 1 connection here"));

    fds[0].reset(); // the old worker's last connection: it exits
    EXPECT_TRUE(waitForInstances({replacement}));
    EXPECT_TRUE(waitForLog("refused 0, served locally 1, closed 1"));
    const auto web = connections();
    EXPECT_EQ(web.at("handed"), 2);
    EXPECT_EQ(web.at("adopted"), 2);
    EXPECT_EQ(web.at("refused"), 0); // refused before it was sent
    EXPECT_TRUE(web.at("held").empty());
    fds.clear();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
