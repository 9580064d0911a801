// Fuzz target: a pid_file's contents, written by the daemonising server fdsupd follows (untrusted).
// What is accepted is a pid above 1 that prints back as the file's first line, trailing blanks aside.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fuzz.hpp"
#include "io/pid_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    const auto pid = fdsup::parsePidFile(text, "/run/fuzz.pid");
    if (!pid) {
        const int code = pid.error().code;
        if ((code != ENOENT && code != EINVAL) ||
            pid.error().message.find("/run/fuzz.pid") == std::string::npos) {
            std::abort(); // every refusal names the file
        }
        return 0;
    }
    if (*pid <= 1) {
        std::abort();
    }
    std::string_view line = text.substr(0, text.find('\n'));
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) {
        line.remove_suffix(1);
    }
    if (line.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoull(std::string(line)) != static_cast<unsigned long long>(*pid)) {
        std::abort(); // the pid is the number the file holds, not a truncation of it
    }
    return 0;
}
