// Unit tests for the subject of fdsupd's log lines and the journal fields made of it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "io/log_context.hpp"

namespace fdsup {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(LogContext, AnInstanceHasEveryField)
{
    const LogSubject subject{"web", 1U, 4242, 3};
    EXPECT_THAT(journalFields(subject),
                ElementsAre("FDSUP_SERVICE=web", "FDSUP_INSTANCE=1", "FDSUP_PID=4242", "FDSUP_GENERATION=3"));
}

TEST(LogContext, OnlyWhatIsKnownIsSent)
{
    EXPECT_THAT(journalFields(LogSubject{"web", std::nullopt, 0, 0}), ElementsAre("FDSUP_SERVICE=web"));
    // Slot 0 is an instance; pid 0 (not spawned yet) and generation 0 are not values.
    EXPECT_THAT(journalFields(LogSubject{"web", 0U, 0, 0}),
                ElementsAre("FDSUP_SERVICE=web", "FDSUP_INSTANCE=0"));
    EXPECT_THAT(journalFields(LogSubject{}), IsEmpty());
}

TEST(LogContext, ScopesNestAndRestore)
{
    EXPECT_EQ(currentLogSubject(), nullptr);
    {
        const LogScope service(LogSubject{"web", std::nullopt, 0, 2});
        ASSERT_NE(currentLogSubject(), nullptr);
        EXPECT_EQ(currentLogSubject()->service, "web");
        {
            const LogScope instance(LogSubject{"web", 0U, 99, 2});
            EXPECT_EQ(currentLogSubject()->pid, 99);
        }
        EXPECT_EQ(currentLogSubject()->pid, 0);
        EXPECT_FALSE(currentLogSubject()->instance.has_value());
    }
    EXPECT_EQ(currentLogSubject(), nullptr);
}

} // namespace
} // namespace fdsup
