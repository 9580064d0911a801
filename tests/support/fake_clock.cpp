// FakeClock: the model's Clock for unit tests; time moves only when the test says so.
#include "fake_clock.hpp"

#include <algorithm>
#include <cerrno>

namespace fdsup::test {

class FakeClock::Handle final : public Timer::Impl {
public:
    Handle(std::weak_ptr<FakeClock *> clock, std::uint64_t id) : clock_(std::move(clock)), id_(id) {}
    ~Handle() override
    {
        if (auto clock = clock_.lock()) {
            (*clock)->entries_.erase(id_);
        }
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;

    int rearm(Duration after) override
    {
        auto clock = clock_.lock();
        if (!clock) {
            return -EINVAL;
        }
        Entry &entry = (*clock)->entries_.at(id_);
        entry.due = (*clock)->now_ + after;
        entry.armed = true;
        return 0;
    }

private:
    std::weak_ptr<FakeClock *> clock_;
    std::uint64_t id_;
};

FakeClock::~FakeClock()
{
    self_.reset();
}

Result<Timer> FakeClock::startTimer(Duration after, std::function<void()> fn)
{
    const std::uint64_t id = nextId_++;
    entries_.emplace(id, Entry{now_ + after, true, std::make_shared<std::function<void()>>(std::move(fn))});
    return Timer(std::make_unique<Handle>(self_, id));
}

void FakeClock::advance(Duration by)
{
    const Duration target = now_ + by;
    for (;;) {
        auto next = entries_.end();
        for (auto it = entries_.begin(); it != entries_.end(); ++it) {
            if (it->second.armed && it->second.due <= target &&
                (next == entries_.end() || it->second.due < next->second.due)) {
                next = it;
            }
        }
        if (next == entries_.end()) {
            break;
        }
        now_ = std::max(now_, next->second.due);
        next->second.armed = false;
        // Kept alive here: the callback may destroy its own timer.
        const auto fn = next->second.fn;
        (*fn)();
    }
    now_ = target;
}

std::size_t FakeClock::armed() const
{
    std::size_t count = 0;
    for (const auto &[id, entry] : entries_) {
        count += entry.armed ? 1 : 0;
    }
    return count;
}

std::optional<Duration> FakeClock::nextDue() const
{
    std::optional<Duration> due;
    for (const auto &[id, entry] : entries_) {
        if (entry.armed && (!due || entry.due < *due)) {
            due = entry.due;
        }
    }
    return due;
}

} // namespace fdsup::test
