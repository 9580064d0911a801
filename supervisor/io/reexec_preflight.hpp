// Before a re-exec: runs the candidate binary with --reexec-check, asynchronously, and reads its answer.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <sys/types.h>

#include "common/result.hpp"
#include "core/fd.hpp"
#include "io/clock.hpp"
#include "io/event_loop.hpp"

namespace fdsup {

// What the candidate said: `{"version":"..","state_versions":[1]}`.
struct PreflightAnswer {
    std::string version;
    std::vector<unsigned> stateVersions;
};

// Runs the binary behind `binary` (the very descriptor that will be exec'd:
// no path is opened twice) as a child with `--reexec-check`, stdout and
// stderr on pipes, and calls `done` once with its answer, or an error naming
// what went wrong: its exit status and the tail of its stderr, no answer, an
// answer that is not the expected JSON, or the deadline passed (the child is
// killed). Destroying the preflight kills and reaps a child still running;
// `done` is then not called.
class ReexecPreflight {
public:
    using Done = std::function<void(Result<PreflightAnswer> answer)>;
    static Result<std::unique_ptr<ReexecPreflight>>
    start(EventLoop &loop, BorrowedFd binary, const std::string &shownAs, Duration deadline, Done done);
    ~ReexecPreflight();
    ReexecPreflight(const ReexecPreflight &) = delete;
    ReexecPreflight &operator=(const ReexecPreflight &) = delete;

    // A check's child is running as `pid`: the orphan reaper leaves it to us.
    static bool isRunning(pid_t pid);
    // The answer's one line, parsed (pure; unit tested).
    static Result<PreflightAnswer> parseAnswer(const std::string &out);

private:
    ReexecPreflight(std::string shownAs, Done done) : shownAs_(std::move(shownAs)), done_(std::move(done)) {}
    void onExit(const siginfo_t &info);
    void onDeadline();
    void finish(Result<PreflightAnswer> answer);

    std::string shownAs_;
    Done done_;
    pid_t pid_ = 0;
    UniqueFd pidfd_;
    UniqueFd out_;
    UniqueFd err_;
    EventSource child_;
    Timer deadline_;
};

} // namespace fdsup
