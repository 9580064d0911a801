// Worker spawning, the parent side: checking the request, building the child's plan, reading its status.
#include "io/spawn.hpp"

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "io/notify.hpp"
#include "io/spawn_child.hpp"

namespace fdsup {

namespace {

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

bool isListenVariable(std::string_view entry)
{
    return entry.starts_with("LISTEN_PID=") || entry.starts_with("LISTEN_FDS=") ||
           entry.starts_with("LISTEN_FDNAMES=") || entry.starts_with("LISTEN_PIDFDID=");
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

std::vector<char *> execPointers(std::vector<std::string> &strings)
{
    std::vector<char *> result;
    result.reserve(strings.size() + 1);
    for (auto &s : strings) {
        result.push_back(s.data());
    }
    result.push_back(nullptr);
    return result;
}

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

namespace {

std::size_t passedFdCount(const SpawnRequest &request)
{
    return 3 + request.fds.size() + request.extraFds.size();
}

// Everything is checked here, where a mistake can still be told apart from
// a failure in the child.
Result<void> checkRequest(const SpawnRequest &request)
{
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
        if (!validFdName(name)) {
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
    const std::size_t fdCount = passedFdCount(request);
    if (fdCount > kMaxFds) {
        return Error{EMFILE, "too many descriptors to pass (" + std::to_string(fdCount) + ")"};
    }
    return {};
}

// argv, envp and the directory as the child gets them, with LISTEN_PID
// pre-sized so the child only writes digits. The pointers point into the
// strings, so it is neither copied nor moved.
struct ChildStrings {
    explicit ChildStrings(const SpawnRequest &request);
    ChildStrings(const ChildStrings &) = delete;
    ChildStrings &operator=(const ChildStrings &) = delete;

    std::vector<std::string> argvStore;
    std::vector<std::string> envStore;
    std::vector<char *> argv;
    std::vector<char *> envp;
    char *listenPidDigits = nullptr; // in envStore's LISTEN_PID entry, or null
    char *pidfdIdDigits = nullptr;   // in envStore's LISTEN_PIDFDID entry, or null
    char **pidfdIdEntry = nullptr;   // its place in envp, the last one
    std::string directory;
};

ChildStrings::ChildStrings(const SpawnRequest &request) : argvStore(request.argv)
{
    envStore.reserve(request.environment.size() + 4);
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
        // Last, so that a child on a kernel without pidfs ends envp before it.
        envStore.push_back("LISTEN_PIDFDID=" + std::string(kPidDigits, '\0'));
    }
    argv = execPointers(argvStore);
    envp = execPointers(envStore);
    directory = request.workingDirectory.empty() ? "/" : request.workingDirectory;
    if (setListen) {
        listenPidDigits = envStore[listenPidIndex].data() + std::string_view("LISTEN_PID=").size();
        pidfdIdDigits = envStore.back().data() + std::string_view("LISTEN_PIDFDID=").size();
        pidfdIdEntry = &envp[envStore.size() - 1];
    }
}

// The descriptors the parent opens for a child: /dev/null, the output pipes
// when output is captured, and the status pipe.
struct ChildFds {
    UniqueFd devNull;
    Pipe out;
    Pipe err;
    Pipe status;
};

Result<ChildFds> openChildFds(bool captureOutput)
{
    ChildFds fds;
    const int devNull = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (devNull < 0) {
        return errnoError(errno, "Failed to open /dev/null");
    }
    fds.devNull = UniqueFd(devNull);
    if (captureOutput) {
        auto out = makePipe("stdout");
        if (!out) {
            return out.error();
        }
        auto err = makePipe("stderr");
        if (!err) {
            return err.error();
        }
        fds.out = std::move(*out);
        fds.err = std::move(*err);
    }
    auto status = makePipe("status");
    if (!status) {
        return status.error();
    }
    fds.status = std::move(*status);
    return fds;
}

// What the child's fds 0, 1, 2, 3... become: /dev/null as stdin, the output
// pipes or fdsupd's own stdout and stderr, then the fds to pass in order.
std::vector<int> fdSources(const SpawnRequest &request, const ChildFds &fds)
{
    std::vector<int> sources;
    sources.reserve(passedFdCount(request));
    sources.push_back(fds.devNull.get());
    if (request.captureOutput) {
        sources.push_back(fds.out.write.get());
        sources.push_back(fds.err.write.get());
    } else {
        // A closed stdout/stderr of fdsupd becomes /dev/null, not a failure.
        sources.push_back(isOpen(STDOUT_FILENO) ? STDOUT_FILENO : fds.devNull.get());
        sources.push_back(isOpen(STDERR_FILENO) ? STDERR_FILENO : fds.devNull.get());
    }
    for (const auto *list : {&request.fds, &request.extraFds}) {
        for (const BorrowedFd fd : *list) {
            sources.push_back(fd.get());
        }
    }
    return sources;
}

std::vector<ChildLimit> childLimits(const SpawnRequest &request)
{
    std::vector<ChildLimit> limits;
    limits.reserve(request.limits.size());
    for (const auto &limit : request.limits) {
        limits.push_back(ChildLimit{limit.resource, Rlimit64{limit.soft, limit.hard}});
    }
    return limits;
}

// The plan points into strings, sources, scratch and limits: they must
// outlive the clone.
ChildPlan makePlan(const SpawnRequest &request, ChildStrings &strings, const std::vector<int> &sources,
                   std::vector<int> &scratch, const std::vector<ChildLimit> &limits, BorrowedFd statusFd)
{
    ChildPlan plan;
    plan.executable = request.executable.c_str();
    plan.executableFd = request.executableFd.get();
    plan.argv = strings.argv.data();
    plan.envp = strings.envp.data();
    plan.sources = sources.data();
    plan.scratch = scratch.data();
    plan.fdCount = static_cast<int>(sources.size());
    plan.statusFd = statusFd.get();
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
    plan.directory = strings.directory.c_str();
    plan.noNewPrivileges = request.noNewPrivileges;
    plan.listenPidDigits = strings.listenPidDigits;
    plan.pidfdIdDigits = strings.pidfdIdDigits;
    plan.pidfdIdEntry = strings.pidfdIdEntry;
    return plan;
}

} // namespace

Result<SpawnedChild> spawnWorker(const SpawnRequest &request)
{
    if (auto checked = checkRequest(request); !checked) {
        return checked.error();
    }
    // All the child needs is built before the clone: between clone and exec
    // it makes only async-signal-safe calls.
    ChildStrings strings(request);
    auto fds = openChildFds(request.captureOutput);
    if (!fds) {
        return fds.error();
    }
    const std::vector<int> sources = fdSources(request, *fds);
    std::vector<int> scratch(sources.size(), -1);
    const std::vector<ChildLimit> limits = childLimits(request);
    const ChildPlan plan = makePlan(request, strings, sources, scratch, limits, fds->status.write.borrow());

    SpawnedChild child;
    const pid_t pid = startChild(plan, child.pidfd);
    if (pid < 0) {
        return errnoError(pid, "Failed to fork " + request.executable);
    }
    // The write ends and /dev/null close with their owners here: the child
    // has its own copies, and the status pipe reaches EOF at its exec.
    child.pid = pid;
    child.stdoutPipe = std::move(fds->out.read);
    child.stderrPipe = std::move(fds->err.read);
    child.statusPipe = std::move(fds->status.read);
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

} // namespace fdsup
