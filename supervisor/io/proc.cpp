// What /proc says about a process: its parent and group, its environment.
#include "io/proc.hpp"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace fdsup {

std::optional<ProcStat> readProcStat(pid_t pid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    if (!in) {
        return std::nullopt;
    }
    // The whole file, not its first line: the command name may hold a '\n'.
    std::ostringstream text;
    text << in.rdbuf();
    return parseProcStat(text.str());
}

std::optional<ProcStat> parseProcStat(std::string_view line)
{
    // The command name is in parentheses and may hold spaces and ')': the
    // fields start after the last ')'.
    const auto close = line.rfind(')');
    if (close == std::string_view::npos) {
        return std::nullopt;
    }
    std::istringstream fields{std::string(line.substr(close + 1))};
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
    std::ostringstream block;
    block << in.rdbuf();
    return environmentValue(block.str(), name);
}

std::optional<std::string> environmentValue(std::string_view block, std::string_view name)
{
    while (!block.empty()) {
        const auto end = block.find('\0');
        const std::string_view entry = block.substr(0, end);
        if (entry.size() > name.size() && entry.starts_with(name) && entry[name.size()] == '=') {
            return std::string(entry.substr(name.size() + 1));
        }
        block.remove_prefix(end == std::string_view::npos ? block.size() : end + 1);
    }
    return std::nullopt;
}

} // namespace fdsup
