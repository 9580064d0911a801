// Unit tests for EventLoop/EventSource: every source type, re-arming, and destruction from callbacks.
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "loop_driver.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;

struct Pipe {
    UniqueFd read;
    UniqueFd write;
};

Pipe makePipe()
{
    std::array<int, 2> fds{};
    EXPECT_EQ(::pipe2(fds.data(), O_CLOEXEC | O_NONBLOCK), 0);
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

class EventLoopTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop) << loop.error().message;
        loop_ = std::move(loop).value();
    }

    bool runUntil(const std::function<bool()> &done) { return test::runLoopUntil(*loop_, done); }

    std::unique_ptr<EventLoop> loop_;
};

TEST_F(EventLoopTest, RunOnceTimesOut)
{
    const auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(loop_->runOnce(20ms), 0);
    EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
    EXPECT_EQ(loop_->runOnce(0us), 0);

    // A timer far in the future does not make a short iteration dispatch.
    int fired = 0;
    auto timer = loop_->addTimer(1h, [&] { ++fired; });
    ASSERT_TRUE(timer);
    EXPECT_EQ(loop_->runOnce(1ms), 0);
    EXPECT_EQ(fired, 0);
}

TEST_F(EventLoopTest, Io)
{
    Pipe pipe = makePipe();
    std::uint32_t seen = 0;
    std::string data;
    auto source = loop_->addIo(pipe.read.borrow(), EPOLLIN, [&](std::uint32_t revents) {
        seen |= revents;
        std::array<char, 16> buffer{};
        const ssize_t n = ::read(pipe.read.get(), buffer.data(), buffer.size());
        if (n > 0) {
            data.append(buffer.data(), static_cast<std::size_t>(n));
        }
    });
    ASSERT_TRUE(source) << source.error().message;
    EXPECT_EQ(loop_->runOnce(0us), 0);

    ASSERT_EQ(::write(pipe.write.get(), "hi", 2), 2);
    ASSERT_TRUE(runUntil([&] { return data == "hi"; }));
    EXPECT_NE(seen & EPOLLIN, 0U);

    // Disabled: no dispatch even with data pending.
    ASSERT_EQ(source->setEnabled(0 /* SD_EVENT_OFF */), 0);
    ASSERT_EQ(::write(pipe.write.get(), "x", 1), 1);
    EXPECT_EQ(loop_->runOnce(0us), 0);
    EXPECT_EQ(data, "hi");

    // setIoEvents changes what is waited for: a read end is never writable.
    ASSERT_EQ(source->setIoEvents(EPOLLOUT), 0);
    ASSERT_EQ(source->setEnabled(1 /* SD_EVENT_ON */), 0);
    EXPECT_EQ(loop_->runOnce(0us), 0);
    ASSERT_EQ(source->setIoEvents(EPOLLIN), 0);
    ASSERT_TRUE(runUntil([&] { return data == "hix"; }));

    // EPOLLHUP is reported whatever the events asked for.
    seen = 0;
    pipe.write.reset();
    ASSERT_TRUE(runUntil([&] { return (seen & EPOLLHUP) != 0; }));
}

TEST_F(EventLoopTest, OneShotTimerAndRearm)
{
    int fired = 0;
    auto timer = loop_->addTimer(1ms, [&] { ++fired; });
    ASSERT_TRUE(timer) << timer.error().message;
    ASSERT_TRUE(runUntil([&] { return fired == 1; }));

    // One-shot: nothing more, however long we wait (bounded).
    EXPECT_EQ(loop_->runOnce(20ms), 0);
    EXPECT_EQ(fired, 1);

    ASSERT_EQ(timer->rearm(1ms), 0);
    ASSERT_TRUE(runUntil([&] { return fired == 2; }));
    EXPECT_EQ(loop_->runOnce(20ms), 0);
    EXPECT_EQ(fired, 2);

    // Re-arming from its own callback makes a periodic timer.
    int periodic = 0;
    EventSource *self = nullptr;
    auto repeat = loop_->addTimer(0us, [&] {
        if (++periodic < 3) {
            ASSERT_EQ(self->rearm(0us), 0);
        }
    });
    ASSERT_TRUE(repeat);
    self = &repeat.value();
    ASSERT_TRUE(runUntil([&] { return periodic == 3; }));
    EXPECT_EQ(loop_->runOnce(20ms), 0);
    EXPECT_EQ(periodic, 3);

    EventSource invalid;
    EXPECT_EQ(invalid.rearm(1ms), -EINVAL);
    EXPECT_EQ(invalid.setEnabled(0), -EINVAL);
    EXPECT_EQ(invalid.setIoEvents(EPOLLIN), -EINVAL);
}

TEST_F(EventLoopTest, Signal)
{
    std::optional<std::uint32_t> signo;
    std::optional<std::uint32_t> sender;
    auto source = loop_->addSignal(SIGUSR1, [&](const signalfd_siginfo &info) {
        signo = info.ssi_signo;
        sender = info.ssi_pid;
    });
    ASSERT_TRUE(source) << source.error().message;
    // sd-event blocked SIGUSR1 (SD_EVENT_SIGNAL_PROCMASK): raise() makes it
    // pending for the signalfd instead of killing us.
    sigset_t blocked;
    ASSERT_EQ(::sigprocmask(SIG_BLOCK, nullptr, &blocked), 0);
    ASSERT_EQ(sigismember(&blocked, SIGUSR1), 1);

    ASSERT_EQ(::raise(SIGUSR1), 0);
    ASSERT_TRUE(runUntil([&] { return signo.has_value(); }));
    EXPECT_EQ(*signo, static_cast<std::uint32_t>(SIGUSR1));
    EXPECT_EQ(*sender, static_cast<std::uint32_t>(::getpid()));

    // Destroying the source gives the signal back.
    source->reset();
    ASSERT_EQ(::sigprocmask(SIG_BLOCK, nullptr, &blocked), 0);
    EXPECT_EQ(sigismember(&blocked, SIGUSR1), 0);
}

TEST_F(EventLoopTest, ChildThroughPidfd)
{
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        ::_exit(3);
    }
    const UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    ASSERT_TRUE(pidfd) << std::strerror(errno);

    std::optional<siginfo_t> info;
    {
        auto source = loop_->addChild(pidfd.borrow(), [&](const siginfo_t &si) { info = si; });
        ASSERT_TRUE(source) << source.error().message;
        ASSERT_TRUE(runUntil([&] { return info.has_value(); }));
    }
    EXPECT_EQ(info->si_pid, pid);
    EXPECT_EQ(info->si_code, CLD_EXITED);
    EXPECT_EQ(info->si_status, 3);
    // sd-event reaped it: no zombie is left for us.
    errno = 0;
    EXPECT_EQ(::waitpid(pid, nullptr, WNOHANG), -1);
    EXPECT_EQ(errno, ECHILD);
}

TEST_F(EventLoopTest, DeferFiresOnce)
{
    int fired = 0;
    auto source = loop_->addDefer([&] { ++fired; });
    ASSERT_TRUE(source) << source.error().message;
    EXPECT_GT(loop_->runOnce(0us), 0);
    EXPECT_EQ(fired, 1);
    EXPECT_EQ(loop_->runOnce(0us), 0);
    EXPECT_EQ(loop_->runOnce(5ms), 0);
    EXPECT_EQ(fired, 1);
}

TEST_F(EventLoopTest, DestroyingASourceInsideItsCallbackIsSafe)
{
    // The callback uses its own captures after destroying its source: under
    // ASan this proves the callback outlives the reset().
    Pipe pipe = makePipe();
    ASSERT_EQ(::write(pipe.write.get(), "x", 1), 1);
    EventSource io;
    auto payload = std::make_shared<std::string>("still alive");
    std::string seen;
    auto source = loop_->addIo(pipe.read.borrow(), EPOLLIN, [&io, &seen, payload](std::uint32_t) {
        io.reset();
        seen = *payload;
    });
    ASSERT_TRUE(source);
    io = std::move(source).value();
    payload.reset();
    ASSERT_TRUE(runUntil([&] { return !seen.empty(); }));
    EXPECT_EQ(seen, "still alive");
    EXPECT_FALSE(io);
    EXPECT_EQ(loop_->runOnce(0us), 0) << "a destroyed io source was dispatched again";

    // The same for a timer, and for a source destroyed by another's callback.
    EventSource timer;
    EventSource victim;
    int timerCalls = 0;
    int victimCalls = 0;
    auto t = loop_->addTimer(0us, [&, payload = std::make_shared<int>(7)] {
        ++timerCalls;
        timer.reset();
        victim.reset();
        EXPECT_EQ(*payload, 7);
    });
    ASSERT_TRUE(t);
    timer = std::move(t).value();
    auto v = loop_->addDefer([&] { ++victimCalls; });
    ASSERT_TRUE(v);
    victim = std::move(v).value();
    // Whichever runs first, the timer's reset() of the defer must be safe.
    ASSERT_TRUE(runUntil([&] { return timerCalls == 1; }));
    EXPECT_EQ(loop_->runOnce(0us), 0);
    EXPECT_EQ(timerCalls, 1);
    EXPECT_LE(victimCalls, 1);

    // The pipe's read end can be closed right after its source is gone.
    pipe.read.reset();
}

TEST_F(EventLoopTest, SourcesMayOutliveTheirLoopObject)
{
    // An owner destroyed after the loop (e.g. a member declared before it)
    // must not crash: the source keeps sd-event alive until it is released.
    int fired = 0;
    auto timer = loop_->addTimer(1h, [&] { ++fired; });
    ASSERT_TRUE(timer);
    EventSource kept = std::move(timer).value();
    loop_.reset();
    kept.reset();
    EXPECT_EQ(fired, 0);
}

TEST_F(EventLoopTest, ExitEndsRun)
{
    auto defer = loop_->addDefer([&] { loop_->exit(42); });
    ASSERT_TRUE(defer);
    EXPECT_EQ(loop_->run(), 42);
}

TEST_F(EventLoopTest, NowAdvances)
{
    const Duration before = loop_->now();
    EXPECT_GT(before.count(), 0);
    EXPECT_EQ(loop_->runOnce(2ms), 0);
    EXPECT_GE(loop_->now(), before);
}

} // namespace
} // namespace fdsup
