// Before a re-exec: runs the candidate binary with --reexec-check, asynchronously, and reads its answer.
#include "io/reexec_preflight.hpp"

#include <array>
#include <cerrno>
#include <csignal>

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace fdsup {
namespace {

// What is read of the child's output: one line is expected.
constexpr std::size_t kMaxOutput = 16384;
constexpr std::size_t kStderrTail = 512;

// At most one check runs at a time (one re-exec at a time); 0: none.
pid_t gRunning = 0;

std::string readAvailable(BorrowedFd fd)
{
    std::string text;
    std::array<char, 4096> buffer{};
    while (text.size() < kMaxOutput) {
        const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
        if (n <= 0) {
            break;
        }
        text.append(buffer.data(), static_cast<std::size_t>(n));
    }
    return text;
}

std::string tail(std::string text)
{
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
        text.pop_back();
    }
    if (text.size() > kStderrTail) {
        text = "..." + text.substr(text.size() - kStderrTail);
    }
    return text;
}

std::string describeExit(const siginfo_t &info)
{
    if (info.si_code == CLD_EXITED) {
        return "exited with status " + std::to_string(info.si_status);
    }
    return std::string("was killed by signal ") + sigabbrev_np(info.si_status);
}

} // namespace

Result<PreflightAnswer> ReexecPreflight::parseAnswer(const std::string &out)
{
    const auto end = out.find('\n');
    const std::string line = out.substr(0, end);
    if (line.empty()) {
        return Error{ENOEXEC, "printed nothing"};
    }
    const auto json = nlohmann::json::parse(line, nullptr, false);
    if (json.is_discarded() || !json.is_object() || !json.contains("version") ||
        !json["version"].is_string() || !json.contains("state_versions") ||
        !json["state_versions"].is_array()) {
        return Error{ENOEXEC,
                     "did not answer {\"version\":..,\"state_versions\":[..]} but \"" + tail(line) + "\""};
    }
    PreflightAnswer answer;
    answer.version = json["version"].get<std::string>();
    for (const auto &v : json["state_versions"]) {
        if (!v.is_number_unsigned()) {
            return Error{ENOEXEC, "state_versions holds something else than numbers"};
        }
        answer.stateVersions.push_back(v.get<unsigned>());
    }
    return answer;
}

bool ReexecPreflight::isRunning(pid_t pid)
{
    return pid != 0 && pid == gRunning;
}

Result<std::unique_ptr<ReexecPreflight>> ReexecPreflight::start(EventLoop &loop, BorrowedFd binary,
                                                                const std::string &shownAs, Duration deadline,
                                                                Done done)
{
    std::unique_ptr<ReexecPreflight> self(new ReexecPreflight(shownAs, std::move(done)));
    std::array<int, 2> out{-1, -1};
    std::array<int, 2> err{-1, -1};
    if (::pipe2(out.data(), O_CLOEXEC | O_NONBLOCK) < 0) {
        return errnoError(errno, "Failed to create a pipe");
    }
    self->out_.reset(out[0]);
    UniqueFd outWrite(out[1]);
    if (::pipe2(err.data(), O_CLOEXEC | O_NONBLOCK) < 0) {
        return errnoError(errno, "Failed to create a pipe");
    }
    self->err_.reset(err[0]);
    UniqueFd errWrite(err[1]);
    // Built before the fork: the child only makes async-signal-safe calls.
    std::string arg0 = shownAs;
    std::string flag = "--reexec-check";
    std::array<char *, 3> argv{arg0.data(), flag.data(), nullptr};
    const int fd = binary.get();
    const pid_t pid = ::fork();
    if (pid < 0) {
        return errnoError(errno, "Failed to fork");
    }
    if (pid == 0) {
        const int devNull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        // Blocking output, and the binary inheritable: a script's interpreter opens it as /dev/fd/N.
        if (devNull < 0 || ::dup2(devNull, 0) < 0 || ::dup2(outWrite.get(), 1) < 0 ||
            ::dup2(errWrite.get(), 2) < 0 || ::fcntl(fd, F_SETFD, 0) < 0) {
            ::_exit(127);
        }
        ::syscall(SYS_execveat, fd, "", argv.data(), environ, AT_EMPTY_PATH);
        ::_exit(127);
    }
    self->pid_ = pid;
    gRunning = pid;
    self->pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (!self->pidfd_) {
        const int e = errno;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        return errnoError(e, "Failed to open a pidfd of the check");
    }
    ReexecPreflight *raw = self.get();
    auto child = loop.addChild(self->pidfd_.borrow(), [raw](const siginfo_t &info) { raw->onExit(info); });
    if (!child) {
        return child.error(); // the destructor kills and reaps it
    }
    self->child_ = std::move(*child);
    auto timer = loop.startTimer(deadline, [raw] { raw->onDeadline(); });
    if (!timer) {
        return timer.error();
    }
    self->deadline_ = std::move(*timer);
    return self;
}

ReexecPreflight::~ReexecPreflight()
{
    if (gRunning == pid_) {
        gRunning = 0;
    }
    if (child_) {
        child_.reset();
        (void)::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
        siginfo_t info{};
        (void)::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED);
    }
}

void ReexecPreflight::onExit(const siginfo_t &info)
{
    child_.reset();
    deadline_.reset();
    const std::string out = readAvailable(out_.borrow());
    const std::string err = tail(readAvailable(err_.borrow()));
    const std::string said = err.empty() ? std::string() : ": " + err;
    if (info.si_code != CLD_EXITED || info.si_status != 0) {
        finish(Error{ENOEXEC, shownAs_ + " --reexec-check " + describeExit(info) + said});
        return;
    }
    auto answer = parseAnswer(out);
    if (!answer) {
        finish(Error{answer.error().code, shownAs_ + " --reexec-check " + answer.error().message + said});
        return;
    }
    finish(std::move(answer));
}

void ReexecPreflight::onDeadline()
{
    deadline_.reset();
    child_.reset();
    (void)::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    siginfo_t info{};
    (void)::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED);
    finish(Error{ETIMEDOUT, shownAs_ + " --reexec-check did not answer in time"});
}

void ReexecPreflight::finish(Result<PreflightAnswer> answer)
{
    Done done = std::move(done_);
    done_ = nullptr;
    if (done) {
        done(std::move(answer)); // may destroy this
    }
}

} // namespace fdsup
