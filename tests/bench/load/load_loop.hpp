// LoadLoop: one run of fdsup-load: wait for the server, drive the connections, run the restarts.
#pragma once

#include <string>

#include "options.hpp"
#include "results.hpp"

namespace fdsup::load {

// Waits up to --timeout for a first TCP connection to the target, then
// drives --connections connections for --duration (and at least until the
// last restart ended) on one thread and one epoll. SIGINT or SIGTERM ends
// the run early like the end of --duration (no restart starts after it, one
// that runs is waited for). Returns false with why when it could not run.
bool runLoad(const Options &options, Report &report, std::string &why);

} // namespace fdsup::load
