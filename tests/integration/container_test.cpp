// fdsupd as a container's PID 1: in a PID namespace the test creates (unshare --pid --fork --mount-proc).
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// The worker: leaves an orphan (a double fork: the grandchild's parent exits
// at once, so it lands on PID 1), records its own start and the signal that
// stopped it. The orphan records its pid and exits when the release fifo
// is opened for writing and closed (or at SIGTERM: it is in the worker's
// process group, which stop_signal reaches). `ignore` makes the worker ignore
// SIGTERM, so only the kill signal ends it. The worker sets its own SIGTERM
// disposition after the fork: the orphan never has the worker's handler
// (it would note a TERM of its own when the stop reaches the group before
// it has run at all, as under load), it has SIGTERM's default action.
constexpr const char *kWorker = R"(import os, signal, sys
d, mode = sys.argv[1], sys.argv[2]
def note(line):
    with open(os.path.join(d, "events"), "a") as f:
        f.write(line + "\n")
def term(sig, frame):
    note(f"{os.getpid()} TERM")
    sys.exit(0)
child = os.fork()
if child == 0:
    if os.fork() == 0:
        with open(os.path.join(d, "orphans"), "a") as f:
            f.write(f"{os.getpid()}\n")
        with open(os.path.join(d, "release.fifo")) as f:
            f.read()
        os._exit(0)
    os._exit(0)
os.waitpid(child, 0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "ignore" else term)
note(f"{os.getpid()} start")
while True:
    signal.pause()
)";

std::vector<std::string> linesOf(const std::filesystem::path &path)
{
    std::vector<std::string> lines;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    return lines;
}

// A field of /proc/PID/status ("PPid", "NSpid"), empty when the process is gone.
std::string statusField(const std::filesystem::path &proc, const std::string &field)
{
    std::ifstream in(proc / "status");
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with(field + ":")) {
            std::string value = line.substr(field.size() + 1);
            value.erase(0, value.find_first_not_of(" \t"));
            return value;
        }
    }
    return "";
}

class ContainerTest : public DaemonTest<> {
protected:
    void SetUp() override
    {
        if (geteuid() != 0) {
            GTEST_SKIP() << "a PID namespace with its own /proc needs root";
        }
    }

    // Starts fdsupd as PID 1 of a new PID namespace with one service `web`
    // running the worker in `mode`; sets init_ (fdsupd's pid on the host).
    void startPid1(const std::string &mode, const std::string &stopTimeout)
    {
        writeFile(fdsupd_.dir() / "worker.py", kWorker);
        ASSERT_EQ(mkfifo((fdsupd_.dir() / "release.fifo").c_str(), 0600), 0);
        const std::string config =
            fdsupd_.supervisorTable() + "[service.web]\ncommand = [\"/usr/bin/python3\", " + "\"" +
            (fdsupd_.dir() / "worker.py").string() + "\", \"" + fdsupd_.dir().path().string() + "\", \"" +
            mode + "\"]\nready = \"started\"\nstop_timeout = \"" + stopTimeout + "\"\ndrain_timeout = \"" +
            stopTimeout + "\"\n";
        std::string why;
        ASSERT_TRUE(fdsupd_.start(config, why, {"/usr/bin/unshare", "--pid", "--fork", "--mount-proc"}))
            << why;
        // unshare forks the namespace's PID 1 and waits for it.
        const std::string children = readFile(std::filesystem::path("/proc") / std::to_string(fdsupd_.pid()) /
                                              "task" / std::to_string(fdsupd_.pid()) / "children");
        init_ = std::stoi(children);
        initProc_ = std::filesystem::path("/proc") / std::to_string(init_);
        // NSpid: its pid on the host, then in the new namespace.
        ASSERT_THAT(statusField(initProc_, "NSpid"), testing::EndsWith("\t1"));
        ASSERT_TRUE(waitUntil([&] { return started().size() == 1; })) << readFile(fdsupd_.dir() / "events");
    }

    [[nodiscard]] std::vector<std::string> started() const { return eventsOf("start"); }
    [[nodiscard]] std::vector<std::string> eventsOf(const std::string &what) const
    {
        std::vector<std::string> pids;
        for (const auto &line : linesOf(fdsupd_.dir() / "events")) {
            std::istringstream in(line);
            std::string pid;
            std::string event;
            in >> pid >> event;
            if (event == what) {
                pids.push_back(pid);
            }
        }
        return pids;
    }
    // The namespace's /proc, seen from the host through PID 1's root.
    [[nodiscard]] std::filesystem::path nsProc() const { return initProc_ / "root" / "proc"; }
    [[nodiscard]] std::vector<std::string> zombies() const
    {
        std::vector<std::string> found;
        for (const auto &entry : std::filesystem::directory_iterator(nsProc())) {
            const std::string name = entry.path().filename().string();
            if (name.find_first_not_of("0123456789") == std::string::npos &&
                statusField(entry.path(), "State").starts_with("Z")) {
                found.push_back(name);
            }
        }
        return found;
    }
    // SIGTERM to the namespace's PID 1 from outside; its exit status, through unshare.
    int terminate()
    {
        EXPECT_EQ(kill(init_, SIGTERM), 0);
        // unshare ignores SIGTERM itself and exits with its child's status.
        return fdsupd_.stop(60s);
    }

    pid_t init_ = -1;
    std::filesystem::path initProc_;
};

TEST_F(ContainerTest, Pid1ReapsOrphansRestartsAndStopsGracefullyOnSigterm)
{
    startPid1("graceful", "10s");
    // The worker's grandchild was orphaned onto PID 1, fdsupd.
    ASSERT_TRUE(waitUntil([&] { return linesOf(fdsupd_.dir() / "orphans").size() == 1; }));
    const std::string orphan = linesOf(fdsupd_.dir() / "orphans").at(0);
    EXPECT_EQ(statusField(nsProc() / orphan, "PPid"), "1");
    // Let it exit: PID 1 reaps it, so it leaves no zombie behind.
    {
        const int fd = open((fdsupd_.dir() / "release.fifo").c_str(), O_WRONLY | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        close(fd);
    }
    EXPECT_TRUE(waitUntil([&] { return !std::filesystem::exists(nsProc() / orphan); }))
        << statusField(nsProc() / orphan, "State");
    EXPECT_THAT(zombies(), testing::IsEmpty());

    // The control socket is a path in the test's directory: fdsupctl from
    // outside the namespace restarts the service inside.
    const auto restart = fdsupd_.fdsupctl({"restart", "web", "--wait"});
    ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    ASSERT_TRUE(waitUntil([&] { return started().size() == 2; }));
    EXPECT_EQ(eventsOf("TERM"), std::vector<std::string>{started().at(0)});

    // The runtime's SIGTERM: every service stopped within its deadline, exit 0.
    EXPECT_EQ(terminate(), 0) << fdsupd_.log();
    EXPECT_EQ(eventsOf("TERM"), started());
    EXPECT_THAT(fdsupd_.log(), HasSubstr("SIGTERM: stopping every service"));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("Every service stopped, exiting"));
}

TEST_F(ContainerTest, Pid1ExitsFiveWhenAWorkerHadToBeKilled)
{
    startPid1("ignore", "300ms");
    EXPECT_EQ(terminate(), 5) << fdsupd_.log();
    EXPECT_THAT(eventsOf("TERM"), testing::IsEmpty());
    EXPECT_THAT(fdsupd_.log(), HasSubstr("did not stop within 300ms, killing it"));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("1 instance killed after its stop deadline, exiting with status 5"));
}

} // namespace
} // namespace fdsup::test
