// The two remaining units/examples/ files, run as written (paths and port
// rewritten by prepareExample): api-with-admin.toml (libactivate's
// http-keepalive as www-data, a TCP and a unix admin socket, channel
// readiness, handoff of keep-alive connections on restart) and
// queue-worker.toml (mailer.py: a lease that forbids two at once, notify
// readiness, stop-first restarts, SIGINT finishing the file in progress).
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/fd.hpp"
#include "daemon_harness.hpp"
#include "examples.hpp"
#include "http_load.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

namespace fs = std::filesystem;

constexpr int kKeepAliveClients = 8;
constexpr std::size_t kRequests = 200;

// The example's [supervisor] table merged with the test's (control socket).
std::string withTestSupervisor(std::string config, const DaemonHarness &fdsupd)
{
    if (config.find("[supervisor]\n") == std::string::npos) {
        return fdsupd.supervisorTable() + config;
    }
    replaceAll(config, "[supervisor]\n", fdsupd.supervisorTable());
    return config;
}

// One GET over a unix stream socket, read to EOF (Connection: close); the
// whole answer, or "" when the connection failed.
std::string httpOverUnix(const fs::path &path)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path.string().copy(addr.sun_path, sizeof addr.sun_path - 1);
    const timeval timeout{10, 0};
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (connect(fd.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr) != 0) {
        return "";
    }
    const std::string request = "GET /health HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
    if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
        static_cast<ssize_t>(request.size())) {
        return "";
    }
    std::string answer;
    char buf[4096];
    for (ssize_t n; (n = recv(fd.get(), buf, sizeof buf, 0)) > 0;) {
        answer.append(buf, static_cast<std::size_t>(n));
    }
    return answer;
}

// The first field of a line of /proc/PID/FILE that starts with key ("Uid:"
// in status, "Max open files" in limits), and the second as `second`; "" when
// there is none.
std::string procField(pid_t pid, const std::string &file, const std::string &key,
                      std::string *second = nullptr)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with(key)) {
            std::istringstream fields(line.substr(key.size()));
            std::string first;
            fields >> first;
            if (second != nullptr) {
                fields >> *second;
            }
            return first;
        }
    }
    return "";
}

uid_t uidOf(pid_t pid)
{
    const std::string uid = procField(pid, "status", "Uid:");
    return uid.empty() ? static_cast<uid_t>(-1) : static_cast<uid_t>(std::stoul(uid));
}

class Examples : public DaemonTest<> {
protected:
    void SetUp() override
    {
        if (geteuid() != 0) {
            GTEST_SKIP() << "the examples run their workers as www-data and nobody: needs root";
        }
    }

    fs::path exampleDir() const { return fdsupd_.dir() / "example"; }

    void start(const std::string &config)
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(withTestSupervisor(config, fdsupd_), why)) << why;
    }

    nlohmann::json connections(const std::string &service)
    {
        const auto reply = fdsupd_.call("io.fdsup.Manager.Connections", {{"service", service}});
        EXPECT_EQ(reply.error, "");
        return reply.parameters.at("services").at(0);
    }

    // The pids of the service's ready instances.
    std::set<pid_t> readyPids(const std::string &service)
    {
        std::set<pid_t> pids;
        const nlohmann::json status = fdsupd_.status(service);
        for (const auto &instance : status.at("instances")) {
            if (instance.at("state") == "ready" && instance.at("pid").is_number()) {
                pids.insert(instance.at("pid").get<pid_t>());
            }
        }
        return pids;
    }

    // The pids of the service's instances once `n` are ready.
    std::set<pid_t> waitReady(const std::string &service, std::size_t n)
    {
        std::set<pid_t> pids;
        EXPECT_TRUE(waitUntil([&] {
            pids = readyPids(service);
            return pids.size() == n;
        })) << fdsupd_.status(service).dump();
        return pids;
    }
};

class ApiWithAdmin : public Examples {
protected:
    // The example under fdsupd, its four workers ready; the TCP port.
    int startApi()
    {
        const int port = freePort();
        start(prepareExample(
            exampleDir(), "api-with-admin", port,
            {{"/usr/libexec/fdsup/examples/http-keepalive", requireEnv("FDSUP_TEST_HTTP_KEEPALIVE")}}));
        if (!HasFatalFailure()) {
            pids_ = waitReady("api", 4);
        }
        return port;
    }

    fs::path admin() const { return exampleDir() / "run" / "api-admin.sock"; }

    std::set<pid_t> pids_;
};

TEST_F(ApiWithAdmin, WorkersRunAsConfiguredAndAnswerOnBothSockets)
{
    const int port = startApi();
    ASSERT_FALSE(HasFatalFailure());
    ASSERT_EQ(pids_.size(), 4U);
    const passwd *www = getpwnam("www-data");
    ASSERT_NE(www, nullptr);
    for (const pid_t pid : pids_) {
        SCOPED_TRACE("pid " + std::to_string(pid));
        EXPECT_EQ(uidOf(pid), www->pw_uid);
        EXPECT_EQ(procField(pid, "status", "Umask:"), "0077");
        EXPECT_EQ(procField(pid, "status", "NoNewPrivs:"), "1");
        std::string hard;
        EXPECT_EQ(procField(pid, "limits", "Max open files", &hard), "16384");
        EXPECT_EQ(hard, "16384");
        EXPECT_EQ(procField(pid, "limits", "Max core file size"), "0");
    }
    // Both sockets came as LISTEN_FDS, and each answers.
    EXPECT_TRUE(waitUntil([&] {
        return fdsupd_.log().find("ready: serving 2 listeners") != std::string::npos;
    })) << fdsupd_.log();
    EXPECT_TRUE(answersOk(port));
    EXPECT_NE(httpOverUnix(admin()).find("HTTP/1.1 200"), std::string::npos);
    struct stat st {};
    ASSERT_EQ(stat(admin().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660U);
    const group *adm = getgrnam("adm");
    ASSERT_NE(adm, nullptr);
    EXPECT_EQ(st.st_gid, adm->gr_gid);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(ApiWithAdmin, RestartUnderKeepAliveLoadHandsEveryConnectionOver)
{
    const int port = startApi();
    ASSERT_FALSE(HasFatalFailure());
    const std::set<pid_t> before = pids_;
    HttpLoad load(port, kKeepAliveClients, HttpLoad::Mode::KeepAlive, std::chrono::seconds(10));
    load.start();
    EXPECT_TRUE(load.waitForRequests(0, kRequests, kEventDeadline));
    const ProcessResult restart = fdsupd_.fdsupctl({"restart", "api", "--wait"});
    EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    std::cout << "[ restart  ] " << restart.out;
    EXPECT_NE(restart.out.find("4 instances, batch 2"), std::string::npos) << "rollout_batch = 2";
    EXPECT_TRUE(load.waitForRequests(load.requests(), kRequests, kEventDeadline));
    const HttpLoadReport report = load.stop();
    std::cout << "[ figures  ] api-with-admin, keep-alive across a restart: " << report.summary() << "\n";

    for (const pid_t pid : waitReady("api", 4)) {
        EXPECT_EQ(before.count(pid), 0U) << "pid " << pid << " was not replaced";
    }
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(report.failed(), 0U) << report.summary();
    EXPECT_EQ(report.keepAliveRace, 0U) << "a connection was closed, not handed over: " << report.summary();
    // No client's connection was closed (above): each went from its old
    // worker to a new one, or (a client that connected while the old
    // workers had stopped accepting) was accepted by a new one directly.
    const auto api = connections("api");
    EXPECT_GE(api.at("handed"), 1) << api.dump();
    EXPECT_LE(api.at("handed"), kKeepAliveClients) << api.dump();
    EXPECT_EQ(api.at("adopted"), api.at("handed")) << api.dump();
    EXPECT_EQ(api.at("refused"), 0) << api.dump();
    EXPECT_NE(httpOverUnix(admin()).find("HTTP/1.1 200"), std::string::npos)
        << "admin socket after the restart";
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// The processes whose command line names the mailer.py of dir: at most one
// may ever run.
int mailersUnder(const fs::path &script)
{
    int count = 0;
    for (const auto &entry : fs::directory_iterator("/proc")) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) {
            continue;
        }
        // read(2), not a stream: the process may be gone already (then nothing is read).
        std::string cmdline;
        const UniqueFd fd(open((entry.path() / "cmdline").c_str(), O_RDONLY | O_CLOEXEC));
        char buffer[4096];
        for (ssize_t n = 0; fd && (n = read(fd.get(), buffer, sizeof buffer)) > 0;) {
            cmdline.append(buffer, static_cast<std::size_t>(n));
        }
        count += cmdline.find(script.string()) != std::string::npos ? 1 : 0;
    }
    return count;
}

// Samples mailersUnder() in a thread until destroyed: the most seen at once.
class MailerWatch {
public:
    explicit MailerWatch(fs::path script)
        : script_(std::move(script)), thread_([this] {
              while (!stop_) {
                  most_ = std::max(most_.load(), mailersUnder(script_));
              }
          })
    {}
    ~MailerWatch() { stopWatching(); }
    MailerWatch(const MailerWatch &) = delete;
    MailerWatch &operator=(const MailerWatch &) = delete;
    int stopWatching()
    {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
        return most_;
    }

private:
    fs::path script_;
    std::atomic<bool> stop_{false};
    std::atomic<int> most_{0};
    std::thread thread_;
};

class QueueWorker : public Examples {
protected:
    fs::path queue() const { return exampleDir() / "run" / "mailer"; }
    fs::path script() const { return exampleDir() / "queue-worker" / "mailer.py"; }

    // The example under fdsupd, its queue owned by nobody; the pid of the
    // ready mailer.
    pid_t startMailer()
    {
        const std::string config = prepareExample(exampleDir(), "queue-worker", freePort());
        fs::create_directories(queue());
        for (const fs::path &dir : {fdsupd_.dir().path(), exampleDir(), exampleDir() / "run"}) {
            fs::permissions(dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
        }
        const passwd *nobody = getpwnam("nobody");
        const group *nogroup = getgrnam("nogroup");
        EXPECT_TRUE(nobody != nullptr && nogroup != nullptr);
        EXPECT_EQ(chown(queue().c_str(), nobody->pw_uid, nogroup->gr_gid), 0);
        start(config);
        const std::set<pid_t> pids = waitReady("mailer", 1);
        return pids.empty() ? -1 : *pids.begin();
    }

    // Drops messages into new/ as a mail client would: written aside, renamed in.
    void drop(const std::vector<std::string> &names)
    {
        for (const auto &name : names) {
            writeFile(exampleDir() / "run" / name, "To: someone@example.org\n\n" + name + "\n");
            fs::rename(exampleDir() / "run" / name, queue() / "new" / name);
        }
    }

    // "PID NAME" lines of sent.log, as name -> pid.
    std::map<std::string, pid_t> sent()
    {
        std::map<std::string, pid_t> by;
        std::ifstream in(queue() / "sent.log");
        pid_t pid = 0;
        for (std::string name; in >> pid >> name;) {
            by[name] = pid;
        }
        return by;
    }

    // The workers' output reaches fdsupd's log through a pipe, maybe after
    // the exit was seen: wait for it.
    bool waitForLog(const std::string &text)
    {
        return waitUntil([&] { return fdsupd_.log().find(text) != std::string::npos; });
    }

    bool waitSent(std::size_t n)
    {
        return waitUntil([&] { return sent().size() == n; });
    }

    pid_t leaseHolder() { return std::stoi(readFile(queue() / "lease")); }
};

TEST_F(QueueWorker, ProcessesItsQueueAndARestartNeverRunsTwoMailers)
{
    const pid_t first = startMailer();
    ASSERT_GT(first, 0);
    const passwd *nobody = getpwnam("nobody");
    EXPECT_EQ(uidOf(first), nobody->pw_uid);
    ASSERT_TRUE(waitUntil([&] { return fs::exists(queue() / "lease"); }));
    EXPECT_EQ(leaseHolder(), first);
    drop({"m1", "m2", "m3"});
    ASSERT_TRUE(waitSent(3)) << fdsupd_.log();
    for (const auto &[name, pid] : sent()) {
        EXPECT_EQ(pid, first) << name;
        EXPECT_TRUE(fs::exists(queue() / "done" / name)) << name;
    }

    // The lease is real: a second mailer on the same queue fails at once.
    const ProcessResult second =
        runProcess({"/usr/bin/python3", script().string(), "--queue", queue().string()});
    EXPECT_EQ(second.exitCode, 75) << second.err;
    EXPECT_NE(second.err.find("leased by pid " + std::to_string(first)), std::string::npos) << second.err;

    MailerWatch watch(script());
    const ProcessResult restart = fdsupd_.fdsupctl({"restart", "mailer", "--wait"});
    EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    const std::set<pid_t> now = waitReady("mailer", 1);
    EXPECT_EQ(watch.stopWatching(), 1) << "mailers running at once during the restart";
    ASSERT_EQ(now.size(), 1U);
    const pid_t replacement = *now.begin();
    EXPECT_NE(replacement, first);
    EXPECT_EQ(kill(first, 0), -1) << "the old mailer still runs";
    EXPECT_EQ(leaseHolder(), replacement);
    // The replacement took the lease without waiting: no mailer found it held.
    EXPECT_EQ(fdsupd_.log().find("another mailer runs on it"), std::string::npos) << fdsupd_.log();
    EXPECT_TRUE(waitForLog("SIGINT: exit 0 after sending 3")) << fdsupd_.log();

    drop({"m4", "m5"});
    ASSERT_TRUE(waitSent(5)) << fdsupd_.log();
    EXPECT_EQ(sent().at("m4"), replacement);
    EXPECT_EQ(sent().at("m5"), replacement);
}

TEST_F(QueueWorker, StopWithSigintFinishesTheMessageInProgress)
{
    const pid_t pid = startMailer();
    ASSERT_GT(pid, 0);
    std::vector<std::string> names;
    names.reserve(20);
    for (int i = 0; i < 20; ++i) {
        names.push_back("n" + std::to_string(100 + i));
    }
    drop(names);
    // Stopped while it works through the queue (0.1 s a message).
    ASSERT_TRUE(waitSent(1));
    const ProcessResult stop = fdsupd_.fdsupctl({"stop", "mailer"});
    EXPECT_EQ(stop.exitCode, 0) << stop.out << stop.err;
    EXPECT_TRUE(fs::is_empty(queue() / "sending")) << "a message was left half sent";
    const auto done = sent();
    std::size_t inNew = 0;
    for (const auto &name : names) {
        const bool isDone = fs::exists(queue() / "done" / name);
        EXPECT_EQ(isDone, done.contains(name)) << name;
        inNew += fs::exists(queue() / "new" / name) ? 1 : 0;
    }
    EXPECT_EQ(done.size() + inNew, names.size());
    EXPECT_LT(done.size(), names.size()) << "the stop came after the queue was empty: proves nothing";
    EXPECT_TRUE(waitForLog("SIGINT: exit 0 after sending " + std::to_string(done.size()))) << fdsupd_.log();
    EXPECT_EQ(fdsupd_.status("mailer").at("state"), "stopped") << fdsupd_.status("mailer").dump();
}

// restart = "always" with restart_delay: a mailer killed in the middle of
// a message is replaced, and the replacement, once it holds the lease,
// puts the message back in new/ and sends it.
TEST_F(QueueWorker, AKilledMailerIsReplacedAndItsMessageInProgressIsSentByTheNext)
{
    const pid_t first = startMailer();
    ASSERT_GT(first, 0);
    // Ten messages of 0.1 s each: one is in sending/ most of the time. Catch
    // the mailer with one there (stopped with SIGSTOP, so sending/ holds
    // still while it is looked at; let go again when it was between two),
    // then kill it.
    std::vector<std::string> names;
    names.reserve(10);
    for (int i = 0; i < 10; ++i) {
        names.push_back("k" + std::to_string(10 + i));
    }
    drop(names);
    std::string inProgress;
    ASSERT_TRUE(waitUntil([&] {
        if (fs::is_empty(queue() / "sending") || kill(first, SIGSTOP) != 0) {
            return false;
        }
        for (const auto &entry : fs::directory_iterator(queue() / "sending")) {
            inProgress = entry.path().filename().string();
        }
        return !inProgress.empty() || kill(first, SIGCONT) != 0;
    })) << "never caught the mailer sending";
    ASSERT_FALSE(inProgress.empty());
    ASSERT_EQ(kill(first, SIGKILL), 0);
    pid_t second = -1;
    ASSERT_TRUE(waitUntil([&] {
        const std::set<pid_t> now = readyPids("mailer");
        second = now.size() == 1 ? *now.begin() : -1;
        return second > 0 && second != first;
    })) << "no replacement: "
        << fdsupd_.status("mailer").dump();
    ASSERT_TRUE(waitSent(names.size())) << fdsupd_.log();
    EXPECT_TRUE(fs::is_empty(queue() / "sending"));
    EXPECT_TRUE(fs::is_empty(queue() / "new"));
    EXPECT_EQ(sent().at(inProgress), second) << inProgress;
    EXPECT_TRUE(waitForLog(inProgress + ": back to new")) << fdsupd_.log();
    EXPECT_EQ(leaseHolder(), second);
}

} // namespace
} // namespace fdsup::test
