// The preload shim's process state: its listeners, the app's claimed fds, the shim's own fds, the drain's
// bookkeeping.
#pragma once

#include <atomic>
#include <csignal>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include <sys/epoll.h>
#include <sys/types.h>

#include "match.hpp"

namespace fdsup::preload {

// What the constructor read from the environment (then removed from it).
struct Config {
    std::string preloadAddress;                  // FDSUP_PRELOAD ("@name" or a path); empty: none
    std::string mapText;                         // FDSUP_PRELOAD_MAP
    int drainSignal = SIGTERM;                   // FDSUP_DRAIN_SIGNAL
    std::uint64_t drainTimeoutUsec = 30'000'000; // FDSUP_DRAIN_TIMEOUT_USEC
    bool debug = false;                          // FDSUP_PRELOAD_DEBUG
    // LISTEN_FDS (run by hand), already moved to the shim's high fds.
    std::vector<int> inheritedFds;
    std::vector<std::string> inheritedNames;
};

struct ListenerFd {
    int fd = -1; // the shim's own copy, protected from the app
    Listener info;
    bool claimed = false;
};

// An app fd that is (a dup of) a listener.
struct Claim {
    int fd = -1;
    std::size_t listener = 0;
    bool nonblock = false; // the app's O_NONBLOCK view; the shared flag is never changed
    bool drained = false;  // swapped for an fd that never becomes ready
};

struct EpollReg {
    int epfd = -1;
    int fd = -1;
    epoll_event event{};
};

// A connection the app accepted on a claimed listener; closed when the fd is
// gone or is another file now (fclose() closes without our close()).
struct Accepted {
    int fd = -1;
    dev_t dev = 0;
    ino_t ino = 0;
};

enum class LoadState : std::uint8_t { NotYet, Loaded, Failed };

struct State {
    Config config;
    std::mutex mutex; // guards everything below
    LoadState load = LoadState::NotYet;
    std::vector<ListenerFd> listeners;
    std::vector<MapEntry> map;
    bool mapBroken = false;
    int channelFd = -1;
    std::uint32_t seq = 0;
    std::vector<Claim> claims;
    std::vector<EpollReg> epolls;
    std::vector<Accepted> accepted;
    std::vector<int> ownFds;
};

// nullptr until the constructor ran (and for a process that is not wrapped).
State *state() noexcept;
void setState(State *s) noexcept;

// A fast, lock-free hint: may fd be a claimed or shim-owned fd? Exact
// answers need the mutex.
bool maybeManaged(int fd) noexcept;
void markFd(int fd) noexcept;
void unmarkFd(int fd) noexcept;

// Under the mutex.
Claim *findClaim(State &s, int fd);
bool isOwnFd(const State &s, int fd);
void addOwnFd(State &s, int fd);
void removeOwnFd(State &s, int fd);
void addClaim(State &s, const Claim &claim);
// Forgets fd's claim and its epoll registrations (the app closed or replaced it).
void dropClaim(State &s, int fd);
// An own fd the app is about to overwrite (dup2 onto it): moves it away.
void evictOwnFd(State &s, int fd);

// F_DUPFD_CLOEXEC at or above the shim's high base, then closes fd. Returns
// the new fd or -errno (fd left open).
int moveHigh(int fd);

// Prints "fdsup-preload: ..." on stderr (always) / only with FDSUP_PRELOAD_DEBUG.
void warn(const char *format, ...) __attribute__((format(printf, 1, 2)));
void debug(const char *format, ...) __attribute__((format(printf, 1, 2)));

// The accept lock of this process, held across fork() (socket.cpp).
void lockAccepts();
void unlockAccepts();

// realpath() of a directory, as the matcher's DirResolver.
bool resolveDir(const std::string &dir, std::string &canonical, void *context);

} // namespace fdsup::preload
