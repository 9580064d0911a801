// Where the preload shim's listeners come from: fdsupd's preload socket, or LISTEN_FDS when run by hand.
#pragma once

#include "state.hpp"

namespace fdsup::preload {

// Reads FDSUP_PRELOAD*, FDSUP_DRAIN_*, LISTEN_* (when LISTEN_PID is this
// process) and removes them, and the shim's own LD_PRELOAD entry, from the
// environment. Inherited listeners move to high, CLOEXEC fds.
void readEnvironment(Config &config, const char *selfPath);

// Under the mutex: loads the listeners once per process image (fdsupd's
// preload socket is connected here, lazily). Returns whether there are any.
bool ensureListeners(State &s);

// Under the mutex: tells fdsupd which listeners this process has claimed
// (CLAIMED, cumulative). Nothing when run by hand.
void reportClaims(State &s);

} // namespace fdsup::preload
