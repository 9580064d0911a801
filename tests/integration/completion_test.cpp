// fdsupctl's bash completion, run by a real bash the way `complete -F` runs it.
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::IsSupersetOf;

class Completion : public ::testing::Test {
protected:
    // COMPREPLY, sorted, for the command line words whose last word is being
    // completed (words[0] is fdsupctl). path: PATH for the script, when set.
    std::vector<std::string> complete(std::vector<std::string> words,
                                      const std::vector<std::string> &env = {}, const std::string &path = {})
    {
        std::string script = "source \"$FDSUP_BASH_COMPLETION\" || exit 99\n";
        if (!path.empty()) {
            script += "PATH=" + path + "\n";
        }
        script += R"(COMP_WORDS=("$@")
COMP_CWORD=$(($# - 1))
_fdsupctl || exit 98
((${#COMPREPLY[@]} == 0)) || printf '%s\n' "${COMPREPLY[@]}"
)";
        std::vector<std::string> argv = {"/bin/bash", "--norc", "--noprofile",
                                         "-c",        script,   "fdsupctl-completion"};
        words.insert(words.begin(), fdsupctl_);
        argv.insert(argv.end(), words.begin(), words.end());
        const auto r = runProcess(argv, env);
        EXPECT_EQ(r.exitCode, 0) << r.err;
        // Completion must never write to the terminal the user types on.
        EXPECT_EQ(r.err, "");
        std::vector<std::string> out;
        std::size_t pos = 0;
        while (pos < r.out.size()) {
            const std::size_t end = std::min(r.out.find('\n', pos), r.out.size());
            out.push_back(r.out.substr(pos, end - pos));
            pos = end + 1;
        }
        std::sort(out.begin(), out.end());
        return out;
    }

    std::string fdsupctl_ = requireEnv("FDSUPCTL");
    TempDir dir_;
};

TEST_F(Completion, Commands)
{
    EXPECT_THAT(complete({"re"}), ElementsAre("reexec", "reload", "restart"));
    EXPECT_THAT(complete({"s"}), ElementsAre("scale", "sockets", "start", "status", "stop"));
    EXPECT_THAT(complete({"rollout", ""}), ElementsAre("cancel", "status"));
    EXPECT_THAT(complete({"-s", "/x", "rollout", "c"}), ElementsAre("cancel"));
}

TEST_F(Completion, Options)
{
    EXPECT_THAT(complete({"restart", "--"}),
                IsSupersetOf({"--batch", "--order", "--queue", "--wait", "--no-wait", "--json", "--socket"}));
    EXPECT_THAT(complete({"restart", "--order", ""}), ElementsAre("start-first", "stop-first"));
    EXPECT_THAT(complete({"logs", "web", "-"}), IsSupersetOf({"-f", "--follow", "-n", "--lines", "--json"}));
    EXPECT_THAT(complete({"rollout", "status", "--"}), IsSupersetOf({"--json", "--help"}));
    EXPECT_THAT(complete({"check-config", "--p"}), ElementsAre("--print"));
    EXPECT_THAT(complete({"--t"}), ElementsAre("--timeout"));
    EXPECT_THAT(complete({"scale", "--batch", ""}), IsEmpty());
    EXPECT_THAT(complete({"reexec", "--"}), IsSupersetOf({"--binary", "--json", "--timeout"}));
    EXPECT_THAT(complete({"events", "--"}), IsSupersetOf({"--json", "--help"}));
    EXPECT_THAT(complete({"ev"}), ElementsAre("events"));
}

TEST_F(Completion, ReexecBinaryCompletesFiles)
{
    writeFile(dir_ / "fdsupd-next", "");
    EXPECT_THAT(complete({"reexec", "--binary", (dir_ / "fdsupd-n").string()}),
                ElementsAre((dir_ / "fdsupd-next").string()));
}

TEST_F(Completion, CheckConfigCompletesFiles)
{
    writeFile(dir_ / "fdsupd.toml", "");
    writeFile(dir_ / "other.toml", "");
    EXPECT_THAT(complete({"check-config", (dir_ / "f").string()}),
                ElementsAre((dir_ / "fdsupd.toml").string()));
}

TEST_F(Completion, NoServicesAndNoNoiseWithoutDaemon)
{
    const std::string missing = (dir_ / "none.sock").string();
    EXPECT_THAT(complete({"status", ""}, {"FDSUP_CONTROL=" + missing}), IsEmpty());
    EXPECT_THAT(complete({"-s", missing, "restart", ""}), IsEmpty());
}

TEST_F(Completion, ServiceNamesFromTheDaemon)
{
    DaemonHarness fdsupd;
    std::string why;
    std::string config = fdsupd.supervisorTable() + "\n[socket.web]\nlisten = \"tcp://127.0.0.1:0\"\n";
    for (const char *name : {"web", "web-canary", "api"}) {
        config += std::string("\n[service.") + name + "]\ncommand = " + fdsupd.workerCommand("serve") +
                  "\nsockets = [\"web\"]\n";
    }
    ASSERT_TRUE(fdsupd.start(config, why)) << why;
    const std::string socket = fdsupd.controlPath();
    EXPECT_THAT(complete({"-s", socket, "restart", "w"}), ElementsAre("web", "web-canary"));
    EXPECT_THAT(complete({"logs", ""}, {"FDSUP_CONTROL=" + socket}), ElementsAre("api", "web", "web-canary"));
    EXPECT_THAT(complete({"--socket", socket, "rollout", "status", "a"}), ElementsAre("api"));
    // Only the first argument is a service.
    EXPECT_THAT(complete({"-s", socket, "scale", "web", ""}), IsEmpty());

    // Without python3 the script reads the JSON with sed.
    const auto bin = dir_ / "bin";
    std::filesystem::create_directory(bin);
    std::filesystem::create_symlink("/bin/sed", bin / "sed");
    EXPECT_THAT(complete({"-s", socket, "status", ""}, {}, bin.string()),
                ElementsAre("api", "web", "web-canary"));
    if (HasFailure()) {
        std::cerr << "---- fdsupd log ----\n" << fdsupd.log() << "--------------------\n";
    }
}

} // namespace
} // namespace fdsup::test
