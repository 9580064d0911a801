// EventLoop: fdsupd's one thread, a thin owner of sd-event and its sources.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>

#include "common/result.hpp"
#include "common/units.hpp"
#include "core/fd.hpp"
#include "io/clock.hpp"

struct sd_event;
struct sd_event_source;

namespace fdsup {

// One registered source (io, timer, signal, child, defer). Move-only; the
// destructor disables and releases it, so an object that owns its sources
// can never be called back after it is gone. Destroying a source from inside
// its own callback is allowed: the callback is kept alive until it returns.
class EventSource {
public:
    EventSource() noexcept = default;
    EventSource(EventSource &&other) noexcept;
    EventSource &operator=(EventSource &&other) noexcept;
    EventSource(const EventSource &) = delete;
    EventSource &operator=(const EventSource &) = delete;
    ~EventSource();

    [[nodiscard]] bool isValid() const noexcept { return source_ != nullptr; }
    explicit operator bool() const noexcept { return isValid(); }
    void reset() noexcept;

    // SD_EVENT_ON / SD_EVENT_OFF / SD_EVENT_ONESHOT; returns 0 or -errno.
    int setEnabled(int enabled) noexcept;
    // For io sources: the EPOLL* events to wait for.
    int setIoEvents(std::uint32_t events) noexcept;
    // For timer sources: re-arm relative to now.
    int rearm(Duration after) noexcept;
    [[nodiscard]] sd_event_source *get() const noexcept { return source_; }

    // Takes ownership of a source created with the sd-event API directly.
    static EventSource fromRaw(sd_event_source *source) noexcept;

private:
    explicit EventSource(sd_event_source *source) noexcept : source_(source) {}
    sd_event_source *source_ = nullptr;
};

class EventLoop final : public Clock {
public:
    using IoHandler = std::function<void(std::uint32_t revents)>;
    using TimerHandler = std::function<void()>;
    using SignalHandler = std::function<void(const signalfd_siginfo &info)>;
    using ChildHandler = std::function<void(const siginfo_t &info)>;

    // A new loop (not sd-event's thread default). SIGCHLD is blocked for
    // child sources; signals added with addSignal() are blocked by sd-event.
    static Result<std::unique_ptr<EventLoop>> create();
    ~EventLoop();

    // Runs until exit(); returns the exit code or -errno.
    int run();
    // Runs one iteration, waiting at most timeout; for tests. Returns >0 if
    // something was dispatched, 0 on timeout, -errno on failure.
    int runOnce(Duration timeout);
    void exit(int code);
    // CLOCK_MONOTONIC as seen by the loop for this iteration.
    [[nodiscard]] Duration now() const override;
    // A timer source behind the Clock interface (the model's timers).
    Result<Timer> startTimer(Duration after, std::function<void()> fn) override;

    Result<EventSource> addIo(BorrowedFd fd, std::uint32_t events, IoHandler handler);
    // One-shot timer, CLOCK_MONOTONIC, after `after` from now.
    Result<EventSource> addTimer(Duration after, TimerHandler handler);
    Result<EventSource> addSignal(int signal, SignalHandler handler);
    // Watches a child through its pidfd (WEXITED). The pidfd stays owned by
    // the caller and must outlive the source.
    Result<EventSource> addChild(BorrowedFd pidfd, ChildHandler handler);
    // Runs handler once on the next iteration (ONESHOT defer source).
    Result<EventSource> addDefer(TimerHandler handler);

    [[nodiscard]] sd_event *get() const noexcept { return event_; }

private:
    explicit EventLoop(sd_event *event) noexcept : event_(event) {}
    sd_event *event_ = nullptr;
};

} // namespace fdsup
