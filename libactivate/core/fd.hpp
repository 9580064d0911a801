// Descriptor ownership: UniqueFd owns exactly one fd, BorrowedFd only looks at one.
#pragma once

#include <utility>

namespace fdsup {

// A non-owning view of a descriptor, for parameters. It never closes anything
// and is cheap to copy; the caller guarantees the fd outlives the view.
class BorrowedFd {
public:
    constexpr BorrowedFd() noexcept = default;
    constexpr explicit BorrowedFd(int fd) noexcept : fd_(fd) {}

    [[nodiscard]] constexpr int get() const noexcept { return fd_; }
    [[nodiscard]] constexpr bool isValid() const noexcept { return fd_ >= 0; }

    friend constexpr bool operator==(BorrowedFd a, BorrowedFd b) noexcept = default;

private:
    int fd_ = -1;
};

// The one owner type for every descriptor: move-only, closes on destruction,
// no implicit conversion to int. release() hands ownership back to raw code
// (an exec'd child, a C caller) and must not be ignored, or the fd leaks.
class UniqueFd {
public:
    constexpr UniqueFd() noexcept = default;
    constexpr explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(UniqueFd &&other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd &operator=(UniqueFd &&other) noexcept
    {
        reset(std::exchange(other.fd_, -1));
        return *this;
    }
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    ~UniqueFd() { reset(); }

    [[nodiscard]] int get() const noexcept { return fd_; }
    [[nodiscard]] BorrowedFd borrow() const noexcept { return BorrowedFd(fd_); }
    [[nodiscard]] bool isValid() const noexcept { return fd_ >= 0; }
    explicit operator bool() const noexcept { return isValid(); }

    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }
    // Closes the current fd (if any) and takes ownership of fd.
    void reset(int fd = -1) noexcept;

    // F_DUPFD_CLOEXEC; invalid on failure with errno set.
    [[nodiscard]] UniqueFd dup() const noexcept;

private:
    int fd_ = -1;
};

} // namespace fdsup
