// The preload shim's constructor: reads (and removes) its environment, and keeps its locks sane across
// fork().
#include <dlfcn.h>
#include <pthread.h>

#include "drain.hpp"
#include "real.hpp"
#include "source.hpp"
#include "state.hpp"

namespace fdsup::preload {

namespace {

// Lock order: accepts, then the state (as accept() and the drain take them).
void beforeFork()
{
    lockAccepts();
    if (State *s = state(); s != nullptr) {
        s->mutex.lock();
    }
}

void afterForkInParent()
{
    unlockAccepts();
    if (State *s = state(); s != nullptr) {
        s->mutex.unlock();
    }
}

void afterForkInChild()
{
    unlockAccepts();
    if (State *s = state(); s != nullptr) {
        restartDrainAfterFork(*s);
        s->mutex.unlock();
    }
}

__attribute__((constructor)) void shimInit()
{
    ShimScope scope;
    ErrnoKeeper keep;
    Dl_info self{};
    const char *selfPath = dladdr(reinterpret_cast<void *>(&shimInit), &self) != 0 ? self.dli_fname : nullptr;
    // Never freed: other threads may call an interposer until the very end.
    auto *s = new State;
    readEnvironment(s->config, selfPath);
    if (s->config.preloadAddress.empty() && s->config.inheritedFds.empty()) {
        if (s->config.debug) {
            warn("no listeners (neither FDSUP_PRELOAD nor LISTEN_FDS): every call goes to libc");
        }
        delete s;
        return;
    }
    // Protected from the app's close()/close_range()/closefrom() from now on,
    // long before the first bind() loads the listeners.
    for (int fd : s->config.inheritedFds) {
        addOwnFd(*s, fd);
    }
    pthread_atfork(beforeFork, afterForkInParent, afterForkInChild);
    setState(s);
}

} // namespace

} // namespace fdsup::preload
