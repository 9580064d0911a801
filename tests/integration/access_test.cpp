// Per-command access and the audit line against a real fdsupd, with real unprivileged users running fdsupctl.
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using ::testing::HasSubstr;

// Exit codes of fdsupctl, from docs/fdsupctl.md.
constexpr int kOk = 0;
constexpr int kRefused = 4;

// Users and groups made for this run (unique names, removed at the end):
// a monitoring group with a member who has it as a supplementary group
// only, a deploy user, and a user in no list at all.
struct Accounts {
    std::string prefix = "fdsac" + std::to_string(getpid());
    std::string monitoring = prefix + "mon";
    std::string monitor = prefix + "m";
    std::string deploy = prefix + "d";
    std::string stranger = prefix + "s";
    bool made = false;

    static bool run(const std::vector<std::string> &argv)
    {
        const auto r = runProcess(argv);
        EXPECT_EQ(r.exitCode, 0) << argv[0] << ": " << r.err;
        return r.exitCode == 0;
    }
    static std::vector<std::string> user(const std::string &name)
    {
        return {"/usr/sbin/useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                "--user-group",      name};
    }
    void make()
    {
        made = run({"/usr/sbin/groupadd", "--system", monitoring});
        auto monitorArgs = user(monitor);
        monitorArgs.insert(monitorArgs.end() - 1, {"--groups", monitoring});
        made = run(monitorArgs) && made;
        made = run(user(deploy)) && made;
        made = run(user(stranger)) && made;
    }
    void remove() const
    {
        for (const auto &name : {monitor, deploy, stranger}) {
            (void)runProcess({"/usr/sbin/userdel", name});
        }
        (void)runProcess({"/usr/sbin/groupdel", monitoring});
    }
    static uid_t uidOf(const std::string &name)
    {
        const passwd *pw = getpwnam(name.c_str());
        return pw == nullptr ? static_cast<uid_t>(-1) : pw->pw_uid;
    }
};

Accounts &accounts()
{
    static Accounts a;
    return a;
}

class Access : public DaemonTest<> {
public:
    static void SetUpTestSuite()
    {
        if (geteuid() == 0) {
            accounts().make();
        }
    }
    static void TearDownTestSuite()
    {
        if (geteuid() == 0) {
            accounts().remove();
        }
    }

protected:
    void SetUp() override
    {
        if (geteuid() != 0) {
            GTEST_SKIP() << "creates users and runs fdsupctl as them: needs root";
        }
        ASSERT_TRUE(accounts().made);
    }

    // monitoring: read; deploy: operate over web only; `extra` appended.
    std::string config(const std::string &extra = "") const
    {
        const Accounts &a = accounts();
        std::string text = "[supervisor]\ncontrol = " + quoted(fdsupd_.controlPath()) +
                           "\nlog_level = \"debug\"\ncontrol_mode = \"0666\"\n"
                           "[[supervisor.access]]\ngroups = [" +
                           quoted(a.monitoring) + "]\nrights = [\"read\"]\n[[supervisor.access]]\nusers = [" +
                           quoted(a.deploy) + "]\nrights = [\"operate\"]\nservices = [\"web\"]\n" + extra;
        for (const std::string name : {"web", "api"}) {
            text += "[socket." + name + "]\nlisten = \"tcp://127.0.0.1:0\"\n[service." + name +
                    "]\ncommand = " + fdsupd_.workerCommand("serve") + "\nsockets = [" + quoted(name) + "]\n";
        }
        return text;
    }

    void startDaemon()
    {
        // mkdtemp() made the directory 0700: the socket's own mode must decide.
        std::filesystem::permissions(fdsupd_.dir().path(), std::filesystem::perms(0755));
        std::string why;
        ASSERT_TRUE(fdsupd_.start(config(), why)) << why;
    }

    struct Run {
        ProcessResult result;
        std::string pid;     // fdsupctl's
        std::string command; // its command line as the audit line shows it
    };

    // fdsupctl as `user` with the groups of /etc/group (--init-groups); the
    // shell prints its pid, which exec keeps for setpriv and then fdsupctl.
    Run ctlAs(const std::string &user, const std::vector<std::string> &args)
    {
        std::vector<std::string> argv{"/bin/sh", "-c", "echo $$ >&2; exec \"$@\"", "sh"};
        if (!user.empty()) {
            argv.insert(argv.end(),
                        {"/usr/bin/setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--"});
        }
        std::vector<std::string> ctl{requireEnv("FDSUPCTL"), "-s", fdsupd_.controlPath()};
        ctl.insert(ctl.end(), args.begin(), args.end());
        argv.insert(argv.end(), ctl.begin(), ctl.end());
        Run run{runProcess(argv), "", ""};
        run.pid = run.result.err.substr(0, run.result.err.find('\n'));
        run.result.err.erase(0, run.pid.size() + 1);
        for (const auto &word : ctl) {
            run.command += (run.command.empty() ? "" : " ") + word;
        }
        return run;
    }

    // The one audit line of this run's call.
    std::string auditLineOf(const Run &run)
    {
        std::string found;
        const std::string log = fdsupd_.log();
        const std::string mark = " pid=" + run.pid + " ";
        std::istringstream lines(log);
        for (std::string line; std::getline(lines, line);) {
            if (line.find("audit: ") != std::string::npos && line.find(mark) != std::string::npos) {
                EXPECT_EQ(found, "") << "two audit lines for pid " << run.pid;
                found = line;
            }
        }
        return found;
    }

    std::vector<int> pidsOf(const std::string &service)
    {
        std::vector<int> pids;
        const nlohmann::json status = fdsupd_.status(service); // outlives the loop
        for (const auto &instance : status.at("instances")) {
            pids.push_back(instance.at("pid").get<int>());
        }
        return pids;
    }
};

TEST_F(Access, MonitoringReadsButARestartIsRefusedNamingTheRightAndNothingChanges)
{
    startDaemon();
    const Accounts &a = accounts();
    const auto uid = std::to_string(Accounts::uidOf(a.monitor));
    // The monitoring group is only a supplementary group of the monitor user.
    const auto status = ctlAs(a.monitor, {"status"});
    EXPECT_EQ(status.result.exitCode, kOk) << status.result.err;
    EXPECT_THAT(status.result.out, HasSubstr("api"));
    EXPECT_EQ(ctlAs(a.monitor, {"logs", "web"}).result.exitCode, kOk);
    EXPECT_EQ(auditLineOf(status), "") << "a read that succeeds is not audited";

    const auto before = pidsOf("web");
    const auto restart = ctlAs(a.monitor, {"restart", "web"});
    EXPECT_EQ(restart.result.exitCode, kRefused) << restart.result.out << restart.result.err;
    EXPECT_EQ(restart.result.err,
              "fdsupctl: permission denied: restart of 'web' needs the right 'operate' (or "
              "'restart'); uid " +
                  uid + " has: read\n");
    EXPECT_EQ(pidsOf("web"), before);
    EXPECT_TRUE(fdsupd_.call("io.fdsup.Manager.RolloutStatus", {{"service", "web"}})
                    .parameters.at("rollout")
                    .is_null());

    const std::string line = auditLineOf(restart);
    EXPECT_THAT(line, HasSubstr("audit: uid=" + uid + " pid=" + restart.pid + " cmd=\"" + restart.command +
                                "\" method=Restart service=web params="));
    EXPECT_THAT(line, HasSubstr("result=denied: restart of 'web' needs the right 'operate'"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Access, DeployRestartsWebButNotApiAndDoesNotReload)
{
    startDaemon();
    const Accounts &a = accounts();
    const auto uid = std::to_string(Accounts::uidOf(a.deploy));
    const auto before = pidsOf("web");
    const auto web = ctlAs(a.deploy, {"restart", "web", "--wait"});
    EXPECT_EQ(web.result.exitCode, kOk) << web.result.err;
    EXPECT_NE(pidsOf("web"), before);
    EXPECT_THAT(auditLineOf(web),
                HasSubstr("audit: uid=" + uid + " pid=" + web.pid + " cmd=\"" + web.command +
                          "\" method=Restart service=web params={\"wait\":true} result=ok"));

    const auto apiBefore = pidsOf("api");
    const auto api = ctlAs(a.deploy, {"restart", "api"});
    EXPECT_EQ(api.result.exitCode, kRefused);
    EXPECT_THAT(api.result.err, HasSubstr("restart of 'api' needs the right 'operate' (or 'restart'); uid " +
                                          uid + " has: operate on 'web'"));
    EXPECT_EQ(pidsOf("api"), apiBefore);
    EXPECT_THAT(auditLineOf(api), HasSubstr("method=Restart service=api"));

    const auto reload = ctlAs(a.deploy, {"reload"});
    EXPECT_EQ(reload.result.exitCode, kRefused);
    EXPECT_THAT(reload.result.err,
                HasSubstr("reload needs the right 'admin' (or 'reload') over every service"));
    EXPECT_THAT(auditLineOf(reload),
                HasSubstr("method=Reload service=- params={} result=denied: reload needs"));
    // Limited to web: a service-less read is refused too, one naming web is not.
    EXPECT_EQ(ctlAs(a.deploy, {"status"}).result.exitCode, kRefused);
    EXPECT_EQ(ctlAs(a.deploy, {"status", "web"}).result.exitCode, kOk);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Access, RootReloadsAndAReloadChangesWhoMayDoWhat)
{
    startDaemon();
    const Accounts &a = accounts();
    ASSERT_EQ(ctlAs(a.monitor, {"stop", "api"}).result.exitCode, kRefused);
    // monitoring may now operate on api too.
    writeFile(fdsupd_.dir() / "fdsupd.toml",
              config("[[supervisor.access]]\ngroups = [" + quoted(a.monitoring) +
                     "]\nrights = [\"stop\", \"start\"]\nservices = [\"api\"]\n"));
    const auto reload = ctlAs("", {"reload"});
    EXPECT_EQ(reload.result.exitCode, kOk) << reload.result.err;
    EXPECT_THAT(auditLineOf(reload), HasSubstr("audit: uid=0 pid=" + reload.pid + " cmd=\"" + reload.command +
                                               "\" method=Reload service=- params={} result=ok"));
    const auto stop = ctlAs(a.monitor, {"stop", "api"});
    EXPECT_EQ(stop.result.exitCode, kOk) << stop.result.err;
    EXPECT_EQ(fdsupd_.status("api").at("state"), "stopped");
    EXPECT_THAT(auditLineOf(stop), HasSubstr("method=Stop service=api params={} result=ok"));
    EXPECT_EQ(ctlAs(a.monitor, {"stop", "web"}).result.exitCode, kRefused);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Access, ACallerInNoListIsRefusedAndAuditedAndAFailedCallIsAuditedWithItsError)
{
    startDaemon();
    const Accounts &a = accounts();
    const auto stranger = ctlAs(a.stranger, {"status"});
    EXPECT_EQ(stranger.result.exitCode, kRefused);
    EXPECT_THAT(auditLineOf(stranger), HasSubstr("uid=" + std::to_string(Accounts::uidOf(a.stranger)) +
                                                 " pid=" + stranger.pid + " cmd=\"" + stranger.command +
                                                 "\" method=io.fdsup.Manager.Status service=- params={} "
                                                 "result=denied: uid "));
    const auto cancel = ctlAs("", {"rollout", "cancel", "web"});
    EXPECT_NE(cancel.result.exitCode, kOk);
    EXPECT_THAT(
        auditLineOf(cancel),
        HasSubstr("method=RolloutCancel service=web params={} result=error io.fdsup.Manager.NoRollout:"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
