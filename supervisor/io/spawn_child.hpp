// The child side of spawnWorker(): the plan built before clone, and everything from clone to exec.
#pragma once

#include <cstddef>
#include <cstdint>

#include <sys/types.h>

#include "core/fd.hpp"

namespace fdsup {

// The record a failing child writes to its status pipe: one write well below
// PIPE_BUF, so the parent reads all of it or nothing.
struct StatusRecord {
    std::uint32_t stage;
    std::int32_t error;
    std::uint32_t index;
};

// What the kernel's prlimit64 takes.
struct Rlimit64 {
    std::uint64_t soft;
    std::uint64_t hard;
};
struct ChildLimit {
    int resource;
    Rlimit64 value;
};

// Room for the decimal digits of any pid_t and the terminating NUL.
inline constexpr std::size_t kPidDigits = 24;

// Everything the child needs, built by the parent before clone. The child
// reads it (and writes only into buffers it owns in its copy of memory), so
// nothing between clone and exec allocates, locks or looks anything up.
struct ChildPlan {
    const char *executable = nullptr;
    char *const *argv = nullptr;
    char *const *envp = nullptr;
    // Target fd i (0..fdCount-1) gets sources[i]; scratch holds the moved copies.
    const int *sources = nullptr;
    int *scratch = nullptr;
    int fdCount = 0;
    int statusFd = -1;
    int executableFd = -1; // O_PATH, or -1: exec by path
    bool newProcessGroup = false;
    const ChildLimit *limits = nullptr;
    std::size_t limitCount = 0;
    bool setGroups = false;
    const gid_t *groups = nullptr;
    std::size_t groupCount = 0;
    bool setGid = false;
    gid_t gid = 0;
    bool setUid = false;
    uid_t uid = 0;
    mode_t umask = 0022;
    const char *directory = nullptr;
    bool noNewPrivileges = false;
    char *listenPidDigits = nullptr; // inside the "LISTEN_PID=" env entry, or null
    // Inside the "LISTEN_PIDFDID=" env entry (kPidDigits bytes), or null; the
    // child writes its own pidfd's inode number there, or, on a kernel whose
    // pidfds are not on pidfs (their inode numbers mean nothing), sets
    // *pidfdIdEntry (the last entry of envp) to null.
    char *pidfdIdDigits = nullptr;
    char **pidfdIdEntry = nullptr;
};

// Clones the child with every signal blocked and a pidfd (clone3
// CLONE_PIDFD, or fork() + pidfd_open() where clone3 is refused). The child
// carries out plan with raw system calls only and execs; it never returns,
// and a failure reaches the parent as one StatusRecord on plan.statusFd
// before the child exits with 127. Returns the pid in the parent with pidfd
// set, or -errno, leaving no child behind.
pid_t startChild(const ChildPlan &plan, UniqueFd &pidfd);

} // namespace fdsup
