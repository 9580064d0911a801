// The preload shim's drain: on the drain signal, stop the app accepting, wait for its connections, then run
// its own disposition.
#pragma once

#include "state.hpp"

namespace fdsup::preload {

// Under the mutex, after a claim or an accept on a claimed fd: installs the
// drain signal's handler (once; the app keeps its view through the
// interposed sigaction()/signal()) and starts this process's helper thread
// (again after a fork).
void ensureDrain(State &s);

// In a forked child, under the mutex: starts the child's helper thread when
// it inherited claims or connections.
void restartDrainAfterFork(State &s);

// Records a connection accepted on a claimed listener (under the mutex).
void trackAccepted(State &s, int fd);

} // namespace fdsup::preload
