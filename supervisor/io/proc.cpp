// What /proc says about a process: its parent and group, its children, its environment.
#include "io/proc.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
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

std::vector<pid_t> ownChildren()
{
    std::vector<pid_t> children;
    std::error_code ec;
    for (const auto &task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        std::ifstream in(task.path() / "children");
        long pid = 0;
        while (in >> pid) {
            children.push_back(static_cast<pid_t>(pid));
        }
    }
    return children;
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
