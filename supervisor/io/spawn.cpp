// Worker spawning: clone3 with a pidfd, fd layout and credentials in the child, exec.
#include "io/spawn.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <climits>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string_view>
#include <system_error>

#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/users.hpp"

namespace fdsup {

namespace {

// The record a failing child writes to its status pipe: one write well below
// PIPE_BUF, so the parent reads all of it or nothing.
struct StatusRecord {
    std::uint32_t stage;
    std::int32_t error;
    std::uint32_t index;
};

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

// What the kernel's prlimit64 takes.
struct Rlimit64 {
    std::uint64_t soft;
    std::uint64_t hard;
};
struct ChildLimit {
    int resource;
    Rlimit64 value;
};

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
};

// Room for the decimal digits of any pid_t and the terminating NUL.
constexpr std::size_t kPidDigits = 24;

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

// Formats a non-negative pid into out (kPidDigits bytes), NUL-terminated.
void formatPid(long pid, char *out)
{
    std::array<char, kPidDigits> reversed{};
    std::size_t n = 0;
    do {
        reversed[n++] = static_cast<char>('0' + pid % 10);
        pid /= 10;
    } while (pid > 0 && n < reversed.size() - 1);
    for (std::size_t i = 0; i < n; ++i) {
        out[i] = reversed[n - 1 - i];
    }
    out[n] = '\0';
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

[[noreturn]] void runChild(ChildPlan &plan)
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
    // source and the status pipe above the range, then dup3() each into
    // place (without O_CLOEXEC: these are the only inheritable fds), then
    // close everything above the range but the status pipe, which is
    // CLOEXEC and goes away at exec.
    const int count = plan.fdCount;
    const int movedStatus = static_cast<int>(syscall(SYS_fcntl, status, F_DUPFD_CLOEXEC, count));
    if (movedStatus < 0) {
        childFail(status, SpawnStage::Descriptors, errno);
    }
    status = movedStatus;
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
    // The pinned binary, if any, is kept (CLOEXEC) beside the status pipe;
    // everything else above the range is closed.
    int executableFd = -1;
    if (plan.executableFd >= 0) {
        executableFd = static_cast<int>(syscall(SYS_fcntl, plan.executableFd, F_DUPFD_CLOEXEC, count));
        if (executableFd < 0) {
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
        formatPid(syscall(SYS_getpid), plan.listenPidDigits);
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

struct Pipe {
    UniqueFd read;
    UniqueFd write;
};

// A CLOEXEC pipe whose read end (the parent's) is non-blocking; the write
// end stays blocking, as a worker expects of its stdout.
Result<Pipe> makePipe(const char *what)
{
    std::array<int, 2> fds{};
    if (pipe2(fds.data(), O_CLOEXEC) != 0) {
        return errnoError(errno, std::string("Failed to create ") + what + " pipe");
    }
    Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
    const int flags = fcntl(p.read.get(), F_GETFL);
    if (flags < 0 || fcntl(p.read.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
        return errnoError(errno, std::string("Failed to make the ") + what + " pipe non-blocking");
    }
    return p;
}

bool isOpen(int fd)
{
    return fd >= 0 && fcntl(fd, F_GETFD) >= 0;
}

// systemd's fdname_is_valid(): 1-255 printable ASCII characters, no ':'.
bool isValidFdName(std::string_view name)
{
    return !name.empty() && name.size() <= 255 &&
           std::all_of(name.begin(), name.end(), [](char c) { return c >= ' ' && c <= '~' && c != ':'; });
}

bool isListenVariable(std::string_view entry)
{
    return entry.starts_with("LISTEN_PID=") || entry.starts_with("LISTEN_FDS=") ||
           entry.starts_with("LISTEN_FDNAMES=");
}

std::vector<char *> pointers(std::vector<std::string> &strings)
{
    std::vector<char *> result;
    result.reserve(strings.size() + 1);
    for (auto &s : strings) {
        result.push_back(s.data());
    }
    result.push_back(nullptr);
    return result;
}

std::string joinIds(const std::vector<gid_t> &ids)
{
    std::string text;
    for (const gid_t id : ids) {
        if (!text.empty()) {
            text += ',';
        }
        text += std::to_string(id);
    }
    return text;
}

} // namespace

const char *spawnStageName(SpawnStage stage)
{
    switch (stage) {
    case SpawnStage::None:
        return "none";
    case SpawnStage::Descriptors:
        return "descriptors";
    case SpawnStage::Signals:
        return "signals";
    case SpawnStage::ProcessGroup:
        return "process-group";
    case SpawnStage::Limits:
        return "limits";
    case SpawnStage::Groups:
        return "groups";
    case SpawnStage::PrimaryGroup:
        return "group";
    case SpawnStage::User:
        return "user";
    case SpawnStage::Umask:
        return "umask";
    case SpawnStage::Directory:
        return "directory";
    case SpawnStage::NoNewPrivileges:
        return "no-new-privileges";
    case SpawnStage::Environment:
        return "environment";
    case SpawnStage::Exec:
        return "exec";
    }
    return "unknown";
}

Result<SpawnedChild> spawnWorker(const SpawnRequest &request)
{
    // Everything is checked here, where a mistake can still be told apart
    // from a failure in the child.
    if (request.executable.empty() || request.executable.front() != '/') {
        return Error{EINVAL, "executable '" + request.executable + "' is not an absolute path"};
    }
    if (request.argv.empty()) {
        return Error{EINVAL, "empty argv for " + request.executable};
    }
    if (!request.fdNames.empty() && request.fdNames.size() != request.fds.size()) {
        return Error{EINVAL, std::to_string(request.fdNames.size()) + " fd names for " +
                                 std::to_string(request.fds.size()) + " fds"};
    }
    for (const auto &name : request.fdNames) {
        if (!isValidFdName(name)) {
            return Error{EINVAL, "invalid fd name '" + name + "'"};
        }
    }
    for (const auto &entry : request.environment) {
        if (entry.find('=') == std::string::npos || entry.front() == '=') {
            return Error{EINVAL, "invalid environment entry '" + entry + "'"};
        }
    }
    for (const auto *list : {&request.fds, &request.extraFds}) {
        for (const BorrowedFd fd : *list) {
            if (!isOpen(fd.get())) {
                return Error{EBADF, "descriptor " + std::to_string(fd.get()) + " to pass is not open"};
            }
        }
    }
    constexpr std::size_t kMaxFds = 65536;
    const std::size_t fdCount = 3 + request.fds.size() + request.extraFds.size();
    if (fdCount > kMaxFds) {
        return Error{EMFILE, "too many descriptors to pass (" + std::to_string(fdCount) + ")"};
    }

    // argv and envp, with LISTEN_PID pre-sized so the child only writes digits.
    std::vector<std::string> argvStore = request.argv;
    std::vector<std::string> envStore;
    envStore.reserve(request.environment.size() + 3);
    for (const auto &entry : request.environment) {
        if (!isListenVariable(entry)) {
            envStore.push_back(entry);
        }
    }
    const bool setListen = request.listenFds && !request.fds.empty();
    std::size_t listenPidIndex = 0;
    if (setListen) {
        envStore.push_back("LISTEN_FDS=" + std::to_string(request.fds.size()));
        std::string names = "LISTEN_FDNAMES=";
        for (std::size_t i = 0; i < request.fds.size(); ++i) {
            names += i > 0 ? ":" : "";
            names += request.fdNames.empty() ? "unknown" : request.fdNames[i];
        }
        envStore.push_back(std::move(names));
        listenPidIndex = envStore.size();
        envStore.push_back("LISTEN_PID=" + std::string(kPidDigits, '\0'));
    }
    std::vector<char *> argvPointers = pointers(argvStore);
    std::vector<char *> envPointers = pointers(envStore);
    std::string directory = request.workingDirectory.empty() ? "/" : request.workingDirectory;

    const int devNullFd = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (devNullFd < 0) {
        return errnoError(errno, "Failed to open /dev/null");
    }
    const UniqueFd devNull(devNullFd);
    Pipe out;
    Pipe err;
    if (request.captureOutput) {
        auto o = makePipe("stdout");
        if (!o) {
            return o.error();
        }
        auto e = makePipe("stderr");
        if (!e) {
            return e.error();
        }
        out = std::move(*o);
        err = std::move(*e);
    }
    auto status = makePipe("status");
    if (!status) {
        return status.error();
    }

    std::vector<int> sources;
    sources.reserve(fdCount);
    sources.push_back(devNull.get());
    if (request.captureOutput) {
        sources.push_back(out.write.get());
        sources.push_back(err.write.get());
    } else {
        // A closed stdout/stderr of fdsupd becomes /dev/null, not a failure.
        sources.push_back(isOpen(STDOUT_FILENO) ? STDOUT_FILENO : devNull.get());
        sources.push_back(isOpen(STDERR_FILENO) ? STDERR_FILENO : devNull.get());
    }
    for (const auto *list : {&request.fds, &request.extraFds}) {
        for (const BorrowedFd fd : *list) {
            sources.push_back(fd.get());
        }
    }
    std::vector<int> scratch(fdCount, -1);
    std::vector<ChildLimit> limits;
    limits.reserve(request.limits.size());
    for (const auto &limit : request.limits) {
        limits.push_back(ChildLimit{limit.resource, Rlimit64{limit.soft, limit.hard}});
    }

    ChildPlan plan;
    plan.executable = request.executable.c_str();
    plan.executableFd = request.executableFd.get();
    plan.argv = argvPointers.data();
    plan.envp = envPointers.data();
    plan.sources = sources.data();
    plan.scratch = scratch.data();
    plan.fdCount = static_cast<int>(fdCount);
    plan.statusFd = status->write.get();
    plan.newProcessGroup = request.newProcessGroup;
    plan.limits = limits.data();
    plan.limitCount = limits.size();
    plan.setGroups = request.supplementaryGroups.has_value();
    if (plan.setGroups) {
        plan.groups = request.supplementaryGroups->data();
        plan.groupCount = request.supplementaryGroups->size();
    }
    plan.setGid = request.gid.has_value();
    plan.gid = request.gid.value_or(0);
    plan.setUid = request.uid.has_value();
    plan.uid = request.uid.value_or(0);
    plan.umask = request.umask;
    plan.directory = directory.c_str();
    plan.noNewPrivileges = request.noNewPrivileges;
    if (setListen) {
        plan.listenPidDigits = envStore[listenPidIndex].data() + std::string_view("LISTEN_PID=").size();
    }

    SpawnedChild child;
    pid_t pid = 0;
    {
        const SignalBlock blocked;
        pid = cloneWithPidfd(child.pidfd);
        if (pid == 0) {
            runChild(plan);
        }
    }
    if (pid < 0) {
        return errnoError(pid, "Failed to fork " + request.executable);
    }
    // The write ends and /dev/null close with their owners here: the child
    // has its own copies, and the status pipe reaches EOF at its exec.
    child.pid = pid;
    child.stdoutPipe = std::move(out.read);
    child.stderrPipe = std::move(err.read);
    child.statusPipe = std::move(status->read);
    return child;
}

int readSpawnStatus(BorrowedFd statusPipe, SpawnFailure &failure)
{
    StatusRecord record{};
    for (;;) {
        const ssize_t n = read(statusPipe.get(), &record, sizeof record);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            return 0;
        }
        if (static_cast<std::size_t>(n) != sizeof record ||
            record.stage > static_cast<std::uint32_t>(SpawnStage::Exec) || record.error <= 0) {
            return -EBADMSG;
        }
        failure.stage = static_cast<SpawnStage>(record.stage);
        failure.error = record.error;
        failure.index = record.index;
        return 1;
    }
}

std::string describeSpawnFailure(const SpawnRequest &request, const SpawnFailure &failure)
{
    std::string what;
    switch (failure.stage) {
    case SpawnStage::None:
        what = "spawn";
        break;
    case SpawnStage::Descriptors:
        what = "set up file descriptors";
        break;
    case SpawnStage::Signals:
        what = "reset signals";
        break;
    case SpawnStage::ProcessGroup:
        what = "setpgid";
        break;
    case SpawnStage::Limits:
        what = "setrlimit";
        if (failure.index < request.limits.size()) {
            const auto &limit = request.limits[failure.index];
            const std::string_view name = config::resourceLimitName(limit.resource);
            what += ' ';
            what += name.empty() ? std::to_string(limit.resource) : std::string(name);
            auto value = [](std::uint64_t v) {
                return v == RLIM_INFINITY ? "infinity" : std::to_string(v);
            };
            what += ' ' + value(limit.soft) + ':' + value(limit.hard);
        }
        break;
    case SpawnStage::Groups:
        what = "setgroups";
        if (request.supplementaryGroups && !request.supplementaryGroups->empty()) {
            what += ' ' + joinIds(*request.supplementaryGroups);
        }
        break;
    case SpawnStage::PrimaryGroup:
        what = request.gid ? "setgid " + std::to_string(*request.gid) : "setgid";
        break;
    case SpawnStage::User:
        what = request.uid ? "setuid " + std::to_string(*request.uid) : "setuid";
        break;
    case SpawnStage::Umask:
        what = "umask";
        break;
    case SpawnStage::Directory:
        what = "chdir " + (request.workingDirectory.empty() ? "/" : request.workingDirectory);
        break;
    case SpawnStage::NoNewPrivileges:
        what = "prctl PR_SET_NO_NEW_PRIVS";
        break;
    case SpawnStage::Environment:
        what = "set LISTEN_PID";
        break;
    case SpawnStage::Exec:
        what = "exec " + request.executable;
        break;
    }
    return what + ": " + errnoText(failure.error);
}

Result<std::string> findExecutable(const std::string &command, const std::string &searchPath)
{
    if (command.empty()) {
        return Error{ENOENT, "empty command"};
    }
    // Why a candidate cannot be run: 0 when it can. Directories and other
    // non-regular files count as EACCES, as execve() sees them.
    auto check = [](const std::string &path) {
        struct stat st {};
        if (stat(path.c_str(), &st) != 0) {
            return errno;
        }
        if (!S_ISREG(st.st_mode)) {
            return EACCES;
        }
        return access(path.c_str(), X_OK) == 0 ? 0 : errno;
    };
    if (command.find('/') != std::string::npos) {
        std::error_code ec;
        const std::string path = command.front() == '/'
                                     ? command
                                     : std::filesystem::absolute(command, ec).lexically_normal().string();
        if (ec) {
            return errnoError(ec.value(), "Failed to make '" + command + "' absolute");
        }
        if (const int error = check(path)) {
            return errnoError(error, "'" + path + "' is not executable");
        }
        return path;
    }
    // execvp semantics: the first executable hit wins; if none, a candidate
    // that exists but may not be run is reported rather than "not found".
    std::optional<std::pair<std::string, int>> refused;
    std::string_view rest = searchPath;
    while (!rest.empty()) {
        const std::size_t colon = rest.find(':');
        const std::string_view dir = rest.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
        if (!dir.empty() && dir.front() == '/') {
            std::string candidate(dir);
            if (candidate.back() != '/') {
                candidate += '/';
            }
            candidate += command;
            const int error = check(candidate);
            if (error == 0) {
                return candidate;
            }
            if (error != ENOENT && error != ENOTDIR && !refused) {
                refused.emplace(std::move(candidate), error);
            }
        }
    }
    if (refused) {
        return errnoError(refused->second, "'" + refused->first + "' is not executable");
    }
    return Error{ENOENT, "command '" + command + "' not found in PATH (" + searchPath + ")"};
}

Result<Credentials> resolveCredentials(const config::ServiceConfig &service)
{
    Credentials credentials;
    std::optional<std::string> userName;
    if (service.user) {
        auto entry = lookUpUser(*service.user);
        if (!entry) {
            return entry.error();
        }
        if (entry->has_value()) {
            credentials.uid = (*entry)->uid;
            credentials.gid = (*entry)->gid;
            userName = (*entry)->name;
        } else if (const std::optional<uid_t> numeric = parseNumericId(*service.user)) {
            // No primary group to take from a missing entry, and keeping
            // fdsupd's (root's) would be worse than refusing.
            if (!service.group) {
                return Error{ESRCH, "user " + *service.user + " has no passwd entry; set a group"};
            }
            credentials.uid = *numeric;
        } else {
            return Error{ESRCH, "user '" + *service.user + "' not found"};
        }
    }
    if (service.group) {
        auto gid = lookUpGroup(*service.group);
        if (!gid) {
            return gid.error();
        }
        credentials.gid = *gid;
    }
    if (!service.supplementaryGroups.empty()) {
        std::vector<gid_t> groups;
        groups.reserve(service.supplementaryGroups.size());
        for (const auto &group : service.supplementaryGroups) {
            auto gid = lookUpGroup(group);
            if (!gid) {
                return gid.error();
            }
            groups.push_back(*gid);
        }
        credentials.groups = std::move(groups);
    } else if (service.user) {
        if (userName) {
            auto groups = userGroups(*userName, *credentials.gid);
            if (!groups) {
                return groups.error();
            }
            credentials.groups = std::move(*groups);
        } else {
            credentials.groups = std::vector<gid_t>();
        }
    }
    return credentials;
}

} // namespace fdsup
