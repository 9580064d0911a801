// Wrapped services (wrap = "preload"), fdsupd's side: the spawn environment, the preload socket spoken by a
// real process, readiness by claims, the reports of listeners not adopted, and daemonising servers followed
// through their pid file. A real fdsupd, real processes, real clients.
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>

#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Json = nlohmann::json;

std::string quote(const std::string &text)
{
    return Json(text).dump();
}

class Wrap : public DaemonTest<> {
protected:
    // [socket.web] on an ephemeral port, [service.web] wrapped, running `command`.
    [[nodiscard]] std::string config(const std::string &command, const std::string &extra) const
    {
        const std::string library = requireEnv("FDSUP_TEST_HARMLESS_PRELOAD");
        return fdsupd_.supervisorTable(library) + R"([socket.web]
listen = "tcp://127.0.0.1:0"

[service.web]
command = )" + command +
               R"(
sockets = ["web"]
wrap = "preload"
environment = { FDSUP_TEST_PRELOAD_LIBRARY = )" +
               quote(library) + " }\n" + extra;
    }
    void start(const std::string &command, const std::string &extra)
    {
        std::string why;
        ASSERT_TRUE(fdsupd_.start(config(command, extra), why)) << why;
    }
    Json instance()
    {
        const Json status = fdsupd_.status("web");
        return status["instances"].empty() ? Json() : status["instances"][0];
    }
    // What the server answers a new connection: its pid.
    pid_t servedBy()
    {
        UniqueFd c = connectLoopback(fdsupd_.port("web"));
        char buffer[32] = {};
        const ssize_t n = read(c.get(), buffer, sizeof buffer - 1);
        return n > 0 ? static_cast<pid_t>(std::stol(buffer)) : 0;
    }
    bool readyAndBound()
    {
        return waitUntil([&] {
            const Json i = instance();
            return i.is_object() && i["state"] == "ready" && i["listeners"].is_array() &&
                   i["listeners"][0]["adopted_by"].is_number();
        });
    }

    std::string client_ = quote(requireEnv("FDSUP_TEST_PRELOAD_CLIENT"));
};

TEST_F(Wrap, AWrappedServerGetsTheListenerFromThePreloadSocketAndIsReadyOnceItClaimedIt)
{
    start("[" + client_ + ", \"--fork\"]", "ready = \"bound\"\n");
    ASSERT_TRUE(readyAndBound()) << fdsupd_.status("web").dump(2);
    const Json i = instance();
    const pid_t main = i["pid"].get<pid_t>();
    const pid_t adopter = i["listeners"][0]["adopted_by"].get<pid_t>();
    EXPECT_NE(adopter, main) << "the process that bound is the main process's child (--fork)";
    EXPECT_EQ(servedBy(), adopter) << "the listener it got is the one clients connect to";
    EXPECT_THAT(fdsupd_.log(), HasSubstr("listener 'web' adopted by pid " + std::to_string(adopter)));

    const ProcessResult status = fdsupd_.fdsupctl({"status"});
    EXPECT_THAT(status.out, HasSubstr("web[0] listener 'web': adopted by pid " + std::to_string(adopter)));
    const ProcessResult sockets = fdsupd_.fdsupctl({"sockets"});
    EXPECT_THAT(sockets.out, HasSubstr("web: web[0] (pid " + std::to_string(main) + ") adopted by pid " +
                                       std::to_string(adopter)));
    const Json service = fdsupd_.status("web");
    EXPECT_EQ(service["wrap"], "preload");
    EXPECT_THAT(service["preload_socket"].get<std::string>(), HasSubstr("-preload-web"));
    EXPECT_TRUE(service["wrap_problem"].is_null());
    EXPECT_THAT(fdsupd_.log(), ::testing::Not(HasSubstr("env bad")));
}

TEST_F(Wrap, AProgramThatNeverBindsIsReportedNotAdoptedAndSaidLoudly)
{
    start(R"(["/bin/sleep", "1000"])",
          "ready = \"started\"\nstart_timeout = \"1s\"\nready_timeout = \"1s\"\n");
    ASSERT_TRUE(waitUntil([&] {
        const Json i = instance();
        return i.is_object() && i["listeners"].is_array() && !i["listeners"][0]["pending"].get<bool>();
    }));
    const Json listener = instance()["listeners"][0];
    EXPECT_TRUE(listener["adopted_by"].is_null());
    EXPECT_THAT(listener["reason"].get<std::string>(), HasSubstr("the shim never connected"));
    EXPECT_THAT(fdsupd_.fdsupctl({"status"}).out,
                HasSubstr("web[0] listener 'web': not adopted: the shim never connected"));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("listener 'web' not adopted: the shim never connected"));
}

TEST_F(Wrap, WithReadyBoundAProgramThatNeverBindsNeverBecomesReady)
{
    start(R"(["/bin/sleep", "1000"])", "ready = \"bound\"\nready_timeout = \"1s\"\nrestart = \"never\"\n");
    ASSERT_TRUE(waitUntil([&] { return fdsupd_.status("web")["state"] == "failed"; }))
        << fdsupd_.status("web").dump(2);
    EXPECT_THAT(fdsupd_.log(),
                HasSubstr("did not become ready within 1s: listener 'web' not adopted: the shim "
                          "never connected"));
}

TEST_F(Wrap, ARolloutToAServerThatNeverClaimsItsListenerRollsBack)
{
    start("[" + client_ + "]", "ready = \"bound\"\nready_timeout = \"1s\"\n");
    ASSERT_TRUE(readyAndBound());
    const pid_t old = instance()["pid"].get<pid_t>();
    // The new generation connects and takes the listeners but never binds one.
    writeFile(fdsupd_.dir() / "fdsupd.toml", config("[" + client_ + ", \"--claim\", \"elsewhere\"]",
                                                    "ready = \"bound\"\nready_timeout = \"1s\"\n"));
    const ProcessResult reload = fdsupd_.fdsupctl({"reload"});
    EXPECT_NE(reload.exitCode, 0) << reload.out << reload.err;
    EXPECT_THAT(
        reload.out + reload.err,
        HasSubstr("did not become ready within 1s: listener 'web' not adopted: the shim connected but the "
                  "program never bound listener 'web'"));
    EXPECT_THAT(fdsupd_.log(), HasSubstr("rolling back to generation 1"));
    EXPECT_EQ(instance()["pid"].get<pid_t>(), old) << "generation 1 keeps serving";
    EXPECT_EQ(servedBy(), old);
}

TEST_F(Wrap, AStaticProgramIsReportedAtOnce)
{
    if (!std::filesystem::exists("/sbin/ldconfig")) {
        GTEST_SKIP() << "no static /sbin/ldconfig here";
    }
    // ldconfig (static-pie) blocks opening a FIFO as its cache: a static
    // program that stays up and never binds.
    const std::string fifo = (fdsupd_.dir() / "cache.fifo").string();
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    start("[\"/sbin/ldconfig\", \"-p\", \"-C\", " + quote(fifo) + "]", "ready = \"started\"\n");
    const Json service = fdsupd_.status("web");
    EXPECT_THAT(service["wrap_problem"].get<std::string>(), HasSubstr("/sbin/ldconfig is statically linked"));
    EXPECT_THAT(fdsupd_.log(),
                HasSubstr("Service 'web' is wrapped, but /sbin/ldconfig is statically linked"));
    ASSERT_TRUE(waitUntil([&] { return instance().is_object() && instance()["listeners"].is_array(); }));
    const Json listener = instance()["listeners"][0];
    EXPECT_FALSE(listener["pending"].get<bool>()) << "nothing to wait for";
    EXPECT_THAT(listener["reason"].get<std::string>(), HasSubstr("statically linked"));
    EXPECT_THAT(fdsupd_.fdsupctl({"sockets"}).out,
                HasSubstr("not adopted: /sbin/ldconfig is statically linked"));
}

// Whether pid is gone for good: no process, not even a zombie.
bool gone(pid_t pid)
{
    return !std::filesystem::exists("/proc/" + std::to_string(pid));
}

pid_t readPid(const std::filesystem::path &file)
{
    std::ifstream in(file);
    pid_t pid = 0;
    in >> pid;
    return pid;
}

bool noChildren(pid_t parent)
{
    std::ifstream children("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                           "/children");
    std::string any;
    return !(children >> any);
}

TEST_F(Wrap, ADaemonisingServerIsFollowedThroughItsPidFileRestartedAndStopped)
{
    const std::string pidFile = (fdsupd_.dir() / "web.pid").string();
    start("[" + client_ + ", \"--daemonize\", " + quote(pidFile) + "]",
          "ready = \"bound\"\npid_file = " + quote(pidFile) + "\ndrain_timeout = \"5s\"\n");
    ASSERT_TRUE(readyAndBound()) << fdsupd_.status("web").dump(2);
    // The daemon may bind (and the instance be ready) before its parent
    // exits and fdsupd follows it: wait for the follow.
    ASSERT_TRUE(waitUntil([&] {
        const Json i = instance();
        return i.is_object() && i["pid"].is_number() && i["pid"].get<pid_t>() == readPid(pidFile);
    })) << "the instance's main process is the daemon: "
        << fdsupd_.status("web").dump(2);
    const pid_t daemon = instance()["pid"].get<pid_t>();
    EXPECT_EQ(instance()["listeners"][0]["adopted_by"].get<pid_t>(), daemon);
    EXPECT_EQ(servedBy(), daemon);
    EXPECT_THAT(fdsupd_.log(), HasSubstr("following daemon pid " + std::to_string(daemon)));

    const ProcessResult restart = fdsupd_.fdsupctl({"restart", "web", "--wait"});
    ASSERT_EQ(restart.exitCode, 0) << restart.out << restart.err;
    ASSERT_TRUE(readyAndBound());
    // As at the start: the new daemon may be ready before its parent exits
    // and fdsupd follows it (until then the instance's pid is the parent's,
    // and the pid file may still name the old daemon): wait for the follow.
    ASSERT_TRUE(waitUntil([&] {
        const Json i = instance();
        return i.is_object() && i["pid"].is_number() && i["pid"].get<pid_t>() != daemon &&
               i["pid"].get<pid_t>() == readPid(pidFile);
    })) << "the new instance's main process is the new daemon: "
        << fdsupd_.status("web").dump(2);
    const pid_t second = instance()["pid"].get<pid_t>();
    EXPECT_NE(second, daemon);
    EXPECT_EQ(second, readPid(pidFile));
    EXPECT_TRUE(waitUntil([&] { return gone(daemon); })) << "the old daemon was drained and reaped";
    EXPECT_EQ(servedBy(), second);

    const ProcessResult stop = fdsupd_.fdsupctl({"stop", "web"});
    ASSERT_EQ(stop.exitCode, 0) << stop.out << stop.err;
    EXPECT_TRUE(waitUntil([&] { return gone(second); })) << "stopped and reaped: no orphan, no zombie";
    EXPECT_TRUE(waitUntil([&] { return noChildren(fdsupd_.pid()); })) << "fdsupd has no child left";
}

TEST_F(Wrap, WhatAWorkerLeavesBehindIsReapedByFdsupdAsASubreaper)
{
    // Not wrapped: any service. The background sleep outlives its parent's
    // reaping, is reparented to fdsupd (a child subreaper) and must not stay a zombie.
    const std::string bgPid = (fdsupd_.dir() / "bg.pid").string();
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + R"(
[service.web]
command = ["/bin/sh", "-c", "sleep 1000 & echo $! > )" +
                                  bgPid + R"(; exec sleep 1000"]
ready = "started"
)",
                              why))
        << why;
    ASSERT_TRUE(waitUntil([&] { return readPid(bgPid) > 0; }));
    const pid_t background = readPid(bgPid);
    const ProcessResult stop = fdsupd_.fdsupctl({"stop", "web"});
    ASSERT_EQ(stop.exitCode, 0) << stop.out << stop.err;
    EXPECT_TRUE(waitUntil([&] { return gone(background); })) << "killed with its group, then reaped";
    EXPECT_TRUE(waitUntil([&] { return noChildren(fdsupd_.pid()); }));
}

TEST_F(Wrap, APidFileNamingAProcessThatIsNotTheInstancesFailsTheStart)
{
    const std::string pidFile = (fdsupd_.dir() / "web.pid").string();
    {
        std::ofstream(pidFile) << getpid() << "\n"; // the test itself: not fdsupd's child
    }
    start(R"(["/bin/true"])",
          "ready = \"started\"\nrestart = \"never\"\npid_file = " + quote(pidFile) + "\n");
    ASSERT_TRUE(waitUntil([&] { return fdsupd_.status("web")["state"] == "failed"; }))
        << fdsupd_.status("web").dump(2);
    EXPECT_THAT(fdsupd_.log(), HasSubstr("is not fdsupd's child"));
}

} // namespace
} // namespace fdsup::test
