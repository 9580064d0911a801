// Helpers shared by the tests: fd accounting, waiting, temporary directories, files.
#include "test_support.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fdsup::test {

std::map<int, std::string> openFds(pid_t pid)
{
    const std::string path = pid == 0 ? "/proc/self/fd" : "/proc/" + std::to_string(pid) + "/fd";
    DIR *dir = opendir(path.c_str());
    if (dir == nullptr) {
        throw std::system_error(errno, std::generic_category(), "opendir " + path);
    }
    const int self = dirfd(dir);
    std::map<int, std::string> fds;
    while (const dirent *entry = readdir(dir)) {
        if (entry->d_name[0] == '.') {
            continue;
        }
        const int fd = std::atoi(entry->d_name);
        if (pid == 0 && fd == self) {
            continue;
        }
        std::array<char, 512> target{};
        const ssize_t n = readlinkat(self, entry->d_name, target.data(), target.size() - 1);
        fds.emplace(fd, n > 0 ? std::string(target.data(), static_cast<std::size_t>(n)) : "?");
    }
    closedir(dir);
    return fds;
}

std::map<int, std::string> fdsOpenedSince(const std::map<int, std::string> &before, pid_t pid)
{
    std::map<int, std::string> opened;
    for (auto &[fd, target] : openFds(pid)) {
        const auto was = before.find(fd);
        if (was == before.end() || was->second != target) {
            opened.emplace(fd, std::move(target));
        }
    }
    return opened;
}

std::multiset<std::string> fdTargets(pid_t pid, const std::function<std::string(const std::string &)> &name)
{
    std::multiset<std::string> targets;
    for (const auto &[fd, target] : openFds(pid)) {
        targets.insert(name ? name(target) : target);
    }
    return targets;
}

std::multiset<std::string> targetsAdded(const std::multiset<std::string> &before,
                                        const std::multiset<std::string> &now)
{
    std::multiset<std::string> added;
    // Each entry of `before` accounts for one equal entry of `now`.
    std::set_difference(now.begin(), now.end(), before.begin(), before.end(),
                        std::inserter(added, added.end()));
    return added;
}

std::string describeFds(const std::map<int, std::string> &fds)
{
    std::string text;
    for (const auto &[fd, target] : fds) {
        text += std::to_string(fd) + " -> " + target + "\n";
    }
    return text;
}

int countOpenFds()
{
    return static_cast<int>(openFds().size());
}

bool waitUntil(const std::function<bool()> &done, std::chrono::milliseconds deadline)
{
    using Clock = std::chrono::steady_clock;
    constexpr std::chrono::milliseconds kLongestPause{50};
    const auto until = Clock::now() + deadline;
    std::chrono::milliseconds pause{1};
    while (!done()) {
        const auto now = Clock::now();
        if (now >= until) {
            return false;
        }
        // The backoff between two tries, not a guess at how long something takes.
        std::this_thread::sleep_until(std::min(now + pause, until));
        pause = std::min(pause * 2, kLongestPause);
    }
    return true;
}

TempDir::TempDir()
{
    const char *base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/fdsup-test-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) {
        throw std::system_error(errno, std::generic_category(), "mkdtemp");
    }
    path_ = pattern;
}

TempDir::~TempDir()
{
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
}

void writeFile(const std::filesystem::path &path, std::string_view contents)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) {
        throw std::runtime_error("cannot write " + path.string());
    }
    out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
}

std::string readFile(const std::filesystem::path &path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot read " + path.string());
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::size_t occurrences(const std::string &haystack, const std::string &text)
{
    std::size_t n = 0;
    for (auto at = haystack.find(text); at != std::string::npos; at = haystack.find(text, at + text.size())) {
        ++n;
    }
    return n;
}

FileId fileId(BorrowedFd fd)
{
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) {
        throw std::system_error(errno, std::generic_category(), "fstat");
    }
    return FileId{st.st_dev, st.st_ino};
}

std::filesystem::path dataDir()
{
    const char *dir = std::getenv("FDSUP_TEST_DATA");
    if (dir == nullptr) {
        throw std::runtime_error("FDSUP_TEST_DATA is not set; run the tests through meson test");
    }
    return dir;
}

namespace {

UniqueFd pipeEnd(int (&fds)[2], int keep)
{
    close(fds[1 - keep]);
    return UniqueFd(fds[keep]);
}

} // namespace

std::vector<char *> pointersTo(std::vector<std::string> &strings)
{
    std::vector<char *> pointers;
    pointers.reserve(strings.size() + 1);
    for (auto &s : strings) {
        pointers.push_back(s.data());
    }
    pointers.push_back(nullptr);
    return pointers;
}

ProcessResult runProcess(const std::vector<std::string> &argv, const std::vector<std::string> &extraEnv,
                         std::chrono::milliseconds deadline)
{
    std::vector<std::string> envStrings;
    envStrings.reserve(256);
    for (char **e = environ; *e != nullptr; ++e) {
        envStrings.emplace_back(*e);
    }
    envStrings.insert(envStrings.end(), extraEnv.begin(), extraEnv.end());
    std::vector<char *> envp = pointersTo(envStrings);
    std::vector<std::string> args = argv;
    std::vector<char *> argp = pointersTo(args);

    int outPipe[2];
    int errPipe[2];
    if (pipe2(outPipe, O_CLOEXEC) != 0 || pipe2(errPipe, O_CLOEXEC) != 0) {
        throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1);
    posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, argp[0], &actions, nullptr, argp.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    UniqueFd out = pipeEnd(outPipe, 0);
    UniqueFd err = pipeEnd(errPipe, 0);
    if (rc != 0) {
        throw std::system_error(rc, std::generic_category(), "posix_spawn " + argv.at(0));
    }

    ProcessResult result;
    const auto until = std::chrono::steady_clock::now() + deadline;
    std::array<char, 4096> buf{};
    while (out || err) {
        std::array<pollfd, 2> pfds{pollfd{out.get(), POLLIN, 0}, pollfd{err.get(), POLLIN, 0}};
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
            result.timedOut = true;
            kill(pid, SIGKILL);
            break;
        }
        const int n = poll(pfds.data(), pfds.size(), static_cast<int>(left.count()));
        if (n < 0 && errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "poll");
        }
        for (std::size_t i = 0; i < pfds.size(); ++i) {
            if (pfds[i].fd < 0 || pfds[i].revents == 0) {
                continue;
            }
            UniqueFd &fd = i == 0 ? out : err;
            std::string &sink = i == 0 ? result.out : result.err;
            const ssize_t r = read(fd.get(), buf.data(), buf.size());
            if (r > 0) {
                sink.append(buf.data(), static_cast<std::size_t>(r));
            } else if (r == 0 || errno != EINTR) {
                fd.reset();
            }
        }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            throw std::system_error(errno, std::generic_category(), "waitpid");
        }
    }
    if (WIFEXITED(status)) {
        result.exitCode = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
        result.signal = WTERMSIG(status);
    }
    return result;
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string> &argv, std::filesystem::path logPath)
    : logPath_(std::move(logPath))
{
    std::vector<std::string> args = argv;
    std::vector<char *> argp = pointersTo(args);
    UniqueFd log(open(logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!log) {
        throw std::system_error(errno, std::generic_category(), "open " + logPath_.string());
    }
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) {
        throw std::system_error(errno, std::generic_category(), "fork");
    }
    if (pid == 0) {
        // Only async-signal-safe calls from here to exec.
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(127);
        }
        const int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(log.get(), 1) < 0 || dup2(log.get(), 2) < 0) {
            _exit(127);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, nullptr);
        execv(argp[0], argp.data());
        _exit(127);
    }
    pid_ = pid;
    pidfd_ = UniqueFd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd_) {
        throw std::system_error(errno, std::generic_category(), "pidfd_open");
    }
}

BackgroundProcess::~BackgroundProcess()
{
    if (pid_ > 0 && !status_) {
        kill(pid_, SIGKILL);
        int status = 0;
        (void)waitpid(pid_, &status, 0);
    }
}

void BackgroundProcess::signal(int sig) const
{
    if (!status_) {
        kill(pid_, sig);
    }
}

std::optional<int> BackgroundProcess::wait(std::chrono::milliseconds deadline)
{
    if (status_) {
        return status_;
    }
    pollfd p{pidfd_.get(), POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(deadline.count()));
    if (n <= 0) {
        return std::nullopt;
    }
    int status = 0;
    if (waitpid(pid_, &status, 0) != pid_) {
        return std::nullopt;
    }
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    return status_;
}

std::string BackgroundProcess::log() const
{
    return readFile(logPath_);
}

std::string requireEnv(const char *name)
{
    const char *value = std::getenv(name);
    if (value == nullptr || *value == '\0') {
        throw std::runtime_error(std::string("environment variable ") + name +
                                 " is not set; run the tests through meson test");
    }
    return value;
}

} // namespace fdsup::test
