// The process side of a re-exec: this image's identity, the sealed state, the exec, and the fallback.
#include "daemon/reexec_exec.hpp"

#include <array>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "daemon/reexec_state.hpp"
#include "io/spawn.hpp"

namespace fdsup {
namespace {

// A descriptor number from the environment: digits only, >= 3.
std::optional<int> parseFd(std::string_view text)
{
    if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string_view::npos) {
        return std::nullopt;
    }
    const int fd = std::atoi(std::string(text).c_str());
    return fd >= 3 ? std::optional<int>(fd) : std::nullopt;
}

Result<std::string> readWhole(BorrowedFd fd)
{
    std::string text;
    std::array<char, 65536> buffer{};
    for (off_t offset = 0;;) {
        const ssize_t n = ::pread(fd.get(), buffer.data(), buffer.size(), offset);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errnoError(errno, "Failed to read the state (fd " + std::to_string(fd.get()) + ")");
        }
        if (n == 0) {
            return text;
        }
        text.append(buffer.data(), static_cast<std::size_t>(n));
        offset += n;
        if (text.size() > kReexecStateMaxSize) {
            return Error{EFBIG, "the state is larger than " + std::to_string(kReexecStateMaxSize) + " bytes"};
        }
    }
}

// The environment for the next image: ours without FDSUP_REEXEC_*, plus `extra`.
std::vector<std::string> environmentWith(const std::vector<std::string> &extra)
{
    std::vector<std::string> env;
    for (char **e = environ; *e != nullptr; ++e) {
        if (std::strncmp(*e, "FDSUP_REEXEC_", 13) != 0) {
            env.emplace_back(*e);
        }
    }
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
}

// Clears CLOEXEC on each fd, execs, and on failure puts every flag back.
Error execWith(BorrowedFd binary, std::vector<int> fds, std::vector<std::string> env)
{
    std::vector<std::string> args = ReexecImage::get().argv();
    std::vector<char *> argv = execPointers(args);
    std::vector<char *> envp = execPointers(env);
    fds.push_back(binary.get()); // a script's interpreter opens it as /dev/fd/N
    std::vector<std::pair<int, int>> saved;
    for (const int fd : fds) {
        const int flags = ::fcntl(fd, F_GETFD);
        if (flags < 0 || ::fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) {
            const int e = errno;
            for (const auto &[f, old] : saved) {
                (void)::fcntl(f, F_SETFD, old);
            }
            return errnoError(e, "Failed to pass fd " + std::to_string(fd) + " on");
        }
        saved.emplace_back(fd, flags);
    }
    ::syscall(SYS_execveat, binary.get(), "", argv.data(), envp.data(), AT_EMPTY_PATH);
    const int e = errno;
    for (const auto &[f, old] : saved) {
        (void)::fcntl(f, F_SETFD, old);
    }
    return errnoError(e, "Failed to execute the new binary");
}

} // namespace

void ReexecImage::init(int argc, char **argv)
{
    ReexecImage &image = get();
    image.argv_.assign(argv, argv + argc);
    std::error_code ec;
    image.startedFrom_ = std::filesystem::read_symlink("/proc/self/exe", ec).string();
    image.openSelf();
}

ReexecImage &ReexecImage::get()
{
    static ReexecImage image;
    return image;
}

void ReexecImage::restored(std::string startedFrom, unsigned reexecs)
{
    startedFrom_ = std::move(startedFrom);
    reexecs_ = reexecs;
}

void ReexecImage::openSelf()
{
    self_.reset(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
    if (!self_) {
        spdlog::warn("Failed to open /proc/self/exe: {}; a failed re-exec cannot come back",
                     std::strerror(errno));
    }
}

Result<UniqueFd> sealState(const std::string &text)
{
    UniqueFd fd(static_cast<int>(::memfd_create("fdsup-state", MFD_ALLOW_SEALING | MFD_CLOEXEC)));
    if (!fd) {
        return errnoError(errno, "Failed to create the state memfd");
    }
    for (std::size_t done = 0; done < text.size();) {
        const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errnoError(errno, "Failed to write the state");
        }
        done += static_cast<std::size_t>(n);
    }
    if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
        return errnoError(errno, "Failed to seal the state");
    }
    return fd;
}

Error execInPlace(BorrowedFd binary, const std::vector<int> &fds, BorrowedFd state)
{
    const ReexecImage &image = ReexecImage::get();
    std::vector<int> passed = fds;
    passed.push_back(state.get());
    std::vector<std::string> extra{std::string(kReexecStateEnv) + "=" + std::to_string(state.get())};
    if (image.self().isValid()) {
        passed.push_back(image.self().get());
        extra.push_back(std::string(kReexecFallbackEnv) + "=" + std::to_string(image.self().get()) + ":" +
                        std::to_string(state.get()));
    }
    return execWith(binary, std::move(passed), environmentWith(extra));
}

std::optional<IncomingState> takeIncomingState()
{
    const char *stateVar = std::getenv(kReexecStateEnv);
    if (stateVar == nullptr) {
        return std::nullopt;
    }
    const std::string stateText = stateVar;
    const char *fallbackVar = std::getenv(kReexecFallbackEnv);
    const std::string fallbackText = fallbackVar != nullptr ? fallbackVar : "";
    const char *rejectedVar = std::getenv(kReexecRejectedEnv);
    IncomingState in;
    if (rejectedVar != nullptr) {
        in.rejected = rejectedVar;
    }
    for (const char *name : {kReexecStateEnv, kReexecFallbackEnv, kReexecRejectedEnv}) {
        ::unsetenv(name);
    }
    // The fallback first: even a state fd we cannot use can be sent back.
    if (const auto colon = fallbackText.find(':'); colon != std::string::npos) {
        const auto binary = parseFd(std::string_view(fallbackText).substr(0, colon));
        const auto original = parseFd(std::string_view(fallbackText).substr(colon + 1));
        if (binary && original) {
            in.fallback.reset(*binary);
            in.originalState = *original;
        }
    }
    const auto fd = parseFd(stateText);
    if (!fd) {
        in.unreadable = std::string(kReexecStateEnv) + "='" + stateText + "' is not a descriptor";
        return in;
    }
    in.state.reset(*fd);
    auto text = readWhole(in.state.borrow());
    if (!text) {
        in.unreadable = text.error().message;
        return in;
    }
    in.text = std::move(*text);
    return in;
}

Error fallBack(IncomingState &incoming, const std::string &reason)
{
    if (!incoming.fallback || incoming.originalState < 0) {
        return Error{ENOENT, "no fallback binary was passed"};
    }
    spdlog::error("Re-exec: this binary cannot take the state ({}); going back to the previous binary",
                  reason);
    std::vector<std::string> env =
        environmentWith({std::string(kReexecStateEnv) + "=" + std::to_string(incoming.originalState),
                         std::string(kReexecRejectedEnv) + "=" + reason});
    return execWith(incoming.fallback.borrow(), {incoming.originalState}, std::move(env));
}

void closeOtherFds(const std::vector<int> &keep)
{
    std::vector<int> open;
    std::error_code ec;
    for (const auto &entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
        if (const auto fd = parseFd(entry.path().filename().string())) {
            open.push_back(*fd);
        }
    }
    // The directory's own fd is in the list, closed already by now: harmless.
    for (const int fd : open) {
        if (std::find(keep.begin(), keep.end(), fd) == keep.end()) {
            (void)::close(fd);
        }
    }
}

} // namespace fdsup
