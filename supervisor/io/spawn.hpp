// Spawning a worker: everything prepared before fork, only async-signal-safe calls after.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "common/result.hpp"
#include "config/config.hpp"
#include "core/fd.hpp"

namespace fdsup {

// What a worker is started with, fully resolved in the parent: no NSS
// lookups, PATH searches or allocations are left for the child.
struct SpawnRequest {
    std::string executable; // absolute path (PATH already searched)
    // When valid, an O_PATH descriptor of the very file to run (a generation
    // pins its binary): exec'd with execveat(AT_EMPTY_PATH), so a binary
    // replaced at `executable` since does not matter. A script (#!) cannot
    // be run that way from a CLOEXEC descriptor; it falls back to the path.
    BorrowedFd executableFd;
    std::vector<std::string> argv; // argv[0] as the user wrote it
    // "NAME=value" entries. LISTEN_PID is added in the child (its own pid);
    // LISTEN_FDS/LISTEN_FDNAMES are added from `fds` when listenFds is set
    // and fds is not empty (as systemd does). Any LISTEN_PID, LISTEN_FDS or
    // LISTEN_FDNAMES entry given here is dropped: only spawnWorker sets them.
    std::vector<std::string> environment;
    // Descriptors the worker receives, in order, as fds 3, 4, ...; the names
    // go to LISTEN_FDNAMES. Borrowed: the caller keeps them open. fdNames is
    // either empty ("unknown" for each, as systemd) or one name per fd, each
    // a valid systemd fd name (1-255 printable ASCII characters, no ':').
    std::vector<BorrowedFd> fds;
    std::vector<std::string> fdNames;
    bool listenFds = true; // set LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES
    // Extra descriptors placed right after the listeners (e.g. the worker
    // channel end), not counted in LISTEN_FDS; env names them by number.
    std::vector<BorrowedFd> extraFds;

    std::string workingDirectory = "/";
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    std::optional<std::vector<gid_t>> supplementaryGroups; // set: setgroups(); unset: leave
    mode_t umask = 0022;
    std::vector<config::ResourceLimit> limits;
    bool noNewPrivileges = false;
    bool newProcessGroup = true; // setpgid(0, 0): the worker leads its own group
    bool captureOutput = true;   // stdout/stderr to pipes; false: inherit fdsupd's
};

// Where a failed start failed, as reported by the child over its status pipe.
enum class SpawnStage : std::uint8_t {
    None,
    Descriptors, // laying out fds 0..N
    Signals,     // resetting mask and dispositions
    ProcessGroup,
    Limits,       // setrlimit
    Groups,       // setgroups
    PrimaryGroup, // setgid
    User,         // setuid
    Umask,
    Directory, // chdir
    NoNewPrivileges,
    Environment, // LISTEN_PID formatting
    Exec,        // execve
};
const char *spawnStageName(SpawnStage stage);

struct SpawnedChild {
    pid_t pid = 0;
    UniqueFd pidfd;
    // Read ends; invalid when output is inherited.
    UniqueFd stdoutPipe;
    UniqueFd stderrPipe;
    // Read end of the CLOEXEC status pipe: EOF without data means exec
    // succeeded; otherwise a SpawnFailure record follows (see readSpawnStatus).
    UniqueFd statusPipe;
};

// Forks and execs. Returns the child or an error that says which step failed
// in the parent (pipe, fork...). Failures in the child after fork arrive on
// statusPipe. Never leaves a zombie or an fd behind on error.
Result<SpawnedChild> spawnWorker(const SpawnRequest &request);

struct SpawnFailure {
    SpawnStage stage = SpawnStage::None;
    int error = 0;           // errno in the child
    std::uint32_t index = 0; // Limits: which entry of SpawnRequest::limits failed
};
// Reads the status pipe (non-blocking). Returns 1 and fills failure when the
// child reported a failure, 0 on EOF (exec succeeded), -EAGAIN if nothing yet,
// other -errno on error.
int readSpawnStatus(BorrowedFd statusPipe, SpawnFailure &failure);

// "exec /usr/bin/app: No such file or directory", "setuid 33: Operation not permitted".
std::string describeSpawnFailure(const SpawnRequest &request, const SpawnFailure &failure);

// Searches PATH (or the given path list) like execvp, in the parent. Returns
// the absolute path or an error naming the command: not found, not executable.
// A command with a '/' is checked, not searched (a relative one is made
// absolute against the current directory). Empty and relative entries of
// searchPath are skipped: the result must not depend on fdsupd's cwd.
Result<std::string> findExecutable(const std::string &command, const std::string &searchPath);

// Resolves user/group names of a service to ids and supplementary groups
// (getpwnam_r, getgrnam_r, getgrouplist) before fork. Names or decimal ids.
// user gives uid and its primary gid (group overrides it); a numeric user
// without a passwd entry needs group. Supplementary groups: the service's
// list when non-empty; else, with user set, the user's groups from
// getgrouplist (none for a numeric user without an entry), so that a worker
// never keeps fdsupd's own groups; else unset (left alone). Errors name the
// user or group: "user 'www' not found" (ESRCH).
struct Credentials {
    std::optional<uid_t> uid;
    std::optional<gid_t> gid;
    std::optional<std::vector<gid_t>> groups;
};
Result<Credentials> resolveCredentials(const config::ServiceConfig &service);

// Splits a byte stream into lines for the log. Lines longer than maxLine are
// cut into pieces; a trailing partial line is kept until more arrives or
// flush() is called at EOF.
class LineSplitter {
public:
    explicit LineSplitter(std::size_t maxLine = 4096) : maxLine_(maxLine) {}
    // Appends data and calls emit(line) for every complete line (without '\n').
    template <typename Emit>
    void feed(std::string_view data, Emit &&emit)
    {
        for (const char c : data) {
            if (c == '\n') {
                // A line cut exactly at maxLine has been emitted already:
                // its newline must not add an empty line.
                if (!buffer_.empty() || !justCut_) {
                    emit(std::string_view(buffer_));
                }
                buffer_.clear();
                justCut_ = false;
                continue;
            }
            buffer_.push_back(c);
            justCut_ = false;
            if (buffer_.size() >= maxLine_) {
                emit(std::string_view(buffer_));
                buffer_.clear();
                justCut_ = true;
            }
        }
    }
    template <typename Emit>
    void flush(Emit &&emit)
    {
        if (!buffer_.empty()) {
            emit(std::string_view(buffer_));
            buffer_.clear();
        }
        justCut_ = false;
    }

private:
    std::size_t maxLine_;
    std::string buffer_;
    bool justCut_ = false;
};

// argv/envp for execve(): pointers into `strings` (which must outlive them), null-terminated.
std::vector<char *> execPointers(std::vector<std::string> &strings);

} // namespace fdsup
