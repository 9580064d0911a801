// Helpers shared by the tests: fd accounting, waiting, temporary directories, files.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <sys/stat.h>
#include <sys/types.h>

#include "core/fd.hpp"

namespace fdsup::test {

// Every descriptor of process pid (0: this one) with what it refers to (the
// target of /proc/PID/fd/N: a path, "socket:[INODE]", "pipe:[INODE]"...),
// leaving out the descriptor used to read the directory. Throws when the
// directory cannot be read (a process that is gone).
std::map<int, std::string> openFds(pid_t pid = 0);

// The descriptors of process pid open now that `before` (an openFds() of it)
// did not have: a number that was not open, or that now refers to something
// else. Empty when a step left nothing of its own open, though it may have
// closed some: a baseline of a busy process can hold transient descriptors
// (a starting instance's exec status pipe or spawned pidfd) that a count
// would hold against it. Throws like openFds().
std::map<int, std::string> fdsOpenedSince(const std::map<int, std::string> &before, pid_t pid);

// The same across an exec that renumbers descriptors (fdsupd's re-exec):
// compared by what they refer to, not by number. fdTargets() is what
// process pid's descriptors refer to (openFds()), each passed through
// `name` when given (to name an object by what it is where an exec makes
// it anew); targetsAdded() what `now` has beyond `before`: a socket, pipe
// or file that was not open before, or one more anonymous descriptor of a
// kind (a pidfd, a timerfd, an epoll instance) than before.
std::multiset<std::string> fdTargets(pid_t pid,
                                     const std::function<std::string(const std::string &)> &name = {});
std::multiset<std::string> targetsAdded(const std::multiset<std::string> &before,
                                        const std::multiset<std::string> &now);

// Descriptors ("N -> target", a line each, all of them) for a failure message.
std::string describeFds(const std::map<int, std::string> &fds);

// Number of those descriptors. Every test is checked for leaks by the shared
// main() (test_main.cpp); compare before and after a step to prove that the
// step leaks nothing.
int countOpenFds();

// How long a test waits for something that is bound to happen: generous
// enough for ASan on a loaded 2-core machine. Waits return as soon as their
// condition holds, so only a test that is failing anyway waits this long.
inline constexpr std::chrono::seconds kEventDeadline{60};

// Asks done() until it returns true or the deadline passes, pausing between
// tries with an exponential backoff (1 ms, doubling up to 50 ms, never past
// the deadline); done() is asked once more at the deadline. Returns whether
// it held. For conditions nothing signals (a /proc counter, a log file,
// another process's state, a counter of a client thread); where there is an
// event (a pidfd, a datagram, a condition variable), wait on that instead.
bool waitUntil(const std::function<bool()> &done, std::chrono::milliseconds deadline = kEventDeadline);

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;

    [[nodiscard]] const std::filesystem::path &path() const { return path_; }
    [[nodiscard]] std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

void writeFile(const std::filesystem::path &path, std::string_view contents);
std::string readFile(const std::filesystem::path &path);
// How many times `text` occurs in `haystack` (a log: how often a line was said), not overlapping.
std::size_t occurrences(const std::string &haystack, const std::string &text);

// fstat() identity of a descriptor, to prove two fds are the same file.
struct FileId {
    dev_t dev = 0;
    ino_t ino = 0;
    friend bool operator==(const FileId &, const FileId &) = default;
};
FileId fileId(BorrowedFd fd);

// The directory of test data (tests/data), from $FDSUP_TEST_DATA.
std::filesystem::path dataDir();

// A finished child process: how it ended and everything it printed.
struct ProcessResult {
    int exitCode = -1; // -1 when killed by a signal
    int signal = 0;
    bool timedOut = false;
    std::string out;
    std::string err;
};

// argv or envp for exec: pointers into strings (which must outlive them), then NULL.
std::vector<char *> pointersTo(std::vector<std::string> &strings);

// Runs argv (argv[0] a path) with stdin from /dev/null, collecting stdout and
// stderr, and waits for it to exit. Past the deadline the child is killed
// with SIGKILL and timedOut is set. extraEnv entries ("NAME=value") are added
// to the current environment.
ProcessResult runProcess(const std::vector<std::string> &argv, const std::vector<std::string> &extraEnv = {},
                         std::chrono::milliseconds deadline = std::chrono::seconds(30));

// A process the test starts and leaves running (an external worker): stdin
// from /dev/null, stdout and stderr appended to logPath, killed with SIGKILL
// if fdsupd's test process dies (PR_SET_PDEATHSIG). The destructor kills
// and reaps it if it still runs. Throws when it cannot be spawned.
class BackgroundProcess {
public:
    BackgroundProcess(const std::vector<std::string> &argv, std::filesystem::path logPath);
    ~BackgroundProcess();
    BackgroundProcess(const BackgroundProcess &) = delete;
    BackgroundProcess &operator=(const BackgroundProcess &) = delete;

    [[nodiscard]] pid_t pid() const { return pid_; }
    void signal(int sig) const;
    // Waits for it to exit: its exit code, -SIGNAL if a signal killed it,
    // nullopt at the deadline (it keeps running).
    std::optional<int> wait(std::chrono::milliseconds deadline);
    // What it printed so far.
    [[nodiscard]] std::string log() const;

private:
    std::filesystem::path logPath_;
    pid_t pid_ = -1;
    UniqueFd pidfd_;
    std::optional<int> status_;
};

// $NAME or a failed test assertion (thrown) when it is not set.
std::string requireEnv(const char *name);

} // namespace fdsup::test
