// FakeClock: the model's Clock for unit tests; time moves only when the test says so.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "io/clock.hpp"

namespace fdsup::test {

// Timers fire only from advance(), in order of their due time, with now()
// equal to that time while they run; a timer may start, rearm or destroy
// timers (its own included) from its callback.
class FakeClock final : public Clock {
public:
    FakeClock() = default;
    ~FakeClock();

    [[nodiscard]] Duration now() const override { return now_; }
    Result<Timer> startTimer(Duration after, std::function<void()> fn) override;

    // Moves time forward by `by`, firing every timer that falls due.
    void advance(Duration by);
    // Timers armed and not fired yet.
    [[nodiscard]] std::size_t armed() const;
    // When the next armed timer is due, if any.
    [[nodiscard]] std::optional<Duration> nextDue() const;

private:
    class Handle;
    struct Entry {
        Duration due{};
        bool armed = true;
        std::shared_ptr<std::function<void()>> fn;
    };

    Duration now_{std::chrono::seconds(1000)};
    std::uint64_t nextId_ = 1;
    std::map<std::uint64_t, Entry> entries_;
    // Handles outlive nothing they point to: a handle left when the clock
    // goes is told so.
    std::shared_ptr<FakeClock *> self_ = std::make_shared<FakeClock *>(this);
};

} // namespace fdsup::test
