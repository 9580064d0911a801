// fdsupctl reexec: a real fdsupd re-executes itself in place under real load; failures go back to the old
// binary.
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "http_load.hpp"
#include "seqnum_clients.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// A line of /proc/net/unix: type (0001 stream, 0002 datagram, 0005
// seqpacket), state (01 unconnected, 03 connected), path (empty: unbound).
struct UnixSocket {
    std::string type, state, path;
};
constexpr std::string_view kDatagram = "0002";
constexpr std::string_view kConnected = "03";

// The targets ("socket:[INODE]") of the unix sockets that match.
std::set<std::string> unixSockets(const std::function<bool(const UnixSocket &)> &match)
{
    std::set<std::string> sockets;
    std::ifstream unix("/proc/net/unix");
    std::string line;
    std::getline(unix, line);
    while (std::getline(unix, line)) {
        std::istringstream fields(line);
        std::string num, refs, protocol, flags, inode;
        UnixSocket socket;
        fields >> num >> refs >> protocol >> flags >> socket.type >> socket.state >> inode >> socket.path;
        if (match(socket)) {
            sockets.insert("socket:[" + inode + "]");
        }
    }
    return sockets;
}

class Reexec : public DaemonTest<> {
protected:
    // web: the http-keepalive example (handoff), seq: seqnum-echo (handoff),
    // slow: sd-worker that takes 1.5 s to get ready (a rollout that lasts).
    void startAll()
    {
        const std::string config = fdsupd_.supervisorTable() +
                                   channelWebService(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE"), 2) + R"(
[socket.seq]
listen = "tcp://127.0.0.1:0"

[service.seq]
command = [")" + requireEnv("FDSUP_TEST_SEQNUM_ECHO") +
                                   R"("]
sockets = ["seq"]
instances = 2
ready = "channel"
handoff = true
drain_timeout = "10s"

[socket.slow]
listen = "tcp://127.0.0.1:0"

[service.slow]
command = )" + fdsupd_.workerCommand("serve", {"--ready-delay", "1500", "--fdstore", "cache"}) +
                                   R"(
sockets = ["slow"]
ready = "notify"
)";
        std::string why;
        ASSERT_TRUE(fdsupd_.start(config, why)) << why;
        for (const char *service : {"web", "seq", "slow"}) {
            ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", service}}).error, "");
        }
    }

    std::map<std::string, std::set<pid_t>> workerPids()
    {
        std::map<std::string, std::set<pid_t>> pids;
        for (const char *service : {"web", "seq", "slow"}) {
            pids[service] = instancePids(fdsupd_.status(service));
        }
        return pids;
    }

    // `fdsupctl reexec --json [args]`: its reply, or a test failure.
    Json reexec(std::vector<std::string> args = {})
    {
        args.insert(args.begin(), {"reexec", "--json"});
        const ProcessResult r = fdsupd_.fdsupctl(args);
        EXPECT_EQ(r.exitCode, 0) << r.out << r.err;
        return r.exitCode == 0 ? Json::parse(r.out) : Json();
    }

    // What fdsupd's descriptors refer to (fdTargets()), its manager notifier
    // named "manager notifier": an unbound datagram socket connected to
    // NOTIFY_SOCKET, made anew by every image (it is born CLOEXEC).
    std::multiset<std::string> fdsupdTargets()
    {
        const std::set<std::string> notifiers = unixSockets([](const UnixSocket &socket) {
            return socket.type == kDatagram && socket.state == kConnected && socket.path.empty();
        });
        return fdTargets(fdsupd_.pid(), [&](const std::string &target) {
            return notifiers.count(target) == 0 ? target : "manager notifier";
        });
    }

    // Waits until fdsupd holds nothing it did not hold at `before` (an
    // fdsupdTargets()): what a failed re-exec opened is closed again.
    ::testing::AssertionResult noneOpenedSince(const std::multiset<std::string> &before)
    {
        std::multiset<std::string> opened;
        if (waitUntil([&] { return (opened = targetsAdded(before, fdsupdTargets())).empty(); })) {
            return ::testing::AssertionSuccess();
        }
        return ::testing::AssertionFailure() << "open before:\n"
                                             << testing::PrintToString(before) << "\nopened since:\n"
                                             << testing::PrintToString(opened);
    }

    // An executable script in the test's directory.
    std::string script(const std::string &name, const std::string &text)
    {
        const auto path = fdsupd_.dir() / name;
        std::ofstream(path) << text;
        std::filesystem::permissions(path, std::filesystem::perms::owner_all);
        return path.string();
    }
};

TEST_F(Reexec, ThreeReexecsUnderLoadLoseNothingAndChangeNoPid)
{
    startAll();
    const int web = fdsupd_.port("web");
    const auto pids = workerPids();
    HttpLoad fresh(web, 3, HttpLoad::Mode::Fresh);
    HttpLoad keepAlive(web, 3, HttpLoad::Mode::KeepAlive);
    SeqnumClients streams(fdsupd_.port("seq"), 20);
    fresh.start();
    keepAlive.start();
    for (int round = 1; round <= 3; ++round) {
        const std::size_t freshBefore = fresh.requests();
        const std::size_t keepAliveBefore = keepAlive.requests();
        const std::uint64_t roundsBefore = streams.rounds();
        const Json reply = reexec();
        EXPECT_EQ(reply.value("reexecs", -1), round);
        EXPECT_EQ(reply.value("pid", -1), fdsupd_.pid());
        EXPECT_FALSE(reply.value("version", "").empty());
        EXPECT_EQ(workerPids(), pids) << "round " << round;
        // Every kind of client goes on being served by the re-executed fdsupd's workers.
        EXPECT_TRUE(fresh.waitForRequests(freshBefore, 50, kEventDeadline));
        EXPECT_TRUE(keepAlive.waitForRequests(keepAliveBefore, 50, kEventDeadline));
        EXPECT_TRUE(
            waitUntil([&] { return streams.rounds() >= roundsBefore + 500 || !streams.errors().empty(); }));
    }
    EXPECT_THAT(fdsupd_.log(), HasSubstr("Re-executed in place"));
    // A rollout after the re-execs: a restart with handoff, under the same load.
    const ProcessResult restart = fdsupd_.fdsupctl({"restart", "--wait", "seq"});
    EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    const ProcessResult restartWeb = fdsupd_.fdsupctl({"restart", "--wait", "web"});
    EXPECT_EQ(restartWeb.exitCode, 0) << restartWeb.out << restartWeb.err;
    const std::uint64_t settled = streams.rounds();
    EXPECT_TRUE(waitUntil([&] { return streams.rounds() >= settled + 500 || !streams.errors().empty(); }));
    // The broker's counters of that restart survive a fourth re-exec.
    EXPECT_EQ(reexec().value("reexecs", -1), 4);
    const Json seq =
        fdsupd_.call("io.fdsup.Manager.Connections", {{"service", "seq"}}).parameters.at("services").at(0);
    EXPECT_EQ(seq.at("handed"), 20) << seq.dump();
    EXPECT_EQ(seq.at("adopted"), 20) << seq.dump();
    const HttpLoadReport freshReport = fresh.stop();
    const HttpLoadReport keepAliveReport = keepAlive.stop();
    streams.stop();
    EXPECT_EQ(freshReport.ok, freshReport.requests) << freshReport.summary();
    EXPECT_EQ(keepAliveReport.failed(), 0U) << keepAliveReport.summary();
    EXPECT_EQ(keepAliveReport.refused, 0U) << keepAliveReport.summary();
    EXPECT_TRUE(streams.errors().empty()) << ::testing::PrintToString(streams.errors());
    const auto after = workerPids();
    for (const pid_t pid : after.at("seq")) {
        EXPECT_EQ(pids.at("seq").count(pid), 0U) << "the restart after the re-execs replaced nothing";
    }
    streams.close();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Reexec, ARestartRunningWhenReexecIsCalledCompletesFirst)
{
    startAll();
    const std::set<pid_t> before = instancePids(fdsupd_.status("slow"));
    // Returns once the rollout began; its replacement needs 1.5 s to get ready.
    const ProcessResult restart = fdsupd_.fdsupctl({"restart", "slow"});
    ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    const Json reply = reexec();
    EXPECT_EQ(reply.value("reexecs", -1), 1);
    const Json rollout = fdsupd_.call("io.fdsup.Manager.RolloutStatus", {{"service", "slow"}}).parameters;
    EXPECT_EQ(rollout.at("rollout").at("state"), "succeeded") << rollout.dump();
    const std::set<pid_t> after = instancePids(fdsupd_.status("slow"));
    ASSERT_EQ(after.size(), 1U);
    EXPECT_EQ(before.count(*after.begin()), 0U);
    const std::string log = fdsupd_.log();
    const auto waited = log.find("Re-exec: waiting: service 'slow': rollout");
    ASSERT_NE(waited, std::string::npos) << log;
    EXPECT_LT(waited, log.find("Re-exec: executing"));
    EXPECT_TRUE(answersOk(fdsupd_.port("slow")));
    // The descriptor store (each generation stored a memfd "from pid P") was
    // carried: the next generation gets what the first one stored.
    EXPECT_EQ(fdsupd_.status("slow").at("fdstore"), Json::parse(R"([{"name": "cache", "fds": 2}])"));
    ASSERT_EQ(fdsupd_.fdsupctl({"restart", "--wait", "slow"}).exitCode, 0);
    const ProcessResult answer =
        runProcess({"/usr/bin/curl", "-sS", "--max-time", "10",
                    "http://127.0.0.1:" + std::to_string(fdsupd_.port("slow")) + "/"});
    ASSERT_EQ(answer.exitCode, 0) << answer.err;
    const std::string stored = Json::parse(answer.out).at("stored").value("cache", "");
    EXPECT_THAT(stored, HasSubstr("from pid ")) << answer.out;
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Reexec, WhileItWaitsStateChangesAreRefusedAndAnIdleConnectionSurvives)
{
    startAll();
    auto idle = varlink::Client::connect(fdsupd_.controlPath(), 10s);
    ASSERT_TRUE(idle) << idle.error().message;
    const auto status = [&] {
        return idle->call(varlink::Call{"io.fdsup.Manager.Status", Json::object(), false, false});
    };
    ASSERT_TRUE(status());
    // A rollout that needs 1.5 s: the re-exec waits for it.
    ASSERT_EQ(fdsupd_.fdsupctl({"restart", "slow"}).exitCode, 0);
    ProcessResult reexecResult;
    std::thread caller([&] { reexecResult = fdsupd_.fdsupctl({"reexec", "--json"}); });
    EXPECT_TRUE(waitUntil(
        [&] { return fdsupd_.log().find("Re-exec: waiting: service 'slow'") != std::string::npos; }));
    const auto scale = fdsupd_.call("io.fdsup.Manager.Scale", {{"service", "web"}, {"instances", 3}});
    EXPECT_EQ(scale.error, "io.fdsup.Manager.Reexecuting");
    EXPECT_EQ(fdsupd_.call("io.fdsup.Manager.Status").error, "") << "reading is not refused";
    caller.join();
    ASSERT_EQ(reexecResult.exitCode, 0) << reexecResult.out << reexecResult.err;
    EXPECT_EQ(Json::parse(reexecResult.out).value("reexecs", -1), 1);
    EXPECT_EQ(instancePids(fdsupd_.status("web")).size(), 2U) << "the refused Scale changed nothing";
    // The connection opened before the re-exec is served by the new image.
    const auto after = status();
    ASSERT_TRUE(after) << after.error().message;
    EXPECT_EQ(after->error, "");
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Reexec, ALogsFollowerKeepsGettingLines)
{
    startAll();
    auto follower = varlink::Client::connect(fdsupd_.controlPath(), 30s);
    ASSERT_TRUE(follower) << follower.error().message;
    const auto first = follower->call(varlink::Call{
        "io.fdsup.Manager.Logs", {{"service", "slow"}, {"lines", 0}, {"follow", true}}, true, false});
    ASSERT_TRUE(first) << first.error().message;
    ASSERT_TRUE(first->continues);
    EXPECT_EQ(reexec().value("reexecs", -1), 1);
    // A new worker's first line reaches the follower through the new image.
    ASSERT_EQ(fdsupd_.fdsupctl({"restart", "--wait", "slow"}).exitCode, 0);
    const std::set<pid_t> now = instancePids(fdsupd_.status("slow"));
    ASSERT_EQ(now.size(), 1U);
    const std::string expected = "starting as pid " + std::to_string(*now.begin());
    bool seen = false;
    while (!seen) {
        const auto next = follower->next();
        ASSERT_TRUE(next) << next.error().message;
        ASSERT_TRUE(next->continues) << next->parameters.dump();
        for (const auto &line : next->parameters.at("lines")) {
            seen = seen || line.at("text").get<std::string>().find(expected) != std::string::npos;
        }
    }
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Reexec, StillBusyAtTheTimeoutFailsAndChangesNothing)
{
    // The replacement gets ready only when the test creates the file: the
    // rollout is in progress for as long as the test wants, whatever the
    // load (the timeout covers the check of the binary as well).
    const auto gate = fdsupd_.dir() / "ready";
    writeFile(gate, "");
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + R"(
[socket.gated]
listen = "tcp://127.0.0.1:0"

[service.gated]
command = )" + fdsupd_.workerCommand("serve", {"--ready-file", gate.string()}) +
                                  R"(
sockets = ["gated"]
ready = "notify"
ready_timeout = "5m"
)",
                              why))
        << why;
    ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "gated"}}).error, "");
    std::filesystem::remove(gate);
    ASSERT_EQ(fdsupd_.fdsupctl({"restart", "gated"}).exitCode, 0);
    const ProcessResult r = fdsupd_.fdsupctl({"--timeout", "3s", "reexec"});
    EXPECT_EQ(r.exitCode, 1) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("still busy after the timeout: service 'gated': rollout 1 in progress"));
    EXPECT_THAT(fdsupd_.log(), ::testing::Not(HasSubstr("Re-exec: executing")));
    // The rollout goes on, and a re-exec once it is done works.
    EXPECT_EQ(fdsupd_.call("io.fdsup.Manager.RolloutStatus", {{"service", "gated"}})
                  .parameters.at("rollout")
                  .at("state"),
              "running");
    writeFile(gate, "");
    EXPECT_TRUE(waitUntil([&] {
        const Json rollout =
            fdsupd_.call("io.fdsup.Manager.RolloutStatus", {{"service", "gated"}}).parameters;
        return rollout.at("rollout").at("state") == "succeeded";
    }));
    EXPECT_EQ(reexec().value("reexecs", -1), 1);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Reexec, ABinaryThatExitsAtOnceFailsTheCallAndChangesNothing)
{
    startAll();
    const auto pids = workerPids();
    const std::string broken = script("broken", "#!/bin/sh\necho 'this build is broken' >&2\nexit 1\n");
    // By what they refer to, not by count: the baseline may hold an
    // instance's transient exec status pipe or spawned pidfd.
    const auto fds = fdsupdTargets();
    const ProcessResult r = fdsupd_.fdsupctl({"reexec", "--binary", broken});
    EXPECT_EQ(r.exitCode, 1) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("exited with status 1: this build is broken"));
    EXPECT_TRUE(noneOpenedSince(fds));
    EXPECT_EQ(workerPids(), pids);
    EXPECT_TRUE(answersOk(fdsupd_.port("web")));
    // A binary that is not there, and one that is not fdsupd, the same.
    const ProcessResult missing =
        fdsupd_.fdsupctl({"reexec", "--binary", (fdsupd_.dir() / "nothing").string()});
    EXPECT_EQ(missing.exitCode, 1);
    EXPECT_THAT(missing.err, HasSubstr("No such file or directory"));
    const ProcessResult other = fdsupd_.fdsupctl({"reexec", "--binary", "/bin/true"});
    EXPECT_EQ(other.exitCode, 1);
    EXPECT_THAT(other.err, HasSubstr("printed nothing"));
    EXPECT_TRUE(noneOpenedSince(fds));
    EXPECT_EQ(reexec().value("reexecs", -1), 1) << "a failed re-exec is not counted";
    // What a candidate answers (docs/reexec.md).
    const ProcessResult check = runProcess({requireEnv("FDSUPD"), "--reexec-check"});
    ASSERT_EQ(check.exitCode, 0) << check.err;
    EXPECT_EQ(Json::parse(check.out).at("state_versions"), Json::array({1}));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Reexec, AStateTheNewBinaryRejectsSendsItBackToTheOldOne)
{
    startAll();
    const auto pids = workerPids();
    // Passes the check (the real fdsupd answers it), then hands the real
    // fdsupd a copy of the state with another version.
    const std::string wrapper =
        script("wrapper", "#!/bin/bash\n"
                          "real=" +
                              requireEnv("FDSUPD") +
                              "\n"
                              "if [ \"$1\" = --reexec-check ]; then exec \"$real\" --reexec-check; fi\n"
                              "copy=" +
                              (fdsupd_.dir() / "state.json").string() +
                              "\n"
                              "sed 's/\"version\":1\\([,}]\\)/\"version\":7\\1/' "
                              "/proc/self/fd/$FDSUP_REEXEC_STATE > \"$copy\"\n"
                              "exec 200<\"$copy\"\n"
                              "export FDSUP_REEXEC_STATE=200\n"
                              "exec \"$real\" \"$@\"\n");
    HttpLoad fresh(fdsupd_.port("web"), 2, HttpLoad::Mode::Fresh);
    fresh.start();
    const auto fds = fdsupdTargets();
    const ProcessResult r = fdsupd_.fdsupctl({"reexec", "--binary", wrapper});
    EXPECT_EQ(r.exitCode, 1) << r.out << r.err;
    EXPECT_THAT(r.err, HasSubstr("the new binary rejected the state: state: version: state version 7 is not "
                                 "readable by this fdsupd (it reads 1)"));
    // Nothing open that was not open before, by what it refers to: the
    // re-entered image renumbers what its state names and closes the rest,
    // so a baseline taken while an instance's exec status pipe or spawned
    // pidfd were still open (a busy ASan run) holds more; what it holds is
    // checked by serving below.
    EXPECT_TRUE(noneOpenedSince(fds));
    EXPECT_EQ(workerPids(), pids);
    const std::size_t before = fresh.requests();
    EXPECT_TRUE(fresh.waitForRequests(before, 50, kEventDeadline));
    const HttpLoadReport report = fresh.stop();
    EXPECT_EQ(report.ok, report.requests) << report.summary();
    EXPECT_THAT(fdsupd_.log(), HasSubstr("going back to the previous binary"));
    // The old binary, re-entered, re-execs as before.
    EXPECT_EQ(reexec().value("reexecs", -1), 1);
    EXPECT_EQ(workerPids(), pids);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// Every listener of every instance of `status` claimed by a pid of `pids` (the shim's CLAIMED, as status
// shows it).
void expectClaimedBy(const Json &status, const std::set<pid_t> &pids)
{
    ASSERT_EQ(status.at("instances").size(), pids.size()) << status.dump(2);
    for (const Json &instance : status.at("instances")) {
        ASSERT_FALSE(instance.at("listeners").empty()) << status.dump(2);
        for (const Json &listener : instance.at("listeners")) {
            ASSERT_TRUE(listener.at("adopted_by").is_number()) << status.dump(2);
            EXPECT_EQ(pids.count(listener.at("adopted_by").get<pid_t>()), 1U) << status.dump(2);
        }
    }
}

// A wrapped, unmodified python3 http.server (wrap = "preload": the shim in
// it claimed fdsupd's listener) across two re-execs under load: the preload
// socket, the shim's connections and their claims are carried; a restart
// afterwards spawns servers whose shim connects to the adopted preload socket.
TEST_F(Reexec, AWrappedServerKeepsServingAndRestartsAfterReexecs)
{
    const int port = freePort();
    writeFile(fdsupd_.dir() / "index.html", "wrapped\n");
    const std::string config =
        fdsupd_.supervisorTable(requireEnv("FDSUP_TEST_PRELOAD")) +
        "[socket.files]\nlisten = \"tcp://127.0.0.1:" + std::to_string(port) +
        "\"\n\n[service.files]\ncommand = [\"/usr/bin/python3\", \"-m\", \"http.server\", \"--bind\", "
        "\"127.0.0.1\", \"--directory\", " +
        Json(fdsupd_.dir().path().string()).dump() + ", \"" + std::to_string(port) +
        "\"]\nsockets = [\"files\"]\nwrap = \"preload\"\nready = \"bound\"\ninstances = 2\n"
        "drain_timeout = \"2s\"\n";
    std::string why;
    ASSERT_TRUE(fdsupd_.start(config, why)) << why;
    ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "files"}}).error, "");
    ASSERT_TRUE(waitUntil([&] { return fdsupd_.status("files").value("state", "") == "running"; }))
        << fdsupd_.status("files").dump(2) << fdsupd_.log();
    const std::set<pid_t> pids = instancePids(fdsupd_.status("files"));
    ASSERT_EQ(pids.size(), 2U);
    expectClaimedBy(fdsupd_.status("files"), pids);
    HttpLoad fresh(port, 3, HttpLoad::Mode::Fresh);
    fresh.start();
    for (int round = 1; round <= 2; ++round) {
        const std::size_t before = fresh.requests();
        EXPECT_EQ(reexec().value("reexecs", -1), round);
        EXPECT_EQ(instancePids(fdsupd_.status("files")), pids) << "round " << round;
        EXPECT_TRUE(fresh.waitForRequests(before, 50, kEventDeadline));
    }
    // The claims were carried: each listener is still adopted by its server.
    expectClaimedBy(fdsupd_.status("files"), pids);
    EXPECT_THAT(fdsupd_.log(), HasSubstr("files: adopted the preload socket"));
    // A restart: the new servers' shims connect to the adopted preload socket and claim the listener.
    const ProcessResult restart = fdsupd_.fdsupctl({"restart", "--wait", "files"});
    EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err << fdsupd_.log();
    const std::set<pid_t> after = instancePids(fdsupd_.status("files"));
    ASSERT_EQ(after.size(), 2U);
    for (const pid_t pid : after) {
        EXPECT_EQ(pids.count(pid), 0U) << "the restart replaced every server";
    }
    expectClaimedBy(fdsupd_.status("files"), after);
    const std::size_t settled = fresh.requests();
    EXPECT_TRUE(fresh.waitForRequests(settled, 50, kEventDeadline));
    const HttpLoadReport report = fresh.stop();
    EXPECT_EQ(report.ok, report.requests) << report.summary();
    EXPECT_EQ(report.refused, 0U) << report.summary();
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// The pid a pid file names; 0 while it is not there.
pid_t readPid(const std::filesystem::path &file)
{
    std::ifstream in(file);
    pid_t pid = 0;
    in >> pid;
    return pid;
}

// A daemonising server (the preload client with --daemonize: its started
// process exits once the daemon wrote its pid file) followed through its
// pid_file across a re-exec: the same daemon pid is followed, serves, and is
// stopped and reaped by the new image.
TEST_F(Reexec, APidFileDaemonIsStillFollowedAndIsStoppedAfterAReexec)
{
    const std::string pidFile = (fdsupd_.dir() / "web.pid").string();
    const std::string library = requireEnv("FDSUP_TEST_HARMLESS_PRELOAD");
    const std::string config =
        fdsupd_.supervisorTable(library) +
        "[socket.web]\nlisten = \"tcp://127.0.0.1:0\"\n\n[service.web]\ncommand = [" +
        Json(requireEnv("FDSUP_TEST_PRELOAD_CLIENT")).dump() + ", \"--daemonize\", " + Json(pidFile).dump() +
        "]\nsockets = [\"web\"]\nwrap = \"preload\"\nenvironment = { "
        "FDSUP_TEST_PRELOAD_LIBRARY = " +
        Json(library).dump() + " }\nready = \"bound\"\npid_file = " + Json(pidFile).dump() +
        "\ndrain_timeout = \"5s\"\n";
    std::string why;
    ASSERT_TRUE(fdsupd_.start(config, why)) << why;
    ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    const auto followed = [&] {
        const Json instances = fdsupd_.status("web").at("instances");
        return instances.size() == 1 && instances[0].at("state") == "ready" && readPid(pidFile) > 0 &&
               instances[0].at("pid") == readPid(pidFile);
    };
    ASSERT_TRUE(waitUntil(followed)) << fdsupd_.status("web").dump(2) << fdsupd_.log();
    const pid_t daemon = readPid(pidFile);
    // What the server answers a new connection: its pid.
    const auto servedBy = [&] {
        UniqueFd c = connectLoopback(fdsupd_.port("web"));
        char buffer[32] = {};
        const ssize_t n = ::read(c.get(), buffer, sizeof buffer - 1);
        return n > 0 ? static_cast<pid_t>(std::stol(buffer)) : 0;
    };
    EXPECT_EQ(servedBy(), daemon);

    EXPECT_EQ(reexec().value("reexecs", -1), 1);
    EXPECT_TRUE(followed()) << fdsupd_.status("web").dump(2);
    EXPECT_EQ(fdsupd_.status("web").at("instances").at(0).at("pid"), daemon);
    EXPECT_THAT(fdsupd_.log(), HasSubstr("following the daemon of " + pidFile));
    EXPECT_EQ(servedBy(), daemon);

    // The new image stops it: signalled, its exit seen through the carried pidfd, reaped.
    const ProcessResult stop = fdsupd_.fdsupctl({"stop", "web"});
    ASSERT_EQ(stop.exitCode, 0) << stop.out << stop.err;
    EXPECT_TRUE(waitUntil([&] { return !std::filesystem::exists("/proc/" + std::to_string(daemon)); }))
        << "stopped and reaped: no orphan, no zombie";
    EXPECT_TRUE(waitUntil([&] { return fdsupd_.status("web").at("state") == "stopped"; }))
        << fdsupd_.status("web").dump(2);
    EXPECT_THAT(fdsupd_.log(), HasSubstr("web[0] (pid " + std::to_string(daemon) + ") exited with status 0"));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

// External workers (an activation socket): their channels and the socket
// itself are carried; they keep serving through re-execs, hand over to a
// spawned worker after them, and new ones still join.
TEST_F(Reexec, ExternalWorkersKeepServingAndHandOverAfterReexecs)
{
    const std::string seqnum = requireEnv("FDSUP_TEST_SEQNUM_ECHO");
    const auto activation = fdsupd_.dir() / "web.activation";
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + channelWebService(seqnum, 1) +
                                  "activation_socket = " + Json(activation.string()).dump() + "\n",
                              why))
        << why;
    ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    BackgroundProcess external({seqnum, "--connect", activation.string()}, fdsupd_.dir() / "external.log");
    const auto externalReady = [&](std::size_t count) {
        return waitUntil([&] {
            const Json list = fdsupd_.status("web").at("external");
            return list.size() == count &&
                   std::all_of(list.begin(), list.end(), [](const Json &e) { return e.at("ready") == true; });
        });
    };
    ASSERT_TRUE(externalReady(1)) << external.log();
    const Json joined = fdsupd_.status("web").at("external").at(0);
    const std::set<pid_t> spawned = instancePids(fdsupd_.status("web"));
    // Scaled to 0, the spawned worker hands its connections to the external one.
    const int port = fdsupd_.port("web");
    SeqnumClients clients(port, 40);
    const auto roundsPast = [&](std::uint64_t target) {
        (void)waitUntil([&] { return clients.rounds() >= target || !clients.errors().empty(); });
        return clients.rounds() >= target;
    };
    ASSERT_TRUE(roundsPast(200)) << ::testing::PrintToString(clients.errors());
    const auto down = fdsupd_.fdsupctl({"scale", "web", "0"});
    ASSERT_EQ(down.exitCode, 0) << down.out << down.err;

    for (int round = 1; round <= 2; ++round) {
        const Json reply = reexec();
        EXPECT_EQ(reply.value("pid", 0), fdsupd_.pid());
        EXPECT_EQ(reply.value("reexecs", 0), round);
        ASSERT_TRUE(roundsPast(clients.rounds() + 200)) << ::testing::PrintToString(clients.errors());
        const Json now = fdsupd_.status("web").at("external");
        ASSERT_EQ(now.size(), 1U) << now.dump();
        EXPECT_EQ(now.at(0).at("id"), joined.at("id"));
        EXPECT_EQ(now.at(0).at("pid"), external.pid());
        EXPECT_EQ(now.at(0).at("ready"), true);
    }
    EXPECT_THAT(fdsupd_.log(), HasSubstr("adopted the activation socket " + activation.string() +
                                         " and 1 external worker(s) across re-exec"));
    for (const int clientPort : clients.localPorts()) {
        EXPECT_EQ(serverPidOf(port, clientPort, {external.pid()}), external.pid())
            << "client port " << clientPort;
    }

    // A new external worker still joins the re-executed fdsupd.
    BackgroundProcess second({seqnum, "--connect", activation.string()}, fdsupd_.dir() / "second.log");
    ASSERT_TRUE(externalReady(2)) << second.log();
    second.signal(SIGTERM);
    EXPECT_EQ(second.wait(kEventDeadline), 0) << second.log();

    // Told to go by its operator, the first hands every connection over
    // through the new image to a spawned worker: no stream breaks.
    const auto up = fdsupd_.fdsupctl({"scale", "web", "1"});
    ASSERT_EQ(up.exitCode, 0) << up.out << up.err;
    external.signal(SIGTERM);
    EXPECT_EQ(external.wait(kEventDeadline), 0) << external.log();
    ASSERT_TRUE(roundsPast(clients.rounds() + 200)) << ::testing::PrintToString(clients.errors());
    const std::set<pid_t> now = instancePids(fdsupd_.status("web"));
    ASSERT_EQ(now.size(), 1U);
    EXPECT_EQ(spawned.count(*now.begin()), 0U);
    for (const int clientPort : clients.localPorts()) {
        EXPECT_EQ(serverPidOf(port, clientPort, now), *now.begin()) << "client port " << clientPort;
    }
    clients.close();
    EXPECT_TRUE(clients.errors().empty()) << ::testing::PrintToString(clients.errors());
    const Json web =
        fdsupd_.call("io.fdsup.Manager.Connections", {{"service", "web"}}).parameters.at("services").at(0);
    EXPECT_EQ(web.at("handed"), web.at("adopted"));
    EXPECT_EQ(web.at("refused"), 0);

    // The re-executed image owns the socket files it was given: gone with it.
    EXPECT_EQ(fdsupd_.stop(), 0);
    EXPECT_FALSE(std::filesystem::exists(activation));
    EXPECT_FALSE(std::filesystem::exists(fdsupd_.controlPath()));
}

// A reload whose rollout failed and rolled back leaves the service on the
// configuration it runs, and that is the one a re-exec carries: the new image
// does not bring the rejected change back.
TEST_F(Reexec, AfterARolledBackReloadTheRunningConfigurationIsCarried)
{
    const std::string seqnum = requireEnv("FDSUP_TEST_SEQNUM_ECHO");
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + channelWebService(seqnum, 1), why)) << why;
    ASSERT_EQ(fdsupd_.call("io.fdsup.Manager.Start", {{"service", "web"}}).error, "");
    const std::set<pid_t> pids = instancePids(fdsupd_.status("web"));
    const auto configPath = fdsupd_.dir() / "fdsupd.toml";
    std::string text = readFile(configPath);
    const std::string command = "command = [\"" + seqnum + "\"]";
    ASSERT_NE(text.find(command), std::string::npos) << text;
    text.replace(text.find(command), command.size(), "command = [\"/bin/false\"]");
    writeFile(configPath, text);
    const ProcessResult reload = fdsupd_.fdsupctl({"reload"});
    ASSERT_NE(reload.exitCode, 0) << reload.out << reload.err;
    ASSERT_EQ(instancePids(fdsupd_.status("web")), pids);
    const Json before = fdsupd_.status("web");

    const Json reply = reexec();
    EXPECT_EQ(reply.value("reexecs", 0), 1);
    EXPECT_EQ(instancePids(fdsupd_.status("web")), pids);
    EXPECT_EQ(fdsupd_.status("web").at("generation"), before.at("generation"));
    // A restart after it starts what ran before, not the rejected /bin/false.
    const ProcessResult restart = fdsupd_.fdsupctl({"restart", "web"});
    EXPECT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    std::set<pid_t> now;
    ASSERT_TRUE(waitUntil([&] {
        now = instancePids(fdsupd_.status("web"));
        return now.size() == 1 && pids.count(*now.begin()) == 0;
    })) << ::testing::PrintToString(now);
    EXPECT_EQ(readFile("/proc/" + std::to_string(*now.begin()) + "/cmdline"), seqnum + std::string(1, '\0'));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

TEST_F(Reexec, Sigusr2ReexecsAndTheLogSaysSo)
{
    startAll();
    const auto pids = workerPids();
    ASSERT_EQ(::kill(fdsupd_.pid(), SIGUSR2), 0);
    EXPECT_TRUE(waitUntil([&] { return fdsupd_.log().find("Re-executed in place") != std::string::npos; }))
        << fdsupd_.log();
    EXPECT_THAT(fdsupd_.log(), HasSubstr("SIGUSR2: re-executing"));
    // Our own manager is told the main pid (the same) and that we are ready again.
    const std::string mainPid = "MAINPID=" + std::to_string(fdsupd_.pid()) + "\n";
    EXPECT_TRUE(fdsupd_.notifications().waitFor(
        [&](const std::string &message) {
            return message.find(mainPid) != std::string::npos &&
                   message.find("READY=1\n") != std::string::npos;
        },
        kEventDeadline));
    EXPECT_EQ(workerPids(), pids);
    EXPECT_TRUE(answersOk(fdsupd_.port("web")));
    EXPECT_EQ(fdsupd_.stop(), 0);
}

} // namespace
} // namespace fdsup::test
