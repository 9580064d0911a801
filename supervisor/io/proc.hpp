// What /proc says about a process: its parent and group, its environment.
#pragma once

#include <optional>
#include <string>
#include <string_view>
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
// The text of /proc/<pid>/stat, whose command name the process sets itself
// (prctl(PR_SET_NAME): any bytes but NUL, ')' and '\n' included); nullopt
// when it cannot be read. Pure (fuzz target `proc`).
std::optional<ProcStat> parseProcStat(std::string_view line);
// The value of `name` in the environment the process was started with
// (/proc/<pid>/environ); nullopt when absent or unreadable.
std::optional<std::string> startEnvironment(pid_t pid, const std::string &name);
// The value of `name` in an environment block (NAME=VALUE entries, each
// ended by a NUL, the last one perhaps not), as the process wrote it. Pure
// (fuzz target `proc`).
std::optional<std::string> environmentValue(std::string_view block, std::string_view name);

} // namespace fdsup
