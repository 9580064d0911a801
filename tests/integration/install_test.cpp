// The install suite: `meson install` into a DESTDIR installs exactly the layout docs/install.md promises,
// nothing outside DESTDIR, and a unit that `systemd-analyze verify` accepts with the installed binaries.
#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "examples.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

namespace fs = std::filesystem;

// FDSUP_INSTALL_DIRS: "name=dir" lines, from tests/meson.build.
std::map<std::string, std::string> installDirs()
{
    std::map<std::string, std::string> dirs;
    std::istringstream in(requireEnv("FDSUP_INSTALL_DIRS"));
    for (std::string line; std::getline(in, line, ';');) {
        const auto eq = line.find('=');
        if (eq != std::string::npos) {
            dirs[line.substr(0, eq)] = line.substr(eq + 1);
        }
    }
    return dirs;
}

// The ```install-layout block of docs/install.md, {dir}s expanded.
std::vector<std::string> documentedLayout()
{
    const auto dirs = installDirs();
    std::istringstream in(readFile(fs::path(requireEnv("FDSUP_SOURCE_ROOT")) / "docs" / "install.md"));
    std::vector<std::string> layout;
    bool inside = false;
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with("```")) {
            inside = line == "```install-layout";
            continue;
        }
        if (!inside || line.empty()) {
            continue;
        }
        for (const auto &[name, dir] : dirs) {
            replaceAll(line, "{" + name + "}", dir);
        }
        EXPECT_EQ(line.find('{'), std::string::npos) << "unknown directory in docs/install.md: " << line;
        layout.push_back(line);
    }
    return layout;
}

// Every file and symlink under root, as the absolute path it would have
// without DESTDIR.
std::set<std::string> installedFiles(const fs::path &root)
{
    std::set<std::string> files;
    for (const auto &entry : fs::recursive_directory_iterator(root)) {
        if (!entry.is_directory() || entry.is_symlink()) {
            files.insert("/" + entry.path().lexically_relative(root).string());
        }
    }
    return files;
}

bool matches(const std::string &pattern, const std::string &file)
{
    if (pattern.ends_with("/**")) {
        return file.starts_with(pattern.substr(0, pattern.size() - 2));
    }
    return pattern == file;
}

class InstallTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        const auto r = runProcess({requireEnv("FDSUP_MESON"), "install", "-C", requireEnv("FDSUP_BUILD_ROOT"),
                                   "--no-rebuild", "--quiet", "--destdir", destdir_.path().string()},
                                  {}, std::chrono::seconds(120));
        ASSERT_EQ(r.exitCode, 0) << r.out << r.err;
    }
    TempDir destdir_;
};

TEST_F(InstallTest, InstallsExactlyTheDocumentedLayout)
{
    const auto layout = documentedLayout();
    ASSERT_FALSE(layout.empty()) << "no ```install-layout block in docs/install.md";
    const auto files = installedFiles(destdir_.path());
    for (const auto &file : files) {
        EXPECT_TRUE(
            std::any_of(layout.begin(), layout.end(), [&](const auto &p) { return matches(p, file); }))
            << "installed but not in docs/install.md: " << file;
    }
    for (const auto &pattern : layout) {
        EXPECT_TRUE(
            std::any_of(files.begin(), files.end(), [&](const auto &f) { return matches(pattern, f); }))
            << "in docs/install.md but not installed: " << pattern;
    }
}

TEST_F(InstallTest, WritesNothingOutsideDestdir)
{
    // meson's own record of every file it installed.
    std::istringstream log(
        readFile(fs::path(requireEnv("FDSUP_BUILD_ROOT")) / "meson-logs" / "install-log.txt"));
    int count = 0;
    for (std::string line; std::getline(log, line);) {
        if (line.empty() || line.starts_with("#")) {
            continue;
        }
        ++count;
        EXPECT_TRUE(line.starts_with(destdir_.path().string() + "/"))
            << "installed outside DESTDIR: " << line;
    }
    EXPECT_GT(count, 20);
}

// The installed units, their Exec paths pointed into DESTDIR (verify checks
// that each is an executable) and man: pages looked up in DESTDIR's
// mandir: no error and no warning.
TEST_F(InstallTest, TheInstalledUnitsPassSystemdAnalyzeVerify)
{
    auto dirs = installDirs();
    const std::string root = destdir_.path().string();
    const TempDir units;
    std::string service = readFile(root + dirs.at("unitdir") + "/fdsupd.service");
    for (const char *dir : {"sbindir", "bindir"}) {
        replaceAll(service, "=" + dirs.at(dir) + "/", "=" + root + dirs.at(dir) + "/");
    }
    writeFile(units / "fdsupd.service", service);
    writeFile(units / "fdsupd.socket", readFile(root + dirs.at("unitdir") + "/fdsupd.socket"));
    const auto r =
        runProcess({"/usr/bin/env", "MANPATH=" + root + dirs.at("mandir"), "/usr/bin/systemd-analyze",
                    "verify", (units / "fdsupd.service").string(), (units / "fdsupd.socket").string()},
                   {}, std::chrono::seconds(60));
    EXPECT_EQ(r.exitCode, 0) << r.err;
    EXPECT_EQ(r.err, "") << service;
}

// The exposure score docs/systemd.md reports is the installed unit's.
TEST_F(InstallTest, TheSecurityScoreIsTheDocumentedOne)
{
    std::smatch documented;
    const std::string doc = readFile(fs::path(requireEnv("FDSUP_SOURCE_ROOT")) / "docs" / "systemd.md");
    ASSERT_TRUE(
        std::regex_search(doc, documented, std::regex(R"(security --offline=yes[^*]*\*\*([0-9.]+) )")));
    const auto dirs = installDirs();
    const auto r = runProcess({"/usr/bin/systemd-analyze", "security", "--offline=yes", "--no-pager",
                               destdir_.path().string() + dirs.at("unitdir") + "/fdsupd.service"},
                              {}, std::chrono::seconds(60));
    std::smatch score;
    ASSERT_TRUE(std::regex_search(r.out, score,
                                  std::regex(R"(Overall exposure level for fdsupd.service: ([0-9.]+))")))
        << r.out << r.err;
    EXPECT_EQ(score[1].str(), documented[1].str()) << "update docs/systemd.md, or the unit";
}

} // namespace
} // namespace fdsup::test
