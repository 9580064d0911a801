// Unit tests for UniqueFd/BorrowedFd ownership and errnoError formatting.
#include <cerrno>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "common/result.hpp"
#include "core/fd.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using test::fileId;

static_assert(!std::is_copy_constructible_v<UniqueFd> && !std::is_copy_assignable_v<UniqueFd>);
static_assert(std::is_nothrow_move_constructible_v<UniqueFd> && std::is_nothrow_move_assignable_v<UniqueFd>);
static_assert(!std::is_convertible_v<UniqueFd, int> && !std::is_convertible_v<int, UniqueFd>);
static_assert(std::is_trivially_copyable_v<BorrowedFd>);

bool isOpen(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

// True only if fd is closed: F_GETFD fails with EBADF. Valid while no other
// thread can reuse the number, which holds in these single-threaded tests.
bool isClosed(int fd)
{
    errno = 0;
    return fcntl(fd, F_GETFD) < 0 && errno == EBADF;
}

bool isCloexec(int fd)
{
    const int flags = fcntl(fd, F_GETFD);
    return flags >= 0 && (flags & FD_CLOEXEC) != 0;
}

UniqueFd makeFd()
{
    UniqueFd fd(memfd_create("fd-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd.isValid()) << "memfd_create: " << errno;
    return fd;
}

TEST(FdTest, DefaultIsInvalid)
{
    UniqueFd fd;
    EXPECT_FALSE(fd.isValid());
    EXPECT_FALSE(fd);
    EXPECT_EQ(fd.get(), -1);
    EXPECT_FALSE(fd.borrow().isValid());
    fd.reset(); // closing nothing must not close fd -1 or anything else
    EXPECT_EQ(fd.release(), -1);
}

TEST(FdTest, DestructorCloses)
{
    int raw = -1;
    {
        UniqueFd fd = makeFd();
        raw = fd.get();
        EXPECT_TRUE(isOpen(raw));
    }
    EXPECT_TRUE(isClosed(raw));
}

TEST(FdTest, MoveConstructionTransfersOwnership)
{
    UniqueFd a = makeFd();
    const int raw = a.get();
    UniqueFd b(std::move(a));
    // The moved-from state is part of the contract.
    EXPECT_FALSE(a.isValid()); // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
    EXPECT_EQ(b.get(), raw);
    EXPECT_TRUE(isOpen(raw));
}

TEST(FdTest, MoveAssignmentClosesThePreviousFd)
{
    UniqueFd a = makeFd();
    UniqueFd b = makeFd();
    const int rawA = a.get();
    const int rawB = b.get();
    b = std::move(a);
    EXPECT_FALSE(a.isValid()); // NOLINT(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
    EXPECT_EQ(b.get(), rawA);
    EXPECT_TRUE(isOpen(rawA));
    EXPECT_TRUE(isClosed(rawB));
}

TEST(FdTest, SelfMoveAssignmentKeepsTheFd)
{
    UniqueFd a = makeFd();
    const int raw = a.get();
    UniqueFd &alias = a; // through an alias, so the compiler does not warn about the self-move
    a = std::move(alias);
    EXPECT_EQ(a.get(), raw);
    EXPECT_TRUE(isOpen(raw));
}

TEST(FdTest, ResetClosesAndPreservesErrno)
{
    UniqueFd fd = makeFd();
    const int raw = fd.get();
    errno = ENOTTY;
    fd.reset();
    EXPECT_EQ(errno, ENOTTY);
    EXPECT_FALSE(fd.isValid());
    EXPECT_TRUE(isClosed(raw));
}

TEST(FdTest, ResetTakesOwnershipOfTheNewFd)
{
    UniqueFd fd = makeFd();
    const int old = fd.get();
    const int fresh = memfd_create("fd-test", MFD_CLOEXEC);
    ASSERT_GE(fresh, 0);
    fd.reset(fresh);
    EXPECT_TRUE(isClosed(old));
    EXPECT_EQ(fd.get(), fresh);
    EXPECT_TRUE(isOpen(fresh));
}

TEST(FdTest, ResetToTheOwnedFdKeepsIt)
{
    UniqueFd fd = makeFd();
    const int raw = fd.get();
    fd.reset(raw);
    EXPECT_EQ(fd.get(), raw);
    EXPECT_TRUE(isOpen(raw));
}

TEST(FdTest, ReleaseHandsOwnershipBack)
{
    int raw = -1;
    {
        UniqueFd fd = makeFd();
        raw = fd.release();
        EXPECT_FALSE(fd.isValid());
    }
    EXPECT_TRUE(isOpen(raw));
    EXPECT_EQ(close(raw), 0);
}

TEST(FdTest, DupIsCloexecAndTheSameFile)
{
    // The source is deliberately not CLOEXEC: the dup must be anyway.
    UniqueFd original(eventfd(0, 0));
    ASSERT_TRUE(original.isValid());
    ASSERT_FALSE(isCloexec(original.get()));

    UniqueFd copy = original.dup();
    ASSERT_TRUE(copy.isValid());
    EXPECT_NE(copy.get(), original.get());
    EXPECT_GE(copy.get(), 3);
    EXPECT_TRUE(isCloexec(copy.get()));
    EXPECT_EQ(fileId(copy.borrow()), fileId(original.borrow()));

    // Same open file description: a write through one is read through the other.
    const std::uint64_t one = 1;
    ASSERT_EQ(write(original.get(), &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    std::uint64_t value = 0;
    ASSERT_EQ(read(copy.get(), &value, sizeof(value)), static_cast<ssize_t>(sizeof(value)));
    EXPECT_EQ(value, 1U);
}

TEST(FdTest, DupOfAnInvalidFdFailsWithEbadf)
{
    const UniqueFd none;
    errno = 0;
    const UniqueFd copy = none.dup();
    EXPECT_FALSE(copy.isValid());
    EXPECT_EQ(errno, EBADF);
}

TEST(FdTest, BorrowedFdNeverCloses)
{
    UniqueFd owner = makeFd();
    const int raw = owner.get();
    {
        const BorrowedFd view = owner.borrow();
        const BorrowedFd copy = view; // NOLINT(performance-unnecessary-copy-initialization)
        EXPECT_EQ(copy.get(), raw);
        EXPECT_TRUE(copy.isValid());
        EXPECT_EQ(copy, view);
    }
    EXPECT_TRUE(isOpen(raw));
    EXPECT_EQ(owner.get(), raw);
}

TEST(FdTest, BorrowedFdDefaultIsInvalid)
{
    constexpr BorrowedFd none;
    static_assert(!none.isValid() && none.get() == -1);
    EXPECT_NE(none, BorrowedFd(0));
}

TEST(ErrnoErrorTest, FormatsWhatAndTheErrnoDescription)
{
    const Error error = errnoError(EACCES, "Failed to bind socket 'web'");
    EXPECT_EQ(error.code, EACCES);
    EXPECT_EQ(error.message, "Failed to bind socket 'web': Permission denied");
}

TEST(ErrnoErrorTest, AcceptsNegativeErrno)
{
    const Error error = errnoError(-ENOENT, "Failed to open x");
    EXPECT_EQ(error.code, ENOENT);
    EXPECT_EQ(error.message, "Failed to open x: No such file or directory");
}

TEST(ErrnoErrorTest, UnknownCodeStillSaysSomething)
{
    const Error error = errnoError(123456, "Failed");
    EXPECT_EQ(error.code, 123456);
    EXPECT_EQ(error.message, "Failed: Unknown error 123456");
}

TEST(ErrnoErrorTest, ResultCarriesValueOrError)
{
    const Result<int> good(42);
    ASSERT_TRUE(good.ok());
    EXPECT_EQ(*good, 42);
    const Result<int> bad(errnoError(EINVAL, "bad"));
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code, EINVAL);
    EXPECT_EQ(bad.error().message, "bad: Invalid argument");
}

} // namespace
} // namespace fdsup
