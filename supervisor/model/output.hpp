// Output capture: a worker's stdout and stderr read as lines, and the recent lines a service printed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
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

// A view of one output line: what a worker printed (while it is being
// kept), or a line kept in an OutputLog (until the log's next add()).
struct LogLine {
    std::int64_t realtimeUsec = 0;
    unsigned index = 0;
    pid_t pid = 0;
    unsigned generation = 0;
    bool isStderr = false;
    std::string_view text;

    [[nodiscard]] static LogLine of(const LogEntry &entry)
    {
        return {entry.realtimeUsec, entry.index, entry.pid, entry.generation, entry.isStderr, entry.text};
    }
    [[nodiscard]] LogEntry entry() const
    {
        return {realtimeUsec, index, pid, generation, isStderr, std::string(text)};
    }
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
// `fdsupctl logs` and a failed rollout's report), bounded by a count of lines
// and by bytes. The text of all lines lives in ONE buffer used as a ring (a
// line never wraps: one that does not fit at the end goes to the start), and
// the lines' fields in one array of slots used as a ring: adding a line
// allocates nothing once both are at their working size, so a log that keeps
// replacing its lines does not fragment the heap between short-lived blocks.
// Both grow by doubling while they are smaller than the bounds (the text's
// while it would be more than 3/4 full), and never shrink; the oldest lines
// are forgotten to make room.
class OutputLog {
public:
    static constexpr std::size_t kMaxLines = 1000;
    static constexpr std::size_t kMaxBytes = std::size_t{256} * 1024;

    explicit OutputLog(std::size_t maxLines = kMaxLines, std::size_t maxBytes = kMaxBytes);
    // Keeps the line (its text cut to the byte bound) and returns it as kept.
    LogLine add(const LogLine &line);
    [[nodiscard]] std::size_t size() const { return count_; }
    // The i-th kept line, 0 the oldest (i < size()).
    [[nodiscard]] LogLine at(std::size_t i) const;
    // Copies of every kept line, oldest first.
    [[nodiscard]] std::vector<LogEntry> entries() const;
    // The last `count` lines of one process, oldest first.
    [[nodiscard]] std::vector<std::string> lastLinesOf(pid_t pid, std::size_t count) const;
    // The bytes the text buffer holds (allocated), for tests.
    [[nodiscard]] std::size_t capacityBytes() const { return capacity_; }

private:
    struct Slot {
        std::int64_t realtimeUsec = 0;
        std::uint32_t offset = 0;
        std::uint32_t length = 0;
        pid_t pid = 0;
        unsigned index = 0;
        unsigned generation = 0;
        bool isStderr = false;
    };
    [[nodiscard]] const Slot &slot(std::size_t i) const { return slots_[(first_ + i) % slots_.size()]; }
    [[nodiscard]] LogLine view(const Slot &s) const;
    // Where `n` bytes go: forgets the oldest lines, or grows the buffer, until they fit.
    std::size_t place(std::size_t n);
    [[nodiscard]] std::optional<std::size_t> freeRun(std::size_t n) const;
    [[nodiscard]] bool roomFor(std::size_t n, std::size_t capacity) const;
    [[nodiscard]] bool roomFor(std::size_t n) const { return roomFor(n, capacity_); }
    void growBytes(std::size_t needed);
    void growSlots();
    void forgetOldest();

    std::size_t maxLines_;
    std::size_t maxBytes_;
    std::vector<Slot> slots_; // a ring: count_ slots from first_
    std::size_t first_ = 0;
    std::size_t count_ = 0;
    std::unique_ptr<char[]>
        bytes_; // NOLINT(cppcoreguidelines-avoid-c-arrays): one buffer, not value-initialised
    std::size_t capacity_ = 0;
    std::size_t used_ = 0; // the kept lines' bytes
    std::size_t head_ = 0; // where the next line's text goes
};

} // namespace fdsup
