// Result<T> and Result<void>: a value (or success) or an error with an errno and a message for the user.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace fdsup {

// What went wrong, ready to print: "Failed to set SO_REUSEPORT: Operation not
// permitted". code is a positive errno (EINVAL for malformed input).
struct Error {
    int code = 0;
    std::string message;
};

// Used where the caller needs to tell a human why (parsers, socket setup);
// plain system-call wrappers return 0/-errno instead.
template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}     // NOLINT(google-explicit-constructor)
    Result(Error error) : v_(std::move(error)) {} // NOLINT(google-explicit-constructor)

    [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return ok(); }

    [[nodiscard]] T &value() &
    {
        assert(ok());
        return std::get<0>(v_);
    }
    [[nodiscard]] const T &value() const &
    {
        assert(ok());
        return std::get<0>(v_);
    }
    [[nodiscard]] T &&value() &&
    {
        assert(ok());
        return std::get<0>(std::move(v_));
    }
    T &operator*() & { return value(); }
    const T &operator*() const & { return value(); }
    T *operator->() { return &value(); }
    const T *operator->() const { return &value(); }

    [[nodiscard]] const Error &error() const
    {
        assert(!ok());
        return std::get<1>(v_);
    }

private:
    std::variant<T, Error> v_;
};

// Success with nothing to return, or the error: what a fallible action
// returns when a human needs the reason (`return {};` on success).
template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), failed_(true) {} // NOLINT(google-explicit-constructor)

    [[nodiscard]] bool ok() const noexcept { return !failed_; }
    explicit operator bool() const noexcept { return ok(); }

    [[nodiscard]] const Error &error() const
    {
        assert(!ok());
        return error_;
    }

private:
    Error error_;
    bool failed_ = false;
};

// The description of an errno value ("No such file or directory"), the same
// on every machine and thread: strerrordesc_np(), not the locale's strerror().
// code may be given as errno or -errno.
[[nodiscard]] std::string errnoText(int code);

// Formats "<what>: <strerror(code)>" into an Error. code may be given as errno
// or as the -errno our system-call wrappers return; Error::code is positive.
[[nodiscard]] Error errnoError(int code, std::string what);

} // namespace fdsup
