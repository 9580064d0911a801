// The real fdsup-load against real servers: fdsupd with handoff, seqnum-echo, python http.server,
// and peer_server.py's misbehaving servers, one per class of failure.
#include <csignal>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "examples.hpp"
#include "test_support.hpp"

using namespace fdsup::test;
using nlohmann::json;

namespace {

const char *const kClasses[] = {"ok",           "refused", "fresh_reset", "fresh_eof",     "keepalive_race",
                                "mid_response", "timeout", "non_2xx",     "broken_stream", "other"};

class FdsupLoad : public DaemonTest<> {
protected:
    // Runs fdsup-load with args (and --json); its JSON, after checking it exited 0.
    json run(std::vector<std::string> args)
    {
        std::string file = (dir_ / ("run" + std::to_string(runs_++) + ".json")).string();
        args.insert(args.begin(), requireEnv("FDSUP_LOAD"));
        args.insert(args.end(), {"--json", file});
        last_ = runProcess(args, {}, kEventDeadline);
        EXPECT_EQ(last_.exitCode, 0) << last_.err;
        json j = json::parse(readFile(file));
        EXPECT_EQ(j["schema"], "fdsup-load/1");
        uint64_t failures = 0;
        for (const char *name : kClasses) {
            EXPECT_TRUE(j["counts"].contains(name)) << name;
            failures += std::string(name) == "ok" ? 0 : j["counts"][name].get<uint64_t>();
        }
        EXPECT_EQ(j["failures"], failures);
        return j;
    }

    // Starts peer_server.py MODE on host; its port once it listens.
    int peer(const std::string &mode, const std::string &host = "127.0.0.1")
    {
        auto portFile = dir_ / (mode + std::to_string(peers_.size()) + ".port");
        peers_.push_back(std::make_unique<BackgroundProcess>(
            std::vector<std::string>{requireEnv("FDSUP_LOAD_PEER_SERVER"), mode, portFile.string(), host},
            dir_ / (mode + std::to_string(peers_.size()) + ".log")));
        EXPECT_TRUE(waitUntil([&] { return std::filesystem::exists(portFile); })) << peers_.back()->log();
        return std::stoi(readFile(portFile));
    }

    // Every class but `expected` (and ok) is 0, `expected` is not.
    static void expectOnly(const json &j, const std::string &expected)
    {
        for (const char *name : kClasses) {
            if (name == expected) {
                EXPECT_GT(j["counts"][name], 0) << name << "\n" << j.dump(2);
            } else if (std::string(name) != "ok") {
                EXPECT_EQ(j["counts"][name], 0) << name << "\n" << j.dump(2);
            }
        }
    }

    TempDir dir_;
    int runs_ = 0;
    ProcessResult last_;
    std::vector<std::unique_ptr<BackgroundProcess>> peers_;
};

std::string target(int port)
{
    return "127.0.0.1:" + std::to_string(port);
}

} // namespace

TEST_F(FdsupLoad, HandoffRestartsUnderFdsupdFailNothing)
{
    std::string why;
    ASSERT_TRUE(fdsupd_.start(
        fdsupd_.supervisorTable() + channelWebService(requireEnv("FDSUP_TEST_HTTP_KEEPALIVE"), 2), why))
        << why;
    for (const char *mode : {"keepalive", "think"}) {
        json j = run({"--target", target(fdsupd_.port("web")), "--mode", mode, "--connections", "16",
                      "--duration", "2s", "--restart",
                      requireEnv("FDSUPCTL") + " -s " + fdsupd_.controlPath() + " restart web --wait",
                      "--restarts", "3"});
        EXPECT_GT(j["counts"]["ok"], 0) << mode;
        EXPECT_EQ(j["failures"], 0) << mode << "\n" << j.dump(2);
        EXPECT_EQ(j["counts"]["forced_reconnects"], 0) << mode;
        EXPECT_EQ(j["counts"]["connections_opened"], 16) << mode;
        ASSERT_EQ(j["restarts"].size(), 3U) << mode;
        for (const auto &r : j["restarts"]) {
            EXPECT_EQ(r["exit_status"], 0) << last_.err;
            EXPECT_GE(r["end_ms"].get<double>(), r["start_ms"].get<double>());
        }
        EXPECT_GT(j["throughput"]["during"], 0);
    }
}

TEST_F(FdsupLoad, StreamsSurviveHandoffRestarts)
{
    std::string why;
    ASSERT_TRUE(fdsupd_.start(
        fdsupd_.supervisorTable() + channelWebService(requireEnv("FDSUP_TEST_SEQNUM_ECHO"), 2), why))
        << why;
    json j = run({"--target", target(fdsupd_.port("web")), "--mode", "stream", "--connections", "16",
                  "--duration", "2s", "--think", "5ms", "--restart",
                  requireEnv("FDSUPCTL") + " -s " + fdsupd_.controlPath() + " restart web --wait",
                  "--restarts", "2"});
    EXPECT_GT(j["counts"]["ok"], 0);
    EXPECT_EQ(j["failures"], 0) << j.dump(2);
    EXPECT_EQ(j["counts"]["connections_opened"], 16);
}

// The soak stops its loads when its restarts are over: SIGTERM ends a run of an hour like its
// duration would, with the results written.
TEST_F(FdsupLoad, SigtermEndsTheRunWithItsResults)
{
    std::string why;
    ASSERT_TRUE(fdsupd_.start(
        fdsupd_.supervisorTable() + channelWebService(requireEnv("FDSUP_TEST_SEQNUM_ECHO"), 2), why))
        << why;
    const auto file = dir_ / "stopped.json";
    BackgroundProcess load({requireEnv("FDSUP_LOAD"), "--target", target(fdsupd_.port("web")), "--mode",
                            "stream", "--connections", "4", "--duration", "60m", "--json", file.string(),
                            "--quiet"},
                           dir_ / "stopped.log");
    // Running: its 4 connections are open.
    ASSERT_TRUE(waitUntil([&] {
        int sockets = 0;
        for (const auto &[fd, what] : openFds(load.pid())) {
            sockets += what.starts_with("socket:") ? 1 : 0;
        }
        return sockets >= 4;
    })) << load.log();
    load.signal(SIGTERM);
    ASSERT_EQ(load.wait(kEventDeadline), 0) << load.log();
    json j = json::parse(readFile(file));
    EXPECT_EQ(j["duration_ms"], 3600000);
    EXPECT_LT(j["elapsed_ms"].get<double>(), 3600000.0);
    EXPECT_EQ(j["failures"], 0) << j.dump(2);
    EXPECT_EQ(j["counts"]["connections_opened"], 4);
}

TEST_F(FdsupLoad, AStoppedServerGivesRefusedAndAGap)
{
    int port = peer("chunked"); // keep-alive, chunked bodies: ok until it is killed
    pid_t pid = peers_.back()->pid();
    json j = run({"--target", target(port), "--connections", "4", "--duration", "1500ms", "--timeout", "2s",
                  "--restart", "kill -9 " + std::to_string(pid), "--restarts", "1"});
    EXPECT_GT(j["counts"]["ok"], 0);
    EXPECT_GT(j["counts"]["refused"], 0);
    EXPECT_GT(j["longest_gap_ms"].get<double>(), 300.0); // from the kill (at about 750 ms) to the end
    EXPECT_GT(j["throughput"]["before"], 0);
    EXPECT_EQ(j["throughput"]["after"], 0);
    EXPECT_EQ(j["counts"]["non_2xx"], 0);
    EXPECT_EQ(j["counts"]["other"], 0) << j.dump(2);
    size_t buckets = j["timeline"]["ok"].size();
    EXPECT_GE(buckets, 15U);
    EXPECT_EQ(j["timeline"]["failures"].size(), buckets);
}

TEST_F(FdsupLoad, NothingListeningAtTheStartExits1)
{
    auto r = runProcess({requireEnv("FDSUP_LOAD"), "--target", target(freePort()), "--timeout", "200ms"});
    EXPECT_EQ(r.exitCode, 1);
    EXPECT_NE(r.err.find("Connection refused"), std::string::npos) << r.err;
}

TEST_F(FdsupLoad, MoreConnectionsThanDescriptorsExits1)
{
    auto r = runProcess({"/usr/bin/prlimit", "--nofile=64:64", requireEnv("FDSUP_LOAD"), "--target",
                         target(peer("chunked")), "--connections", "40"});
    EXPECT_EQ(r.exitCode, 1);
    EXPECT_NE(r.err.find("40 connections need more descriptors than RLIMIT_NOFILE allows (64"),
              std::string::npos)
        << r.err;
}

TEST_F(FdsupLoad, ABadCommandLineExits2AndSaysWhy)
{
    auto r = runProcess({requireEnv("FDSUP_LOAD"), "--target", "127.0.0.1:80", "--connections", "many"});
    EXPECT_EQ(r.exitCode, 2);
    EXPECT_NE(r.err.find("--connections: 'many' is not an integer"), std::string::npos) << r.err;
}

TEST_F(FdsupLoad, EachMisbehaviourIsCountedInItsClass)
{
    struct Case {
        const char *mode;
        const char *expected;
    } cases[] = {
        {"reset", "fresh_reset"},   {"eof", "fresh_eof"},  {"half", "mid_response"},
        {"race", "keepalive_race"}, {"silent", "timeout"},
    };
    for (const auto &c : cases) {
        SCOPED_TRACE(c.mode);
        json j = run({"--target", target(peer(c.mode)), "--connections", "2", "--duration", "600ms",
                      "--timeout", "150ms"});
        expectOnly(j, c.expected);
        if (std::string(c.mode) == "race") {
            EXPECT_GT(j["counts"]["ok"], 0);
        }
    }
}

TEST_F(FdsupLoad, Ipv6ChunkedKeepAlive)
{
    std::string ipv6 = "[::1]:" + std::to_string(peer("chunked", "::1"));
    json j = run({"--target", ipv6, "--connections", "2", "--duration", "300ms"});
    EXPECT_EQ(j["target"], ipv6);
    EXPECT_GT(j["counts"]["ok"], 0);
    EXPECT_EQ(j["failures"], 0) << j.dump(2);
    EXPECT_EQ(j["counts"]["forced_reconnects"], 0);
    EXPECT_EQ(j["counts"]["connections_opened"], 2);
}

TEST_F(FdsupLoad, ConnectionCloseIsAForcedReconnectNotAFailure)
{
    json j = run({"--target", target(peer("close")), "--connections", "2", "--duration", "500ms"});
    EXPECT_GT(j["counts"]["ok"], 0);
    EXPECT_EQ(j["failures"], 0) << j.dump(2);
    EXPECT_GT(j["counts"]["forced_reconnects"], 0);
    // The same server in newconn mode: closing is what was asked for.
    j = run({"--target", target(peer("close")), "--mode", "newconn", "--connections", "2", "--duration",
             "500ms"});
    EXPECT_GT(j["counts"]["ok"], 0);
    EXPECT_EQ(j["failures"], 0) << j.dump(2);
    EXPECT_EQ(j["counts"]["forced_reconnects"], 0);
}

TEST_F(FdsupLoad, PythonHttpServerAnswers404AsNon2xxAndHttp10Closes)
{
    int port = freePort();
    writeFile(dir_ / "index.html", "hello\n");
    BackgroundProcess server({"/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                              dir_.path().string(), std::to_string(port)},
                             dir_ / "http.server.log");
    json missing =
        run({"--target", target(port), "--path", "/missing", "--connections", "2", "--duration", "500ms"});
    expectOnly(missing, "non_2xx");
    EXPECT_EQ(missing["counts"]["ok"], 0);
    json found =
        run({"--target", target(port), "--path", "/index.html", "--connections", "2", "--duration", "500ms"});
    EXPECT_GT(found["counts"]["ok"], 0);
    EXPECT_EQ(found["failures"], 0) << found.dump(2);
    // http.server answers HTTP/1.0 without keep-alive: every response ends its connection.
    EXPECT_GE(found["counts"]["forced_reconnects"].get<uint64_t>() + 2,
              found["counts"]["ok"].get<uint64_t>());
}
