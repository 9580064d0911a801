// libactivate's listener lookup, exercised in forked children with real fds at 3...
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <string>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "activate/activate.h"
#include "test_support.hpp"

namespace {

// Runs body in a child whose fds 3..3+count-1 are fresh sockets, with the
// given activation environment (pid "self" means the child's own pid). The
// child's exit status is body's return value.
int runWithListeners(int count, const char *pid, const char *fds, const char *names,
                     const std::function<int()> &body)
{
    const pid_t child = fork();
    if (child == 0) {
        for (int i = 0; i < count; ++i) {
            const int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (s < 0 || dup2(s, 3 + i) < 0) {
                _exit(100);
            }
            if (s != 3 + i) {
                close(s);
            }
            // As inherited across exec: no FD_CLOEXEC (dup2 onto itself keeps it).
            if (fcntl(3 + i, F_SETFD, 0) < 0) {
                _exit(101);
            }
        }
        const std::string self = std::to_string(getpid());
        if (pid != nullptr) {
            setenv("LISTEN_PID", std::string(pid) == "self" ? self.c_str() : pid, 1);
        }
        if (fds != nullptr) {
            setenv("LISTEN_FDS", fds, 1);
        }
        if (names != nullptr) {
            setenv("LISTEN_FDNAMES", names, 1);
        }
        _exit(body());
    }
    int status = 0;
    EXPECT_EQ(waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

int expectEq(int actual, int expected)
{
    return actual == expected ? 0 : 1;
}

TEST(Activate, CountsListenersForThisProcess)
{
    EXPECT_EQ(
        runWithListeners(2, "self", "2", "web:admin", [] { return expectEq(activate_listen_fds(0), 2); }), 0);
}

TEST(Activate, FindsListenersByName)
{
    EXPECT_EQ(runWithListeners(3, "self", "3", "web:admin:web",
                               [] {
                                   return expectEq(activate_listener("web"), 3) +
                                          expectEq(activate_listener("admin"), 4) +
                                          expectEq(activate_listener("metrics"), -ENOENT) +
                                          expectEq(activate_listener(""), -EINVAL) +
                                          expectEq(activate_listener(nullptr), -EINVAL);
                               }),
              0);
}

TEST(Activate, UnnamedListenersAreUnknown)
{
    EXPECT_EQ(
        runWithListeners(1, "self", "1", nullptr, [] { return expectEq(activate_listener("unknown"), 3); }),
        0);
}

// Found by the fuzz target listen-env (tests/fuzz/regressions/listen-env/):
// without LISTEN_FDNAMES, a count of a billion was a billion strings
// "unknown", and std::bad_alloc out of a C function.
TEST(Activate, AHugeCountWithoutNamesAllocatesNoName)
{
    EXPECT_EQ(runWithListeners(1, "self", "1000000000", nullptr,
                               [] {
                                   return expectEq(activate_listen_fds(0), -EBADF) +
                                          expectEq(activate_listener("unknown"), 3) +
                                          expectEq(activate_listener("web"), -ENOENT);
                               }),
              0);
}

TEST(Activate, IgnoresEnvironmentMeantForAnotherProcess)
{
    EXPECT_EQ(runWithListeners(1, "1", "1", "web",
                               [] {
                                   return expectEq(activate_listen_fds(0), 0) +
                                          expectEq(activate_listener("web"), -ENOENT);
                               }),
              0);
}

TEST(Activate, RejectsMalformedEnvironment)
{
    EXPECT_EQ(
        runWithListeners(1, "self", "x1", nullptr, [] { return expectEq(activate_listen_fds(0), -EINVAL); }),
        0);
    EXPECT_EQ(
        runWithListeners(2, "self", "2", "web", [] { return expectEq(activate_listen_fds(0), -EINVAL); }), 0);
    EXPECT_EQ(
        runWithListeners(0, "self", "2", "a:b", [] { return expectEq(activate_listen_fds(0), -EBADF); }), 0);
}

TEST(Activate, SetsCloexecAndUnsetsEnvironment)
{
    EXPECT_EQ(runWithListeners(2, "self", "2", "a:b",
                               [] {
                                   const int before = fcntl(3, F_GETFD) & FD_CLOEXEC;
                                   const int n = activate_listen_fds(1);
                                   const bool cloexec = (fcntl(3, F_GETFD) & FD_CLOEXEC) != 0 &&
                                                        (fcntl(4, F_GETFD) & FD_CLOEXEC) != 0;
                                   const bool unset = std::getenv("LISTEN_PID") == nullptr &&
                                                      std::getenv("LISTEN_FDS") == nullptr &&
                                                      std::getenv("LISTEN_FDNAMES") == nullptr;
                                   return (before == 0 && n == 2 && cloexec && unset) ? 0 : 1;
                               }),
              0);
}

TEST(Activate, NoEnvironmentMeansNoListeners)
{
    EXPECT_EQ(
        runWithListeners(0, nullptr, nullptr, nullptr, [] { return expectEq(activate_listen_fds(0), 0); }),
        0);
}

TEST(Activate, Version)
{
    EXPECT_STRNE(activate_version(), "");
}

} // namespace
