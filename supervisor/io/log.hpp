// fdsupd's logging set-up: spdlog to the console or the journal.
#pragma once

#include <string>

#include "config/config.hpp"

namespace fdsup {

// Installs the default spdlog logger. Safe to call again after a reload.
// Returns false (and leaves the previous logger) when level is unknown.
bool setupLogging(const std::string &level, config::LogTarget target);

} // namespace fdsup
