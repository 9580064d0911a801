// Per-command access: the rights resolved from the configuration, the decision, and the audit line's parts.
#include <string>
#include <vector>

#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "api/access.hpp"
#include "api/audit.hpp"
#include "api/control_api.hpp"
#include "config/names.hpp"
#include "io/log_context.hpp"

namespace fdsup {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uid_t kSelf = 999; // the uid fdsupd runs as, in these tests
constexpr gid_t kMonitoring = 3000;
constexpr gid_t kDeployGroup = 3001;
constexpr gid_t kOps = 3002;
constexpr uid_t kDeploy = 2001;

Peer peer(uid_t uid, gid_t gid, std::vector<gid_t> groups = {})
{
    return Peer{4242, uid, gid, std::move(groups)};
}

// The brief's example: ops every right (allow_groups), monitoring read,
// deploy read+operate over web and api, and uid 2005 only `restart`.
AccessPolicy examplePolicy()
{
    AccessPolicy policy;
    policy.grants.push_back(Grant{{}, {kOps}, Access::Admin, {}, {}});
    policy.grants.push_back(Grant{{}, {kMonitoring}, Access::Read, {}, {}});
    policy.grants.push_back(Grant{{kDeploy}, {kDeployGroup}, Access::Operate, {}, {"web", "api"}});
    policy.grants.push_back(Grant{{2005}, {}, std::nullopt, {"restart", "logs"}, {}});
    return policy;
}

struct Case {
    const char *what;
    Peer who;
    const char *method;
    Access level;
    std::optional<std::string> service;
    bool allowed;
};

TEST(AccessDecision, TableOfPeerMethodAndService)
{
    const AccessPolicy policy = examplePolicy();
    const Peer stranger = peer(2100, 2100);
    const Peer monitor = peer(2002, 2002, {kMonitoring});
    const Peer deployer = peer(kDeploy, kDeploy);
    const Peer deployGroup = peer(2003, kDeployGroup); // primary group
    const Peer opsMember = peer(2004, 2004, {100, kOps});
    const Peer restarter = peer(2005, 2005);
    const std::vector<Case> cases{
        {"root", peer(0, 0), "Reload", Access::Admin, std::nullopt, true},
        {"fdsupd's own user", peer(kSelf, kSelf), "Reexec", Access::Admin, std::nullopt, true},
        {"a stranger reads", stranger, "Status", Access::Read, std::nullopt, false},
        {"monitoring reads all", monitor, "Status", Access::Read, std::nullopt, true},
        {"monitoring reads one", monitor, "Logs", Access::Read, "web", true},
        {"monitoring restarts", monitor, "Restart", Access::Operate, "web", false},
        {"monitoring reloads", monitor, "Reload", Access::Admin, std::nullopt, false},
        {"deploy restarts web", deployer, "Restart", Access::Operate, "web", true},
        {"deploy restarts api", deployer, "Restart", Access::Operate, "api", true},
        {"deploy restarts db", deployer, "Restart", Access::Operate, "db", false},
        {"deploy reads web (operate includes read)", deployer, "Status", Access::Read, "web", true},
        {"deploy reads everything (limited to services)", deployer, "Status", Access::Read, std::nullopt,
         false},
        {"deploy lists sockets (names no service)", deployer, "Sockets", Access::Read, std::nullopt, false},
        {"deploy reloads", deployer, "Reload", Access::Admin, std::nullopt, false},
        {"deploy group, primary", deployGroup, "Stop", Access::Operate, "api", true},
        {"ops, supplementary, reloads", opsMember, "Reload", Access::Admin, std::nullopt, true},
        {"ops restarts (admin includes operate)", opsMember, "Restart", Access::Operate, "db", true},
        {"restart alone: restart", restarter, "Restart", Access::Operate, "db", true},
        {"restart alone: stop", restarter, "Stop", Access::Operate, "db", false},
        {"restart alone: status", restarter, "Status", Access::Read, "db", false},
        {"restart alone: logs", restarter, "Logs", Access::Read, "db", true},
    };
    for (const auto &c : cases) {
        const auto refusal = checkAccess(policy, c.who, kSelf, c.method, c.level, c.service);
        EXPECT_EQ(!refusal.has_value(), c.allowed) << c.what << (refusal ? ": " + refusal->message : "");
    }
}

TEST(AccessDecision, TheRefusalNamesTheMissingRightAndWhatTheCallerHas)
{
    const AccessPolicy policy = examplePolicy();
    const auto monitor = checkAccess(policy, peer(2002, 2002, {kMonitoring}), kSelf, "Restart",
                                     Access::Operate, std::string("web"));
    ASSERT_TRUE(monitor);
    EXPECT_EQ(monitor->message,
              "restart of 'web' needs the right 'operate' (or 'restart'); uid 2002 has: read");
    EXPECT_EQ(monitor->right, "operate");
    EXPECT_EQ(monitor->command, "restart");
    EXPECT_EQ(monitor->service, "web");

    const auto deploy =
        checkAccess(policy, peer(kDeploy, kDeploy), kSelf, "Reload", Access::Admin, std::nullopt);
    ASSERT_TRUE(deploy);
    EXPECT_EQ(deploy->message,
              "reload needs the right 'admin' (or 'reload') over every service; uid 2001 has: "
              "operate on 'web', 'api'");

    const auto cancel =
        checkAccess(policy, peer(2005, 2005), kSelf, "RolloutCancel", Access::Operate, std::string("web"));
    ASSERT_TRUE(cancel);
    EXPECT_THAT(cancel->message, HasSubstr("(or 'rollout-cancel'); uid 2005 has: restart, logs"));

    const auto stranger = checkAccess(policy, peer(2100, 2100), kSelf, "Status", Access::Read, std::nullopt);
    ASSERT_TRUE(stranger);
    EXPECT_EQ(stranger->has, "nothing");
}

TEST(AccessPolicyFromConfig, LevelsCommandsAndServices)
{
    config::SupervisorConfig supervisor;
    supervisor.allowUsers = {"root"};
    supervisor.access.push_back(
        config::AccessEntry{{"nobody"}, {"nogroup"}, {"read", "operate", "restart"}, {"web"}, {}});
    supervisor.access.push_back(config::AccessEntry{{}, {"root"}, {"admin", "read"}, {}, {}});
    const AccessPolicy policy = resolveAccessPolicy(supervisor);
    ASSERT_EQ(policy.grants.size(), 3U);
    EXPECT_EQ(policy.grants[0].level, Access::Admin); // allow_*: every right
    EXPECT_EQ(policy.grants[0].uids, std::vector<uid_t>{0});
    EXPECT_EQ(policy.grants[1].level, Access::Operate); // the highest level written
    EXPECT_EQ(policy.grants[1].commands, std::vector<std::string>{"restart"});
    EXPECT_EQ(policy.grants[1].services, std::vector<std::string>{"web"});
    EXPECT_EQ(policy.grants[1].uids, std::vector<uid_t>{65534});
    EXPECT_EQ(policy.grants[1].gids, std::vector<gid_t>{65534});
    EXPECT_EQ(policy.grants[2].level, Access::Admin);
    // Everyone named may connect; what they may call is decided per call.
    EXPECT_EQ(policy.uids(), (std::vector<uid_t>{0, 65534}));
    EXPECT_EQ(policy.gids(), (std::vector<gid_t>{65534, 0}));
}

TEST(AccessRights, EveryMethodHasItsCommandRightAndNoOther)
{
    std::vector<std::string> table;
    for (const auto &method : ControlApi::methods()) {
        table.push_back(commandRight(method.name));
    }
    const std::vector<std::string> rights(config::names::kCommandRights.begin(),
                                          config::names::kCommandRights.end());
    EXPECT_THAT(rights, ::testing::UnorderedElementsAreArray(table));
    EXPECT_EQ(commandRight("RolloutCancel"), "rollout-cancel");
    EXPECT_EQ(commandRight("Status"), "status");
}

TEST(Audit, CommandLinesAreEscapedAndCapped)
{
    EXPECT_EQ(escapeCommandLine(std::string("fdsupctl\0restart\0web\0", 21)), "fdsupctl restart web");
    EXPECT_EQ(escapeCommandLine(std::string("a\nb\x1b[31m\"q\"\\\xff\0", 15)),
              "a\\nb\\x1b[31m\\\"q\\\"\\\\\\xff");
    const std::string huge(10000, 'x');
    const std::string capped = escapeCommandLine(huge);
    EXPECT_EQ(capped.size(), kAuditFieldMax + 3);
    EXPECT_TRUE(capped.ends_with("..."));
}

TEST(Audit, TheRecordReadsTheCallersCommandLineAndLeavesTheServiceOut)
{
    const auto self = auditRecord(1, getpid(), "Restart", {{"service", "web"}, {"wait", true}});
    EXPECT_THAT(self.command, HasSubstr("test-access"));
    EXPECT_EQ(self.service, "web");
    EXPECT_EQ(self.params, R"({"wait":true})");
    EXPECT_EQ(self.method, "Restart");
    // A pid that cannot exist: the caller is gone.
    const auto gone = auditRecord(1, 0x3fffffff, "Stop", nlohmann::json::object());
    EXPECT_EQ(gone.command, "?");
    EXPECT_EQ(gone.service, "");
}

TEST(Audit, ResultsSayOkDeniedOrTheError)
{
    EXPECT_EQ(auditResult(varlink::Reply{}), "ok");
    EXPECT_EQ(auditResult(varlink::Reply{{{"message", "reload needs the right 'admin'"}},
                                         false,
                                         std::string(varlink::kErrorManagerPermissionDenied)}),
              "denied: reload needs the right 'admin'");
    EXPECT_EQ(auditResult(varlink::Reply{{{"service", "web"}, {"reason", "exited"}},
                                         false,
                                         std::string(varlink::kErrorServiceFailed)}),
              R"(error io.fdsup.Manager.ServiceFailed: {"reason":"exited","service":"web"})");
}

// Each line logged, with the journal fields the journal sink would send.
class CapturingSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
public:
    std::vector<std::string> lines;
    std::vector<std::vector<std::string>> fields;

protected:
    void sink_it_(const spdlog::details::log_msg &msg) override
    {
        lines.emplace_back(msg.payload.data(), msg.payload.size());
        const LogSubject *subject = currentLogSubject();
        fields.push_back(subject != nullptr ? journalFields(*subject) : std::vector<std::string>{});
    }
    void flush_() override {}
};

TEST(Audit, TheLineAndItsJournalFields)
{
    const auto sink = std::make_shared<CapturingSink>();
    const auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("audit-test", sink));
    logAudit(AuditRecord{1001, 4242, "fdsupctl restart web", "Restart", "web", "{}"}, "ok");
    logAudit(AuditRecord{1002, 4243, "?", "Reload", "", "{}"}, "denied: reload needs the right 'admin'");
    spdlog::set_default_logger(previous);
    ASSERT_EQ(sink->lines.size(), 2U);
    EXPECT_EQ(sink->lines[0], "audit: uid=1001 pid=4242 cmd=\"fdsupctl restart web\" method=Restart "
                              "service=web params={} result=ok");
    EXPECT_THAT(sink->fields[0],
                ElementsAre("FDSUP_SERVICE=web", "FDSUP_PID=4242", "FDSUP_AUDIT=1", "FDSUP_UID=1001",
                            "FDSUP_METHOD=Restart", "FDSUP_RESULT=ok", "FDSUP_CALLER=fdsupctl restart web"));
    EXPECT_EQ(sink->lines[1], "audit: uid=1002 pid=4243 cmd=\"?\" method=Reload service=- params={} "
                              "result=denied: reload needs the right 'admin'");
    EXPECT_THAT(sink->fields[1], ElementsAre("FDSUP_PID=4243", "FDSUP_AUDIT=1", "FDSUP_UID=1002",
                                             "FDSUP_METHOD=Reload", "FDSUP_RESULT=denied", "FDSUP_CALLER=?"));
    EXPECT_EQ(currentLogSubject(), nullptr);
}

} // namespace
} // namespace fdsup
