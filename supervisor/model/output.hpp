// Output capture: a worker's stdout and stderr read as lines, and the recent lines a service printed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "io/spawn.hpp"

namespace fdsup {

// One captured output line of a worker.
struct LogEntry {
    std::int64_t realtimeUsec = 0; // CLOCK_REALTIME
    unsigned index = 0;            // the instance's slot
    pid_t pid = 0;
    unsigned generation = 0;
    bool isStderr = false;
    std::string text;

    friend bool operator==(const LogEntry &, const LogEntry &) = default;
};

// Reads the read ends of a worker's output pipes and splits them into lines
// (LineSplitter: long lines are cut). Reads are bounded per wake-up, so one
// chatty worker cannot starve the loop; the sources go with the object.
class OutputCapture {
public:
    using LineHandler = std::function<void(bool isStderr, std::string_view line)>;

    OutputCapture(EventLoop &loop, LineHandler onLine);
    OutputCapture(const OutputCapture &) = delete;
    OutputCapture &operator=(const OutputCapture &) = delete;
    // Watches the pipes; an invalid one (output inherited) is skipped.
    void watch(UniqueFd stdoutPipe, UniqueFd stderrPipe);
    // Reads everything still in the pipes, with the last partial lines: a
    // worker that just exited often printed the most useful lines last.
    void drain();
    // The pipes, for a re-exec snapshot (-1 when closed).
    [[nodiscard]] BorrowedFd stdoutFd() const { return out_.fd.borrow(); }
    [[nodiscard]] BorrowedFd stderrFd() const { return err_.fd.borrow(); }

private:
    struct Stream {
        UniqueFd fd;
        EventSource source;
        LineSplitter lines;
    };
    void read(Stream &stream, bool isStderr);

    EventLoop &loop_;
    LineHandler onLine_;
    Stream out_;
    Stream err_;
};

// The most recent lines a service's workers printed, oldest first (for
// `fdsupctl logs` and a failed rollout's report).
class OutputLog {
public:
    static constexpr std::size_t kMaxLines = 1000;

    // Keeps the entry (dropping the oldest past kMaxLines) and returns it.
    const LogEntry &add(LogEntry entry);
    [[nodiscard]] const std::deque<LogEntry> &lines() const { return lines_; }
    // The last `count` lines of one process, oldest first.
    [[nodiscard]] std::vector<std::string> lastLinesOf(pid_t pid, std::size_t count) const;

private:
    std::deque<LogEntry> lines_;
};

} // namespace fdsup
