// What /proc says about a process: its parent and group, its environment.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace fdsup {

struct ProcStat {
    char state = '?'; // R, S, Z...
    pid_t ppid = 0;
    pid_t pgid = 0;
};

// /proc/<pid>/stat; nullopt when the process is gone (or was never there).
std::optional<ProcStat> readProcStat(pid_t pid);
// The value of `name` in the environment the process was started with
// (/proc/<pid>/environ); nullopt when absent or unreadable.
std::optional<std::string> startEnvironment(pid_t pid, const std::string &name);

} // namespace fdsup
