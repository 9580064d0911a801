// Can the preload shim load into a program? Checked on real files: dynamic, static, set-ID, capabilities,
// scripts.
#include <cstring>
#include <filesystem>
#include <string>

#include <elf.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "io/executable_check.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

namespace fs = std::filesystem;
using testing::HasSubstr;

// A minimal ELF64 executable with one PT_LOAD and no PT_INTERP: the shape
// of a static binary (Go, musl -static), byte for byte what the check reads.
std::string staticElf()
{
    Elf64_Ehdr header{};
    std::memcpy(header.e_ident, ELFMAG, SELFMAG);
    header.e_ident[EI_CLASS] = ELFCLASS64;
    header.e_ident[EI_DATA] = ELFDATA2LSB;
    header.e_ident[EI_VERSION] = EV_CURRENT;
    header.e_type = ET_EXEC;
    header.e_machine = EM_X86_64;
    header.e_version = EV_CURRENT;
    header.e_phoff = sizeof(Elf64_Ehdr);
    header.e_ehsize = sizeof(Elf64_Ehdr);
    header.e_phentsize = sizeof(Elf64_Phdr);
    header.e_phnum = 1;
    Elf64_Phdr load{};
    load.p_type = PT_LOAD;
    std::string out(reinterpret_cast<const char *>(&header), sizeof header);
    out.append(reinterpret_cast<const char *>(&load), sizeof load);
    return out;
}

fs::path copyWithMode(const test::TempDir &dir, const std::string &name, mode_t mode)
{
    fs::path copy = dir / name;
    fs::copy_file("/bin/true", copy);
    EXPECT_EQ(chmod(copy.c_str(), mode), 0);
    return copy;
}

TEST(ExecutableCheck, ADynamicProgramCanBeWrapped)
{
    EXPECT_EQ(preloadBlocker("/bin/true"), std::nullopt);
}

TEST(ExecutableCheck, AStaticProgramCannot)
{
    test::TempDir dir;
    test::writeFile(dir / "static", staticElf());
    auto why = preloadBlocker((dir / "static").string());
    ASSERT_TRUE(why);
    EXPECT_THAT(*why, HasSubstr("is statically linked"));
}

TEST(ExecutableCheck, ARealStaticPieBinaryIsSeenAsStatic)
{
    // Debian's ldconfig is static-pie: ET_DYN like a shared object, but no PT_INTERP.
    if (!fs::exists("/sbin/ldconfig")) {
        GTEST_SKIP() << "no /sbin/ldconfig on this system";
    }
    auto why = preloadBlocker("/sbin/ldconfig");
    ASSERT_TRUE(why);
    EXPECT_THAT(*why, HasSubstr("/sbin/ldconfig is statically linked"));
}

TEST(ExecutableCheck, SetUserAndGroupIdProgramsAreRunInSecureMode)
{
    test::TempDir dir;
    auto setuid = preloadBlocker(copyWithMode(dir, "suid", 04755).string());
    ASSERT_TRUE(setuid);
    EXPECT_THAT(*setuid, HasSubstr("is set-user-ID: the dynamic loader ignores LD_PRELOAD"));
    auto setgid = preloadBlocker(copyWithMode(dir, "sgid", 02755).string());
    ASSERT_TRUE(setgid);
    EXPECT_THAT(*setgid, HasSubstr("is set-group-ID"));
    // Set-group-ID without group execute is mandatory locking, not privilege.
    EXPECT_EQ(preloadBlocker(copyWithMode(dir, "lock", 02745).string()), std::nullopt);
}

TEST(ExecutableCheck, FileCapabilitiesToo)
{
    test::TempDir dir;
    const fs::path copy = copyWithMode(dir, "caps", 0755);
    // cap_net_bind_service=ep, as setcap writes it (VFS_CAP_REVISION_2).
    const unsigned char caps[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
                                    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    if (setxattr(copy.c_str(), "security.capability", caps, sizeof caps, 0) < 0) {
        GTEST_SKIP() << "cannot set file capabilities here: " << std::strerror(errno);
    }
    auto why = preloadBlocker(copy.string());
    ASSERT_TRUE(why);
    EXPECT_THAT(*why, HasSubstr("has file capabilities"));
}

TEST(ExecutableCheck, AScriptIsJudgedByItsInterpreter)
{
    test::TempDir dir;
    test::writeFile(dir / "ok.sh", "#!/bin/sh\nexec true\n");
    EXPECT_EQ(preloadBlocker((dir / "ok.sh").string()), std::nullopt);
    test::writeFile(dir / "static", staticElf());
    test::writeFile(dir / "bad.sh", "#! " + (dir / "static").string() + " -x\n");
    auto why = preloadBlocker((dir / "bad.sh").string());
    ASSERT_TRUE(why);
    EXPECT_THAT(*why, HasSubstr((dir / "static").string() + " is statically linked"));
}

TEST(ExecutableCheck, AFileItCannotReadSaysNothing)
{
    EXPECT_EQ(preloadBlocker("/nonexistent/fdsup-test"), std::nullopt);
}

} // namespace
} // namespace fdsup
