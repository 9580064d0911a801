// Can the preload shim load into this program? The cheap checks of an executable file.
#pragma once

#include <optional>
#include <string>

namespace fdsup {

// Why LD_PRELOAD cannot work for the program at `path`, or nullopt when
// nothing says so: a static ELF (no PT_INTERP: no dynamic loader runs), a
// set-user-ID or set-group-ID file or one with file capabilities (the loader
// runs it in secure mode and ignores LD_PRELOAD). A "#!" script is judged by
// its interpreter. A file that cannot be read says nothing (nullopt): this
// is a warning, and the spawn reports real errors.
std::optional<std::string> preloadBlocker(const std::string &path);

} // namespace fdsup
