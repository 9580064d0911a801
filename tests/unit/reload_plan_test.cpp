// Tests of live reload decisions: planReload() on loaded configurations, applySocketChange() on real sockets.
#include <cerrno>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/socket.hpp"
#include "config/config.hpp"
#include "daemon/reload_plan.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

namespace fs = std::filesystem;
using testing::ElementsAre;
using testing::HasSubstr;
using testing::IsEmpty;

// The running configuration every plan test starts from; each test edits a
// copy of it into the next one.
constexpr std::string_view kBase = R"(
[supervisor]
control = "control.sock"
log_level = "info"

[socket.web]
listen = "tcp://127.0.0.1:8080"
backlog = 128

[socket.admin]
listen = "unix:admin.sock"
mode = "0660"

[service.app]
command = ["/bin/true", "--serve"]
sockets = ["web"]
instances = 2
environment = { FOO = "1", BAR = "2" }

[service.tool]
command = ["/bin/true"]
)";

// text with `from` (which must occur exactly once) replaced by `to`.
std::string edit(std::string_view text, std::string_view from, std::string_view to)
{
    std::string out(text);
    const auto at = out.find(from);
    EXPECT_NE(at, std::string::npos) << "'" << from << "' not in the text";
    EXPECT_EQ(out.find(from, at + 1), std::string::npos) << "'" << from << "' occurs twice";
    if (at != std::string::npos) {
        out.replace(at, from.size(), to);
    }
    return out;
}

gid_t groupId(const char *name)
{
    const group *entry = getgrnam(name);
    EXPECT_NE(entry, nullptr) << name;
    return entry != nullptr ? entry->gr_gid : 0;
}

class ReloadPlanTest : public testing::Test {
protected:
    config::Config load(std::string_view text)
    {
        config::LoadResult result = config::loadConfigString(text, "fdsupd.toml", dir_.path().string());
        for (const auto &diagnostic : result.diagnostics) {
            ADD_FAILURE() << diagnostic.str();
        }
        return result.config.value_or(config::Config{});
    }
    ReloadPlan plan(std::string_view next) { return planReload(load(kBase), load(next)); }

    test::TempDir dir_;
};

TEST_F(ReloadPlanTest, IdenticalConfigurationsGiveAnEmptyPlan)
{
    const ReloadPlan p = plan(kBase);
    EXPECT_TRUE(p.empty());
    EXPECT_THAT(p.servicesUnchanged, ElementsAre("app", "tool"));
    EXPECT_THAT(p.refused, IsEmpty());
}

TEST_F(ReloadPlanTest, OnlyPositionsDifferGivesAnEmptyPlan)
{
    // The same meaning, with keys reordered, other spacing, a comment, the
    // default backlog written out, and the services moved to an included file.
    test::writeFile(dir_ / "main.toml", R"(include = ["services.toml"]

[supervisor]
log_level = "info"
control   = "control.sock"

# the admin socket moved up
[socket.admin]
mode = "0660"
listen = ["unix:admin.sock"]

[socket.web]
backlog = 128
listen = "tcp://127.0.0.1:8080"
)");
    test::writeFile(dir_ / "services.toml", R"(
[service.tool]
command = ["/bin/true"]

[service.app]
environment = { BAR = "2", FOO = "1" }
instances = 2
sockets = ["web"]
command = ["/bin/true", "--serve"]
)");
    config::LoadResult next = config::loadConfig((dir_ / "main.toml").string());
    ASSERT_TRUE(next.config.has_value()) << (next.diagnostics.empty() ? "" : next.diagnostics[0].str());
    const config::Config running = load(kBase);
    ASSERT_NE(running.services[0].where, next.config->services[1].where);

    const ReloadPlan p = planReload(running, *next.config);
    EXPECT_TRUE(p.empty());
    EXPECT_THAT(p.servicesUnchanged, ElementsAre("tool", "app")); // in next's order
}

TEST_F(ReloadPlanTest, ServicesAreAddedRemovedAndRolled)
{
    std::string next = edit(kBase, "[service.tool]\ncommand = [\"/bin/true\"]\n",
                            "[service.batch]\ncommand = [\"/bin/false\"]\n");
    next = edit(next, "\"--serve\"", "\"--serve\", \"--verbose\"");
    const ReloadPlan p = plan(next);
    EXPECT_FALSE(p.empty());
    EXPECT_THAT(p.refused, IsEmpty());
    EXPECT_THAT(p.servicesAdded, ElementsAre("batch"));
    EXPECT_THAT(p.servicesRemoved, ElementsAre("tool"));
    EXPECT_THAT(p.servicesRolled, ElementsAre(ServiceChange{"app", {"command"}}));
    EXPECT_THAT(p.servicesScaled, IsEmpty());
    EXPECT_THAT(p.servicesUnchanged, IsEmpty());
}

// How the listeners are announced is part of what a worker is started
// with: a change is rolled out, and named.
TEST_F(ReloadPlanTest, InheritChangeIsRolled)
{
    const ReloadPlan p =
        plan(edit(kBase, "sockets = [\"web\"]", "sockets = [\"web\"]\ninherit = [\"nginx\"]"));
    EXPECT_THAT(p.servicesRolled, ElementsAre(ServiceChange{"app", {"inherit"}}));
    EXPECT_THAT(p.servicesUnchanged, ElementsAre("tool"));
}

TEST_F(ReloadPlanTest, OnlyInstancesIsScaled)
{
    const ReloadPlan p = plan(edit(kBase, "instances = 2", "instances = 4"));
    EXPECT_THAT(p.servicesScaled, ElementsAre(ServiceChange{"app", {"instances 2 → 4"}}));
    EXPECT_THAT(p.servicesRolled, IsEmpty());
    EXPECT_THAT(p.servicesUnchanged, ElementsAre("tool"));
}

TEST_F(ReloadPlanTest, EnvironmentChangeIsRolledWithDetails)
{
    // Changed, removed and added variables, named but never their values;
    // instances changing along with them is part of the rollout.
    std::string next = edit(kBase, R"({ FOO = "1", BAR = "2" })", R"({ FOO = "secret", BAZ = "3" })");
    next = edit(next, "instances = 2", "instances = 3\nready_timeout = \"10s\"");
    const ReloadPlan p = plan(next);
    ASSERT_EQ(p.servicesRolled.size(), 1U);
    EXPECT_EQ(p.servicesRolled[0].name, "app");
    EXPECT_THAT(p.servicesRolled[0].details,
                ElementsAre("environment.BAR", "environment.BAZ", "environment.FOO", "instances 2 → 3",
                            "ready_timeout"));
    EXPECT_THAT(p.servicesScaled, IsEmpty());
}

TEST_F(ReloadPlanTest, SocketsAreAddedAndRemoved)
{
    std::string next = edit(kBase, "[socket.admin]\nlisten = \"unix:admin.sock\"\nmode = \"0660\"\n",
                            "[socket.api]\nlisten = \"unix:api.sock\"\n");
    next = edit(next, "sockets = [\"web\"]", "sockets = [\"web\", \"api\"]");
    const ReloadPlan p = plan(next);
    EXPECT_THAT(p.refused, IsEmpty());
    EXPECT_THAT(p.socketsAdded, ElementsAre("api"));
    EXPECT_THAT(p.socketsRemoved, ElementsAre("admin"));
    EXPECT_THAT(p.socketsChanged, IsEmpty());
    EXPECT_THAT(p.servicesRolled, ElementsAre(ServiceChange{"app", {"sockets"}}));
}

TEST_F(ReloadPlanTest, BacklogChangesInPlace)
{
    const ReloadPlan p = plan(edit(kBase, "backlog = 128", "backlog = 1024"));
    EXPECT_THAT(p.refused, IsEmpty());
    EXPECT_THAT(p.socketsChanged, ElementsAre(SocketChange{"web", {"backlog 128 → 1024"}}));
    // The descriptors stay the same, so the services using them do too.
    EXPECT_THAT(p.servicesUnchanged, ElementsAre("app", "tool"));
}

TEST_F(ReloadPlanTest, UnixFileModeAndGroupChangeInPlace)
{
    const ReloadPlan p =
        plan(edit(kBase, "mode = \"0660\"", "mode = \"0600\"\ngroup = \"nogroup\"\nremove_stale = false"));
    EXPECT_THAT(p.refused, IsEmpty());
    EXPECT_THAT(
        p.socketsChanged,
        ElementsAre(SocketChange{"admin",
                                 {"mode 0660 → 0600", "group unset → " + std::to_string(groupId("nogroup")),
                                  "remove_stale true → false"}}));
}

TEST_F(ReloadPlanTest, UnsettingTheModeIsRefused)
{
    const ReloadPlan p = plan(edit(kBase, "mode = \"0660\"\n", ""));
    EXPECT_THAT(p.refused,
                ElementsAre("socket 'admin': mode cannot be unset on a bound socket (its file keeps 0660); "
                            "write the mode it should have instead"));
}

TEST_F(ReloadPlanTest, ReusePortChangeIsRefused)
{
    const ReloadPlan p = plan(edit(kBase, "backlog = 128", "backlog = 128\nreuse_port = true"));
    EXPECT_THAT(
        p.refused,
        ElementsAre(
            "socket 'web': reuse_port changed from unset to true: it cannot be changed on a bound socket"));
    EXPECT_FALSE(p.empty());
}

TEST_F(ReloadPlanTest, ListenChangeIsRefused)
{
    const ReloadPlan p = plan(edit(kBase, "tcp://127.0.0.1:8080", "tcp://127.0.0.1:8081"));
    EXPECT_THAT(p.refused,
                ElementsAre("socket 'web': listen changed from [tcp://127.0.0.1:8080] to "
                            "[tcp://127.0.0.1:8081]: a bound socket cannot move without refusing "
                            "connections; add a socket with a new name and point the service at it"));
    EXPECT_THAT(p.socketsChanged, IsEmpty());
}

TEST_F(ReloadPlanTest, LogLevelAndAccessApplyInPlace)
{
    std::string next = edit(kBase, "log_level = \"info\"", "log_level = \"debug\"\nallow_groups = [\"adm\"]");
    const ReloadPlan p = plan(next);
    EXPECT_THAT(p.refused, IsEmpty());
    EXPECT_TRUE(p.logLevelChanged);
    EXPECT_TRUE(p.accessChanged);
    EXPECT_FALSE(p.empty());
    EXPECT_THAT(p.servicesUnchanged, ElementsAre("app", "tool"));
}

TEST_F(ReloadPlanTest, AccessEntriesApplyInPlaceAndWhereTheyAreWrittenMeansNothing)
{
    const std::string entry = "\n[[supervisor.access]]\ngroups = [\"nogroup\"]\nrights = [\"read\"]\n";
    const config::Config running = load(edit(kBase, "log_level = \"info\"", "log_level = \"info\"" + entry));
    // The same entry, written two lines further down: no change.
    const config::Config moved =
        load(edit(kBase, "log_level = \"info\"", "log_level = \"info\"\n\n" + entry));
    EXPECT_TRUE(planReload(running, moved).empty());
    const config::Config wider = load(
        edit(kBase, "log_level = \"info\"", "log_level = \"info\"" + edit(entry, "\"read\"", "\"operate\"")));
    const ReloadPlan p = planReload(running, wider);
    EXPECT_TRUE(p.accessChanged);
    EXPECT_THAT(p.refused, IsEmpty());
}

TEST_F(ReloadPlanTest, AccessListsCompareAsSets)
{
    const config::Config running =
        load(edit(kBase, "log_level", "allow_groups = [\"adm\", \"nogroup\"]\nlog_level"));
    const config::Config next =
        load(edit(kBase, "log_level", "allow_groups = [\"nogroup\", \"adm\"]\nlog_level"));
    EXPECT_TRUE(planReload(running, next).empty());
}

TEST_F(ReloadPlanTest, ControlPathChangeIsRefused)
{
    const ReloadPlan p = plan(edit(kBase, "control.sock", "other.sock"));
    const std::string dir = dir_.path().string();
    EXPECT_THAT(p.refused,
                ElementsAre("[supervisor] control changed from " + dir + "/control.sock to " + dir +
                            "/other.sock: the control socket cannot move while fdsupd runs; restart "
                            "fdsupd to apply it"));
}

TEST_F(ReloadPlanTest, ActivationSocketChangeIsRefusedAndAccessIsRolled)
{
    const std::string withSocket =
        edit(kBase, "instances = 2", "instances = 2\nactivation_socket = \"web.activation\"");
    const config::Config running = load(withSocket);
    const std::string dir = dir_.path().string();
    // Moving it, adding one or removing one would cut external workers off.
    EXPECT_THAT(planReload(running, load(edit(withSocket, "web.activation", "other.activation"))).refused,
                ElementsAre("[service.app] activation_socket changed from " + dir + "/web.activation to " +
                            dir +
                            "/other.activation: an activation socket is created with its service; "
                            "restart fdsupd to apply it"));
    EXPECT_THAT(planReload(load(kBase), running).refused, ElementsAre(HasSubstr("from (none) to")));
    // Who may connect is part of the service's generation: rolled out.
    const ReloadPlan p = planReload(
        running, load(edit(withSocket, "instances = 2", "instances = 2\nactivation_users = [\"nobody\"]")));
    EXPECT_THAT(p.refused, IsEmpty());
    EXPECT_THAT(p.servicesRolled, ElementsAre(ServiceChange{"app", {"activation_users"}}));
}

TEST_F(ReloadPlanTest, EveryRefusalIsReported)
{
    std::string next = edit(kBase, "log_level = \"info\"",
                            "log_level = \"debug\"\nlog_target = \"journal\"\ncontrol_mode = \"0600\"\n"
                            "preload_library = \"/opt/shim.so\"\n"
                            "[supervisor.limits]\nheld_connections = 10\nstate_size = \"1MiB\"");
    next = edit(next, "tcp://127.0.0.1:8080", "tcp://127.0.0.1:9090");
    next = edit(next, "backlog = 128", "backlog = 256\nnodelay = true\nsend_buffer = \"64KiB\"");
    const ReloadPlan p = plan(next);
    EXPECT_THAT(
        p.refused,
        ElementsAre(
            HasSubstr("[supervisor] control_mode changed from 0660 to 0600"),
            HasSubstr("[supervisor] log_target changed from console to journal"),
            HasSubstr("[supervisor] preload_library changed from "),
            HasSubstr("[supervisor.limits] held_connections changed from 65536 to 10"),
            HasSubstr("[supervisor.limits] state_size changed from 64KiB to 1MiB"),
            HasSubstr("socket 'web': listen changed"),
            "socket 'web': nodelay changed from unset to true: it cannot be changed on a bound socket",
            "socket 'web': send_buffer changed from unset to 65536: it cannot be changed on a bound "
            "socket"));
    // The lists still say what the reload would have done.
    EXPECT_TRUE(p.logLevelChanged);
    EXPECT_THAT(p.socketsChanged, ElementsAre(SocketChange{"web", {"backlog 128 → 256"}}));
}

// ---- applySocketChange() on real sockets ----

// Each test binds one socket with before_ and changes it to other options.
class ApplySocketChangeTest : public testing::Test {
protected:
    // Binds the single descriptor of a numeric or unix address with before_.
    void bind(const std::string &text)
    {
        auto address = parseAddress(text);
        ASSERT_TRUE(address.ok()) << address.error().message;
        auto fds = bindAll(*address, before_);
        ASSERT_TRUE(fds.ok()) << fds.error().message;
        ASSERT_EQ(fds->size(), 1U);
        fd_ = std::move(fds->front());
    }
    Result<void> change(const SocketOptions &after)
    {
        return applySocketChange(fd_.borrow(), before_, after);
    }

    test::TempDir dir_;
    SocketOptions before_;
    UniqueFd fd_;
};

mode_t fileMode(const fs::path &path)
{
    struct stat st {};
    EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
}

// Connects non-blocking clients to a unix stream socket until the kernel
// refuses one (EAGAIN: the accept queue is full); returns how many got in.
int fillAcceptQueue(const fs::path &path, std::vector<UniqueFd> &clients)
{
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.string().copy(address.sun_path, sizeof address.sun_path - 1);
    for (int connected = 0; connected < 64; ++connected) {
        UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        if (connect(client.get(), reinterpret_cast<const sockaddr *>(&address), sizeof address) < 0) {
            EXPECT_EQ(errno, EAGAIN);
            return connected;
        }
        clients.push_back(std::move(client));
    }
    ADD_FAILURE() << "the accept queue never filled";
    return -1;
}

TEST_F(ApplySocketChangeTest, BacklogChangeTakesEffect)
{
    // A unix stream socket takes backlog + 1 connections before refusing
    // more, which proves the new backlog is the one in force.
    before_.backlog = 1;
    const fs::path path = dir_ / "queue.sock";
    ASSERT_NO_FATAL_FAILURE(bind("unix:" + path.string()));
    std::vector<UniqueFd> clients;
    EXPECT_EQ(fillAcceptQueue(path, clients), 2);

    SocketOptions after = before_;
    after.backlog = 4;
    const auto result = change(after);
    ASSERT_TRUE(result) << result.error().message;
    EXPECT_EQ(fillAcceptQueue(path, clients), 3);
    // The connections queued before the change are still there to accept.
    for (int i = 0; i < 5; ++i) {
        UniqueFd accepted(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        EXPECT_TRUE(accepted.isValid()) << i;
    }
}

TEST_F(ApplySocketChangeTest, TcpSocketStillAcceptsAfterBacklogChange)
{
    before_.backlog = 128;
    ASSERT_NO_FATAL_FAILURE(bind("tcp://127.0.0.1:0"));
    SocketOptions after = before_;
    after.backlog = 1024;
    const auto result = change(after);
    ASSERT_TRUE(result) << result.error().message;

    sockaddr_in address{};
    socklen_t length = sizeof address;
    ASSERT_EQ(getsockname(fd_.get(), reinterpret_cast<sockaddr *>(&address), &length), 0);
    UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(connect(client.get(), reinterpret_cast<const sockaddr *>(&address), length), 0)
        << errnoText(errno);
    pollfd ready{fd_.get(), POLLIN, 0};
    ASSERT_EQ(poll(&ready, 1, 5000), 1);
    UniqueFd accepted(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(accepted.isValid());
}

TEST_F(ApplySocketChangeTest, ModeAndGroupOfTheSocketFile)
{
    before_.mode = 0660;
    const fs::path path = dir_ / "admin.sock";
    ASSERT_NO_FATAL_FAILURE(bind("unix:" + path.string()));
    ASSERT_EQ(fileMode(path), 0660U);

    SocketOptions after = before_;
    after.mode = 0600;
    after.group = groupId("nogroup");
    const auto result = change(after);
    ASSERT_TRUE(result) << result.error().message;
    struct stat st {};
    ASSERT_EQ(lstat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600U);
    EXPECT_EQ(st.st_gid, groupId("nogroup"));
    EXPECT_EQ(st.st_uid, geteuid());
}

TEST_F(ApplySocketChangeTest, RemovedFileIsAnErrorNamingThePath)
{
    before_.mode = 0660;
    const fs::path path = dir_ / "gone.sock";
    ASSERT_NO_FATAL_FAILURE(bind("unix:" + path.string()));
    ASSERT_EQ(unlink(path.c_str()), 0);

    SocketOptions after = before_;
    after.mode = 0600;
    const auto result = change(after);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, ENOENT);
    EXPECT_EQ(result.error().message,
              "Failed to change socket file " + path.string() + ": No such file or directory");
}

TEST_F(ApplySocketChangeTest, SomethingElseInPlaceOfTheFileIsLeftAlone)
{
    before_.mode = 0660;
    const fs::path path = dir_ / "replaced.sock";
    ASSERT_NO_FATAL_FAILURE(bind("unix:" + path.string()));
    ASSERT_EQ(unlink(path.c_str()), 0);
    test::writeFile(path, "not a socket");
    const mode_t mode = fileMode(path);

    SocketOptions after = before_;
    after.mode = 0600;
    const auto result = change(after);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, ENOTSOCK);
    EXPECT_THAT(result.error().message, HasSubstr(path.string()));
    EXPECT_EQ(fileMode(path), mode);
}

TEST_F(ApplySocketChangeTest, WhatPlanReloadRefusesIsRefusedHereToo)
{
    before_.backlog = 16;
    ASSERT_NO_FATAL_FAILURE(bind("tcp://127.0.0.1:0"));
    SocketOptions after = before_;
    after.backlog = 32;
    after.reusePort = true;
    const auto result = change(after);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, EINVAL);
    EXPECT_THAT(result.error().message, HasSubstr("reuse_port changed from unset to true"));
    int reusePort = -1;
    socklen_t length = sizeof reusePort;
    ASSERT_EQ(getsockopt(fd_.get(), SOL_SOCKET, SO_REUSEPORT, &reusePort, &length), 0);
    EXPECT_EQ(reusePort, 0);
}

TEST_F(ApplySocketChangeTest, FileOptionsNeedAUnixPath)
{
    ASSERT_NO_FATAL_FAILURE(bind("tcp://127.0.0.1:0"));
    SocketOptions after;
    after.mode = 0600;
    const auto result = change(after);
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().code, EINVAL);
    EXPECT_THAT(result.error().message, HasSubstr("not a unix socket bound to a path"));
}

// [supervisor] metrics is added, moved and removed by a reload; metrics_public
// alone changes nothing to apply.
TEST_F(ReloadPlanTest, TheMetricsEndpointMovesInPlace)
{
    const std::string with =
        edit(kBase, "log_level = \"info\"", "log_level = \"info\"\nmetrics = \"127.0.0.1:9187\"");
    const ReloadPlan added = plan(with);
    EXPECT_THAT(added.refused, IsEmpty());
    EXPECT_TRUE(added.metricsChanged);
    EXPECT_FALSE(added.empty());
    const ReloadPlan moved = planReload(load(with), load(edit(with, "9187", "9188")));
    EXPECT_THAT(moved.refused, IsEmpty());
    EXPECT_TRUE(moved.metricsChanged);
    const ReloadPlan removed = planReload(load(with), load(kBase));
    EXPECT_TRUE(removed.metricsChanged);
    EXPECT_TRUE(planReload(load(with), load(edit(with, "9187\"", "9187\"\nmetrics_public = true"))).empty());
    EXPECT_TRUE(plan(kBase).empty());
}

} // namespace
} // namespace fdsup
