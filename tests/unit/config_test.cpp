// Tests of the configuration language: the corpus under tests/data/config, defaults, includes, rendering.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "config/config.hpp"
#include "fdsup_build_config.h"
#include "test_support.hpp"

namespace fdsup::config {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using test::writeFile;

fs::path corpusDir()
{
    return test::dataDir() / "config";
}

fs::path unitsDir()
{
    const char *dir = std::getenv("FDSUP_UNITS_DIR"); // NOLINT(concurrency-mt-unsafe)
    // tests/data/../../units when run outside meson.
    return dir != nullptr ? fs::path(dir) : (test::dataDir() / ".." / ".." / "units").lexically_normal();
}

// The top-level *.toml files of a corpus directory; subdirectories hold the
// files those include, which are not cases of their own.
std::vector<std::string> corpusCases(const std::string &kind)
{
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto &entry : fs::directory_iterator(corpusDir() / kind, ec)) {
        if (entry.is_regular_file() && entry.path().extension() == ".toml") {
            names.push_back(entry.path().stem().string());
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::string testName(const testing::TestParamInfo<std::string> &info)
{
    std::string name = info.param;
    std::replace_if(
        name.begin(), name.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)); }, '_');
    return name;
}

std::vector<std::string> readLines(const fs::path &path)
{
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    return lines;
}

// Diagnostics with the corpus directory taken out everywhere (including
// locations quoted inside messages), so expectations do not depend on where
// the source tree is.
std::vector<std::string> relativeDiagnostics(const LoadResult &result, const fs::path &dir)
{
    const std::string prefix = dir.string() + "/";
    std::vector<std::string> lines;
    for (const auto &diagnostic : result.diagnostics) {
        std::string line = diagnostic.str();
        for (std::size_t at = line.find(prefix); at != std::string::npos; at = line.find(prefix, at)) {
            line.erase(at, prefix.size());
        }
        lines.push_back(line);
    }
    return lines;
}

std::string joinLines(const std::vector<std::string> &lines)
{
    std::string out;
    for (const auto &line : lines) {
        out += line + "\n";
    }
    return out;
}

// What a configuration means, without where it was written.
Config meaning(Config config)
{
    config.files.clear();
    config.supervisor.where = {};
    for (auto &entry : config.supervisor.access) {
        entry.where = {};
    }
    for (auto &socket : config.sockets) {
        socket.where = {};
    }
    for (auto &service : config.services) {
        service.where = {};
    }
    return config;
}

Config loadOk(std::string_view text, const std::string &baseDir = "/etc/fdsupd")
{
    LoadResult result = loadConfigString(text, "test.toml", baseDir);
    EXPECT_TRUE(result.config.has_value()) << joinLines(relativeDiagnostics(result, "/"));
    return result.config.value_or(Config{});
}

std::vector<std::string> loadErrors(std::string_view text)
{
    LoadResult result = loadConfigString(text, "test.toml", "/etc/fdsupd");
    EXPECT_FALSE(result.config.has_value());
    std::vector<std::string> lines;
    for (const auto &d : result.diagnostics) {
        lines.push_back(d.str());
    }
    return lines;
}

void expectRoundTrip(const Config &original)
{
    const std::string rendered = renderConfig(original);
    LoadResult again = loadConfigString(rendered, "rendered.toml", "/");
    ASSERT_TRUE(again.config.has_value()) << rendered << "\n" << joinLines(relativeDiagnostics(again, "/"));
    // Comparing the renderings first gives a readable diff on failure.
    Config a = meaning(original);
    Config b = meaning(*again.config);
    EXPECT_EQ(renderConfig(a), renderConfig(b));
    EXPECT_TRUE(a == b) << rendered;
}

// ---- the corpus ----

class ValidCorpus : public testing::TestWithParam<std::string> {};

TEST_P(ValidCorpus, LoadsWithoutDiagnostics)
{
    const fs::path dir = corpusDir() / "valid";
    LoadResult result = loadConfig((dir / (GetParam() + ".toml")).string());
    EXPECT_TRUE(result.config.has_value());
    EXPECT_EQ(joinLines(relativeDiagnostics(result, dir)), "");
}

TEST_P(ValidCorpus, RendersToAnEqualConfig)
{
    LoadResult result = loadConfig((corpusDir() / "valid" / (GetParam() + ".toml")).string());
    ASSERT_TRUE(result.config.has_value());
    expectRoundTrip(*result.config);
}

INSTANTIATE_TEST_SUITE_P(Config, ValidCorpus, testing::ValuesIn(corpusCases("valid")), testName);

class InvalidCorpus : public testing::TestWithParam<std::string> {};

TEST_P(InvalidCorpus, ReportsExactlyTheExpectedDiagnostics)
{
    const fs::path dir = corpusDir() / "invalid";
    const fs::path expectedPath = dir / (GetParam() + ".expected");
    ASSERT_TRUE(fs::exists(expectedPath)) << "every invalid case needs its .expected file";
    LoadResult result = loadConfig((dir / (GetParam() + ".toml")).string());
    EXPECT_FALSE(result.config.has_value());
    EXPECT_FALSE(result.diagnostics.empty());
    EXPECT_EQ(joinLines(relativeDiagnostics(result, dir)), joinLines(readLines(expectedPath)));
}

INSTANTIATE_TEST_SUITE_P(Config, InvalidCorpus, testing::ValuesIn(corpusCases("invalid")), testName);

TEST(ConfigCorpus, IsLargeAndEveryExpectationHasItsCase)
{
    EXPECT_GE(corpusCases("valid").size(), 5U);
    EXPECT_GE(corpusCases("invalid").size(), 40U);
    for (const auto &entry : fs::directory_iterator(corpusDir() / "invalid")) {
        if (entry.path().extension() == ".expected") {
            fs::path toml = entry.path();
            toml.replace_extension(".toml");
            EXPECT_TRUE(fs::exists(toml)) << entry.path() << " has no case";
        }
    }
}

// ---- defaults ----

TEST(ConfigDefaults, EmptyFileGivesTheDocumentedSupervisor)
{
    Config config = loadOk("");
    const auto &s = config.supervisor;
    EXPECT_EQ(s.control, FDSUP_DEFAULT_CONTROL);
    EXPECT_EQ(s.controlMode, 0660U);
    EXPECT_TRUE(s.allowUsers.empty());
    EXPECT_TRUE(s.allowGroups.empty());
    EXPECT_EQ(s.logLevel, "info");
    EXPECT_EQ(s.logTarget, LogTarget::Console);
    EXPECT_EQ(s.limits.nofile, 0U);
    EXPECT_EQ(s.limits.heldConnections, 65536U);
    EXPECT_EQ(s.limits.heldConnectionsPerService, 16384U);
    EXPECT_EQ(s.limits.stateSize, 64U * 1024);
    EXPECT_EQ(s.limits.controlRequestSize, 1024U * 1024);
    EXPECT_EQ(s.limits.controlClients, 64U);
    EXPECT_TRUE(config.sockets.empty());
    EXPECT_TRUE(config.services.empty());
    EXPECT_EQ(config.files, std::vector<std::string>{"test.toml"});
}

TEST(ConfigDefaults, ServiceAndSocket)
{
    Config config = loadOk(R"(
[socket.web]
listen = "tcp://127.0.0.1:8080"

[service.web]
command = ["app"]
sockets = ["web"]
)");
    ASSERT_EQ(config.sockets.size(), 1U);
    const SocketConfig &socket = config.sockets[0];
    EXPECT_EQ(socket.name, "web");
    ASSERT_EQ(socket.listen.size(), 1U);
    EXPECT_EQ(formatAddress(socket.listen[0]), "tcp://127.0.0.1:8080");
    EXPECT_EQ(socket.options, SocketOptions{});
    EXPECT_EQ(socket.where, (Location{"test.toml", 2, 1}));

    ASSERT_EQ(config.services.size(), 1U);
    const ServiceConfig &s = config.services[0];
    EXPECT_EQ(s.command, std::vector<std::string>{"app"}); // bare name: PATH at spawn
    EXPECT_TRUE(s.environment.empty());
    EXPECT_EQ(s.workingDirectory, "/");
    EXPECT_FALSE(s.user.has_value());
    EXPECT_FALSE(s.group.has_value());
    EXPECT_EQ(s.umask, 0022U);
    EXPECT_TRUE(s.limits.empty());
    EXPECT_FALSE(s.noNewPrivileges);
    EXPECT_EQ(s.sockets, std::vector<std::string>{"web"});
    EXPECT_EQ(s.instances, 1U);
    EXPECT_EQ(s.activation, Activation::ListenFds);
    EXPECT_EQ(s.ready, Readiness::Notify);
    EXPECT_EQ(s.restart, RestartPolicy::OnFailure);
    EXPECT_EQ(s.restartDelay, std::chrono::milliseconds(100));
    EXPECT_EQ(s.restartDelayMax, std::chrono::seconds(30));
    EXPECT_EQ(s.startLimitBurst, 5U);
    EXPECT_EQ(s.startLimitInterval, std::chrono::seconds(10));
    EXPECT_EQ(s.startTimeout, std::chrono::seconds(5));
    EXPECT_EQ(s.readyTimeout, std::chrono::seconds(30));
    EXPECT_EQ(s.drainTimeout, std::chrono::seconds(30));
    EXPECT_EQ(s.stopTimeout, std::chrono::seconds(10));
    EXPECT_EQ(s.watchdogTimeout, Duration::zero());
    EXPECT_EQ(s.stopSignal, SIGTERM);
    EXPECT_EQ(s.drainSignal, SIGTERM);
    EXPECT_EQ(s.killMode, KillMode::ProcessGroup);
    EXPECT_EQ(s.output, OutputMode::Log);
    EXPECT_FALSE(s.handoff);
    EXPECT_EQ(s.rolloutBatch, 1U);
    EXPECT_EQ(s.rolloutOrder, RolloutOrder::StartFirst);
    EXPECT_EQ(s.where, (Location{"test.toml", 5, 1}));
}

TEST(ConfigDefaults, RestartDelayAloneRaisesTheCap)
{
    Config config = loadOk("[service.a]\ncommand = [\"a\"]\nrestart_delay = \"1m\"\n");
    ASSERT_EQ(config.services.size(), 1U);
    EXPECT_EQ(config.services[0].restartDelayMax, std::chrono::minutes(1));
}

TEST(ConfigValues, LimitsFormsAndOctal)
{
    Config config = loadOk(R"(
[supervisor]
control_mode = 0o600
[supervisor.limits]
nofile = "max"
[service.a]
command = ["a"]
umask = "077"
[service.a.limits]
nofile = { soft = 1024, hard = 4096 }
core = "infinity"
memlock = "64MiB"
cpu = "2m"
)");
    EXPECT_EQ(config.supervisor.controlMode, 0600U);
    ASSERT_EQ(config.services.size(), 1U);
    const auto &s = config.services[0];
    EXPECT_EQ(s.umask, 077U);
    ASSERT_EQ(s.limits.size(), 4U); // sorted by name
    EXPECT_EQ(s.limits[0], (ResourceLimit{RLIMIT_CORE, RLIM_INFINITY, RLIM_INFINITY}));
    EXPECT_EQ(s.limits[1], (ResourceLimit{RLIMIT_CPU, 120, 120}));
    EXPECT_EQ(s.limits[2], (ResourceLimit{RLIMIT_MEMLOCK, 64U << 20, 64U << 20}));
    EXPECT_EQ(s.limits[3], (ResourceLimit{RLIMIT_NOFILE, 1024, 4096}));
    EXPECT_EQ(resourceLimitName(RLIMIT_NOFILE), "nofile");
}

TEST(ConfigValues, DiagnosticsComeInFileThenLineOrderWithColumns)
{
    EXPECT_EQ(
        loadErrors("[service.b]\ninstances = true\n[service.a]\ncommand = \"x\"\ncommand2 = 1\n"),
        (std::vector<std::string>{
            "test.toml:1:1: missing required key 'command' in [service.b]",
            "test.toml:2:13: 'instances' must be an integer, not a boolean",
            "test.toml:4:11: 'command' must be an array of strings (argv), not a string; write command = "
            "[\"x\"]",
            "test.toml:5:1: unknown key 'command2' in [service.a]; did you mean 'command'?",
        }));
}

TEST(ConfigValues, UnreadableMainFile)
{
    TempDir dir;
    LoadResult result = loadConfig((dir / "missing.toml").string());
    ASSERT_EQ(result.diagnostics.size(), 1U);
    EXPECT_EQ(result.diagnostics[0].where.line, 0U);
    EXPECT_EQ(result.diagnostics[0].str(),
              (dir / "missing.toml").string() + ": cannot read: No such file or directory");
}

// ---- includes and paths ----

TEST(ConfigInclude, GlobsExpandInByteOrderAndNestedIncludesAreRelative)
{
    TempDir dir;
    fs::create_directories(dir / "conf.d");
    fs::create_directories(dir / "lib");
    writeFile(dir / "main.toml", "include = [\"conf.d/*.toml\", \"lib/last.toml\"]\n"
                                 "[socket.main]\nlisten = \"tcp://127.0.0.1:0\"\n");
    // Byte order, not natural or locale order: "10" < "9" < "B" < "a".
    for (std::string name : {"a", "B", "9", "10"}) {
        writeFile(dir / "conf.d" / (name + ".toml"),
                  "[socket.s" + name + "]\nlisten = \"tcp://127.0.0.1:0\"\n");
    }
    writeFile(dir / "conf.d" / "ignored.txt", "not toml");
    // Relative to lib/, not to the main file or the working directory.
    writeFile(dir / "lib" / "last.toml", "include = [\"inner/x.toml\"]\n");
    fs::create_directories(dir / "lib" / "inner");
    writeFile(dir / "lib" / "inner" / "x.toml", "[service.x]\ncommand = [\"./run.sh\"]\n");

    const std::string main = (dir / "main.toml").string();
    LoadResult result = loadConfig(main);
    ASSERT_TRUE(result.config.has_value()) << joinLines(relativeDiagnostics(result, dir.path()));
    const Config &config = *result.config;
    const std::string d = dir.path().string() + "/";
    EXPECT_EQ(config.files,
              (std::vector<std::string>{main, d + "conf.d/10.toml", d + "conf.d/9.toml", d + "conf.d/B.toml",
                                        d + "conf.d/a.toml", d + "lib/last.toml", d + "lib/inner/x.toml"}));
    std::vector<std::string> sockets;
    for (const auto &s : config.sockets) {
        sockets.push_back(s.name);
    }
    EXPECT_EQ(sockets, (std::vector<std::string>{"main", "s10", "s9", "sB", "sa"}));
    ASSERT_EQ(config.services.size(), 1U);
    // A program path with a '/' is relative to the file it is written in.
    EXPECT_EQ(config.services[0].command[0], d + "lib/inner/run.sh");
    EXPECT_EQ(config.services[0].where, (Location{d + "lib/inner/x.toml", 1, 1}));
}

TEST(ConfigInclude, NamesInMessagesFollowThePathAsGiven)
{
    TempDir dir;
    fs::create_directories(dir / "etc" / "conf.d");
    writeFile(dir / "etc" / "main.toml", "include = [\"conf.d/*.toml\"]\n");
    writeFile(dir / "etc" / "conf.d" / "web.toml", "[socket.web]\nlisten = 1\n");
    LoadResult result = loadConfig((dir / "etc" / "main.toml").string());
    ASSERT_EQ(result.diagnostics.size(), 1U);
    EXPECT_EQ(result.diagnostics[0].where, (Location{(dir / "etc" / "conf.d" / "web.toml").string(), 2, 10}));
}

TEST(ConfigInclude, OnlyRegularFilesAreRead)
{
    // /dev/null would read as an empty file, but a FIFO or a terminal would
    // block: anything but a regular file is refused, or skipped by a glob.
    EXPECT_EQ(loadErrors("include = [\"/dev/null\"]\n"),
              std::vector<std::string>{"test.toml:1:12: 'include': '/dev/null' is not a regular file"});
    Config config = loadOk("include = [\"/dev/nul?\"]\n");
    EXPECT_EQ(config.files, std::vector<std::string>{"test.toml"});
}

TEST(ConfigInclude, StringDocumentsResolveAgainstBaseDir)
{
    TempDir dir;
    writeFile(dir / "sockets.toml", "[socket.web]\nlisten = \"unix:run/web.sock\"\n");
    LoadResult result =
        loadConfigString("include = [\"sockets.toml\"]\n[supervisor]\ncontrol = \"ctl.sock\"\n",
                         "inline.toml", dir.path().string());
    ASSERT_TRUE(result.config.has_value()) << joinLines(relativeDiagnostics(result, dir.path()));
    const Config &config = *result.config;
    EXPECT_EQ(config.files, (std::vector<std::string>{"inline.toml", "sockets.toml"}));
    EXPECT_EQ(config.supervisor.control, (dir / "ctl.sock").string());
    ASSERT_EQ(config.sockets.size(), 1U);
    EXPECT_EQ(formatAddress(config.sockets[0].listen[0]), "unix:" + (dir / "run" / "web.sock").string());
}

TEST(ConfigInclude, LoadingTouchesNothing)
{
    TempDir dir;
    writeFile(dir / "main.toml", "[supervisor]\ncontrol = \"control.sock\"\n"
                                 "[socket.a]\nlisten = \"unix:a.sock\"\nmode = \"0600\"\n"
                                 "[service.a]\ncommand = [\"./a\"]\nsockets = [\"a\"]\n");
    const int fds = test::countOpenFds();
    LoadResult result = loadConfig((dir / "main.toml").string());
    ASSERT_TRUE(result.config.has_value());
    EXPECT_EQ(test::countOpenFds(), fds);
    std::vector<std::string> entries;
    for (const auto &entry : fs::directory_iterator(dir.path())) {
        entries.push_back(entry.path().filename().string());
    }
    EXPECT_EQ(entries, std::vector<std::string>{"main.toml"});
}

TEST(ConfigInclude, ResultDoesNotDependOnTheEnvironment)
{
    const std::string text =
        "[socket.web]\nlisten = \"tcp://localhost:8080\"\n"
        "[service.web]\ncommand = [\"app\"]\nsockets = [\"web\"]\npass_environment = [\"TZ\"]\n";
    Config before = loadOk(text);
    // Variables a daemon or its tests commonly see; none may leak in.
    const std::vector<std::pair<const char *, const char *>> vars{{"FDSUP_CONTROL", "/tmp/other.sock"},
                                                                  {"FDSUP_CONFIG", "/tmp/other.toml"},
                                                                  {"LISTEN_FDS", "3"},
                                                                  {"LISTEN_PID", "1"},
                                                                  {"NOTIFY_SOCKET", "/tmp/notify"},
                                                                  {"PATH", "/nonexistent"},
                                                                  {"TZ", "UTC"},
                                                                  {"HOME", "/nonexistent"}};
    // The tests run on one thread, so changing the environment is safe here.
    std::vector<std::pair<std::string, std::optional<std::string>>> saved;
    for (const auto &[name, value] : vars) {
        const char *old = std::getenv(name); // NOLINT(concurrency-mt-unsafe)
        saved.emplace_back(name, old != nullptr ? std::optional<std::string>(old) : std::nullopt);
        setenv(name, value, 1); // NOLINT(concurrency-mt-unsafe)
    }
    Config after = loadOk(text);
    for (const auto &[name, value] : saved) {
        if (value) {
            setenv(name.c_str(), value->c_str(), 1); // NOLINT(concurrency-mt-unsafe)
        } else {
            unsetenv(name.c_str()); // NOLINT(concurrency-mt-unsafe)
        }
    }
    EXPECT_TRUE(before == after);
    EXPECT_EQ(renderConfig(before), renderConfig(after));
}

// ---- rendering ----

TEST(ConfigRender, QuotesStringsAndKeys)
{
    Config config = loadOk(R"(
[service.weird]
command = ["/bin/echo", "quote \" backslash \\ tab \t newline \n bell \u0007 del \u007f é"]
environment = { "dotted.name" = "a=b", "with space" = "", PLAIN = "#not a comment" }
)");
    const std::string rendered = renderConfig(config);
    EXPECT_NE(rendered.find(R"("quote \" backslash \\ tab \t newline \n bell \u0007 del \u007F é")"),
              std::string::npos)
        << rendered;
    EXPECT_NE(rendered.find(R"("dotted.name" = "a=b")"), std::string::npos) << rendered;
    expectRoundTrip(config);
}

TEST(ConfigRender, ShowsDefaultsAndIsStable)
{
    Config config = loadOk("[service.a]\ncommand = [\"a\"]\n");
    const std::string rendered = renderConfig(meaning(config));
    const std::vector<std::string> lines{
        std::string("control = \"") + FDSUP_DEFAULT_CONTROL + "\"",
        "control_mode = \"0660\"",
        "nofile = \"max\"",
        "instances = 1",
        "ready = \"notify\"",
        "drain_timeout = \"30s\"",
        "watchdog_timeout = \"0s\"",
        "stop_signal = \"SIGTERM\"",
        "handoff = false",
        "working_directory = \"/\"",
        "rollout_order = \"start-first\"",
    };
    for (const std::string &line : lines) {
        EXPECT_NE(rendered.find(std::string("\n") + line + "\n"), std::string::npos) << line << "\n"
                                                                                     << rendered;
    }
    LoadResult again = loadConfigString(rendered, "again.toml", "/");
    ASSERT_TRUE(again.config.has_value());
    EXPECT_EQ(renderConfig(meaning(*again.config)), rendered);
}

// ---- signals ----

TEST(ConfigSignals, NamesRoundTrip)
{
    EXPECT_EQ(signalFromName("SIGTERM"), SIGTERM);
    EXPECT_EQ(signalFromName("TERM"), SIGTERM);
    EXPECT_EQ(signalFromName("QUIT"), SIGQUIT);
    EXPECT_EQ(signalFromName("SIGRTMIN"), SIGRTMIN);
    EXPECT_EQ(signalFromName("SIGRTMIN+2"), SIGRTMIN + 2);
    EXPECT_EQ(signalFromName("SIGRTMAX-1"), SIGRTMAX - 1);
    EXPECT_EQ(signalFromName("SIGRTMIN+99"), -1);
    EXPECT_EQ(signalFromName("sigterm"), -1);
    EXPECT_EQ(signalFromName("SIGFOO"), -1);
    EXPECT_EQ(signalFromName(""), -1);
    EXPECT_EQ(signalName(SIGKILL), "SIGKILL");
    EXPECT_EQ(signalName(SIGRTMIN + 3), "SIGRTMIN+3");
    EXPECT_EQ(signalName(0), "");
    for (std::string_view name : signalNames()) {
        EXPECT_EQ(signalName(signalFromName(name)), name);
    }
}

// ---- shipped unit files ----

TEST(ConfigUnits, DemoAndExamplesLoad)
{
    std::vector<fs::path> files{unitsDir() / "demo.toml"};
    for (const auto &entry : fs::directory_iterator(unitsDir() / "examples")) {
        if (entry.path().extension() == ".toml") {
            files.push_back(entry.path());
        }
    }
    EXPECT_GE(files.size(), 4U);
    for (const auto &file : files) {
        SCOPED_TRACE(file.string());
        LoadResult result = loadConfig(file.string());
        EXPECT_TRUE(result.config.has_value());
        EXPECT_EQ(joinLines(relativeDiagnostics(result, file.parent_path())), "");
        if (result.config) {
            expectRoundTrip(*result.config);
        }
    }
}

TEST(ConfigUnits, DemoWorkerIsNextToTheDemo)
{
    LoadResult result = loadConfig((unitsDir() / "demo.toml").string());
    ASSERT_TRUE(result.config.has_value());
    for (const auto &service : result.config->services) {
        SCOPED_TRACE(service.name);
        ASSERT_FALSE(service.command.empty());
        if (service.command[0].find('/') == std::string::npos) {
            continue;
        }
        EXPECT_TRUE(fs::exists(service.command[0])) << service.command[0];
        EXPECT_EQ(access(service.command[0].c_str(), X_OK), 0) << service.command[0] << " is not executable";
    }
}

} // namespace
} // namespace fdsup::config
