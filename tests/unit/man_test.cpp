// The man pages against the code: every config key, fdsupctl subcommand and exported symbol has an entry,
// and every page renders without a warning.
#include <algorithm>
#include <filesystem>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "config/config.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

namespace fs = std::filesystem;

fs::path manDir()
{
    return fs::path(requireEnv("FDSUP_SOURCE_ROOT")) / "packaging" / "man";
}

std::vector<std::string> lines(const std::string &text)
{
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        // roff's \- is the hyphen of check-config and friends.
        for (auto at = line.find("\\-"); at != std::string::npos; at = line.find("\\-", at)) {
            line.erase(at, 1);
        }
        out.push_back(line);
    }
    return out;
}

// The lines of a page from the heading (.SH/.SS with that text) to the next
// heading of any level; empty when there is no such heading.
std::vector<std::string> section(const std::vector<std::string> &page, const std::string &heading)
{
    std::vector<std::string> out;
    bool inside = false;
    for (const auto &line : page) {
        if (line.starts_with(".SH ") || line.starts_with(".SS ")) {
            std::string title = line.substr(4);
            title.erase(std::remove(title.begin(), title.end(), '"'), title.end());
            inside = title == heading;
            continue;
        }
        if (inside) {
            out.push_back(line);
        }
    }
    return out;
}

// word set in bold: on a .B/.BR/.BI line, or as \fBword\fR.
bool hasBold(const std::vector<std::string> &text, const std::string &word)
{
    const std::regex onBoldLine(R"(^\.(B|BR|BI|RB|IB) (.*[\s"])?)" + word + R"(([\s"(]|$).*)");
    const std::string inline_ = "\\fB" + word + "\\f";
    return std::any_of(text.begin(), text.end(), [&](const std::string &line) {
        return std::regex_match(line, onBoldLine) || line.find(inline_) != std::string::npos;
    });
}

// The global symbols of a linker version script.
std::vector<std::string> exportedSymbols(const fs::path &script)
{
    std::vector<std::string> symbols;
    bool global = false;
    for (auto line : lines(readFile(script))) {
        line.erase(0, line.find_first_not_of(" \t"));
        if (line.starts_with("global:")) {
            global = true;
        } else if (line.starts_with("local:") || line.starts_with("}")) {
            global = false;
        } else if (global && !line.empty() && line.back() == ';') {
            symbols.push_back(line.substr(0, line.size() - 1));
        }
    }
    return symbols;
}

// The subcommands CLI11 lists under "Subcommands:" in a --help.
std::vector<std::string> subcommands(const std::vector<std::string> &argv)
{
    auto args = argv;
    args.emplace_back("--help");
    const auto r = runProcess(args);
    EXPECT_EQ(r.exitCode, 0) << r.err;
    std::vector<std::string> names;
    bool inside = false;
    for (const auto &line : lines(r.out)) {
        if (line == "Subcommands:") {
            inside = true;
        } else if (inside && line.starts_with("  ") && line[2] != ' ') {
            names.push_back(line.substr(2, line.find(' ', 2) - 2));
        } else if (inside && line.empty()) {
            inside = false;
        }
    }
    return names;
}

TEST(ManTest, EveryConfigKeyHasAnEntryInItsTable)
{
    const auto page = lines(readFile(manDir() / "fdsupd.toml.5"));
    const auto tables = config::knownKeys();
    std::set<std::string> names;
    for (const auto &t : tables) {
        names.insert(t.table);
        // Top-level keys name tables or are described in DESCRIPTION.
        // An array of tables ([[supervisor.access]]) has its heading as written.
        auto text = t.table.empty() ? page : section(page, "[" + t.table + "]");
        if (text.empty() && !t.table.empty()) {
            text = section(page, "[[" + t.table + "]]");
        }
        EXPECT_FALSE(text.empty()) << "fdsupd.toml.5 has no section [" << t.table << "]";
        const std::string prefix = t.table.empty() ? "" : t.table + ".";
        for (const auto &key : t.keys) {
            // A key that is a table ('limits', or 'socket' at the top) may
            // have a section instead.
            std::string table = "[";
            table.append(prefix).append(key);
            const bool hasSection = !section(page, table + "]").empty() ||
                                    !section(page, table + ".NAME]").empty() ||
                                    !section(page, "[" + table + "]]").empty();
            EXPECT_TRUE(hasBold(text, key) || hasSection)
                << "fdsupd.toml.5: key '" << key << "' of [" << t.table << "] has no entry";
        }
    }
    // The catalogue saw every table the loader reads (a new table shows up here).
    EXPECT_EQ(names, (std::set<std::string>{"", "supervisor", "supervisor.limits", "supervisor.access",
                                            "socket.NAME", "service.NAME", "service.NAME.limits"}));
}

TEST(ManTest, EveryFdsupctlSubcommandHasAnEntry)
{
    const auto commands = section(lines(readFile(manDir() / "fdsupctl.1")), "COMMANDS");
    const std::string ctl = requireEnv("FDSUPCTL");
    const auto top = subcommands({ctl});
    EXPECT_GE(top.size(), 10U);
    for (const auto &command : top) {
        EXPECT_TRUE(hasBold(commands, command)) << "fdsupctl.1: no entry for '" << command << "'";
        for (const auto &sub : subcommands({ctl, command})) {
            std::string both = command;
            both.append(" ").append(sub);
            EXPECT_TRUE(hasBold(commands, "\"" + both + "\"") || hasBold(commands, both))
                << "fdsupctl.1: no entry for '" << command << " " << sub << "'";
        }
    }
}

TEST(ManTest, EveryExportedSymbolHasAnEntry)
{
    const fs::path source = requireEnv("FDSUP_SOURCE_ROOT");
    const auto library = lines(readFile(manDir() / "libactivate.3"));
    const auto symbols = exportedSymbols(source / "libactivate" / "libactivate.sym");
    EXPECT_GE(symbols.size(), 12U);
    for (const auto &symbol : symbols) {
        // The prototype in SYNOPSIS and an entry (.B name()) of its own.
        const auto synopsis = section(library, "SYNOPSIS");
        EXPECT_TRUE(
            std::any_of(synopsis.begin(), synopsis.end(),
                        [&](const std::string &l) { return l.find(symbol + "(") != std::string::npos; }))
            << "libactivate.3: no prototype of " << symbol;
        EXPECT_TRUE(hasBold(library, symbol + R"(\(\))")) << "libactivate.3: no entry for " << symbol << "()";
    }
    const auto shim = section(lines(readFile(manDir() / "libactivate-preload.8")), "INTERPOSED FUNCTIONS");
    const auto interposed = exportedSymbols(source / "libactivate" / "preload" / "preload.sym");
    EXPECT_GE(interposed.size(), 20U);
    for (const auto &symbol : interposed) {
        EXPECT_TRUE(hasBold(shim, symbol)) << "libactivate-preload.8: no entry for " << symbol;
    }
}

// lintian's check: man --warnings prints nothing.
TEST(ManTest, EveryPageRendersWithoutWarnings)
{
    int pages = 0;
    for (const auto &entry : fs::directory_iterator(manDir())) {
        ++pages;
        const auto r =
            runProcess({"/usr/bin/env", "LC_ALL=C.UTF-8", "MANROFFSEQ=", "MANWIDTH=80", "/usr/bin/man",
                        "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", entry.path().string()});
        EXPECT_EQ(r.exitCode, 0) << entry.path();
        EXPECT_EQ(r.err, "") << entry.path();
    }
    EXPECT_EQ(pages, 6);
}

} // namespace
} // namespace fdsup::test
