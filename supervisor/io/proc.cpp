// What /proc says about a process: its parent and group, its environment.
#include "io/proc.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace fdsup {

std::optional<ProcStat> readProcStat(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(in, line)) {
        return std::nullopt;
    }
    // The command name is in parentheses and may hold spaces and ')': the
    // fields start after the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string::npos) {
        return std::nullopt;
    }
    std::istringstream fields(line.substr(close + 1));
    ProcStat stat;
    long ppid = 0;
    long pgid = 0;
    if (!(fields >> stat.state >> ppid >> pgid)) {
        return std::nullopt;
    }
    stat.ppid = static_cast<pid_t>(ppid);
    stat.pgid = static_cast<pid_t>(pgid);
    return stat;
}

std::optional<std::string> startEnvironment(pid_t pid, const std::string &name)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    const std::string prefix = name + "=";
    std::string entry;
    while (std::getline(in, entry, '\0')) {
        if (entry.starts_with(prefix)) {
            return entry.substr(prefix.size());
        }
    }
    return std::nullopt;
}

} // namespace fdsup
