// fdsupd and fdsupctl as a user runs them: real binaries, real files, exit codes and output.
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fdsup_build_config.h"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr std::string_view kBroken = R"([socket.web]
listen = "tcp://127.0.0.1:0"
backlg = 10

[service.web]
command = ["/bin/true"]
sockets = ["wbe"]
)";

// The rendered configuration without its comment lines (which name the file read).
std::string withoutComments(const std::string &text)
{
    std::string out;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t end = std::min(text.find('\n', pos), text.size());
        if (text[pos] != '#') {
            out.append(text, pos, end - pos).push_back('\n');
        }
        pos = end + 1;
    }
    return out;
}

class Cli : public ::testing::Test {
protected:
    std::string fdsupd_ = requireEnv("FDSUPD");
    std::string fdsupctl_ = requireEnv("FDSUPCTL");
    std::string demo_ = requireEnv("FDSUP_UNITS_DIR") + "/demo.toml";
    TempDir dir_;
};

TEST_F(Cli, FdsupdChecksTheDemo)
{
    const auto r = runProcess({fdsupd_, "-c", demo_, "--check"});
    EXPECT_EQ(r.exitCode, 0) << r.err;
    EXPECT_THAT(r.err, HasSubstr("Loaded"));
}

TEST_F(Cli, FdsupdPrintsAnEffectiveConfigurationThatLoadsAgain)
{
    const auto r = runProcess({fdsupd_, "-c", demo_, "--print-config"});
    ASSERT_EQ(r.exitCode, 0) << r.err;
    ASSERT_THAT(r.out, HasSubstr("[supervisor]"));
    const auto rendered = dir_ / "rendered.toml";
    writeFile(rendered, r.out);
    const auto again = runProcess({fdsupd_, "-c", rendered.string(), "--print-config"});
    ASSERT_EQ(again.exitCode, 0) << again.err;
    // A fixed point: rendering the rendered file changes nothing.
    EXPECT_EQ(withoutComments(again.out), withoutComments(r.out));
}

TEST_F(Cli, FdsupdReportsEveryErrorWithItsPlaceAndStartsNothing)
{
    const auto file = dir_ / "broken.toml";
    writeFile(file, kBroken);
    const auto r = runProcess({fdsupd_, "-c", file.string()});
    EXPECT_EQ(r.exitCode, 3);
    EXPECT_EQ(r.out, "");
    EXPECT_THAT(r.err, HasSubstr(file.string() +
                                 ":3:1: unknown key 'backlg' in [socket.web]; did you mean 'backlog'?"));
    EXPECT_THAT(r.err, HasSubstr(file.string() +
                                 ":7:12: 'sockets': no [socket.wbe] is defined; did you mean 'web'?"));
}

TEST_F(Cli, FdsupdReportsAMissingFile)
{
    const auto r = runProcess({fdsupd_, "-c", (dir_ / "missing.toml").string()});
    EXPECT_EQ(r.exitCode, 3);
    EXPECT_THAT(r.err, HasSubstr("missing.toml"));
}

TEST_F(Cli, FdsupdRejectsBadOptions)
{
    EXPECT_EQ(runProcess({fdsupd_, "--no-such-option"}).exitCode, 2);
    EXPECT_EQ(runProcess({fdsupd_, "--log-level", "loud"}).exitCode, 2);
    const auto v = runProcess({fdsupd_, "--version"});
    EXPECT_EQ(v.exitCode, 0);
    EXPECT_THAT(v.out, MatchesRegex("fdsupd [0-9]+\\.[0-9]+\\.[0-9]+\n"));
}

TEST_F(Cli, CheckConfigAcceptsTheDemo)
{
    const auto r = runProcess({fdsupctl_, "check-config", demo_});
    EXPECT_EQ(r.exitCode, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr(": OK"));
}

TEST_F(Cli, CheckConfigReportsErrorsAsJson)
{
    const auto file = dir_ / "broken.toml";
    writeFile(file, kBroken);
    const auto r = runProcess({fdsupctl_, "check-config", file.string(), "--json"});
    EXPECT_EQ(r.exitCode, 1);
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_FALSE(j.at("valid").get<bool>());
    ASSERT_GE(j.at("errors").size(), 2U);
    const auto &first = j.at("errors").at(0);
    EXPECT_EQ(first.at("file"), file.string());
    EXPECT_EQ(first.at("line"), 3);
    EXPECT_EQ(first.at("column"), 1);
    EXPECT_THAT(first.at("message").get<std::string>(), HasSubstr("backlg"));
}

TEST_F(Cli, CheckConfigDescribesAValidFileAsJson)
{
    const auto r = runProcess({fdsupctl_, "check-config", demo_, "--json"});
    ASSERT_EQ(r.exitCode, 0) << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_TRUE(j.at("valid").get<bool>());
    EXPECT_TRUE(j.at("errors").empty());
    EXPECT_FALSE(j.at("sockets").empty());
    EXPECT_FALSE(j.at("services").empty());
}

TEST_F(Cli, FdsupctlUsage)
{
    EXPECT_EQ(runProcess({fdsupctl_}).exitCode, 2);
    EXPECT_EQ(runProcess({fdsupctl_, "no-such-command"}).exitCode, 2);
    const auto help = runProcess({fdsupctl_, "check-config", "--help"});
    EXPECT_EQ(help.exitCode, 0);
    EXPECT_THAT(help.out, HasSubstr("--json"));
    const auto v = runProcess({fdsupctl_, "version", "--json"});
    EXPECT_EQ(v.exitCode, 0);
    EXPECT_EQ(nlohmann::json::parse(v.out).at("fdsupctl").get<std::string>(), FDSUP_VERSION);
}

TEST_F(Cli, FdsupctlHelpOfEveryCommandNamesItsOptions)
{
    const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>> commands = {
        {{"status"}, {"--json"}},
        {{"sockets"}, {"--json"}},
        {{"start"}, {"--json"}},
        {{"stop"}, {"--json"}},
        {{"restart"}, {"--batch", "--order", "--queue", "--wait", "--no-wait", "--json"}},
        {{"rollout"}, {"status", "cancel"}},
        {{"rollout", "status"}, {"--json"}},
        {{"rollout", "cancel"}, {"--json"}},
        {{"scale"}, {"instances", "--json"}},
        {{"reload"}, {"--json"}},
        {{"logs"}, {"--lines", "--follow", "--json"}},
        {{"events"}, {"--json"}},
    };
    for (const auto &[command, options] : commands) {
        std::vector<std::string> argv = {fdsupctl_};
        argv.insert(argv.end(), command.begin(), command.end());
        argv.emplace_back("--help");
        const auto r = runProcess(argv);
        EXPECT_EQ(r.exitCode, 0) << command.back() << ": " << r.err;
        for (const auto &option : options) {
            EXPECT_THAT(r.out, HasSubstr(option)) << command.back();
        }
    }
    EXPECT_THAT(runProcess({fdsupctl_, "--help"}).out, HasSubstr("--timeout"));
}

TEST_F(Cli, FdsupctlRefusesBadArgumentsOfTheNewCommands)
{
    const std::vector<std::vector<std::string>> bad = {
        {"scale", "web", "x"},
        {"scale", "web", "-1"},
        {"scale", "web", "1025"},
        {"scale", "web"},
        {"restart"},
        {"restart", "--order", "sideways", "web"},
        {"restart", "--batch", "0", "web"},
        {"rollout"},
        {"rollout", "status"},
        {"rollout", "undo", "web"},
        {"logs"},
        {"logs", "web", "-n", "many"},
        {"reload", "extra"},
        {"connections", "web", "extra"},
    };
    for (const auto &args : bad) {
        std::vector<std::string> argv = {fdsupctl_, "-s", (dir_ / "none.sock").string()};
        argv.insert(argv.end(), args.begin(), args.end());
        const auto r = runProcess(argv);
        EXPECT_EQ(r.exitCode, 2) << ::testing::PrintToString(args) << ": " << r.err;
        EXPECT_EQ(r.out, "") << ::testing::PrintToString(args);
    }
}

TEST_F(Cli, FdsupctlCannotConnectWithoutDaemon)
{
    const std::string socket = (dir_ / "none.sock").string();
    const std::vector<std::vector<std::string>> commands = {
        {"restart", "web"},
        {"restart", "web", "--wait", "--batch", "2", "--order", "stop-first", "--queue"},
        {"restart", "web", "--no-wait", "--json"},
        {"rollout", "status", "web"},
        {"rollout", "cancel", "web"},
        {"scale", "web", "0"},
        {"scale", "web", "1024", "--json"},
        {"reload"},
        {"logs", "web"},
        {"logs", "web", "-n", "5", "--follow"},
        {"logs", "web", "-f", "--json"},
        {"events"},
        {"events", "web", "--json"},
        {"status"},
        {"sockets"},
    };
    for (const auto &args : commands) {
        std::vector<std::string> argv = {fdsupctl_, "-s", socket, "--timeout", "2s"};
        argv.insert(argv.end(), args.begin(), args.end());
        const auto r = runProcess(argv);
        EXPECT_EQ(r.exitCode, 3) << ::testing::PrintToString(args) << ": " << r.err;
        EXPECT_THAT(r.err, HasSubstr("cannot connect")) << ::testing::PrintToString(args);
        EXPECT_EQ(r.out, "") << ::testing::PrintToString(args);
    }
    // The socket may also come from the environment, and follow the command.
    EXPECT_EQ(runProcess({fdsupctl_, "reload"}, {"FDSUP_CONTROL=" + socket}).exitCode, 3);
    EXPECT_EQ(runProcess({fdsupctl_, "rollout", "status", "web", "-s", socket}).exitCode, 3);
}

} // namespace
} // namespace fdsup::test
