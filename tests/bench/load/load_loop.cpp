// LoadLoop: epoll, the timers of the connections, the restarts' pidfd and the end of the run.
#include "load_loop.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>

#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "connections.hpp"
#include "core/fd.hpp"
#include "restart_runner.hpp"

namespace fdsup::load {

namespace {

// The epoll data of the restart command's pidfd and of the stop signals (connections use their index).
constexpr uint64_t kRestartTag = UINT64_MAX;
constexpr uint64_t kStopTag = UINT64_MAX - 1;

// SIGINT and SIGTERM end the run early, as the end of --duration does: a
// caller that cannot know how long it needs the load (the soak) stops it and
// still gets the results. Blocked for the run and read from a signalfd in
// the loop (no handler); the restart command's child unblocks them. A signal
// that came before the loop (while waiting for the server) is read at once.
class StopSignals {
public:
    StopSignals()
    {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigprocmask(SIG_BLOCK, &set, &old_);
        fd_.reset(signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
    }
    ~StopSignals() { sigprocmask(SIG_SETMASK, &old_, nullptr); }
    StopSignals(const StopSignals &) = delete;
    StopSignals &operator=(const StopSignals &) = delete;

    [[nodiscard]] BorrowedFd fd() const { return fd_.borrow(); }
    // Reads what arrived; whether a stop signal did.
    bool received() const
    {
        signalfd_siginfo info{};
        bool any = false;
        while (read(fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
            any = true;
        }
        return any;
    }

private:
    sigset_t old_{};
    UniqueFd fd_;
};

// One connection attempt, waiting at most until deadline; 0 or an errno.
int tryConnect(const Target &target, Clock::time_point deadline)
{
    UniqueFd fd(socket(target.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
        return errno;
    }
    if (connect(fd.get(), reinterpret_cast<const sockaddr *>(&target.address), target.length) == 0) {
        return 0;
    }
    if (errno != EINPROGRESS) {
        return errno;
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{.fd = fd.get(), .events = POLLOUT, .revents = 0};
    if (poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0))) <= 0) {
        return ETIMEDOUT;
    }
    int error = 0;
    socklen_t len = sizeof error;
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len);
    // Reset after the handshake: something listens there (and resets, which the run will count).
    return error == ECONNRESET ? 0 : error;
}

// Nothing answers at the start: the run cannot measure anything. Retries a
// refused connection every 10 ms (the server may still be starting).
bool waitForServer(const Options &options, std::string &why)
{
    auto deadline = Clock::now() + options.timeout;
    for (;;) {
        int error = tryConnect(options.target, deadline);
        if (error == 0) {
            return true;
        }
        if (Clock::now() >= deadline || (error != ECONNREFUSED && error != ETIMEDOUT)) {
            why = "cannot connect to " + options.target.text + ": " + std::strerror(error) + " (waited " +
                  std::to_string(options.timeout.count()) + " ms)";
            return false;
        }
        std::this_thread::sleep_for(
            std::min<Clock::duration>(std::chrono::milliseconds(10), deadline - Clock::now()));
    }
}

// 64 connections, a pidfd and epoll are few, but --connections may be
// large: the soft limit is raised to the hard one, and a run that would not
// fit in it is refused rather than counted as a storm of EMFILE.
bool raiseFdLimit(int connections, std::string &why)
{
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
    getrlimit(RLIMIT_NOFILE, &limit);
    constexpr rlim_t kSpare = 32; // stdio, epoll, the pidfd, the probe
    if (limit.rlim_cur != RLIM_INFINITY && static_cast<rlim_t>(connections) + kSpare > limit.rlim_cur) {
        why = std::to_string(connections) + " connections need more descriptors than RLIMIT_NOFILE allows (" +
              std::to_string(limit.rlim_cur) + ", " + std::to_string(kSpare) + " kept for the rest)";
        return false;
    }
    return true;
}

Phase phaseOf(const RestartRunner &runner)
{
    if (!runner.started()) {
        return Phase::Before;
    }
    return runner.allDone() ? Phase::After : Phase::During;
}

int waitMs(Clock::time_point until, Clock::time_point now)
{
    if (until <= now) {
        return 0;
    }
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
    return static_cast<int>(std::min<int64_t>(ms, 60'000));
}

} // namespace

bool runLoad(const Options &options, Report &report, std::string &why)
{
    StopSignals stop;
    if (!stop.fd().isValid()) {
        why = std::string("signalfd: ") + std::strerror(errno);
        return false;
    }
    if (!raiseFdLimit(options.connections, why) || !waitForServer(options, why)) {
        return false;
    }
    UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll) {
        why = std::string("epoll_create1: ") + std::strerror(errno);
        return false;
    }
    const Clock::time_point start = Clock::now();
    Clock::time_point end = start + options.duration;
    Results results(start);
    Connections conns(options, epoll.borrow(), results);
    RestartRunner runner(options.restartCommand, options.restarts, start, options.duration);
    std::vector<epoll_event> events(256);
    epoll_event stopEvent{.events = EPOLLIN, .data = {.u64 = kStopTag}};
    epoll_ctl(epoll.get(), EPOLL_CTL_ADD, stop.fd().get(), &stopEvent);
    Clock::time_point now = start;
    conns.reopen(now);
    while (now < end || !runner.allDone()) {
        if (auto due = runner.nextDue(); due && *due <= now) {
            if (int r = runner.startNext(now); r < 0) {
                why = std::string("cannot run the restart command: ") + std::strerror(-r);
                return false;
            }
            epoll_event ev{.events = EPOLLIN, .data = {.u64 = kRestartTag}};
            epoll_ctl(epoll.get(), EPOLL_CTL_ADD, runner.pidfd().get(), &ev);
        }
        Clock::time_point until = std::min({conns.nextTimer(), now < end ? end : Clock::time_point::max(),
                                            runner.nextDue().value_or(Clock::time_point::max())});
        int timeout = conns.reopenPending() ? 0 : waitMs(until, now);
        int n = epoll_wait(epoll.get(), events.data(), static_cast<int>(events.size()), timeout);
        if (n < 0 && errno != EINTR) {
            why = std::string("epoll_wait: ") + std::strerror(errno);
            return false;
        }
        now = Clock::now();
        for (int i = 0; i < n; ++i) {
            if (events[i].data.u64 == kRestartTag) {
                runner.reap(now); // closing the pidfd takes it out of epoll
            } else if (events[i].data.u64 == kStopTag) {
                if (stop.received()) {
                    end = std::min(end, now);
                    runner.cancelRemaining(); // a restart that runs is waited for
                }
            } else {
                conns.onEvent(events[i].data.u64, events[i].events, now, phaseOf(runner));
            }
        }
        conns.expire(now);
        if (now < end || !runner.allDone()) {
            conns.reopen(now);
        }
    }
    report = results.finish(now, runner.records());
    return true;
}

} // namespace fdsup::load
