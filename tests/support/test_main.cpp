// The main() of every GoogleTest binary: GoogleTest and GoogleMock, and the descriptor check of every test.
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_support.hpp"

namespace fdsup::test {
namespace {

using FdTable = std::map<int, std::string>;

// The descriptors that differ between two snapshots ("fd -> target" entries).
struct FdChange {
    FdTable opened;
    FdTable closed;
};

FdChange changeBetween(const FdTable &before, const FdTable &after)
{
    FdChange change;
    for (const auto &[fd, target] : after) {
        if (const auto it = before.find(fd); it == before.end() || it->second != target) {
            change.opened.emplace(fd, target);
        }
    }
    for (const auto &[fd, target] : before) {
        if (const auto it = after.find(fd); it == after.end() || it->second != target) {
            change.closed.emplace(fd, target);
        }
    }
    return change;
}

// Fails a test whose process holds more or fewer descriptors at its end (its
// fixture destroyed) than at its start (before its fixture was made); the
// failure lists the descriptors that came and went.
//
// A fixture shared by the tests of a suite opens what it keeps in
// SetUpTestSuite() and closes it in TearDownTestSuite(): those run outside
// every test (before the first starts, after the last ends), so the per-test
// check does not see them, and the same check around the whole suite (less
// what its tests changed, already reported against them) proves that
// TearDownTestSuite() closed them. Nothing else may stay open from one test
// to the next.
//
// What a library opens on first use and keeps would fail whichever test uses
// it first. None of what these tests use does, which is why the check needs
// no allowance (every test of every binary passes it run alone, as the
// first to touch everything, in the normal and the ASan build):
// - glibc's NSS (getpwnam_r, getgrnam_r, getgrouplist: users and groups
//   looked up by the config, spawn and other unit tests) reads
//   nsswitch.conf and opens /etc/passwd or /etc/group per lookup, closing
//   them again (no setpwent() keeps them open); the modules it loads keep
//   mappings, not descriptors; nscd's socket and database fd, on a machine
//   that runs it, are closed after each request and mmap().
// - std::random_device (the socket tests) uses RDRAND or getrandom(); its
//   /dev/urandom fallback belongs to the object and is closed with it.
// - libsystemd's sd-event descriptors (epoll, timerfd, signalfd, pidfds)
//   belong to the loop and go with it; nothing here logs to the journal,
//   whose socket libsystemd would keep.
// - GoogleTest opens its XML report (meson's --gtest_output) after the last
//   test; ASan and UBSan read /proc/self/maps at start-up and start a
//   symbolizer only for a report.
// Should one appear, open it once in main() before the tests run, with a
// comment naming it, rather than loosen the check.
class FdLeakCheck : public ::testing::EmptyTestEventListener {
public:
    void OnTestSuiteStart(const ::testing::TestSuite & /*suite*/) override { suite_ = snapshot(); }
    void OnTestStart(const ::testing::TestInfo & /*test*/) override { test_ = snapshot(); }
    void OnTestEnd(const ::testing::TestInfo & /*test*/) override
    {
        const auto after = snapshot();
        if (!test_ || !after) {
            return;
        }
        const FdChange change = changeBetween(*test_, *after);
        expectSameCount(*test_, *after, change, "the test");
        if (suite_) {
            for (const auto &[fd, target] : change.closed) {
                suite_->erase(fd);
            }
            for (const auto &[fd, target] : change.opened) {
                (*suite_)[fd] = target;
            }
        }
    }
    void OnTestSuiteEnd(const ::testing::TestSuite & /*suite*/) override
    {
        const auto after = snapshot();
        if (suite_ && after) {
            expectSameCount(*suite_, *after, changeBetween(*suite_, *after),
                            "the test suite (its SetUpTestSuite and TearDownTestSuite)");
        }
    }

private:
    // nullopt when /proc/self/fd cannot be read (a test that lowered
    // RLIMIT_NOFILE and did not restore it): a failure of its own.
    static std::optional<FdTable> snapshot()
    {
        try {
            return openFds();
        } catch (const std::exception &e) {
            ADD_FAILURE() << "cannot list the open descriptors: " << e.what();
            return std::nullopt;
        }
    }

    static void expectSameCount(const FdTable &before, const FdTable &after, const FdChange &change,
                                const char *what)
    {
        if (before.size() == after.size()) {
            return;
        }
        std::ostringstream list;
        for (const auto &[fd, target] : change.opened) {
            list << "\n  opened: " << fd << " -> " << target;
        }
        for (const auto &[fd, target] : change.closed) {
            list << "\n  closed: " << fd << " -> " << target;
        }
        ADD_FAILURE() << what << " started with " << before.size() << " open descriptors and ended with "
                      << after.size() << ":" << list.str();
    }

    std::optional<FdTable> suite_; // as it was before the suite, plus what its tests changed
    std::optional<FdTable> test_;
};

} // namespace
} // namespace fdsup::test

int main(int argc, char **argv)
{
    ::testing::InitGoogleMock(&argc, argv);
    // Owned by GoogleTest from here on. Appended after the result printers:
    // the end of a test reaches the listeners in reverse order, so its
    // failure is part of the result they print.
    ::testing::UnitTest::GetInstance()->listeners().Append(new fdsup::test::FdLeakCheck);
    return RUN_ALL_TESTS();
}
