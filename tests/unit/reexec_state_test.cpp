// The re-exec state's format (encode, decode, every refusal naming its field) and the binary's check.
#include <string>

#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "daemon/daemon.hpp"
#include "daemon/reexec_state.hpp"
#include "io/reexec_preflight.hpp"
#include "loop_driver.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// A state naming descriptors 3.. (not open: decodeState() does not look).
ReexecState sample()
{
    ReexecState state;
    state.fdsupdVersion = "0.1.0";
    state.reexecs = 2;
    state.startedFrom = "/usr/sbin/fdsupd";
    state.configPath = "/etc/fdsupd/fdsupd.toml";
    state.configText = "[socket.web]\nlisten = \"tcp://127.0.0.1:8080\"\n";
    state.notifyPrefix = "fdsupd/42-0badf00d";
    state.nextInstanceId = 17;
    state.nofileCur = 1024;
    state.nofileMax = 524288;
    state.controlFd = 3;
    state.caller = CallerSnapshot{4, 4242, 1000, 100};
    state.controlClients = {13, 14};
    state.followers = {FollowerSnapshot{17, "web"}};
    state.sockets.push_back(SocketSnapshot{"web", {5, 6}, {"127.0.0.1:8080", "[::1]:8080"}, true});
    ServiceSnapshot web;
    web.name = "web";
    web.generation = 3;
    web.nextGeneration = 5;
    web.active = true;
    web.restartsTotal = 2;
    web.restartTimesUsec = {1000000, 2500000};
    web.slots = {SlotHistory{1, 0, false, false, "exited with status 1", ""}, SlotHistory{}};
    web.notifyFd = 7;
    InstanceSnapshot a;
    a.id = 15;
    a.slot = 0;
    a.generation = 3;
    a.role = "primary";
    a.state = "ready";
    a.sinceUsec = 123;
    a.startedAtUsec = 100;
    a.readyAtUsec = 123;
    a.status = "serving";
    a.errnoValue = 0;
    a.watchdogUsec = 5000000;
    a.pid = 4000;
    a.pidfd = 8;
    a.stdoutFd = 9;
    a.stderrFd = 10;
    a.channelFd = 11;
    a.welcomed = true;
    a.capabilities = 7;
    InstanceSnapshot b = a;
    b.followed = true; // a pid_file daemon: another pid than the one started
    b.spawnPid = 3990;
    b.id = 16;
    b.slot = 1;
    b.readyAtUsec.reset();
    b.status.reset();
    b.errnoValue.reset();
    b.pid = 4001;
    b.pidfd = 12;
    b.stdoutFd = -1;
    b.stderrFd = -1;
    b.channelFd = -1;
    b.welcomed = false;
    b.capabilities = 0;
    web.instances = {a, b};
    RolloutRecord record;
    record.id = 4;
    record.service = "web";
    record.fromGeneration = 2;
    record.toGeneration = 4;
    record.options.batch = 2;
    record.options.order = config::RolloutOrder::StopFirst;
    record.state = RolloutState::Failed;
    record.reason = "web[0] exited";
    record.failure = RolloutFailure{0, 3999, 4, "exited with status 2", {"panic", "bye"}};
    record.startedRealtimeUsec = 1795254823010097;
    record.duration = 2s;
    record.steps.push_back(RolloutStep{0, RolloutStep::Phase::Failed, 10, 3000, 13, 3999, "exited"});
    record.steps.push_back(RolloutStep{1, RolloutStep::Phase::RolledBack, 11, 3001, 14, 0, ""});
    web.lastRollout = record;
    web.rolloutSerial = 4;
    web.rolloutTickets = 1;
    web.handoff = HandoffCounters{600, 598, 1, 1, 3};
    web.stored = {StoredFdSnapshot{"cache", 15, true}, StoredFdSnapshot{"cache", 16, false}};
    web.output = {LogEntry{1795254823010097, 0, 4000, 3, false, "listening"},
                  LogEntry{1795254823010098, 1, 4001, 3, true, "warning: \u00e9t\u00e9"}};
    PreloadSnapshot preload;
    preload.fd = 18;
    preload.peers = {PreloadPeerSnapshot{19, 15, 4002, true, 24},
                     PreloadPeerSnapshot{20, 16, 4001, false, 0}};
    preload.claims = {PreloadClaimSnapshot{15, 2, false, {{"web", 4002}}},
                      PreloadClaimSnapshot{16, 1, true, {}}};
    web.preload = preload;
    ActivationSnapshot activation;
    activation.fd = 21;
    activation.workers = {
        ExternalWorkerSnapshot{22, 17, 5000, 33, 33, true, false, "serving", 1234, true, 8},
        ExternalWorkerSnapshot{23, 18, 5001, 4242, 4242, false, false, std::nullopt, 99, false, 0}};
    web.activation = activation;
    state.services.push_back(web);
    return state;
}

// The sample's JSON with one change made by `edit`, decoded.
Result<ReexecState> decodeEdited(const std::function<void(Json &)> &edit)
{
    Json doc = Json::parse(encodeState(sample()));
    edit(doc);
    return decodeState(doc.dump());
}

TEST(ReexecState, EverythingSurvivesEncodeAndDecode)
{
    const ReexecState state = sample();
    const auto decoded = decodeState(encodeState(state));
    ASSERT_TRUE(decoded) << decoded.error().message;
    EXPECT_EQ(*decoded, state);
    EXPECT_EQ(decoded->fds(), (std::vector<int>{3,  4,  13, 14, 17, 5, 6, 7,  15, 16, 18,
                                                19, 20, 21, 22, 23, 8, 9, 10, 11, 12}));
}

// The new image restores from duplicates: remapFds() reaches every descriptor fds() names, in the same order.
TEST(ReexecState, RemappingReachesEveryDescriptor)
{
    ReexecState state = sample();
    std::vector<int> expected;
    for (const int fd : state.fds()) {
        expected.push_back(fd + 100);
    }
    state.remapFds([](int fd) { return fd + 100; });
    EXPECT_EQ(state.fds(), expected);
}

TEST(ReexecState, TheDocumentIsVersionedAndNamed)
{
    const Json doc = Json::parse(encodeState(sample()));
    EXPECT_EQ(doc.at("format"), "fdsup-state");
    EXPECT_EQ(doc.at("version"), 1);
    EXPECT_EQ(doc.at("fdsupd_version"), "0.1.0");
}

TEST(ReexecState, AnUnknownVersionIsRejected)
{
    const auto r = decodeEdited([](Json &doc) { doc["version"] = 2; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message,
              "state: version: state version 2 is not readable by this fdsupd (it reads 1)");
}

TEST(ReexecState, AnotherFormatIsRejected)
{
    const auto r = decodeEdited([](Json &doc) { doc["format"] = "something-else"; });
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message, "state: format: 'something-else' is not \"fdsup-state\"");
}

TEST(ReexecState, EachMalformedFieldIsNamed)
{
    struct Case {
        std::function<void(Json &)> edit;
        std::string message;
    };
    const std::vector<Case> cases{
        {[](Json &d) { d["services"][0]["instances"][0]["pidfd"] = "eight"; },
         "state: services[0].instances[0].pidfd: expected an integer"},
        {[](Json &d) { d["services"][0].erase("notify_fd"); }, "state: services[0].notify_fd: missing"},
        {[](Json &d) { d["services"][0]["instances"][1]["pid"] = 0; },
         "state: services[0].instances[1].pid: 0 is out of range"},
        {[](Json &d) { d["services"][0]["instances"][0]["state"] = "draining"; },
         "state: services[0].instances[0].state: 'draining' is not carried (only \"ready\")"},
        {[](Json &d) { d["services"][0]["instances"][0]["slot"] = 9; },
         "state: services[0].instances[0].slot: no such slot"},
        {[](Json &d) { d["sockets"][0]["fds"][1] = 2; }, "state: sockets[0].fds[1]: 2 is out of range"},
        {[](Json &d) { d["sockets"][0]["addresses"].erase(1); },
         "state: sockets[0].addresses: not one per fd"},
        {[](Json &d) { d["control_fd"] = 5; }, "state: fd 5 is named twice"},
        {[](Json &d) { d["services"][0]["last_rollout"]["state"] = "exploded"; },
         "state: services[0].last_rollout.state: unknown value 'exploded'"},
        {[](Json &d) { d["services"][0]["active"] = 1; },
         "state: services[0].active: expected true or false"},
        {[](Json &d) { d["services"] = Json::object(); }, "state: services: expected an array"},
        {[](Json &d) { d.erase("config"); }, "state: config: missing"},
        {[](Json &d) { d["services"][0]["instances"][1]["followed"] = "yes"; },
         "state: services[0].instances[1].followed: expected true or false"},
        {[](Json &d) { d["services"][0]["instances"][1]["spawn_pid"] = -1; },
         "state: services[0].instances[1].spawn_pid: -1 is out of range"},
        {[](Json &d) { d["services"][0]["preload"]["fd"] = "x"; },
         "state: services[0].preload.fd: expected an integer"},
        {[](Json &d) { d["services"][0]["preload"]["peers"][1]["pid"] = 0; },
         "state: services[0].preload.peers[1].pid: 0 is out of range"},
        {[](Json &d) { d["services"][0]["preload"]["peers"][0].erase("instance"); },
         "state: services[0].preload.peers[0].instance: missing"},
        {[](Json &d) { d["services"][0]["preload"]["claims"][0]["claimed"][0]["listener"] = 3; },
         "state: services[0].preload.claims[0].claimed[0].listener: expected a string"},
        {[](Json &d) { d["services"][0]["preload"]["claims"][1].erase("deadline_passed"); },
         "state: services[0].preload.claims[1].deadline_passed: missing"},
        {[](Json &d) { d["services"][0]["preload"]["peers"][0]["fd"] = 7; }, "state: fd 7 is named twice"},
        {[](Json &d) { d["services"][0]["activation"]["fd"] = -1; },
         "state: services[0].activation.fd: -1 is out of range"},
        {[](Json &d) { d["services"][0]["activation"]["workers"][1]["uid"] = "nobody"; },
         "state: services[0].activation.workers[1].uid: expected an integer"},
        {[](Json &d) { d["services"][0]["activation"]["workers"][0].erase("draining"); },
         "state: services[0].activation.workers[0].draining: missing"},
        {[](Json &d) { d["services"][0]["activation"]["workers"][0]["status"] = 5; },
         "state: services[0].activation.workers[0].status: expected a string"},
        {[](Json &d) { d["services"][0]["activation"]["workers"][1]["fd"] = 21; },
         "state: fd 21 is named twice"},
    };
    for (const auto &c : cases) {
        const auto r = decodeEdited(c.edit);
        ASSERT_FALSE(r) << c.message;
        EXPECT_EQ(r.error().message, c.message);
    }
}

// "preload", "activation", "followed" and "spawn_pid" were added within version 1: a state written before
// them still reads, as a service without a preload or activation socket and instances following no daemon.
TEST(ReexecState, AStateWithoutTheFieldsAddedWithinVersion1StillReads)
{
    const auto r = decodeEdited([](Json &doc) {
        doc["services"][0].erase("preload");
        doc["services"][0].erase("activation");
        doc["services"][0]["instances"][1].erase("followed");
        doc["services"][0]["instances"][1].erase("spawn_pid");
    });
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_FALSE(r->services.at(0).preload);
    EXPECT_FALSE(r->services.at(0).activation);
    EXPECT_FALSE(r->services.at(0).instances.at(1).followed);
    EXPECT_EQ(r->services.at(0).instances.at(1).spawnPid, 0);
    EXPECT_EQ(r->fds(), (std::vector<int>{3, 4, 13, 14, 17, 5, 6, 7, 15, 16, 8, 9, 10, 11, 12}));
}

TEST(ReexecState, NotJsonIsRejected)
{
    const auto r = decodeState("{\"format\": \"fdsup-state\", \"version\"");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message, "state: not a JSON object");
}

TEST(ReexecState, EveryDescriptorMustBeOpen)
{
    ReexecState state;
    state.controlFd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    ASSERT_GE(state.controlFd, 3);
    const std::string text = encodeState(state);
    EXPECT_TRUE(decodeAndCheckState(text));
    ::close(state.controlFd);
    const auto r = decodeAndCheckState(text);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().message, "state: fd " + std::to_string(state.controlFd) + " is not open");
}

// What restore() needs of a state against the configuration it carries;
// the old image asks the same of its own state before it execs.
TEST(ReexecState, EveryConfiguredSocketAndServiceMustBeInTheState)
{
    const std::string text = "[socket.web]\nlisten = \"tcp://127.0.0.1:8080\"\n"
                             "[socket.next]\nlisten = \"tcp://127.0.0.1:8081\"\nreceive = true\n"
                             "[service.web]\ncommand = [\"/bin/true\"]\nsockets = [\"web\"]\n";
    const config::LoadResult loaded =
        config::loadConfigString(text, "/etc/fdsupd/fdsupd.toml", "/etc/fdsupd");
    ASSERT_TRUE(loaded.config);
    ReexecState state = sample();
    // A receive = true socket not received yet has no descriptors: fine.
    state.sockets.push_back(SocketSnapshot{"next", {}, {}, true});
    EXPECT_TRUE(Daemon::checkState(*loaded.config, state));

    ReexecState noFds = state;
    noFds.sockets.front().fds.clear(); // a bound socket always has some
    auto refused = Daemon::checkState(*loaded.config, noFds);
    ASSERT_FALSE(refused);
    EXPECT_THAT(refused.error().message, HasSubstr("socket 'web' of the configuration is not in the state"));

    ReexecState noService = state;
    noService.services.clear();
    refused = Daemon::checkState(*loaded.config, noService);
    ASSERT_FALSE(refused);
    EXPECT_THAT(refused.error().message, HasSubstr("service 'web' of the configuration is not in the state"));
}

TEST(ReexecPreflight, TheAnswerIsOneJsonLine)
{
    const auto ok = ReexecPreflight::parseAnswer("{\"version\":\"0.2.0\",\"state_versions\":[1,2]}\n");
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(ok->version, "0.2.0");
    EXPECT_EQ(ok->stateVersions, (std::vector<unsigned>{1, 2}));
    EXPECT_EQ(ReexecPreflight::parseAnswer("").error().message, "printed nothing");
    EXPECT_THAT(ReexecPreflight::parseAnswer("fdsupd 0.1.0\n").error().message,
                HasSubstr("\"fdsupd 0.1.0\""));
}

// Runs the check of `script` (a real process) and returns what it concluded.
Result<PreflightAnswer> check(const std::string &text, Duration deadline = 10s)
{
    test::TempDir dir;
    const auto path = dir / "candidate";
    test::writeFile(path, text);
    ::chmod(path.c_str(), 0700);
    auto loop = EventLoop::create();
    EXPECT_TRUE(loop);
    UniqueFd binary(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    std::optional<Result<PreflightAnswer>> answer;
    auto preflight = ReexecPreflight::start(**loop, binary.borrow(), path.string(), deadline,
                                            [&](Result<PreflightAnswer> a) { answer = std::move(a); });
    EXPECT_TRUE(preflight) << preflight.error().message;
    EXPECT_TRUE(test::runLoopUntil(**loop, [&] { return answer.has_value(); }));
    return answer.value_or(Error{EIO, "no answer"});
}

TEST(ReexecPreflight, ACandidateThatAnswersPasses)
{
    const auto r = check("#!/bin/sh\n[ \"$1\" = --reexec-check ] || exit 3\n"
                         "echo '{\"version\":\"9.9\",\"state_versions\":[1]}'\n");
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->version, "9.9");
}

TEST(ReexecPreflight, AFailingCandidateIsReportedWithItsStderr)
{
    const auto r = check("#!/bin/sh\necho 'cannot load libfoo.so.2' >&2\nexit 127\n");
    ASSERT_FALSE(r);
    EXPECT_THAT(r.error().message,
                HasSubstr("--reexec-check exited with status 127: cannot load libfoo.so.2"));
}

TEST(ReexecPreflight, ACandidateThatHangsIsKilledAtTheDeadline)
{
    const auto r = check("#!/bin/sh\nexec sleep 1000\n", 200ms);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ETIMEDOUT);
    EXPECT_THAT(r.error().message, HasSubstr("did not answer in time"));
}

// The metrics endpoint's socket (docs/metrics.md): carried when served,
// named by fds() right after the control socket, absent from older states.
TEST(ReexecState, TheMetricsSocketIsCarriedWhenThereIsOne)
{
    ReexecState state = sample();
    state.metricsFd = 30;
    const auto decoded = decodeState(encodeState(state));
    ASSERT_TRUE(decoded) << decoded.error().message;
    EXPECT_EQ(decoded->metricsFd, 30);
    EXPECT_EQ(decoded->fds().at(1), 30);
    const auto without = decodeState(encodeState(sample()));
    ASSERT_TRUE(without) << without.error().message;
    EXPECT_EQ(without->metricsFd, -1);
    EXPECT_EQ(encodeState(sample()).find("metrics_fd"), std::string::npos);
    const auto bad = decodeEdited([](Json &doc) { doc["metrics_fd"] = 1; });
    ASSERT_FALSE(bad);
    EXPECT_THAT(bad.error().message, HasSubstr("metrics_fd"));
}

// The counters a scrape reports go on from where they were.
TEST(ReexecState, TheMetricsCountersAreCarried)
{
    ReexecState state = sample();
    state.reloads = {1, 2, 3, 4, 5};
    ServiceSnapshot &web = state.services.at(0);
    web.restartsByCause = {1, 0, 2, 0, 0, 3, 0};
    web.rollouts.started = 4;
    web.rollouts.succeeded = 2;
    web.rollouts.rolledBack = 1;
    web.rollouts.durations.at(3) = 3;
    web.rollouts.durationSeconds = 2.5;
    web.notifyDropped = 6;
    web.channelDropped = 7;
    const auto decoded = decodeState(encodeState(state));
    ASSERT_TRUE(decoded) << decoded.error().message;
    EXPECT_EQ(*decoded, state);
    // An older state has none: zeros.
    const auto older = decodeEdited([](Json &doc) {
        doc.erase("reloads");
        doc["services"][0].erase("metrics");
    });
    ASSERT_TRUE(older) << older.error().message;
    EXPECT_EQ(older->reloads, (std::array<std::uint64_t, 5>{}));
    EXPECT_EQ(older->services.at(0).rollouts, RolloutCounters{});
    const auto shortList =
        decodeEdited([](Json &doc) { doc["services"][0]["metrics"]["restarts_by_cause"] = {1}; });
    ASSERT_FALSE(shortList);
    EXPECT_EQ(shortList.error().message, "state: services[0].metrics.restarts_by_cause: 1 counts, not 7");
}

} // namespace
} // namespace fdsup
