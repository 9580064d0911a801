// fdsupd started by its own re-exec: takes the state over, or goes back to the previous binary.
#pragma once

#include <string>

#include "daemon/reexec_exec.hpp"

namespace fdsup {

// Reads and checks the whole state before any side effect, then restores
// the daemon and its control API (nothing bound, nothing spawned) and runs
// them. A state this binary cannot take sends the process back to the
// previous binary (FDSUP_REEXEC_FALLBACK) with the reason; only when that is
// impossible does it return an exit code.
int runRestored(IncomingState incoming, const std::string &logLevel);

} // namespace fdsup
