// handoff-bench: fdsupd's system calls during one handoff, counted by strace -c.
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include "handoff_fdsupd.hpp"
#include "test_support.hpp"

namespace fdsup::bench {
namespace {

// Every thread of pid, as "-p TID" arguments.
std::vector<std::string> threadsOf(pid_t pid)
{
    std::vector<std::string> args;
    for (const auto &task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
        args.emplace_back("-p");
        args.push_back(task.path().filename().string());
    }
    return args;
}

bool traced(pid_t pid)
{
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(status, line);) {
        if (line.starts_with("TracerPid:")) {
            return std::stol(line.substr(10)) != 0;
        }
    }
    return false;
}

// strace -c's table: "% time seconds usecs/call calls [errors] syscall", a row each.
SyscallProfile parse(const std::string &path)
{
    SyscallProfile profile;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
        std::istringstream row(line);
        std::vector<std::string> words;
        for (std::string w; row >> w;) {
            words.push_back(w);
        }
        if (words.size() < 5 || words.back() == "total" || words.back() == "syscall" ||
            words[0].find_first_not_of("0123456789.") != std::string::npos) {
            continue;
        }
        const std::uint64_t calls = std::stoull(words[3]);
        profile.calls[words.back()] += calls;
        if (words.size() >= 6) {
            profile.errors[words.back()] += std::stoull(words[4]);
        }
        profile.total += calls;
        profile.seconds += std::stod(words[1]);
    }
    return profile;
}

} // namespace

SyscallProfile HandoffFixture::rolloutTraced()
{
    const std::string out = (fdsupd_.dir() / "strace.txt").string();
    std::vector<std::string> args = {"strace", "-c", "-q", "-o", out};
    for (auto &a : threadsOf(fdsupd_.pid())) {
        args.push_back(std::move(a));
    }
    std::vector<char *> argv; // built before fork(): the child only execs
    argv.reserve(args.size() + 1);
    for (auto &a : args) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    const pid_t strace = fork();
    if (strace < 0) {
        throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    }
    if (strace == 0) {
        execvp("strace", argv.data());
        _exit(127);
    }
    const bool attached = test::waitUntil([&] { return traced(fdsupd_.pid()); }, test::kEventDeadline);
    const auto sample = attached ? rollout() : HandoffSample{};
    (void)kill(strace, SIGINT);
    int status = 0;
    (void)waitpid(strace, &status, 0);
    // strace prints its table and then dies of the signal it was stopped with.
    const bool finished = (WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                          (WIFSIGNALED(status) && WTERMSIG(status) == SIGINT);
    if (!attached || !finished) {
        throw std::runtime_error("strace -c -p " + std::to_string(fdsupd_.pid()) + " did not run (status " +
                                 std::to_string(status) + ")");
    }
    if (sample.failed != 0) {
        throw std::runtime_error(std::to_string(sample.failed) + " connections failed in the traced handoff");
    }
    SyscallProfile profile = parse(out);
    if (profile.total == 0) {
        throw std::runtime_error("strace -c counted nothing (" + out + ")");
    }
    return profile;
}

} // namespace fdsup::bench
