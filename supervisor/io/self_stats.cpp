// What /proc says about fdsupd itself.
#include "io/self_stats.hpp"

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

namespace fdsup {
namespace {

// /proc/self/stat after the command (which may hold spaces and parentheses):
// field 3 (state) first, so utime is index 11, starttime 19, vsize 20, rss 21.
void readStat(SelfStats &stats)
{
    std::ifstream in("/proc/self/stat");
    std::string text; // one line
    std::getline(in, text);
    const auto close = text.rfind(')');
    if (close == std::string::npos) {
        return;
    }
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const auto page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
    double utime = 0;
    for (int i = 0; fields >> field; ++i) {
        if (i == 11) {
            utime = std::stod(field);
        } else if (i == 12) {
            stats.cpuSeconds = (utime + std::stod(field)) / ticks;
        } else if (i == 19) {
            stats.startTimeSeconds = std::stod(field) / ticks;
        } else if (i == 20) {
            stats.virtualBytes = std::stoull(field);
        } else if (i == 21) {
            stats.residentBytes = std::stoull(field) * page;
            break;
        }
    }
    std::ifstream procStat("/proc/stat");
    std::string line;
    while (std::getline(procStat, line)) {
        if (line.starts_with("btime ")) {
            stats.startTimeSeconds += std::stod(line.substr(6));
            break;
        }
    }
}

void readPrivate(SelfStats &stats)
{
    std::ifstream in("/proc/self/smaps_rollup");
    std::string key;
    std::uint64_t kib = 0;
    std::string unit;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        if (fields >> key >> kib && (key == "Private_Clean:" || key == "Private_Dirty:")) {
            stats.privateBytes += kib * 1024;
        }
    }
}

void countFds(SelfStats &stats)
{
    DIR *dir = opendir("/proc/self/fd");
    if (dir == nullptr) {
        return;
    }
    std::uint64_t count = 0;
    while (const dirent *entry = readdir(dir)) {
        if (entry->d_name[0] != '.') {
            ++count;
        }
    }
    closedir(dir);
    stats.openFds = count > 0 ? count - 1 : 0; // the directory's own descriptor
}

} // namespace

SelfStats readSelfStats()
{
    SelfStats stats;
    try {
        readStat(stats);
        readPrivate(stats);
    } catch (const std::exception &) {
        // A field that is not a number: the figures read so far stand.
    }
    countFds(stats);
    rlimit nofile{};
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        stats.maxFds = nofile.rlim_cur;
    }
    return stats;
}

} // namespace fdsup
