// Fuzz target: what fdsupd reads about other processes in /proc. A process sets its own command name
// (prctl(PR_SET_NAME), up to 15 bytes, ')' and spaces included) inside /proc/PID/stat, and its whole
// starting environment (/proc/PID/environ): both untrusted. The first byte chooses the parser, the rest
// is the text (for the environment: the variable's name, a NUL, the block).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz.hpp"
#include "io/proc.hpp"
#include "io/proc_net.hpp"

namespace {

void checkStat(std::string_view line)
{
    (void)fdsup::parseProcStat(line);
    // The command name the process chose cannot move the fields after it.
    const std::string wrapped = "123 (" + std::string(line.substr(0, 15)) + ") S 77 88 88 0 -1";
    const auto stat = fdsup::parseProcStat(wrapped);
    if (!stat || stat->state != 'S' || stat->ppid != 77 || stat->pgid != 88) {
        std::abort();
    }
}

void checkEnvironment(std::string_view input)
{
    const auto nul = input.find('\0');
    if (nul == std::string_view::npos) {
        return;
    }
    const std::string_view name = input.substr(0, nul);
    const std::string_view block = input.substr(nul + 1);
    const auto value = fdsup::environmentValue(block, name);
    if (!value) {
        return;
    }
    // Found means an entry "NAME=VALUE" exists, at the start of the block or after a NUL.
    const std::string entry = std::string(name) + "=" + *value;
    if ((!block.starts_with(entry) && block.find('\0' + entry) == std::string_view::npos) ||
        value->find('\0') != std::string::npos) {
        std::abort();
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    if (size == 0) {
        return 0;
    }
    const std::string_view text(reinterpret_cast<const char *>(data + 1), size - 1);
    switch (data[0] % 4) {
    case 0:
        checkStat(text);
        break;
    case 1:
        checkEnvironment(text);
        break;
    case 2:
        (void)fdsup::parseInetLine(text);
        break;
    default:
        (void)fdsup::parseUnixLine(text);
        break;
    }
    return 0;
}
