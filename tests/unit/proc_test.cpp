// What fdsupd reads about other processes in /proc: their parent and group, their starting environment.
#include <chrono>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "io/proc.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::string_literals;

TEST(Proc, ReadsTheFieldsAfterTheLastParenthesis)
{
    const auto stat = parseProcStat("123 (a) R 9 9 (b)) S 77 88 0 -1\n");
    ASSERT_TRUE(stat);
    EXPECT_EQ(stat->state, 'S');
    EXPECT_EQ(stat->ppid, 77);
    EXPECT_EQ(stat->pgid, 88);
    EXPECT_FALSE(parseProcStat("123 (a"));
    EXPECT_FALSE(parseProcStat("123 (a) S 77"));
}

TEST(Proc, FindsAVariableAtTheStartOfAnEntry)
{
    const std::string block = "PATH=/bin\0XFDSUP_SERVICE=no\0FDSUP_SERVICE=web\0FDSUP_INSTANCE=\0A=1"s;
    EXPECT_EQ(environmentValue(block, "FDSUP_SERVICE"), "web");
    EXPECT_EQ(environmentValue(block, "FDSUP_INSTANCE"), "");
    EXPECT_EQ(environmentValue(block, "A"), "1");
    EXPECT_FALSE(environmentValue(block, "FDSUP"));
    EXPECT_FALSE(environmentValue(block, "B"));
}

// A process names itself: a '\n' in the name cut the file's first line
// before the fields, so a dead fdsupd's worker named so was not recorded
// at a take-over (and never stopped), and a pid file's daemon was "not
// running".
TEST(Proc, ANewlineInTheCommandNameHidesNothing)
{
    int ready[2];
    ASSERT_EQ(pipe2(ready, O_CLOEXEC), 0);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        (void)prctl(PR_SET_NAME, "x\n) Z 1 1 1");
        (void)write(ready[1], "r", 1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    pollfd p{ready[0], POLLIN, 0};
    const bool named =
        poll(&p, 1, static_cast<int>(std::chrono::milliseconds(test::kEventDeadline).count())) == 1;
    close(ready[0]);
    const auto stat = readProcStat(child);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    ASSERT_TRUE(named);
    ASSERT_TRUE(stat);
    EXPECT_NE(stat->state, 'Z');
    EXPECT_EQ(stat->ppid, getpid());
    EXPECT_EQ(stat->pgid, getpgrp());
}

} // namespace
} // namespace fdsup
