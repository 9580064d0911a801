// EventLoop: fdsupd's one thread, a thin owner of sd-event and its sources.
#include "io/event_loop.hpp"

#include <cerrno>
#include <utility>

#include <spdlog/spdlog.h>
#include <systemd/sd-event.h>

namespace fdsup {
namespace {

// Callbacks live on the heap, owned by the source (destroy callback). The
// trampolines copy the shared_ptr first so a callback that destroys its own
// source (an instance reaped from its child callback) stays alive until it
// returns.
template <typename Handler>
using Slot = std::shared_ptr<Handler>;

template <typename Handler>
void destroySlot(void *userdata)
{
    delete static_cast<Slot<Handler> *>(userdata);
}

template <typename Handler>
Slot<Handler> slotOf(void *userdata)
{
    return *static_cast<Slot<Handler> *>(userdata);
}

// No exception may unwind through sd-event's C frames: a handler that throws
// is a bug, logged here, and the loop goes on.
template <typename Call>
int guarded(const char *what, Call &&call) noexcept
{
    try {
        call();
    } catch (const std::exception &e) {
        spdlog::error("Unexpected exception in {} handler: {}", what, e.what());
    } catch (...) {
        spdlog::error("Unexpected exception in {} handler", what);
    }
    return 0;
}

// Takes ownership of a freshly added source and its slot.
template <typename Handler>
Result<EventSource> adopt(int r, sd_event_source *source, Slot<Handler> *slot, const char *what)
{
    if (r < 0) {
        delete slot;
        return errnoError(r, std::string("Failed to add ") + what + " event source");
    }
    r = sd_event_source_set_destroy_callback(source, destroySlot<Handler>);
    if (r < 0) {
        delete slot;
        sd_event_source_disable_unref(source);
        return errnoError(r, "Failed to set destroy callback");
    }
    return EventSource::fromRaw(source);
}

std::uint64_t usecOf(Duration d)
{
    return d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
}

} // namespace

EventSource::EventSource(EventSource &&other) noexcept : source_(std::exchange(other.source_, nullptr))
{}

EventSource &EventSource::operator=(EventSource &&other) noexcept
{
    if (this != &other) {
        reset();
        source_ = std::exchange(other.source_, nullptr);
    }
    return *this;
}

EventSource::~EventSource()
{
    reset();
}

void EventSource::reset() noexcept
{
    if (source_ != nullptr) {
        sd_event_source_disable_unref(std::exchange(source_, nullptr));
    }
}

int EventSource::setEnabled(int enabled) noexcept
{
    return source_ != nullptr ? sd_event_source_set_enabled(source_, enabled) : -EINVAL;
}

int EventSource::setIoEvents(std::uint32_t events) noexcept
{
    return source_ != nullptr ? sd_event_source_set_io_events(source_, events) : -EINVAL;
}

int EventSource::rearm(Duration after) noexcept
{
    if (source_ == nullptr) {
        return -EINVAL;
    }
    const int r = sd_event_source_set_time_relative(source_, usecOf(after));
    return r < 0 ? r : sd_event_source_set_enabled(source_, SD_EVENT_ONESHOT);
}

EventSource EventSource::fromRaw(sd_event_source *source) noexcept
{
    return EventSource(source);
}

Result<std::unique_ptr<EventLoop>> EventLoop::create()
{
    // Child sources need SIGCHLD blocked in every thread (sd-event's rule);
    // fdsupd has one thread, so blocking it here is enough.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &mask, nullptr) < 0) {
        return errnoError(errno, "Failed to block SIGCHLD");
    }
    sd_event *event = nullptr;
    const int r = sd_event_new(&event);
    if (r < 0) {
        return errnoError(r, "Failed to create the event loop");
    }
    return std::unique_ptr<EventLoop>(new EventLoop(event));
}

EventLoop::~EventLoop()
{
    sd_event_unref(event_);
}

int EventLoop::run()
{
    return sd_event_loop(event_);
}

int EventLoop::runOnce(Duration timeout)
{
    return sd_event_run(event_, usecOf(timeout));
}

void EventLoop::exit(int code)
{
    sd_event_exit(event_, code);
}

Duration EventLoop::now() const
{
    std::uint64_t usec = 0;
    sd_event_now(event_, CLOCK_MONOTONIC, &usec);
    return Duration(static_cast<Duration::rep>(usec));
}

Result<EventSource> EventLoop::addIo(BorrowedFd fd, std::uint32_t events, IoHandler handler)
{
    auto *slot = new Slot<IoHandler>(std::make_shared<IoHandler>(std::move(handler)));
    sd_event_source *source = nullptr;
    const int r = sd_event_add_io(
        event_, &source, fd.get(), events,
        [](sd_event_source *, int, std::uint32_t revents, void *userdata) -> int {
            const auto h = slotOf<IoHandler>(userdata);
            return guarded("io", [&] { (*h)(revents); });
        },
        slot);
    return adopt(r, source, slot, "io");
}

Result<EventSource> EventLoop::addTimer(Duration after, TimerHandler handler)
{
    auto *slot = new Slot<TimerHandler>(std::make_shared<TimerHandler>(std::move(handler)));
    sd_event_source *source = nullptr;
    // 1ms accuracy: deadlines are coarse, and a wider slack lets the kernel
    // batch wake-ups.
    const int r = sd_event_add_time_relative(
        event_, &source, CLOCK_MONOTONIC, usecOf(after), 1000,
        [](sd_event_source *, std::uint64_t, void *userdata) -> int {
            const auto h = slotOf<TimerHandler>(userdata);
            return guarded("timer", [&] { (*h)(); });
        },
        slot);
    return adopt(r, source, slot, "timer");
}

namespace {

class SourceTimer final : public Timer::Impl {
public:
    explicit SourceTimer(EventSource source) : source_(std::move(source)) {}
    int rearm(Duration after) override { return source_.rearm(after); }

private:
    EventSource source_;
};

} // namespace

std::int64_t realtimeUsec()
{
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

Result<Timer> EventLoop::startTimer(Duration after, std::function<void()> fn)
{
    auto source = addTimer(after, std::move(fn));
    if (!source) {
        return source.error();
    }
    return Timer(std::make_unique<SourceTimer>(std::move(*source)));
}

Result<EventSource> EventLoop::addSignal(int signal, SignalHandler handler)
{
    auto *slot = new Slot<SignalHandler>(std::make_shared<SignalHandler>(std::move(handler)));
    sd_event_source *source = nullptr;
    const int r = sd_event_add_signal(
        event_, &source, signal | SD_EVENT_SIGNAL_PROCMASK,
        [](sd_event_source *, const signalfd_siginfo *info, void *userdata) -> int {
            const auto h = slotOf<SignalHandler>(userdata);
            return guarded("signal", [&] { (*h)(*info); });
        },
        slot);
    return adopt(r, source, slot, "signal");
}

Result<EventSource> EventLoop::addChild(BorrowedFd pidfd, ChildHandler handler)
{
    auto *slot = new Slot<ChildHandler>(std::make_shared<ChildHandler>(std::move(handler)));
    sd_event_source *source = nullptr;
    const int r = sd_event_add_child_pidfd(
        event_, &source, pidfd.get(), WEXITED,
        [](sd_event_source *, const siginfo_t *info, void *userdata) -> int {
            const auto h = slotOf<ChildHandler>(userdata);
            return guarded("child", [&] { (*h)(*info); });
        },
        slot);
    return adopt(r, source, slot, "child");
}

Result<EventSource> EventLoop::addDefer(TimerHandler handler)
{
    auto *slot = new Slot<TimerHandler>(std::make_shared<TimerHandler>(std::move(handler)));
    sd_event_source *source = nullptr;
    const int r = sd_event_add_defer(
        event_, &source,
        [](sd_event_source *, void *userdata) -> int {
            const auto h = slotOf<TimerHandler>(userdata);
            return guarded("defer", [&] { (*h)(); });
        },
        slot);
    auto result = adopt(r, source, slot, "defer");
    // Defer sources are SD_EVENT_ON when created: they would run on every
    // iteration. Once is what callers mean.
    if (result) {
        result->setEnabled(SD_EVENT_ONESHOT);
    }
    return result;
}

} // namespace fdsup
