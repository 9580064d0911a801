// RestartRunner: fork + exec of /bin/sh, reaped through a pidfd so the event loop never blocks on it.
#include "restart_runner.hpp"

#include <cerrno>
#include <csignal>

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fdsup::load {

namespace {

double msSince(Clock::time_point start, Clock::time_point t)
{
    return std::chrono::duration<double, std::milli>(t - start).count();
}

} // namespace

RestartRunner::RestartRunner(const std::optional<std::string> &command, int count, Clock::time_point start,
                             Clock::duration duration)
    : command_(command.value_or("")), count_(command ? count : 0), start_(start), duration_(duration),
      lastEnd_(start)
{}

RestartRunner::~RestartRunner()
{
    // Only when fdsup-load gives up in the middle of a run: never leave the command behind.
    if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
}

std::optional<Clock::time_point> RestartRunner::nextDue() const
{
    auto i = static_cast<int>(records_.size()) + 1;
    if (running() || i > count_) {
        return std::nullopt;
    }
    return std::max(start_ + duration_ * i / (count_ + 1), lastEnd_);
}

int RestartRunner::startNext(Clock::time_point now)
{
    // Everything the child needs is built before fork: it only calls
    // async-signal-safe functions. fdsup-load's own descriptors are all
    // CLOEXEC, so the command inherits stdin and stderr only.
    const char *argv[] = {"sh", "-c", command_.c_str(), nullptr};
    sigset_t none;
    sigemptyset(&none);
    pid_t pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        sigprocmask(SIG_SETMASK, &none, nullptr); // the run blocks its stop signals (load_loop.cpp)
        execv("/bin/sh", const_cast<char *const *>(argv));
        _exit(127);
    }
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) {
        int r = -errno;
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
        return r;
    }
    pid_ = pid;
    pidfd_.reset(fd);
    records_.push_back({.startMs = msSince(start_, now), .endMs = 0, .exitStatus = 0});
    return 0;
}

void RestartRunner::reap(Clock::time_point now)
{
    siginfo_t info{};
    if (pid_ <= 0 || waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED | WNOHANG) < 0 ||
        info.si_pid == 0) {
        return;
    }
    records_.back().endMs = msSince(start_, now);
    records_.back().exitStatus = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    pid_ = -1;
    pidfd_.reset();
    lastEnd_ = now;
}

} // namespace fdsup::load
