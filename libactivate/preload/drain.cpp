// The preload shim's drain (docs/preload.md, "Drain"): the signal handler, the helper thread, the app's view
// of the signal.
#include "drain.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>

#include <fcntl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "real.hpp"

#define FDSUP_EXPORT extern "C" __attribute__((visibility("default")))

namespace fdsup::preload {

namespace {

// Read by the signal handler: plain atomics, no locks.
std::atomic<int> gSignal{0};        // the drain signal once the handler is installed
std::atomic<bool> gRestored{false}; // the app's disposition is back in the kernel
std::atomic<bool> gDraining{false}; // the drain signal was caught
std::atomic<pid_t> gHelperPid{0};   // the process whose helper thread reads gWakeFd
std::atomic<int> gWakeFd{-1};       // the helper's pipe, write end
struct sigaction gAppAction {};     // the app's view of the drain signal's disposition
std::atomic<int> gReadFd{-1};       // the helper's pipe, read end

// Puts the app's disposition back and runs it now: from the handler (a
// second signal, a process without a helper) or from the helper thread
// (the drain is over). Async-signal-safe.
void runAppDisposition(int sig, siginfo_t *info, void *context, bool fromHandler)
{
    if (gRestored.exchange(true)) {
        return; // run once: by the second signal or by the end of the drain, not both
    }
    struct sigaction app = gAppAction;
    real::sigaction(sig, &app, nullptr);
    if (app.sa_handler == SIG_IGN) { // NOLINT(cppcoreguidelines-pro-type-union-access)
        return;
    }
    if (!fromHandler || app.sa_handler == SIG_DFL) { // NOLINT(cppcoreguidelines-pro-type-union-access)
        // From the handler, sig is blocked until it returns: then it is delivered
        // with the app's default action.
        kill(getpid(), sig);
        return;
    }
    if ((app.sa_flags & SA_SIGINFO) != 0) {
        app.sa_sigaction(sig, info, context); // NOLINT(cppcoreguidelines-pro-type-union-access)
    } else {
        app.sa_handler(sig); // NOLINT(cppcoreguidelines-pro-type-union-access)
    }
}

void onDrainSignal(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    int wake = gWakeFd.load();
    if (gHelperPid.load() != getpid() || wake < 0 || gDraining.exchange(true)) {
        runAppDisposition(sig, info, context, true);
    } else {
        char byte = 'd';
        (void)!write(wake, &byte, 1);
    }
    errno = saved;
}

void installHandler(State &s)
{
    int sig = s.config.drainSignal;
    struct sigaction ours {};
    ours.sa_sigaction = onDrainSignal; // NOLINT(cppcoreguidelines-pro-type-union-access)
    ours.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&ours.sa_mask);
    if (real::sigaction(sig, &ours, &gAppAction) < 0) {
        warn("cannot catch the drain signal %d: %s", sig, strerror(errno));
        return;
    }
    gSignal.store(sig);
    debug("drain on signal %d, at most %llu ms", sig,
          static_cast<unsigned long long>(s.config.drainTimeoutUsec / 1000));
}

// An fd that never becomes ready: a listening unix socket nobody knows the
// (autobound, abstract) name of. Non-blocking, so that an accept4() that
// checked the listener just before the swap gets EAGAIN, not a wait.
int neverReadyFd(State &s)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sa_family_t family = AF_UNIX;
    if (fd < 0 || real::bind(fd, reinterpret_cast<sockaddr *>(&family), sizeof(family)) < 0 ||
        real::listen(fd, 1) < 0) {
        if (fd >= 0) {
            real::close(fd);
        }
        return -1;
    }
    int moved = moveHigh(fd);
    fd = moved < 0 ? fd : moved;
    addOwnFd(s, fd);
    return fd;
}

// Out of every epoll set first (the registration follows the listener's
// file description, not the number), then the fd swapped, then the
// never-ready fd put back in those sets so the app's later EPOLL_CTL_DEL works.
void stopAccepting(State &s)
{
    ShimScope scope;
    int dummy = neverReadyFd(s);
    if (dummy < 0) {
        warn("drain: cannot make a never-ready fd: %s", strerror(errno));
        return;
    }
    for (auto &c : s.claims) {
        if (c.drained) {
            continue;
        }
        for (auto &reg : s.epolls) {
            if (reg.fd == c.fd) {
                real::epollCtl(reg.epfd, EPOLL_CTL_DEL, c.fd, nullptr);
            }
        }
        int fdFlags = real::fcntl(c.fd, F_GETFD, nullptr);
        if (real::dup3(dummy, c.fd, fdFlags >= 0 && (fdFlags & FD_CLOEXEC) != 0 ? O_CLOEXEC : 0) < 0) {
            warn("drain: cannot swap fd %d: %s", c.fd, strerror(errno));
            continue;
        }
        c.drained = true;
        for (auto &reg : s.epolls) {
            if (reg.fd == c.fd) {
                real::epollCtl(reg.epfd, EPOLL_CTL_ADD, c.fd, &reg.event);
            }
        }
        debug("drain: fd %d no longer accepts", c.fd);
    }
}

bool stillOpen(const Accepted &a)
{
    struct stat st {};
    return fstat(a.fd, &st) == 0 && st.st_dev == a.dev && st.st_ino == a.ino;
}

// Forgets the connections the app closed; returns how many are left.
std::size_t pruneAccepted(State &s)
{
    std::erase_if(s.accepted, [](const Accepted &a) { return !stillOpen(a); });
    return s.accepted.size();
}

void waitForConnections(State &s)
{
    using namespace std::chrono;
    auto timeout = microseconds(s.config.drainTimeoutUsec);
    // "A little before" fdsupd's deadline: a tenth of it, at most a second.
    auto margin = std::min<microseconds>(timeout / 10, seconds(1));
    auto deadline = steady_clock::now() + (timeout - margin);
    for (;;) {
        std::size_t left = 0;
        {
            std::lock_guard guard(s.mutex);
            left = pruneAccepted(s);
        }
        if (left == 0) {
            debug("drain: every connection closed");
            return;
        }
        if (steady_clock::now() >= deadline) {
            debug("drain: deadline passed with %zu connection(s) open", left);
            return;
        }
        // Closing a connection sends us nothing (fclose() bypasses close()): look again soon.
        timespec pause{0, 5'000'000};
        nanosleep(&pause, nullptr);
    }
}

void *helperMain(void *arg)
{
    auto *s = static_cast<State *>(arg);
    int readFd = gReadFd.load();
    char byte = 0;
    while (read(readFd, &byte, 1) < 0 && errno == EINTR) {
    }
    debug("drain signal caught: draining");
    // No accept between its readiness check and accept4(), nor between an
    // accept and its tracking, meanwhile (lock order: accepts, then the state).
    lockAccepts();
    {
        std::lock_guard guard(s->mutex);
        stopAccepting(*s);
    }
    unlockAccepts();
    waitForConnections(*s);
    runAppDisposition(gSignal.load(), nullptr, nullptr, false);
    return nullptr;
}

// A pipe for the handler to wake the thread, and the thread, with every
// signal blocked so that signals go to the app's threads.
void startHelper(State &s)
{
    // After a fork: the parent's pipe is not this process's to use.
    for (int old : {gWakeFd.exchange(-1), gReadFd.exchange(-1)}) {
        if (old >= 0) {
            removeOwnFd(s, old);
            real::close(old);
        }
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        return;
    }
    int w = moveHigh(fds[1]);
    w = w < 0 ? fds[1] : w;
    int r = moveHigh(fds[0]);
    r = r < 0 ? fds[0] : r;
    addOwnFd(s, w);
    addOwnFd(s, r);
    gReadFd.store(r);
    sigset_t all;
    sigset_t saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int err = pthread_create(&thread, &attr, helperMain, &s);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    if (err != 0) {
        warn("cannot start the drain thread: %s", strerror(err));
        return;
    }
    gWakeFd.store(w);
    gHelperPid.store(getpid());
}

} // namespace

void ensureDrain(State &s)
{
    if (gRestored.load() || gDraining.load()) {
        return;
    }
    if (gSignal.load() == 0) {
        installHandler(s);
    }
    if (gSignal.load() != 0 && gHelperPid.load() != getpid()) {
        ShimScope scope;
        startHelper(s);
    }
}

void restartDrainAfterFork(State &s)
{
    // A prefork worker or a forking server's child: it has listeners or
    // connections of its own to drain when the signal reaches its group.
    if (gSignal.load() != 0 && !gRestored.load() && !gDraining.load() &&
        (!s.claims.empty() || pruneAccepted(s) > 0)) {
        ShimScope scope;
        startHelper(s);
    }
}

void trackAccepted(State &s, int fd)
{
    struct stat st {};
    if (fstat(fd, &st) < 0) {
        return;
    }
    if (s.accepted.size() >= 1024) {
        pruneAccepted(s);
    }
    s.accepted.push_back(Accepted{fd, st.st_dev, st.st_ino});
}

} // namespace fdsup::preload

using namespace fdsup::preload;

// Every interposer is a C++ function of its own name whose asm label is
// the libc symbol: glibc's declarations name the parameters differently
// (__fd...), and with _FILE_OFFSET_BITS=64 its header renames fcntl.

FDSUP_EXPORT int shimSigaction(int sig, const struct sigaction *action, struct sigaction *old) noexcept
    __asm__("sigaction");

FDSUP_EXPORT int shimSigaction(int sig, const struct sigaction *action, struct sigaction *old) noexcept
{
    if (inShim() || sig != gSignal.load() || gRestored.load()) {
        return real::sigaction(sig, action, old);
    }
    // The drain signal: the app sees and sets its own disposition; the
    // kernel keeps the shim's handler until the drain hands over.
    if (old != nullptr) {
        *old = gAppAction;
    }
    if (action != nullptr) {
        gAppAction = *action;
    }
    return 0;
}

FDSUP_EXPORT sighandler_t shimSignal(int sig, sighandler_t handler) noexcept __asm__("signal");

FDSUP_EXPORT sighandler_t shimSignal(int sig, sighandler_t handler) noexcept
{
    struct sigaction action {};
    struct sigaction old {};
    action.sa_handler = handler; // NOLINT(cppcoreguidelines-pro-type-union-access)
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (shimSigaction(sig, &action, &old) < 0) {
        return SIG_ERR;
    }
    return old.sa_handler; // NOLINT(cppcoreguidelines-pro-type-union-access)
}
