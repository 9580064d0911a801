// Spawning, the child side: a vfork-style clone with a pidfd, then fd layout and credentials on raw system
// calls, exec.
#include "io/spawn_child.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstddef>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/spawn.hpp"

namespace fdsup {
namespace {

// clone3's struct clone_args, version 0 (CLONE_ARGS_SIZE_VER0 = 64 bytes).
// Declared here because <linux/sched.h> clashes with glibc's <sched.h>.
struct CloneArgs {
    std::uint64_t flags = 0;
    std::uint64_t pidfd = 0;
    std::uint64_t childTid = 0;
    std::uint64_t parentTid = 0;
    std::uint64_t exitSignal = 0;
    std::uint64_t stack = 0;
    std::uint64_t stackSize = 0;
    std::uint64_t tls = 0;
};
static_assert(sizeof(CloneArgs) == 64);

// The kernel's sigset_t: 64 signals on every architecture we build for.
constexpr std::size_t kKernelSigsetSize = (NSIG - 1) / 8;
// Large enough for the kernel's struct sigaction on every architecture. An
// all-zero one means SIG_DFL, no flags, empty mask whatever its field order.
struct alignas(8) KernelSigaction {
    std::array<unsigned char, 64> bytes{};
};

// The 32-bit ABIs have 16-bit legacy credential calls; use the full ones.
#ifdef SYS_setgroups32
constexpr long kSysSetgroups = SYS_setgroups32;
constexpr long kSysSetresgid = SYS_setresgid32;
constexpr long kSysSetresuid = SYS_setresuid32;
#else
constexpr long kSysSetgroups = SYS_setgroups;
constexpr long kSysSetresgid = SYS_setresgid;
constexpr long kSysSetresuid = SYS_setresuid;
#endif

// The child from here on uses only raw system calls: glibc's wrappers may
// take locks another thread held at clone time, glibc's setuid() broadcasts
// to threads that do not exist in the child, and sanitizer interceptors are
// not ours to trust in a half-made process. syscall() itself only traps.
[[noreturn]] void childFail(int statusFd, SpawnStage stage, int error, std::uint32_t index = 0)
{
    const StatusRecord record{static_cast<std::uint32_t>(stage), error, index};
    (void)syscall(SYS_write, statusFd, &record, sizeof record);
    (void)syscall(SYS_exit_group, 127);
    __builtin_unreachable();
}

// Formats a number into out (kPidDigits bytes), NUL-terminated.
void formatNumber(std::uint64_t value, char *out)
{
    std::array<char, kPidDigits> reversed{};
    std::size_t n = 0;
    do {
        reversed[n++] = static_cast<char>('0' + value % 10);
        value /= 10;
    } while (value > 0 && n < reversed.size() - 1);
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = reversed[n - 1 - i];
    }
    out[n] = '\0';
}

// pidfs's magic number (include/uapi/linux/magic.h, Linux 6.9+).
constexpr long kPidfsMagic = 0x50494446;

// The inode number of a pidfd of this process, which identifies it for as
// long as the system runs (systemd's LISTEN_PIDFDID): only where pidfds live
// on pidfs; before Linux 6.9 every pidfd shares one anonymous inode.
bool ownPidfdId(std::uint64_t &id)
{
    const long fd = syscall(SYS_pidfd_open, syscall(SYS_getpid), 0U);
    if (fd < 0) {
        return false;
    }
    struct statfs fs {};
    struct statx st {};
    const bool ok = syscall(SYS_fstatfs, fd, &fs) == 0 && static_cast<long>(fs.f_type) == kPidfsMagic &&
                    syscall(SYS_statx, fd, "", AT_EMPTY_PATH, STATX_INO, &st) == 0 &&
                    (st.stx_mask & STATX_INO) != 0;
    (void)syscall(SYS_close, fd);
    id = st.stx_ino;
    return ok;
}

// Closes every fd in [first, last] except keep and keep2 (-1: none), with
// close_range() or, on kernels before 5.9, one close() per number up to the
// hard fd limit.
bool closeRangeExcept(unsigned first, unsigned last, int keep, int keep2 = -1)
{
    auto closeSpan = [](unsigned from, unsigned to) {
        if (from > to) {
            return true;
        }
        if (syscall(SYS_close_range, from, to, 0U) == 0) {
            return true;
        }
        if (errno != ENOSYS) {
            return false;
        }
        Rlimit64 limit{};
        if (syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, nullptr, &limit) != 0) {
            return false;
        }
        const std::uint64_t end = std::min<std::uint64_t>(to, limit.hard);
        for (std::uint64_t fd = from; fd <= end; ++fd) {
            (void)syscall(SYS_close, static_cast<int>(fd));
        }
        return true;
    };
    // The kept fds inside the range, in order; spans between them are closed.
    unsigned keeps[2] = {0, 0};
    int n = 0;
    for (const int k : {keep, keep2}) {
        if (k >= 0 && static_cast<unsigned>(k) >= first && static_cast<unsigned>(k) <= last) {
            keeps[n++] = static_cast<unsigned>(k);
        }
    }
    if (n == 2 && keeps[0] > keeps[1]) {
        const unsigned t = keeps[0];
        keeps[0] = keeps[1];
        keeps[1] = t;
    }
    unsigned from = first;
    for (int i = 0; i < n; ++i) {
        if (keeps[i] > from && !closeSpan(from, keeps[i] - 1)) {
            return false;
        }
        if (keeps[i] == last) {
            return true;
        }
        from = keeps[i] + 1;
    }
    return closeSpan(from, last);
}

[[noreturn]] void runChild(const ChildPlan &plan)
{
    int status = plan.statusFd;

    // Handlers were copied from fdsupd and signals are still blocked (the
    // parent blocked them around clone), so nothing of fdsupd's runs here.
    // Ignored signals would survive exec: reset every disposition.
    const KernelSigaction dfl{};
    for (int sig = 1; sig < NSIG; ++sig) {
        if (syscall(SYS_rt_sigaction, sig, &dfl, nullptr, kKernelSigsetSize) != 0 && errno != EINVAL) {
            childFail(status, SpawnStage::Signals, errno);
        }
    }
    const std::uint64_t emptyMask = 0;
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &emptyMask, nullptr, kKernelSigsetSize) != 0) {
        childFail(status, SpawnStage::Signals, errno);
    }

    if (plan.newProcessGroup && syscall(SYS_setpgid, 0, 0) != 0) {
        childFail(status, SpawnStage::ProcessGroup, errno);
    }

    // Lay out fds 0..fdCount-1. A source may sit anywhere, also inside the
    // target range (even swapped with another one), so first move every
    // source, the status pipe and the pinned binary above the range, then
    // dup3() each into place (without O_CLOEXEC: these are the only
    // inheritable fds), then close everything above the range but the
    // status pipe and the binary, which are CLOEXEC and go away at exec.
    // (The binary moved after the dup3()s was a listener or the channel
    // when its number fell in the range: found by a start that took its
    // listeners over, exec failing with EACCES.)
    const int count = plan.fdCount;
    const int movedStatus = static_cast<int>(syscall(SYS_fcntl, status, F_DUPFD_CLOEXEC, count));
    if (movedStatus < 0) {
        childFail(status, SpawnStage::Descriptors, errno);
    }
    status = movedStatus;
    int executableFd = -1;
    if (plan.executableFd >= 0) {
        executableFd = static_cast<int>(syscall(SYS_fcntl, plan.executableFd, F_DUPFD_CLOEXEC, count));
        if (executableFd < 0) {
            childFail(status, SpawnStage::Descriptors, errno);
        }
    }
    for (int i = 0; i < count; ++i) {
        plan.scratch[i] = static_cast<int>(syscall(SYS_fcntl, plan.sources[i], F_DUPFD_CLOEXEC, count));
        if (plan.scratch[i] < 0) {
            childFail(status, SpawnStage::Descriptors, errno);
        }
    }
    for (int i = 0; i < count; ++i) {
        if (syscall(SYS_dup3, plan.scratch[i], i, 0) < 0) {
            childFail(status, SpawnStage::Descriptors, errno);
        }
    }
    if (!closeRangeExcept(static_cast<unsigned>(count), ~0U, status, executableFd)) {
        childFail(status, SpawnStage::Descriptors, errno);
    }

    for (std::size_t i = 0; i < plan.limitCount; ++i) {
        if (syscall(SYS_prlimit64, 0, plan.limits[i].resource, &plan.limits[i].value, nullptr) != 0) {
            childFail(status, SpawnStage::Limits, errno, static_cast<std::uint32_t>(i));
        }
    }

    // Groups and gid first: once the uid is dropped we may no longer change them.
    if (plan.setGroups && syscall(kSysSetgroups, plan.groupCount, plan.groups) != 0) {
        childFail(status, SpawnStage::Groups, errno);
    }
    if (plan.setGid && syscall(kSysSetresgid, plan.gid, plan.gid, plan.gid) != 0) {
        childFail(status, SpawnStage::PrimaryGroup, errno);
    }
    if (plan.setUid && syscall(kSysSetresuid, plan.uid, plan.uid, plan.uid) != 0) {
        childFail(status, SpawnStage::User, errno);
    }

    (void)syscall(SYS_umask, plan.umask);
    // After the user change, so the directory is checked with the worker's rights.
    if (syscall(SYS_chdir, plan.directory) != 0) {
        childFail(status, SpawnStage::Directory, errno);
    }
    if (plan.noNewPrivileges && syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1UL, 0UL, 0UL, 0UL) != 0) {
        childFail(status, SpawnStage::NoNewPrivileges, errno);
    }
    if (plan.listenPidDigits != nullptr) {
        formatNumber(static_cast<std::uint64_t>(syscall(SYS_getpid)), plan.listenPidDigits);
    }
    if (plan.pidfdIdDigits != nullptr) {
        std::uint64_t id = 0;
        if (ownPidfdId(id)) {
            formatNumber(id, plan.pidfdIdDigits);
        } else {
            *plan.pidfdIdEntry = nullptr;
        }
    }

    if (executableFd >= 0) {
        (void)syscall(SYS_execveat, executableFd, "", plan.argv, plan.envp, AT_EMPTY_PATH);
        // ENOENT: a script, whose interpreter cannot open /dev/fd/N of a
        // CLOEXEC descriptor; run it by path instead.
        if (errno != ENOENT) {
            childFail(status, SpawnStage::Exec, errno);
        }
    }
    (void)syscall(SYS_execve, plan.executable, plan.argv, plan.envp);
    childFail(status, SpawnStage::Exec, errno);
}

// Kills and reaps a child the parent gives up on, so no zombie is left.
void killAndReap(pid_t pid)
{
    (void)kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
}

// Whether clone3 was refused once: then we go straight to fork().
std::atomic<bool> clone3Unavailable{false};

// Starts the child with a pidfd obtained race-free (clone3 CLONE_PIDFD), or
// with fork() + pidfd_open() where clone3 is missing: safe too, since the
// child cannot be reaped (and its pid reused) before we open the pidfd.
// Returns 0 in the child, the pid in the parent, -errno on failure.
pid_t cloneWithPidfd(UniqueFd &pidfd)
{
    if (!clone3Unavailable.load(std::memory_order_relaxed)) {
        int fd = -1;
        CloneArgs args;
        args.flags = CLONE_PIDFD;
        args.pidfd = reinterpret_cast<std::uintptr_t>(&fd);
        args.exitSignal = SIGCHLD;
        const long pid = syscall(SYS_clone3, &args, sizeof args);
        if (pid >= 0) {
            if (pid > 0) {
                pidfd.reset(fd);
            }
            return static_cast<pid_t>(pid);
        }
        // Container seccomp profiles have answered clone3 with EPERM as
        // well as ENOSYS; fork() tells a real EPERM apart.
        if (errno != ENOSYS && errno != EPERM) {
            return -errno;
        }
        clone3Unavailable.store(true, std::memory_order_relaxed);
    }
    const pid_t pid = fork();
    if (pid <= 0) {
        return pid == 0 ? 0 : -errno;
    }
    const long fd = syscall(SYS_pidfd_open, pid, 0U);
    if (fd < 0) {
        const int error = errno;
        killAndReap(pid);
        return -error;
    }
    pidfd.reset(static_cast<int>(fd));
    return pid;
}

// Blocks every signal for the lifetime of the object (around clone), so the
// child starts with none delivered until it has reset the dispositions.
class SignalBlock {
public:
    SignalBlock()
    {
        sigset_t all;
        sigfillset(&all);
        ok_ = pthread_sigmask(SIG_SETMASK, &all, &saved_) == 0;
    }
    ~SignalBlock()
    {
        if (ok_) {
            (void)pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
        }
    }
    SignalBlock(const SignalBlock &) = delete;
    SignalBlock &operator=(const SignalBlock &) = delete;

private:
    sigset_t saved_{};
    bool ok_ = false;
};

} // namespace

namespace {

// The child's stack while it shares fdsupd's memory (vfork semantics: fdsupd
// is suspended until the child execs or exits, so one stack serves every
// spawn of this single-threaded daemon).
alignas(64) std::array<std::byte, std::size_t{256} * 1024> childStack;

int childMain(void *plan)
{
    runChild(*static_cast<const ChildPlan *>(plan));
}

// Whether clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD) was refused once.
std::atomic<bool> vforkUnavailable{false};

// The child shares fdsupd's memory until exec (as posix_spawn does): no page
// table to copy and no copy-on-write faults in either process, which were
// most of fdsupd's CPU per instance in a rollout (docs/rollouts.md). What the
// child writes (the scratch fd numbers, LISTEN_PID's digits, errno) is the
// plan fdsupd built for it, or nothing fdsupd reads. Returns the pid, or
// -errno; -ENOSYS when this kind of clone is unavailable.
pid_t cloneVfork(const ChildPlan &plan, UniqueFd &pidfd)
{
    if (vforkUnavailable.load(std::memory_order_relaxed)) {
        return -ENOSYS;
    }
    int fd = -1;
    const int pid =
        clone(childMain, childStack.data() + childStack.size(),
              CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, const_cast<ChildPlan *>(&plan), &fd);
    if (pid < 0) {
        if (errno == ENOSYS || errno == EPERM || errno == EINVAL) {
            vforkUnavailable.store(true, std::memory_order_relaxed);
            return -ENOSYS;
        }
        return -errno;
    }
    pidfd.reset(fd);
    return pid;
}

} // namespace

pid_t startChild(const ChildPlan &plan, UniqueFd &pidfd)
{
    const SignalBlock blocked;
    if (const pid_t pid = cloneVfork(plan, pidfd); pid != -ENOSYS) {
        return pid;
    }
    const pid_t pid = cloneWithPidfd(pidfd);
    if (pid == 0) {
        runChild(plan);
    }
    return pid;
}

} // namespace fdsup
