// Unit tests for worker spawning: fd layout, environment, credentials, exec failures.
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "io/spawn.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = test::kEventDeadline;

// Every test must leave no child behind (and, as every test, the descriptor
// table as it found it: the shared main() checks that).
class SpawnTest : public ::testing::Test {
protected:
    void TearDown() override
    {
        siginfo_t info{};
        EXPECT_EQ(waitid(P_ALL, 0, &info, WEXITED | WNOHANG), -1);
        EXPECT_EQ(errno, ECHILD) << "a child was left behind";
    }
};

int msLeft(Clock::time_point until)
{
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    return static_cast<int>(std::max<long long>(left, 0));
}

// Polls for input (or hang-up) until the deadline; false on timeout.
bool waitReadable(BorrowedFd fd, Clock::time_point until)
{
    for (;;) {
        pollfd pfd{fd.get(), POLLIN, 0};
        const int n = poll(&pfd, 1, msLeft(until));
        if (n > 0) {
            return true;
        }
        if (n == 0 || errno != EINTR) {
            return false;
        }
    }
}

bool isOpen(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

// How a spawned child ended, with everything it reported.
struct Outcome {
    int statusRc = -2; // readSpawnStatus
    SpawnFailure failure;
    std::string out;
    std::string err;
    int code = -1; // CLD_EXITED status, or -1
    int signal = 0;
};

// Reads the status pipe, both output pipes to EOF, and reaps the child
// through its pidfd, all within one deadline. On timeout the child is killed
// and reaped anyway, so no test leaves a zombie.
Outcome finish(SpawnedChild &child)
{
    Outcome outcome;
    const auto until = Clock::now() + kDeadline;
    bool timedOut = false;
    if (waitReadable(child.statusPipe.borrow(), until)) {
        outcome.statusRc = readSpawnStatus(child.statusPipe.borrow(), outcome.failure);
    } else {
        timedOut = true;
    }
    std::array<char, 4096> buf{};
    while (!timedOut && (child.stdoutPipe || child.stderrPipe)) {
        std::array<pollfd, 2> pfds{pollfd{child.stdoutPipe.get(), POLLIN, 0},
                                   pollfd{child.stderrPipe.get(), POLLIN, 0}};
        const int n = poll(pfds.data(), pfds.size(), msLeft(until));
        if (n == 0) {
            timedOut = true;
            break;
        }
        for (std::size_t i = 0; i < pfds.size(); ++i) {
            if (pfds[i].fd < 0 || pfds[i].revents == 0) {
                continue;
            }
            UniqueFd &pipe = i == 0 ? child.stdoutPipe : child.stderrPipe;
            const ssize_t r = read(pipe.get(), buf.data(), buf.size());
            if (r > 0) {
                (i == 0 ? outcome.out : outcome.err).append(buf.data(), static_cast<std::size_t>(r));
            } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
                pipe.reset();
            }
        }
    }
    if (timedOut || !waitReadable(child.pidfd.borrow(), until)) {
        ADD_FAILURE() << "child " << child.pid << " did not finish in time";
        (void)syscall(SYS_pidfd_send_signal, child.pidfd.get(), SIGKILL, nullptr, 0U);
    }
    siginfo_t info{};
    if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(child.pidfd.get()), &info, WEXITED) != 0) {
        ADD_FAILURE() << "waitid: " << errnoText(errno);
        return outcome;
    }
    if (info.si_code == CLD_EXITED) {
        outcome.code = info.si_status;
    } else {
        outcome.signal = info.si_status;
    }
    return outcome;
}

// fd-report's key=value lines; "env=" lines are collected separately.
struct Report {
    std::map<std::string, std::string> values;
    std::set<std::string> env;

    [[nodiscard]] std::string operator[](const std::string &key) const
    {
        const auto it = values.find(key);
        return it == values.end() ? "<missing " + key + ">" : it->second;
    }
};

Report parseReport(const std::string &text)
{
    Report report;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        const std::size_t eq = line.find('=');
        if (eq == std::string::npos) {
            continue;
        }
        if (line.starts_with("env=")) {
            report.env.insert(line.substr(4));
        } else {
            report.values[line.substr(0, eq)] = line.substr(eq + 1);
        }
    }
    return report;
}

std::string fdReport()
{
    return test::requireEnv("FDSUP_TEST_FD_REPORT");
}

SpawnRequest reportRequest()
{
    SpawnRequest request;
    request.executable = fdReport();
    request.argv = {"fd-report"};
    return request;
}

// What /proc/self/fd/N shows for fd: "socket:[123]", "pipe:[45]".
std::string fdTarget(BorrowedFd fd)
{
    const auto path = "/proc/self/fd/" + std::to_string(fd.get());
    return std::filesystem::read_symlink(path).string();
}

UniqueFd listener(const std::string &address)
{
    auto parsed = parseAddress(address);
    EXPECT_TRUE(parsed.ok()) << parsed.error().message;
    if (!parsed) {
        return UniqueFd();
    }
    auto bound = bindAll(*parsed, {});
    EXPECT_TRUE(bound.ok()) << bound.error().message;
    if (!bound || bound->size() != 1) {
        return UniqueFd();
    }
    return std::move(bound->front());
}

Outcome spawnAndFinish(const SpawnRequest &request)
{
    auto child = spawnWorker(request);
    EXPECT_TRUE(child.ok()) << child.error().message;
    if (!child) {
        return {};
    }
    EXPECT_GT(child->pid, 0);
    EXPECT_TRUE(child->pidfd.isValid());
    return finish(*child);
}

// Blocks SIGCHLD and SIGTERM, ignores SIGPIPE and handles SIGUSR1 for its
// lifetime, as a daemon on sd-event would; restores everything after.
class HostileSignals {
public:
    HostileSignals()
    {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGCHLD);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, &savedMask_);
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &ignore, &savedPipe_);
        struct sigaction handle {};
        handle.sa_handler = [](int) {
        };
        sigaction(SIGUSR1, &handle, &savedUsr1_);
    }
    ~HostileSignals()
    {
        sigaction(SIGUSR1, &savedUsr1_, nullptr);
        sigaction(SIGPIPE, &savedPipe_, nullptr);
        pthread_sigmask(SIG_SETMASK, &savedMask_, nullptr);
    }
    HostileSignals(const HostileSignals &) = delete;
    HostileSignals &operator=(const HostileSignals &) = delete;

private:
    sigset_t savedMask_{};
    struct sigaction savedPipe_ {};
    struct sigaction savedUsr1_ {};
};

TEST_F(SpawnTest, TrueExitsZero)
{
    auto path = findExecutable("true", "/usr/bin:/bin");
    ASSERT_TRUE(path.ok()) << path.error().message;
    SpawnRequest request;
    request.executable = *path;
    request.argv = {"true"};
    const Outcome outcome = spawnAndFinish(request);
    EXPECT_EQ(outcome.statusRc, 0);
    EXPECT_EQ(outcome.code, 0);
    EXPECT_EQ(outcome.out, "");
    EXPECT_EQ(outcome.err, "");
}

TEST_F(SpawnTest, ExecOfMissingFileIsReported)
{
    SpawnRequest request;
    request.executable = "/nonexistent/fdsup-app";
    request.argv = {"app"};
    const Outcome outcome = spawnAndFinish(request);
    ASSERT_EQ(outcome.statusRc, 1);
    EXPECT_EQ(outcome.failure.stage, SpawnStage::Exec);
    EXPECT_EQ(outcome.failure.error, ENOENT);
    EXPECT_EQ(describeSpawnFailure(request, outcome.failure),
              "exec /nonexistent/fdsup-app: No such file or directory");
    EXPECT_EQ(outcome.code, 127);
    EXPECT_STREQ(spawnStageName(outcome.failure.stage), "exec");
}

TEST_F(SpawnTest, ExecOfNonExecutableFileIsReported)
{
    const test::TempDir dir;
    const auto path = (dir / "not-executable").string();
    test::writeFile(path, "#!/bin/sh\nexit 0\n");
    ASSERT_EQ(chmod(path.c_str(), 0644), 0);
    SpawnRequest request;
    request.executable = path;
    request.argv = {"not-executable"};
    const Outcome outcome = spawnAndFinish(request);
    ASSERT_EQ(outcome.statusRc, 1);
    EXPECT_EQ(outcome.failure.stage, SpawnStage::Exec);
    EXPECT_EQ(outcome.failure.error, EACCES);
    EXPECT_EQ(describeSpawnFailure(request, outcome.failure), "exec " + path + ": Permission denied");
    EXPECT_EQ(outcome.code, 127);
}

TEST_F(SpawnTest, MissingWorkingDirectoryIsReported)
{
    const test::TempDir dir;
    SpawnRequest request = reportRequest();
    request.workingDirectory = (dir / "missing").string();
    const Outcome outcome = spawnAndFinish(request);
    ASSERT_EQ(outcome.statusRc, 1);
    EXPECT_EQ(outcome.failure.stage, SpawnStage::Directory);
    EXPECT_EQ(outcome.failure.error, ENOENT);
    EXPECT_EQ(describeSpawnFailure(request, outcome.failure),
              "chdir " + request.workingDirectory + ": No such file or directory");
    EXPECT_EQ(outcome.out, "") << "nothing may run after a failed step";
}

TEST_F(SpawnTest, FailedLimitNamesTheLimit)
{
    SpawnRequest request = reportRequest();
    request.limits = {{RLIMIT_CORE, 0, 0}, {RLIMIT_NOFILE, 2048, 1024}}; // soft above hard
    const Outcome outcome = spawnAndFinish(request);
    ASSERT_EQ(outcome.statusRc, 1);
    EXPECT_EQ(outcome.failure.stage, SpawnStage::Limits);
    EXPECT_EQ(outcome.failure.error, EINVAL);
    EXPECT_EQ(outcome.failure.index, 1U);
    EXPECT_EQ(describeSpawnFailure(request, outcome.failure), "setrlimit nofile 2048:1024: Invalid argument");
}

// The worker sees exactly what systemd socket activation would give it, and
// nothing of the test process: not its fds, signals, environment or umask.
TEST_F(SpawnTest, WorkerGetsExactlyItsListenersAndSettings)
{
    const test::TempDir dir;
    const UniqueFd web = listener("tcp://127.0.0.1:0");
    const UniqueFd admin = listener("unix:" + (dir / "admin.sock").string());
    ASSERT_TRUE(web && admin);
    std::array<int, 2> pair{};
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair.data()), 0);
    const UniqueFd channel(pair[0]);
    const UniqueFd channelPeer(pair[1]);
    // An inheritable fd of the parent's that must not reach the worker.
    const UniqueFd stray(open("/dev/zero", O_RDONLY)); // no O_CLOEXEC, on purpose
    ASSERT_TRUE(stray.isValid());
    ASSERT_EQ(setenv("FDSUP_SPAWN_TEST_LEAK", "1", 1), 0);

    const HostileSignals signals;
    sigset_t maskBefore;
    pthread_sigmask(SIG_BLOCK, nullptr, &maskBefore);

    SpawnRequest request = reportRequest();
    request.argv = {"custom-argv0", "--flag", ""};
    request.environment = {"FOO=bar baz", "EMPTY=", "LISTEN_FDS=99", "LISTEN_PID=1"};
    request.fds = {web.borrow(), admin.borrow()};
    request.fdNames = {"web", "admin"};
    request.extraFds = {channel.borrow()};
    request.workingDirectory = std::filesystem::canonical(dir.path()).string();
    request.umask = 0027;
    request.limits = {{RLIMIT_CORE, 0, 0}, {RLIMIT_NOFILE, 512, 1024}};
    request.noNewPrivileges = true;
    request.newProcessGroup = true;

    auto child = spawnWorker(request);
    ASSERT_TRUE(child.ok()) << child.error().message;
    sigset_t maskAfter;
    pthread_sigmask(SIG_BLOCK, nullptr, &maskAfter);
    for (int sig = 1; sig < NSIG; ++sig) {
        EXPECT_EQ(sigismember(&maskBefore, sig), sigismember(&maskAfter, sig)) << "signal " << sig;
    }
    const std::string stdoutPipe = fdTarget(child->stdoutPipe.borrow());
    const pid_t pid = child->pid;
    const Outcome outcome = finish(*child);
    unsetenv("FDSUP_SPAWN_TEST_LEAK");
    ASSERT_EQ(outcome.statusRc, 0) << describeSpawnFailure(request, outcome.failure);
    ASSERT_EQ(outcome.code, 0) << outcome.err;
    EXPECT_EQ(outcome.err, "fd-report: done\n");
    const Report report = parseReport(outcome.out);

    EXPECT_EQ(report["fds"], "0,1,2,3,4,5");
    EXPECT_EQ(report["fd.0"], "/dev/null");
    EXPECT_EQ(report["stdin.chr"], "1");
    EXPECT_EQ(report["stdin.rdev"], "1:3");
    EXPECT_EQ(report["fd.1"], stdoutPipe);
    EXPECT_TRUE(report["fd.2"].starts_with("pipe:[")) << report["fd.2"];
    EXPECT_NE(report["fd.2"], stdoutPipe);
    EXPECT_EQ(report["fd.3"], fdTarget(web.borrow()));
    EXPECT_EQ(report["fd.4"], fdTarget(admin.borrow()));
    EXPECT_EQ(report["fd.5"], fdTarget(channel.borrow()));
    for (const char *fd : {"0", "1", "2", "3", "4", "5"}) {
        EXPECT_EQ(report[std::string("fdcloexec.") + fd], "0") << "fd " << fd;
    }

    EXPECT_EQ(report["argv.0"], "custom-argv0");
    EXPECT_EQ(report["argv.1"], "--flag");
    EXPECT_EQ(report["argv.2"], "");
    EXPECT_EQ(report.values.count("argv.3"), 0U);
    const std::set<std::string> env{
        "FOO=bar baz",
        "EMPTY=",
        "LISTEN_FDS=2",
        "LISTEN_FDNAMES=web:admin",
        "LISTEN_PID=" + std::to_string(pid),
        // This kernel (6.18) has pidfs: the child's own pidfd's inode, as systemd sets it.
        "LISTEN_PIDFDID=" + report["pidfd.ino"],
    };
    EXPECT_EQ(report.values.count("pidfd.ino"), 1U);
    EXPECT_EQ(report.env, env);
    EXPECT_EQ(report["pid"], std::to_string(pid));
    EXPECT_EQ(report["sd.n"], "2");
    EXPECT_EQ(report["sd.names"], "web:admin");

    EXPECT_EQ(report["sig.blocked"], "none");
    // Only ignored signals survive exec (handlers are reset by the kernel);
    // the helper's own handlers (ASan installs some) are none of our doing.
    EXPECT_EQ(report["sig.ignored"], "none");
    EXPECT_EQ(report["umask"], "0027");
    EXPECT_EQ(report["cwd"], request.workingDirectory);
    EXPECT_EQ(report["rlimit.nofile"], "512:1024");
    EXPECT_EQ(report["rlimit.core"], "0:0");
    EXPECT_EQ(report["pgid"], std::to_string(pid));
    EXPECT_EQ(report["no_new_privs"], "1");
    EXPECT_EQ(report["uid"], std::to_string(getuid()));
}

// LISTEN_PIDFDID is the inode number of the worker's own pidfd, as the
// worker itself finds it, as fdsupd's pidfd of it has it, and different for
// each worker (pidfs gives every process its own inode, never reused while
// the system runs).
TEST_F(SpawnTest, ListenPidfdIdIsTheWorkersOwnPidfdInode)
{
    const UniqueFd web = listener("tcp://127.0.0.1:0");
    ASSERT_TRUE(web);
    std::set<std::string> ids;
    for (int i = 0; i < 2; ++i) {
        SpawnRequest request = reportRequest();
        request.fds = {web.borrow()};
        auto child = spawnWorker(request);
        ASSERT_TRUE(child.ok()) << child.error().message;
        struct stat parentView {};
        ASSERT_EQ(fstat(child->pidfd.get(), &parentView), 0);
        const Outcome outcome = finish(*child);
        ASSERT_EQ(outcome.code, 0) << outcome.err;
        const Report report = parseReport(outcome.out);
        ASSERT_EQ(report.values.count("pidfd.ino"), 1U) << outcome.out;
        EXPECT_TRUE(report.env.contains("LISTEN_PIDFDID=" + report["pidfd.ino"])) << outcome.out;
        EXPECT_EQ(report["pidfd.ino"], std::to_string(parentView.st_ino));
        ids.insert(report["pidfd.ino"]);
    }
    EXPECT_EQ(ids.size(), 2U);
}

// Sources already sitting inside the target range, swapped and repeated,
// must still land where asked: moved out of the way before dup3.
TEST_F(SpawnTest, SourcesInsideTheTargetRangeAreLaidOutCorrectly)
{
    const test::TempDir dir;
    UniqueFd a = listener("tcp://127.0.0.1:0");
    UniqueFd b = listener("unix:" + (dir / "b.sock").string());
    ASSERT_TRUE(a && b);
    // Arrange a at 3 and b at 4 when those are free (they usually are).
    auto placeAt = [](UniqueFd &fd, int target) {
        if (fd.get() == target) {
            return true;
        }
        if (isOpen(target)) {
            return false;
        }
        fd = UniqueFd(dup3(fd.get(), target, O_CLOEXEC));
        return fd.get() == target;
    };
    if (!placeAt(a, 3) || !placeAt(b, 4)) {
        GTEST_SKIP() << "fds 3 and 4 are taken in this test process";
    }
    const std::string aTarget = fdTarget(a.borrow());
    const std::string bTarget = fdTarget(b.borrow());

    SpawnRequest request = reportRequest();
    request.fds = {b.borrow(), a.borrow()}; // 3 <- fd 4, 4 <- fd 3
    request.fdNames = {"b", "a"};
    request.extraFds = {a.borrow(), b.borrow()}; // the same sources again, at 5 and 6
    const Outcome outcome = spawnAndFinish(request);
    ASSERT_EQ(outcome.statusRc, 0) << describeSpawnFailure(request, outcome.failure);
    const Report report = parseReport(outcome.out);
    EXPECT_EQ(report["fds"], "0,1,2,3,4,5,6");
    EXPECT_EQ(report["fd.3"], bTarget);
    EXPECT_EQ(report["fd.4"], aTarget);
    EXPECT_EQ(report["fd.5"], aTarget);
    EXPECT_EQ(report["fd.6"], bTarget);
    EXPECT_EQ(report["fdcloexec.3"], "0");
    EXPECT_EQ(report["fdcloexec.4"], "0");
    EXPECT_EQ(report["sd.n"], "2");
    EXPECT_EQ(report["sd.names"], "b:a");
    // The parent's own fds are untouched.
    EXPECT_EQ(fdTarget(a.borrow()), aTarget);
    EXPECT_EQ(fcntl(a.get(), F_GETFD), FD_CLOEXEC);
}

// The pinned binary's descriptor may sit where a listener goes (a start
// that took its listeners over opened it at 4, the channel's place): exec
// must run the binary, not the socket laid out over it.
TEST_F(SpawnTest, APinnedBinaryInsideTheTargetRangeIsStillExecuted)
{
    // Opened first, the binary gets the lowest free number: 3 or 4, the
    // listeners' places, when the test process holds nothing else there.
    UniqueFd binary(open(fdReport().c_str(), O_PATH | O_CLOEXEC));
    UniqueFd a = listener("tcp://127.0.0.1:0");
    UniqueFd b = listener("tcp://127.0.0.1:0");
    ASSERT_TRUE(a && b && binary);
    if (binary.get() > 4) {
        GTEST_SKIP() << "fds 3 and 4 are taken in this test process";
    }
    const std::string aTarget = fdTarget(a.borrow());
    const std::string bTarget = fdTarget(b.borrow());

    SpawnRequest request = reportRequest();
    request.executableFd = binary.borrow();
    request.fds = {a.borrow(), b.borrow()};
    request.fdNames = {"a", "b"};
    const Outcome outcome = spawnAndFinish(request);
    ASSERT_EQ(outcome.statusRc, 0) << describeSpawnFailure(request, outcome.failure);
    const Report report = parseReport(outcome.out);
    EXPECT_EQ(report["fds"], "0,1,2,3,4");
    EXPECT_EQ(report["fd.3"], aTarget);
    EXPECT_EQ(report["fd.4"], bTarget);
}

TEST_F(SpawnTest, ListenVariablesOnlyWithListeners)
{
    const UniqueFd web = listener("tcp://127.0.0.1:0");
    ASSERT_TRUE(web);
    {
        SpawnRequest request = reportRequest();
        request.environment = {"LISTEN_FDS=3", "KEEP=1"};
        const Report report = parseReport(spawnAndFinish(request).out);
        EXPECT_EQ(report.env, std::set<std::string>{"KEEP=1"});
        EXPECT_EQ(report["fds"], "0,1,2");
        EXPECT_EQ(report["sd.n"], "0");
    }
    {
        SpawnRequest request = reportRequest();
        request.fds = {web.borrow()};
        request.listenFds = false; // channel activation: the fd, but no LISTEN_*
        const Report report = parseReport(spawnAndFinish(request).out);
        EXPECT_TRUE(report.env.empty());
        EXPECT_EQ(report["fds"], "0,1,2,3");
    }
    {
        SpawnRequest request = reportRequest();
        request.fds = {web.borrow(), web.borrow()}; // no names: "unknown", as systemd
        const Report report = parseReport(spawnAndFinish(request).out);
        EXPECT_EQ(report["sd.n"], "2");
        EXPECT_EQ(report["sd.names"], "unknown:unknown");
    }
}

TEST_F(SpawnTest, SameProcessGroupWhenAsked)
{
    SpawnRequest request = reportRequest();
    request.newProcessGroup = false;
    const Report report = parseReport(spawnAndFinish(request).out);
    EXPECT_EQ(report["pgid"], std::to_string(getpgrp()));
    EXPECT_EQ(report["no_new_privs"], "0");
}

// captureOutput = false: the worker writes to fdsupd's own stdout/stderr.
TEST_F(SpawnTest, InheritedOutput)
{
    std::array<int, 2> fds{};
    ASSERT_EQ(pipe2(fds.data(), O_CLOEXEC), 0);
    const UniqueFd readEnd(fds[0]);
    UniqueFd writeEnd(fds[1]);
    (void)std::fflush(stdout);
    const UniqueFd savedStdout(fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3));
    ASSERT_TRUE(savedStdout.isValid());
    ASSERT_EQ(dup2(writeEnd.get(), STDOUT_FILENO), STDOUT_FILENO);
    const std::string pipeTarget = fdTarget(readEnd.borrow());
    const std::string stderrTarget = fdTarget(BorrowedFd(STDERR_FILENO));

    SpawnRequest request = reportRequest();
    request.captureOutput = false;
    auto child = spawnWorker(request);
    // Our stdout back before any assertion prints.
    dup2(savedStdout.get(), STDOUT_FILENO);
    writeEnd.reset();
    ASSERT_TRUE(child.ok()) << child.error().message;
    EXPECT_FALSE(child->stdoutPipe.isValid());
    EXPECT_FALSE(child->stderrPipe.isValid());
    std::string out;
    const auto until = Clock::now() + kDeadline;
    std::array<char, 4096> buf{};
    while (waitReadable(readEnd.borrow(), until)) {
        const ssize_t n = read(readEnd.get(), buf.data(), buf.size());
        if (n <= 0) {
            break;
        }
        out.append(buf.data(), static_cast<std::size_t>(n));
    }
    const Outcome outcome = finish(*child);
    EXPECT_EQ(outcome.code, 0);
    const Report report = parseReport(out);
    EXPECT_EQ(report["fd.1"], pipeTarget);
    EXPECT_EQ(report["fd.2"], stderrTarget);
}

TEST_F(SpawnTest, RunsAsAnotherUserWithSupplementaryGroups)
{
    if (geteuid() != 0) {
        GTEST_SKIP() << "needs root";
    }
    SpawnRequest request = reportRequest();
    request.uid = 65534;
    request.gid = 65534;
    request.supplementaryGroups = std::vector<gid_t>{65534, 4};
    request.noNewPrivileges = true;
    const Outcome outcome = spawnAndFinish(request);
    ASSERT_EQ(outcome.statusRc, 0) << describeSpawnFailure(request, outcome.failure);
    const Report report = parseReport(outcome.out);
    EXPECT_EQ(report["uid"], "65534");
    EXPECT_EQ(report["euid"], "65534");
    EXPECT_EQ(report["gid"], "65534");
    EXPECT_EQ(report["egid"], "65534");
    EXPECT_EQ(report["groups"], "4,65534");
}

TEST_F(SpawnTest, ResolvedUserDropsRootsGroups)
{
    if (geteuid() != 0) {
        GTEST_SKIP() << "needs root";
    }
    config::ServiceConfig service;
    service.user = "nobody";
    auto credentials = resolveCredentials(service);
    ASSERT_TRUE(credentials.ok()) << credentials.error().message;
    ASSERT_TRUE(credentials->uid && credentials->gid && credentials->groups);
    std::vector<gid_t> expected = *credentials->groups; // getgrouplist("nobody", 65534)
    EXPECT_NE(std::find(expected.begin(), expected.end(), *credentials->gid), expected.end());

    SpawnRequest request = reportRequest();
    request.uid = credentials->uid;
    request.gid = credentials->gid;
    request.supplementaryGroups = credentials->groups;
    const Outcome outcome = spawnAndFinish(request);
    ASSERT_EQ(outcome.statusRc, 0) << describeSpawnFailure(request, outcome.failure);
    const Report report = parseReport(outcome.out);
    std::sort(expected.begin(), expected.end());
    std::string groups;
    for (const gid_t gid : expected) {
        groups += (groups.empty() ? "" : ",") + std::to_string(gid);
    }
    EXPECT_EQ(report["uid"], std::to_string(*credentials->uid));
    EXPECT_EQ(report["gid"], std::to_string(*credentials->gid));
    EXPECT_EQ(report["groups"], groups);
}

// Without privilege, the credential steps fail in the child and say which.
// As root, a forked copy of the test process drops to nobody first.
TEST_F(SpawnTest, CredentialFailuresNameTheStep)
{
    const pid_t tester = fork();
    ASSERT_GE(tester, 0);
    if (tester == 0) {
        if (geteuid() == 0 && (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
                               setresuid(65534, 65534, 65534) != 0)) {
            _exit(10);
        }
        auto failure = [](const SpawnRequest &request) {
            auto child = spawnWorker(request);
            if (!child) {
                _exit(11);
            }
            const Outcome outcome = finish(*child);
            return outcome.statusRc == 1 && outcome.code == 127
                       ? describeSpawnFailure(request, outcome.failure)
                       : std::string();
        };
        SpawnRequest request = reportRequest();
        request.uid = 0;
        if (failure(request) != "setuid 0: Operation not permitted") {
            _exit(12);
        }
        request.gid = 0;
        if (failure(request) != "setgid 0: Operation not permitted") {
            _exit(13);
        }
        request.supplementaryGroups = std::vector<gid_t>{0};
        if (failure(request) != "setgroups 0: Operation not permitted") {
            _exit(14);
        }
        _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(tester, &status, 0), tester);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10: drop privileges, 11: spawn, 12-14: wrong failure";
}

TEST_F(SpawnTest, ResolveCredentials)
{
    config::ServiceConfig service;
    {
        auto none = resolveCredentials(service);
        ASSERT_TRUE(none.ok());
        EXPECT_FALSE(none->uid || none->gid || none->groups);
    }
    service.user = "nobody";
    {
        auto nobody = resolveCredentials(service);
        ASSERT_TRUE(nobody.ok()) << nobody.error().message;
        EXPECT_EQ(nobody->uid, 65534U);
        EXPECT_EQ(nobody->gid, 65534U);
    }
    service.user = "65534"; // numeric, with a passwd entry: its primary group
    service.group = "adm";
    service.supplementaryGroups = {"adm", "65534"};
    {
        auto numeric = resolveCredentials(service);
        ASSERT_TRUE(numeric.ok()) << numeric.error().message;
        EXPECT_EQ(numeric->uid, 65534U);
        EXPECT_EQ(numeric->gid, 4U);
        EXPECT_EQ(numeric->groups, (std::vector<gid_t>{4, 65534}));
    }
    service = {};
    service.user = "4242420"; // no passwd entry: needs a group, gets no groups
    auto missingGroup = resolveCredentials(service);
    ASSERT_FALSE(missingGroup.ok());
    EXPECT_EQ(missingGroup.error().code, ESRCH);
    EXPECT_EQ(missingGroup.error().message, "user 4242420 has no passwd entry; set a group");
    service.group = "4242420";
    {
        auto ids = resolveCredentials(service);
        ASSERT_TRUE(ids.ok()) << ids.error().message;
        EXPECT_EQ(ids->uid, 4242420U);
        EXPECT_EQ(ids->gid, 4242420U);
        EXPECT_EQ(ids->groups, std::vector<gid_t>());
    }
    service = {};
    service.user = "fdsup-no-such-user";
    auto noUser = resolveCredentials(service);
    ASSERT_FALSE(noUser.ok());
    EXPECT_EQ(noUser.error().message, "user 'fdsup-no-such-user' not found");
    service = {};
    service.group = "fdsup-no-such-group";
    auto noGroup = resolveCredentials(service);
    ASSERT_FALSE(noGroup.ok());
    EXPECT_EQ(noGroup.error().message, "group 'fdsup-no-such-group' not found");
    service = {};
    service.supplementaryGroups = {"adm", "fdsup-no-such-group"};
    EXPECT_FALSE(resolveCredentials(service).ok());
}

TEST_F(SpawnTest, FindExecutable)
{
    const test::TempDir dir;
    std::filesystem::create_directories(dir / "a");
    std::filesystem::create_directories(dir / "b");
    std::filesystem::create_directories(dir / "c" / "tool");
    const auto plain = (dir / "a" / "tool").string();
    const auto runnable = (dir / "b" / "tool").string();
    test::writeFile(plain, "");
    test::writeFile(runnable, "");
    ASSERT_EQ(chmod(plain.c_str(), 0644), 0);
    ASSERT_EQ(chmod(runnable.c_str(), 0755), 0);
    const std::string a = (dir / "a").string();
    const std::string b = (dir / "b").string();
    const std::string c = (dir / "c").string();

    // Like execvp: a non-executable or a directory earlier in PATH is skipped;
    // empty and relative entries are ignored.
    auto found = findExecutable("tool", ":relative:" + c + ":" + a + ":/nonexistent:" + b);
    ASSERT_TRUE(found.ok()) << found.error().message;
    EXPECT_EQ(*found, runnable);

    auto missing = findExecutable("fdsup-no-such-tool", "/nonexistent:" + b);
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ENOENT);
    EXPECT_EQ(missing.error().message,
              "command 'fdsup-no-such-tool' not found in PATH (/nonexistent:" + b + ")");

    auto refused = findExecutable("tool", a);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().code, EACCES);
    EXPECT_EQ(refused.error().message, "'" + plain + "' is not executable: Permission denied");

    auto absolute = findExecutable(runnable, "");
    ASSERT_TRUE(absolute.ok()) << absolute.error().message;
    EXPECT_EQ(*absolute, runnable);
    auto absolutePlain = findExecutable(plain, "/usr/bin:/bin");
    ASSERT_FALSE(absolutePlain.ok());
    EXPECT_EQ(absolutePlain.error().message, "'" + plain + "' is not executable: Permission denied");
    auto absoluteMissing = findExecutable(b + "/missing", "");
    ASSERT_FALSE(absoluteMissing.ok());
    EXPECT_EQ(absoluteMissing.error().code, ENOENT);
    EXPECT_EQ(absoluteMissing.error().message,
              "'" + b + "/missing' is not executable: No such file or directory");
    EXPECT_FALSE(findExecutable("", "/bin").ok());
}

TEST_F(SpawnTest, RequestIsCheckedBeforeFork)
{
    const UniqueFd web = listener("tcp://127.0.0.1:0");
    ASSERT_TRUE(web);
    auto expectRefused = [](const SpawnRequest &request, int code) {
        auto child = spawnWorker(request);
        ASSERT_FALSE(child.ok());
        EXPECT_EQ(child.error().code, code) << child.error().message;
    };
    SpawnRequest request = reportRequest();
    request.executable = "relative/app";
    expectRefused(request, EINVAL);
    request = reportRequest();
    request.argv.clear();
    expectRefused(request, EINVAL);
    request = reportRequest();
    request.fds = {web.borrow()};
    request.fdNames = {"a", "b"};
    expectRefused(request, EINVAL);
    request.fdNames = {"a:b"};
    expectRefused(request, EINVAL);
    request.fdNames = {"web"};
    request.extraFds = {BorrowedFd(100000)};
    expectRefused(request, EBADF);
    request = reportRequest();
    request.environment = {"NOEQUALS"};
    expectRefused(request, EINVAL);
}

// The parent neither leaks an fd nor leaves a zombie, spawn after spawn.
TEST_F(SpawnTest, ManySpawnsLeakNothing)
{
    const UniqueFd web = listener("tcp://127.0.0.1:0");
    ASSERT_TRUE(web);
    const int before = test::countOpenFds();
    SpawnRequest request;
    request.executable = "/bin/true";
    request.argv = {"true"};
    request.fds = {web.borrow()};
    request.fdNames = {"web"};
    for (int i = 0; i < 200; ++i) {
        const Outcome outcome = spawnAndFinish(request);
        ASSERT_EQ(outcome.statusRc, 0) << "spawn " << i;
        ASSERT_EQ(outcome.code, 0) << "spawn " << i;
    }
    EXPECT_EQ(test::countOpenFds(), before);
}

// On kernels (or seccomp profiles) without clone3 and close_range, spawning
// falls back to fork() + pidfd_open() and closing fds one by one. Both are
// hidden from a forked copy of the test process with a seccomp filter.
TEST_F(SpawnTest, FallbacksWithoutClone3AndCloseRange)
{
    const UniqueFd web = listener("tcp://127.0.0.1:0");
    ASSERT_TRUE(web);
    const std::string webTarget = fdTarget(web.borrow());
    const pid_t tester = fork();
    ASSERT_GE(tester, 0);
    if (tester == 0) {
        std::array<sock_filter, 6> code{{
            BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 2, 0),
            BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 1, 0),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
            BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        }};
        const sock_fprog program{static_cast<unsigned short>(code.size()), code.data()};
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
            prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
            _exit(10);
        }
        SpawnRequest request = reportRequest();
        request.fds = {web.borrow()};
        request.fdNames = {"web"};
        auto child = spawnWorker(request);
        if (!child) {
            _exit(11);
        }
        const Outcome outcome = finish(*child);
        const Report report = parseReport(outcome.out);
        const bool ok = outcome.statusRc == 0 && outcome.code == 0 && report["fds"] == "0,1,2,3" &&
                        report["fd.3"] == webTarget && report["sd.names"] == "web";
        _exit(ok ? 0 : 12);
    }
    int status = 0;
    ASSERT_EQ(waitpid(tester, &status, 0), tester);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "10: seccomp, 11: spawn, 12: wrong report";
}

TEST(SpawnFailureTest, DescriptionsNameTheStep)
{
    SpawnRequest request;
    request.executable = "/usr/bin/app";
    request.workingDirectory = "/srv/app";
    request.uid = 65534;
    request.gid = 33;
    request.supplementaryGroups = std::vector<gid_t>{33, 4};
    auto describe = [&](SpawnStage stage, int error) {
        return describeSpawnFailure(request, SpawnFailure{stage, error, 0});
    };
    EXPECT_EQ(describe(SpawnStage::Exec, ENOENT), "exec /usr/bin/app: No such file or directory");
    EXPECT_EQ(describe(SpawnStage::Directory, ENOENT), "chdir /srv/app: No such file or directory");
    EXPECT_EQ(describe(SpawnStage::User, EPERM), "setuid 65534: Operation not permitted");
    EXPECT_EQ(describe(SpawnStage::PrimaryGroup, EPERM), "setgid 33: Operation not permitted");
    EXPECT_EQ(describe(SpawnStage::Groups, EPERM), "setgroups 33,4: Operation not permitted");
    EXPECT_EQ(describe(SpawnStage::Descriptors, EMFILE), "set up file descriptors: Too many open files");
    EXPECT_STREQ(spawnStageName(SpawnStage::NoNewPrivileges), "no-new-privileges");
}

TEST_F(SpawnTest, StatusPipeWithNothingYetIsEagain)
{
    std::array<int, 2> fds{};
    ASSERT_EQ(pipe2(fds.data(), O_CLOEXEC | O_NONBLOCK), 0);
    const UniqueFd readEnd(fds[0]);
    UniqueFd writeEnd(fds[1]);
    SpawnFailure failure;
    EXPECT_EQ(readSpawnStatus(readEnd.borrow(), failure), -EAGAIN);
    const std::array<char, 3> garbage{1, 2, 3};
    ASSERT_EQ(write(writeEnd.get(), garbage.data(), garbage.size()), 3);
    EXPECT_EQ(readSpawnStatus(readEnd.borrow(), failure), -EBADMSG);
    writeEnd.reset();
    EXPECT_EQ(readSpawnStatus(readEnd.borrow(), failure), 0);
}

TEST(LineSplitterTest, SplitsLines)
{
    LineSplitter splitter;
    std::vector<std::string> lines;
    auto emit = [&](std::string_view line) {
        lines.emplace_back(line);
    };
    splitter.feed("one\ntw", emit);
    EXPECT_EQ(lines, (std::vector<std::string>{"one"}));
    splitter.feed("o\n\nthree\n", emit);
    EXPECT_EQ(lines, (std::vector<std::string>{"one", "two", "", "three"}));
    splitter.flush(emit);
    EXPECT_EQ(lines.size(), 4U) << "nothing pending, nothing flushed";
}

TEST(LineSplitterTest, CutsLongLines)
{
    LineSplitter splitter(4);
    std::vector<std::string> lines;
    auto emit = [&](std::string_view line) {
        lines.emplace_back(line);
    };
    splitter.feed("abcdefghij\nxy", emit);
    EXPECT_EQ(lines, (std::vector<std::string>{"abcd", "efgh", "ij"}));
    splitter.flush(emit);
    EXPECT_EQ(lines, (std::vector<std::string>{"abcd", "efgh", "ij", "xy"}));
    splitter.flush(emit);
    EXPECT_EQ(lines.size(), 4U);
    // A line of exactly maxLine: one piece, no empty line for its newline.
    lines.clear();
    splitter.feed("wxyz\nab\n", emit);
    EXPECT_EQ(lines, (std::vector<std::string>{"wxyz", "ab"}));
}

TEST(LineSplitterTest, FlushesPartialLineAtEof)
{
    LineSplitter splitter;
    std::vector<std::string> lines;
    auto emit = [&](std::string_view line) {
        lines.emplace_back(line);
    };
    splitter.feed("no newline", emit);
    EXPECT_TRUE(lines.empty());
    splitter.flush(emit);
    EXPECT_EQ(lines, (std::vector<std::string>{"no newline"}));
}

} // namespace
} // namespace fdsup
