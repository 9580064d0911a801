// The systemd suite, Type=notify-reload: the packaged unit under systemd 254 from bookworm-backports (the
// host's 252 has no notify-reload), in a private mount namespace.
#include <cstdlib>
#include <future>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"
#include "user_manager.hpp"

namespace fdsup::test {
namespace {

using std::chrono::seconds;

const char *const kUnit = "fdsupd.service";

// The packaged unit with Type=notify-reload and no ExecReload= (systemd
// then reloads with SIGHUP and waits for RELOADING=1 ... READY=1). Throws
// when the template has no such lines: the test must run what we ship.
std::string notifyReloadUnit(const std::string &config, const std::string &control)
{
    std::string unit;
    bool typed = false;
    bool execReload = false;
    std::istringstream lines(packagedUnit(config, control));
    for (std::string line; std::getline(lines, line);) {
        if (line == "Type=notify") {
            line = "Type=notify-reload";
            typed = true;
        } else if (line.starts_with("ExecReload=")) {
            execReload = true;
            continue;
        }
        unit += line + '\n';
    }
    if (!typed || !execReload) {
        throw std::runtime_error("the packaged unit has no Type=notify or no ExecReload= line: " + unit);
    }
    return unit;
}

class NotifyReload : public ManagedUnitTest<NotifyReload> {
    friend class ManagedUnitTest<NotifyReload>; // its hooks

protected:
    // The backports tree is fetched by .ci/backports-systemd, which CI runs:
    // there, its absence is a failure; elsewhere the suite is skipped.
    static void startManager()
    {
        std::string where;
        const auto binaries = UserManager::backportsSystemd(where);
        if (!binaries) {
            const char *ci = std::getenv("CI");
            (ci != nullptr && std::string(ci) == "true" ? fail_ : skip_) =
                "systemd 254 is not unpacked in '" + where + "' (run .ci/backports-systemd)";
            return;
        }
        manager_ = std::make_unique<UserManager>(*binaries);
    }

    [[nodiscard]] std::string readyFile(const std::string &name) const { return (dir_ / name).string(); }

    // A socket and a 1-instance sd-worker service named `name`, that says
    // READY=1 once readyFile(name + "-ready") exists.
    [[nodiscard]] std::string service(const std::string &name) const
    {
        return "\n[socket." + name + "]\nlisten = \"tcp://127.0.0.1:0\"\n\n[service." + name +
               "]\ncommand = [" + quoted(requireEnv("FDSUP_TEST_SD_WORKER")) + ", \"--ready-file\", " +
               quoted(readyFile(name + "-ready")) + "]\nsockets = [" + quoted(name) +
               "]\nready = \"notify\"\nready_timeout = \"5min\"\n";
    }
    void writeConfig(const std::vector<std::string> &services) const
    {
        std::string config = "[supervisor]\ncontrol = " + quoted(control()) + "\nlog_level = \"debug\"\n";
        for (const auto &name : services) {
            config += service(name);
        }
        writeFile(dir_ / "fdsupd.toml", config);
    }
    void installUnit() const
    {
        manager_->installUnit(kUnit, notifyReloadUnit((dir_ / "fdsupd.toml").string(), control()));
    }
    // Installs and starts the unit with web and api ready: it is active.
    void startReady() const
    {
        writeFile(readyFile("web-ready"), "");
        writeFile(readyFile("api-ready"), "");
        writeConfig({"web", "api"});
        installUnit();
        const auto started = manager_->systemctl({"start", kUnit});
        ASSERT_EQ(started.exitCode, 0) << started.err << journal();
        ASSERT_EQ(manager_->property(kUnit, "ActiveState"), "active");
    }

    // `fdsupctl ARGS --json`, parsed; null when it fails.
    [[nodiscard]] nlohmann::json fdsupctl(std::vector<std::string> args) const
    {
        args.insert(args.begin(), {requireEnv("FDSUPCTL"), "-s", control()});
        args.emplace_back("--json");
        const ProcessResult r = runProcess(args);
        return r.exitCode == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
    }
    // The states of a service's instances ("starting", "ready"...).
    [[nodiscard]] std::vector<std::string> states(const std::string &name) const
    {
        std::vector<std::string> states;
        const nlohmann::json status = fdsupctl({"status", name});
        if (status.is_object()) {
            for (const auto &instance : status.at("services").at(0).at("instances")) {
                states.push_back(instance.at("state"));
            }
        }
        return states;
    }
    [[nodiscard]] int port(const std::string &name) const
    {
        const nlohmann::json sockets = fdsupctl({"sockets"});
        for (const auto &socket : sockets.at("sockets")) {
            if (socket.at("name") == name) {
                const std::string address = socket.at("bound").at(0).at("address");
                return std::stoi(address.substr(address.rfind(':') + 1));
            }
        }
        throw std::runtime_error("no socket " + name);
    }
    // Whether a worker of the service behind the socket answers GET /.
    [[nodiscard]] bool answers(const std::string &name) const
    {
        return runProcess({"/usr/bin/curl", "-sS", "-o", "/dev/null", "--max-time", "10",
                           "http://127.0.0.1:" + std::to_string(port(name)) + "/"})
                   .exitCode == 0;
    }
    [[nodiscard]] std::string journal() const
    {
        return "\n--- journal:\n" +
               runProcess(
                   {"/usr/bin/journalctl", "-D", manager_->journalDir().string(), "--no-pager", "-n", "80"})
                   .out +
               manager_->systemctl({"status", "-l", "-n", "40", kUnit}).out + manager_->log();
    }
};

TEST_F(NotifyReload, ActiveOnlyOnceEveryServiceIsReady)
{
    writeConfig({"web", "api"});
    installUnit();
    ASSERT_EQ(manager_->property(kUnit, "Type"), "notify-reload");
    ASSERT_EQ(manager_->property(kUnit, "ExecReload"), ""); // systemd sends SIGHUP
    ASSERT_EQ(manager_->systemctl({"start", "--no-block", kUnit}).exitCode, 0);
    ASSERT_TRUE(waitUntil([&] { return states("api") == std::vector<std::string>{"starting"}; }))
        << journal();
    // web ready, api not: fdsupd has not said READY=1, the unit is activating.
    writeFile(readyFile("web-ready"), "");
    ASSERT_TRUE(waitUntil([&] { return states("web") == std::vector<std::string>{"ready"}; })) << journal();
    EXPECT_EQ(states("api"), std::vector<std::string>{"starting"});
    EXPECT_EQ(manager_->property(kUnit, "ActiveState"), "activating");
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "1/2 services running");
    writeFile(readyFile("api-ready"), "");
    EXPECT_TRUE(manager_->waitProperty(kUnit, "ActiveState", "active")) << journal();
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "2/2 services running");
    EXPECT_TRUE(answers("web"));
    EXPECT_TRUE(answers("api"));
}

TEST_F(NotifyReload, ReloadReturnsOnceTheNewConfigurationIsInForce)
{
    startReady();
    const std::string mainPid = manager_->property(kUnit, "MainPID");
    writeConfig({"web", "api", "extra"}); // extra waits for extra-ready
    auto reload = std::async(std::launch::async, [&] { return manager_->systemctl({"reload", kUnit}); });
    // systemd sent SIGHUP; fdsupd's RELOADING=1 holds the unit in "reloading".
    EXPECT_TRUE(manager_->waitProperty(kUnit, "ActiveState", "reloading")) << journal();
    ASSERT_TRUE(waitUntil([&] { return states("extra") == std::vector<std::string>{"starting"}; }))
        << journal();
    EXPECT_EQ(reload.wait_for(seconds(0)), std::future_status::timeout); // not before extra is ready
    writeFile(readyFile("extra-ready"), "");
    const ProcessResult done = reload.get();
    ASSERT_EQ(done.exitCode, 0) << done.out << done.err << journal();
    // When `systemctl reload` returns, the added service answers.
    EXPECT_TRUE(answers("extra"));
    EXPECT_EQ(manager_->property(kUnit, "ActiveState"), "active");
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "3/3 services running");
    EXPECT_EQ(manager_->property(kUnit, "MainPID"), mainPid);
}

// systemd 254 cannot hear that a notify-reload failed: READY=1 ends the
// reload, and it ends it as a success. So `systemctl reload` succeeds; what
// holds is fdsupd's own rule, that an invalid file changes nothing. (Hence
// the packaged unit's ExecReload=fdsupctl reload, which fails.)
TEST_F(NotifyReload, AnInvalidFileIsReportedAsReloadedAndChangesNothing)
{
    startReady();
    const std::string mainPid = manager_->property(kUnit, "MainPID");
    writeFile(dir_ / "fdsupd.toml", "[supervisor]\nthis is not toml\n");
    const ProcessResult r = manager_->systemctl({"reload", kUnit});
    EXPECT_EQ(r.exitCode, 0) << r.out << r.err;
    EXPECT_EQ(manager_->property(kUnit, "ActiveState"), "active");
    EXPECT_EQ(manager_->property(kUnit, "StatusText"), "2/2 services running");
    EXPECT_EQ(manager_->property(kUnit, "MainPID"), mainPid);
    // The file had no service: both still run and answer, as before.
    const nlohmann::json status = fdsupctl({"status"});
    ASSERT_TRUE(status.is_object());
    EXPECT_EQ(status.at("services").size(), 2U) << status.dump();
    EXPECT_EQ(states("web"), std::vector<std::string>{"ready"});
    EXPECT_EQ(states("api"), std::vector<std::string>{"ready"});
    EXPECT_TRUE(answers("web"));
    EXPECT_TRUE(answers("api"));
}

} // namespace
} // namespace fdsup::test
