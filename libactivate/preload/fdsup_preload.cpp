// fdsup-preload: runs a program with libactivate-preload.so, e.g. under systemd-socket-activate
// (docs/preload.md).
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fdsup_build_config.h"
#include "match.hpp"

namespace {

constexpr const char *kUsage = "usage: fdsup-preload [--map NAME=ADDRESS]... [--debug] -- COMMAND [ARG...]\n";

int usage(const char *why)
{
    (void)std::fprintf(stderr, "fdsup-preload: %s\n%s", why, kUsage);
    return 2;
}

bool resolveDir(const std::string &dir, std::string &canonical, void * /*context*/)
{
    char buf[PATH_MAX];
    if (realpath(dir.c_str(), buf) == nullptr) {
        return false;
    }
    canonical = buf;
    return true;
}

// The library beside this program (the build tree), else the installed one.
std::string libraryPath()
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        std::string dir(self, static_cast<std::size_t>(n));
        dir = dir.substr(0, dir.rfind('/'));
        std::string beside = dir + "/libactivate-preload.so";
        if (access(beside.c_str(), R_OK) == 0) {
            return beside;
        }
    }
    return FDSUP_PRELOAD_LIBRARY;
}

// COMMAND as execvp() would find it.
std::string findProgram(const char *name)
{
    if (std::strchr(name, '/') != nullptr) {
        return name;
    }
    const char *path = std::getenv("PATH");
    std::string_view dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
    while (!dirs.empty()) {
        auto colon = dirs.find(':');
        std::string candidate = std::string(dirs.substr(0, colon)) + "/" + name;
        if (access(candidate.c_str(), X_OK) == 0) {
            return candidate;
        }
        dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    }
    return {};
}

template <typename Ehdr, typename Phdr>
int findInterp(int fd)
{
    Ehdr eh{};
    if (pread(fd, &eh, sizeof(eh), 0) != static_cast<ssize_t>(sizeof(eh))) {
        return 0;
    }
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Phdr ph{};
        auto at = static_cast<off_t>(eh.e_phoff + i * sizeof(Phdr));
        if (pread(fd, &ph, sizeof(ph), at) != static_cast<ssize_t>(sizeof(ph))) {
            return 0;
        }
        if (ph.p_type == PT_INTERP) {
            return 1;
        }
    }
    return 0;
}

// Whether an ELF file asks for a dynamic loader (PT_INTERP). Returns 1, 0
// (static), or -1 (not ELF: a script, whose interpreter is checked by the kernel).
int hasInterpreter(int fd)
{
    unsigned char ident[EI_NIDENT] = {};
    if (pread(fd, ident, sizeof(ident), 0) != static_cast<ssize_t>(sizeof(ident)) ||
        std::memcmp(ident, ELFMAG, SELFMAG) != 0) {
        return -1;
    }
    return ident[EI_CLASS] == ELFCLASS64 ? findInterp<Elf64_Ehdr, Elf64_Phdr>(fd)
                                         : findInterp<Elf32_Ehdr, Elf32_Phdr>(fd);
}

// Why the dynamic loader would ignore LD_PRELOAD for this program, or "".
std::string cannotWrap(const std::string &program)
{
    int fd = open(program.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st {};
    if (fd < 0 || fstat(fd, &st) < 0) {
        return std::string("cannot open it: ") + std::strerror(errno);
    }
    int interp = hasInterpreter(fd);
    if (interp < 0) {
        (void)std::fprintf(
            stderr,
            "fdsup-preload: note: %s is not an ELF binary: its interpreter gets the shim, which takes "
            "itself out of the environment, so a program the script execs does not\n",
            program.c_str());
    }
    bool caps = fgetxattr(fd, "security.capability", nullptr, 0) >= 0;
    close(fd);
    if (interp == 0) {
        return "it is statically linked (no PT_INTERP): LD_PRELOAD cannot reach its bind()";
    }
    if ((st.st_mode & (S_ISUID | S_ISGID)) != 0) {
        return "it is setuid or setgid: the loader ignores LD_PRELOAD for it";
    }
    if (caps) {
        return "it has file capabilities: the loader ignores LD_PRELOAD for it";
    }
    return {};
}

} // namespace

int main(int argc, char **argv)
{
    std::string map;
    bool debug = false;
    int i = 1;
    for (; i < argc; ++i) {
        std::string_view arg(argv[i]);
        if (arg == "--") {
            ++i;
            break;
        }
        if (arg == "--debug") {
            debug = true;
        } else if (arg == "--map" && i + 1 < argc) {
            map += (map.empty() ? "" : ";") + std::string(argv[++i]);
        } else if (arg == "-h" || arg == "--help") {
            (void)std::fputs(kUsage, stdout);
            return 0;
        } else {
            return usage(("unknown argument '" + std::string(arg) + "'").c_str());
        }
    }
    if (i >= argc) {
        return usage("no COMMAND after --");
    }
    std::vector<fdsup::preload::MapEntry> entries;
    std::string why;
    if (fdsup::preload::parseMap(map, resolveDir, nullptr, entries, why) < 0) {
        return usage(("--map: " + why).c_str());
    }
    std::string program = findProgram(argv[i]);
    if (program.empty()) {
        (void)std::fprintf(stderr, "fdsup-preload: %s: command not found\n", argv[i]);
        return 127;
    }
    if (std::string reason = cannotWrap(program); !reason.empty()) {
        (void)std::fprintf(stderr, "fdsup-preload: cannot wrap %s: %s\n", program.c_str(), reason.c_str());
        return 126;
    }
    std::string preload = libraryPath();
    if (const char *old = std::getenv("LD_PRELOAD"); old != nullptr && *old != '\0') {
        preload += std::string(":") + old;
    }
    setenv("LD_PRELOAD", preload.c_str(), 1);
    if (!map.empty()) {
        setenv("FDSUP_PRELOAD_MAP", map.c_str(), 1);
    }
    if (debug) {
        setenv("FDSUP_PRELOAD_DEBUG", "1", 1);
    }
    execv(program.c_str(), argv + i);
    (void)std::fprintf(stderr, "fdsup-preload: cannot run %s: %s\n", program.c_str(), std::strerror(errno));
    return 126;
}
