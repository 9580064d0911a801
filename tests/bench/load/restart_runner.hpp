// RestartRunner: runs `/bin/sh -c CMD` N times on a schedule, watched through a pidfd.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

#include "core/fd.hpp"
#include "results.hpp"

namespace fdsup::load {

// The i-th of N restarts (1-based) is due at start + duration·i/(N+1), or
// when the one before it ended if that is later; one runs at a time. The
// command's stdout and stderr go to fdsup-load's stderr; it runs with no signal blocked. The caller watches
// pidfd() (readable when the running command exited) and calls reap().
class RestartRunner {
public:
    RestartRunner(const std::optional<std::string> &command, int count, Clock::time_point start,
                  Clock::duration duration);
    ~RestartRunner();
    RestartRunner(const RestartRunner &) = delete;
    RestartRunner &operator=(const RestartRunner &) = delete;

    // When the next restart is due; nullopt while one runs or when none is left.
    [[nodiscard]] std::optional<Clock::time_point> nextDue() const;
    // Starts the next restart; 0 or -errno (fork or pidfd_open failed).
    int startNext(Clock::time_point now);
    // The running command's pidfd (invalid when none runs).
    [[nodiscard]] BorrowedFd pidfd() const { return pidfd_.borrow(); }
    // Collects the running command once its pidfd is readable.
    void reap(Clock::time_point now);
    // Starts no more restarts (the run was stopped early); one that runs goes on until it ends.
    void cancelRemaining() { count_ = static_cast<int>(records_.size()); }

    [[nodiscard]] bool started() const { return !records_.empty(); }
    [[nodiscard]] bool running() const { return pid_ > 0; }
    [[nodiscard]] bool allDone() const { return !running() && static_cast<int>(records_.size()) == count_; }
    [[nodiscard]] const std::vector<RestartRecord> &records() const { return records_; }

private:
    std::string command_;
    int count_;
    Clock::time_point start_;
    Clock::duration duration_;
    pid_t pid_ = -1;
    UniqueFd pidfd_;
    Clock::time_point lastEnd_;
    std::vector<RestartRecord> records_;
};

} // namespace fdsup::load
