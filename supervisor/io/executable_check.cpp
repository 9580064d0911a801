// Can the preload shim load into this program? The cheap checks of an executable file.
#include "io/executable_check.hpp"

#include <array>
#include <cstring>
#include <fstream>
#include <vector>

#include <elf.h>
#include <sys/stat.h>
#include <sys/xattr.h>

namespace fdsup {
namespace {

// A script's interpreter may itself be a script, at most this deep (the kernel allows 4).
constexpr int kMaxInterpreterDepth = 4;

enum class ElfKind : std::uint8_t { Dynamic, Static, NotElf };

template <typename Ehdr, typename Phdr>
ElfKind scanProgramHeaders(std::ifstream &in)
{
    Ehdr header{};
    in.seekg(0);
    if (!in.read(reinterpret_cast<char *>(&header), sizeof header) || header.e_phentsize != sizeof(Phdr)) {
        return ElfKind::NotElf;
    }
    for (unsigned i = 0; i < header.e_phnum; ++i) {
        Phdr ph{};
        in.seekg(static_cast<std::streamoff>(header.e_phoff + i * sizeof(Phdr)));
        if (!in.read(reinterpret_cast<char *>(&ph), sizeof ph)) {
            return ElfKind::NotElf;
        }
        if (ph.p_type == PT_INTERP) {
            return ElfKind::Dynamic;
        }
    }
    return ElfKind::Static;
}

ElfKind elfKind(std::ifstream &in)
{
    std::array<unsigned char, EI_NIDENT> ident{};
    in.seekg(0);
    if (!in.read(reinterpret_cast<char *>(ident.data()), ident.size()) ||
        std::memcmp(ident.data(), ELFMAG, SELFMAG) != 0) {
        return ElfKind::NotElf;
    }
    if (ident[EI_CLASS] == ELFCLASS64) {
        return scanProgramHeaders<Elf64_Ehdr, Elf64_Phdr>(in);
    }
    if (ident[EI_CLASS] == ELFCLASS32) {
        return scanProgramHeaders<Elf32_Ehdr, Elf32_Phdr>(in);
    }
    return ElfKind::NotElf;
}

// "#!/usr/bin/python3 -u" -> "/usr/bin/python3"; empty if not a script.
std::string interpreterOf(std::ifstream &in)
{
    in.clear();
    in.seekg(0);
    std::string line;
    if (!std::getline(in, line) || !line.starts_with("#!")) {
        return {};
    }
    const auto begin = line.find_first_not_of(" \t", 2);
    if (begin == std::string::npos) {
        return {};
    }
    const auto end = line.find_first_of(" \t", begin);
    return line.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

std::optional<std::string> blocker(const std::string &path, int depth)
{
    struct stat st {};
    if (stat(path.c_str(), &st) < 0) {
        return std::nullopt;
    }
    if ((st.st_mode & S_ISUID) != 0) {
        return path + " is set-user-ID: the dynamic loader ignores LD_PRELOAD for it";
    }
    if ((st.st_mode & S_ISGID) != 0 && (st.st_mode & S_IXGRP) != 0) {
        return path + " is set-group-ID: the dynamic loader ignores LD_PRELOAD for it";
    }
    if (getxattr(path.c_str(), "security.capability", nullptr, 0) >= 0) {
        return path + " has file capabilities: the dynamic loader ignores LD_PRELOAD for it";
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        return std::nullopt;
    }
    switch (elfKind(in)) {
    case ElfKind::Dynamic:
        return std::nullopt;
    case ElfKind::Static:
        return path + " is statically linked: no dynamic loader runs, so the preload shim cannot load";
    case ElfKind::NotElf:
        break;
    }
    const std::string interpreter = interpreterOf(in);
    if (interpreter.empty() || depth >= kMaxInterpreterDepth) {
        return std::nullopt;
    }
    return blocker(interpreter, depth + 1);
}

} // namespace

std::optional<std::string> preloadBlocker(const std::string &path)
{
    return blocker(path, 0);
}

} // namespace fdsup
