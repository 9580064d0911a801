// A pid file's text: the pid it names, or why it names none.
#include <cerrno>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "io/pid_file.hpp"

namespace fdsup {
namespace {

using ::testing::HasSubstr;

TEST(PidFile, ReadsThePidOnTheFirstLine)
{
    EXPECT_EQ(parsePidFile("4242\n", "/run/a.pid").value(), 4242);
    EXPECT_EQ(parsePidFile("4242 \r\nignored\n", "/run/a.pid").value(), 4242);
}

TEST(PidFile, AnEmptyFileIsNotWrittenYet)
{
    EXPECT_EQ(parsePidFile("", "/run/a.pid").error().code, ENOENT);
    EXPECT_EQ(parsePidFile("  \n4242", "/run/a.pid").error().code, ENOENT);
}

TEST(PidFile, RefusesWhatIsNotAPidAndNamesTheFile)
{
    for (const std::string text : {"0", "1", "-5", "+42", " 42", "42x", "99999999999999999999"}) {
        const auto r = parsePidFile(text, "/run/a.pid");
        ASSERT_FALSE(r) << text;
        EXPECT_EQ(r.error().code, EINVAL) << text;
        EXPECT_THAT(r.error().message, HasSubstr("/run/a.pid")) << text;
    }
}

// Found by the fuzz target pid-file (tests/fuzz/regressions/pid-file/): a
// number that fits a long but not a pid_t was cut down to its low 32 bits,
// so "4294967298" named pid 2.
TEST(PidFile, RefusesANumberThatDoesNotFitAPid)
{
    for (const std::string text : {"4294967298", "2147483648", "4294971538"}) {
        const auto r = parsePidFile(text, "/run/a.pid");
        ASSERT_FALSE(r) << text << " read as " << r.value();
        EXPECT_EQ(r.error().code, EINVAL) << text;
    }
    EXPECT_EQ(parsePidFile("2147483647", "/run/a.pid").value(), 2147483647);
}

} // namespace
} // namespace fdsup
