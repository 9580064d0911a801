// Clock and Timer: the model's view of time, so that every deadline can be tested with a fake clock.
#pragma once

#include <cerrno>
#include <cstdint>
#include <functional>
#include <memory>

#include "common/result.hpp"
#include "common/units.hpp"

namespace fdsup {

// A one-shot timer owned by whoever started it: destroying or resetting it
// cancels it, so no callback can reach an object that is gone. The
// callback may destroy the Timer that called it.
class Timer {
public:
    // What a clock implements behind the handle.
    class Impl {
    public:
        virtual ~Impl() = default;
        // Fires `after` from now (again, if it already fired). 0 or -errno.
        virtual int rearm(Duration after) = 0;
    };

    Timer() noexcept = default;
    explicit Timer(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

    [[nodiscard]] bool isArmed() const noexcept { return impl_ != nullptr; }
    explicit operator bool() const noexcept { return isArmed(); }
    void reset() noexcept { impl_.reset(); }
    // 0, or -EINVAL for an empty Timer.
    int rearm(Duration after) { return impl_ ? impl_->rearm(after) : -EINVAL; }

private:
    std::unique_ptr<Impl> impl_;
};

class Clock {
public:
    Clock() = default;
    Clock(const Clock &) = delete;
    Clock &operator=(const Clock &) = delete;

    // CLOCK_MONOTONIC, as seen by the loop for this iteration.
    [[nodiscard]] virtual Duration now() const = 0;
    // Calls fn once, `after` from now, unless the Timer is reset first.
    virtual Result<Timer> startTimer(Duration after, std::function<void()> fn) = 0;

protected:
    ~Clock() = default;
};

// CLOCK_REALTIME in microseconds, for what is shown to people (log lines,
// when a rollout started); never for deadlines.
std::int64_t realtimeUsec();

} // namespace fdsup
