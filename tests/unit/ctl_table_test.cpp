// fdsupctl's tables: golden text for the replies the daemon sends.
#include <cstdlib>
#include <ctime>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "replies.hpp"
#include "table.hpp"

namespace fdsup::ctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Functions, not globals: parsing may throw, which a test reports but a
// static initialiser cannot.
nlohmann::json statusReply()
{
    return nlohmann::json::parse(R"({"services":[
  {"name":"web","state":"running","generation":12,"wanted":2,"ready":2,"restarts":3,"failed_reason":null,"notify_dropped":0,
   "fdstore":[{"name":"x","fds":1}],
   "instances":[
     {"index":0,"generation":1,"pid":1234,"state":"ready","since_usec":123456,"uptime_usec":5000000,
      "status":"serving","restarts":0,"last_exit":null,"last_error":null},
     {"index":1,"generation":12,"pid":98765,"state":"starting","since_usec":123456,"uptime_usec":3725000000,
      "status":null,"restarts":2,"last_exit":"exited with status 1","last_error":null}]},
  {"name":"api-backend","state":"failed","generation":6,"wanted":1,"ready":0,"restarts":5,
   "failed_reason":"restarted too often","notify_dropped":0,"fdstore":[],
   "instances":[
     {"index":0,"generation":6,"pid":null,"state":"failed","since_usec":1,"uptime_usec":0,
      "status":"bye\u001b[2J","restarts":5,"last_exit":null,"last_error":"exec /x: No such file or directory"}]},
  {"name":"idle","state":"stopped","generation":1,"wanted":0,"ready":0,"restarts":0,"failed_reason":null,
   "notify_dropped":0,"fdstore":[],"instances":[]}]})");
}

// A rollout of web from generation 2 to 3 over two instances, in state;
// a failed one carries the replacement that failed and its output.
nlohmann::json rollout(const std::string &state)
{
    auto r = nlohmann::json::parse(R"({"id":7,"service":"web","from_generation":2,"to_generation":3,
  "order":"start-first","batch":1,"state":"","reason":null,"failure":null,
  "started_usec":1767225600123456,"duration_usec":2100000,
  "steps":[{"index":0,"phase":"done","old_pid":100,"new_pid":200,"reason":null},
           {"index":1,"phase":"done","old_pid":101,"new_pid":201,"reason":null}]})");
    r["state"] = state;
    if (state == "failed") {
        r["reason"] = "web[1] did not become ready within 30s";
        r["failure"] =
            nlohmann::json::parse(R"({"index":1,"pid":201,"generation":3,"reason":"exited with status 1",
  "output":["listening on :8080","panic: boom\u001b[2J"]})");
        r["steps"][1]["phase"] = "rolled-back";
        r["steps"][1]["reason"] = "exited with status 1";
    }
    return r;
}

// Wall-clock times print in local time: make that UTC for golden text.
void useUtc()
{
    setenv("TZ", "UTC", 1);
    tzset();
}

nlohmann::json socketsReply()
{
    return nlohmann::json::parse(R"({"sockets":[
  {"name":"web","listen":["tcp://localhost:8080"],
   "bound":[{"address":"127.0.0.1:8080","fd":7,"origin":"bound"},{"address":"[::1]:8080","fd":8,"origin":"adopted"}],
   "services":["web","web-canary"]},
  {"name":"admin","listen":["unix:/run/app/admin.sock"],"bound":[],"services":[]}]})");
}

TEST(CtlTable, Status)
{
    EXPECT_EQ(formatStatus(statusReply(), false),
              "SERVICE      STATE    GEN  READY/WANTED  RESTARTS  REASON\n"
              "web          running  12   2/2           3\n"
              "  INSTANCE  PID    STATE     GEN  UPTIME  STATUS\n"
              "  0         1234   ready     1    5s      serving\n"
              "  1         98765  starting  12   1h02m   -\n"
              "api-backend  failed   6    0/1           5         restarted too often\n"
              "  INSTANCE  PID    STATE     GEN  UPTIME  STATUS\n"
              "  0         -      failed    6    -       exec /x: No such file or directory\n"
              "idle         stopped  1    0/0           0\n");
}

TEST(CtlTable, StatusWithoutFailuresHasNoReasonColumn)
{
    nlohmann::json one = {{"services", {statusReply()["services"][2]}}};
    EXPECT_EQ(formatStatus(one, false), "SERVICE  STATE    GEN  READY/WANTED  RESTARTS\n"
                                        "idle     stopped  1    0/0           0\n");
}

TEST(CtlTable, StatusColoursOnlyWhenAsked)
{
    nlohmann::json one = {{"services", {statusReply()["services"][2]}}};
    EXPECT_EQ(formatStatus(one, true), "SERVICE  STATE    GEN  READY/WANTED  RESTARTS\n"
                                       "idle     \033[2mstopped\033[0m  1    0/0           0\n");
}

TEST(CtlTable, StatusShowsARolloutInProgressAndDrainingInstances)
{
    auto reply = nlohmann::json::parse(R"({"services":[
  {"name":"web","state":"running","generation":3,"wanted":2,"ready":2,"restarts":0,"failed_reason":null,
   "notify_dropped":0,"fdstore":[],
   "instances":[
     {"index":0,"generation":3,"pid":200,"state":"ready","since_usec":1,"uptime_usec":2000000,
      "status":null,"restarts":0,"last_exit":null,"last_error":null},
     {"index":1,"generation":2,"pid":101,"state":"draining","since_usec":1,"uptime_usec":90000000,
      "status":"closing 3 connections","restarts":0,"last_exit":null,"last_error":null}]}]})");
    reply["services"][0]["rollout"] = rollout("running");
    reply["services"][0]["rollout"]["steps"][1]["phase"] = "draining-old";
    EXPECT_EQ(formatStatus(reply, false), "SERVICE  STATE    GEN  READY/WANTED  RESTARTS\n"
                                          "web      running  3    2/2           0\n"
                                          "  rollout 7: running, generation 2 \u2192 3 (1/2 done)\n"
                                          "  INSTANCE  PID  STATE     GEN  UPTIME  STATUS\n"
                                          "  0         200  ready     3    2s      -\n"
                                          "  1         101  draining  2    1m30s   closing 3 connections\n");
    EXPECT_THAT(formatStatus(reply, true), HasSubstr("rollout 7: \033[33mrunning\033[0m,"));
    EXPECT_THAT(formatStatus(reply, true), HasSubstr("\033[33mdraining\033[0m"));
    // A daemon that predates rollouts (no member) or has none (null): no line.
    reply["services"][0]["rollout"] = nullptr;
    EXPECT_THAT(formatStatus(reply, false), Not(HasSubstr("rollout")));
}

TEST(CtlTable, RolloutStatus)
{
    useUtc();
    const nlohmann::json reply = {{"rollout", rollout("failed")}, {"queued", 2}};
    EXPECT_EQ(formatRolloutStatus(reply, "web", false),
              "web: rollout 7\n"
              "  state:       failed\n"
              "  generation:  2 \u2192 3\n"
              "  order:       start-first\n"
              "  batch:       1\n"
              "  started:     2026-01-01 00:00:00\n"
              "  duration:    2.1s\n"
              "  reason:      web[1] did not become ready within 30s\n"
              "  failure:     web[1] (pid 201, generation 3): exited with status 1\n"
              "                 listening on :8080\n"
              "                 panic: boom?[2J\n"
              "  INDEX  PHASE        OLD-PID  NEW-PID  REASON\n"
              "  0      done         100      200      -\n"
              "  1      rolled-back  101      201      exited with status 1\n"
              "  2 queued\n");
    EXPECT_THAT(formatRolloutStatus(reply, "web", true), HasSubstr("state:       \033[31mfailed\033[0m"));
}

TEST(CtlTable, RolloutStatusWithoutRollout)
{
    EXPECT_EQ(formatRolloutStatus({{"rollout", nullptr}, {"queued", 0}}, "web", false),
              "web: no rollout yet\n");
    const nlohmann::json running = {{"rollout", rollout("running")}, {"queued", 0}};
    EXPECT_THAT(formatRolloutStatus(running, "web", false), Not(HasSubstr("queued")));
    EXPECT_THAT(formatRolloutStatus(running, "web", false), Not(HasSubstr("failure")));
}

TEST(CtlTable, RestartLines)
{
    const nlohmann::json event = {{"rollout", rollout("running")},
                                  {"event", "web[0]: pid 200 (generation 3) is ready"}};
    EXPECT_EQ(formatRolloutEvent(1234567, event), "[ 1.23s] web[0]: pid 200 (generation 3) is ready\n");
    EXPECT_EQ(formatRolloutEvent(123456789, event), "[123.45s] web[0]: pid 200 (generation 3) is ready\n");
    EXPECT_EQ(formatRolloutEvent(1, {{"rollout", rollout("running")}}), "");
    EXPECT_EQ(formatRolloutStarted({{"rollout", rollout("running")}}),
              "web: rollout 7 started (generation 2 \u2192 3)\n");
    EXPECT_EQ(formatRolloutStarted({{"rollout", rollout("queued")}}),
              "web: rollout 7 queued (generation 2 \u2192 3)\n");
    EXPECT_EQ(formatRolloutDone({{"rollout", rollout("succeeded")}}),
              "web: rolled out to generation 3 in 2.1s (2 instances)\n");
    EXPECT_EQ(formatRolloutCancelled({{"rollout", rollout("cancelled")}}),
              "web: rollout 7 cancelled, rolled back to generation 2\n");
}

TEST(CtlTable, RestartFailureReport)
{
    const nlohmann::json error = {{"service", "web"}, {"rollout", rollout("failed")}};
    EXPECT_EQ(formatRolloutFailed(error),
              "fdsupctl: rollout 7 of 'web' failed: web[1] did not become ready within 30s\n"
              "  web[1] (pid 201, generation 3): exited with status 1\n"
              "    listening on :8080\n"
              "    panic: boom?[2J\n"
              "rolled back: generation 2 keeps serving\n");
    auto cancelled = rollout("cancelled");
    cancelled["reason"] = "cancelled by uid 0";
    cancelled["failure"] = nullptr;
    EXPECT_EQ(formatRolloutFailed({{"service", "web"}, {"rollout", cancelled}}),
              "fdsupctl: rollout 7 of 'web' was cancelled: cancelled by uid 0\n"
              "rolled back: generation 2 keeps serving\n");
}

TEST(CtlTable, Scaled)
{
    EXPECT_EQ(formatScaled({{"service", "web"}, {"instances", 4}, {"state", "running"}}),
              "web: 4 instances, running\n");
    EXPECT_EQ(formatScaled({{"service", "web"}, {"instances", 1}, {"state", "running"}}),
              "web: 1 instance, running\n");
}

TEST(CtlTable, Changes)
{
    const auto reply = nlohmann::json::parse(R"({"file":"/etc/fdsupd/fdsupd.toml","changes":[
  {"kind":"supervisor","name":"log_level","action":"changed","result":"done","reason":null},
  {"kind":"socket","name":"admin","action":"added","result":"done","reason":null},
  {"kind":"service","name":"web","action":"restarted","result":"failed","reason":"rollout 8 failed"}]})");
    EXPECT_EQ(formatChanges(reply, false), "KIND        NAME       ACTION     RESULT  REASON\n"
                                           "supervisor  log_level  changed    done    -\n"
                                           "socket      admin      added      done    -\n"
                                           "service     web        restarted  failed  rollout 8 failed\n");
    EXPECT_THAT(formatChanges(reply, true), HasSubstr("\033[31mfailed\033[0m"));
    EXPECT_EQ(formatChanges({{"file", "x"}, {"changes", nlohmann::json::array()}}, false), "no changes\n");
}

TEST(CtlTable, ReloadErrors)
{
    const auto invalid = nlohmann::json::parse(R"({"file":"/etc/fdsupd/fdsupd.toml","errors":[
  {"file":"/etc/fdsupd/fdsupd.toml","line":3,"column":1,"message":"unknown key 'backlg'"},
  {"file":"/etc/fdsupd/web.toml","line":7,"column":12,"message":"no [socket.wbe] is defined"}]})");
    EXPECT_EQ(formatConfigErrors(invalid), "/etc/fdsupd/fdsupd.toml:3:1: unknown key 'backlg'\n"
                                           "/etc/fdsupd/web.toml:7:12: no [socket.wbe] is defined\n"
                                           "/etc/fdsupd/fdsupd.toml: 2 errors, nothing changed\n");
    const nlohmann::json refused = {{"file", "/etc/fdsupd/fdsupd.toml"},
                                    {"reasons", {"[socket.web] listen: cannot move a bound socket"}}};
    EXPECT_EQ(formatReloadRefused(refused),
              "fdsupctl: fdsupd cannot apply /etc/fdsupd/fdsupd.toml while it runs:\n"
              "  [socket.web] listen: cannot move a bound socket\n"
              "nothing changed\n");
}

TEST(CtlTable, LogLines)
{
    useUtc();
    const auto reply = nlohmann::json::parse(R"({"lines":[
  {"time_usec":1767225600123456,"index":0,"pid":1234,"generation":3,"stream":"stdout","text":"hello"},
  {"time_usec":1767229261999999,"index":1,"pid":1240,"generation":3,"stream":"stderr","text":"oops\u001b[2J"},
  {"time_usec":1767229262000000,"index":1,"pid":1240,"generation":3,"stream":"stdout","text":""}]})");
    EXPECT_EQ(formatLogLines(reply, "web", false), "00:00:00.123 web[0] 1234: hello\n"
                                                   "01:01:01.999 web[1] 1240 (stderr): oops?[2J\n"
                                                   "01:01:02.000 web[1] 1240: \n");
    EXPECT_THAT(formatLogLines(reply, "web", true), HasSubstr("1240 \033[31m(stderr)\033[0m: oops"));
    EXPECT_EQ(formatLogLines({{"lines", nlohmann::json::array()}}, "web", false), "");
}

TEST(CtlTable, Times)
{
    useUtc();
    EXPECT_EQ(formatElapsed(0), "0.0s");
    EXPECT_EQ(formatElapsed(2149999), "2.1s");
    EXPECT_EQ(formatElapsed(59999999), "59.9s");
    EXPECT_EQ(formatElapsed(61000000), "1m01s");
    EXPECT_EQ(formatClock(1767225600123456), "00:00:00.123");
    EXPECT_EQ(formatDateTime(1767225600123456), "2026-01-01 00:00:00");
}

TEST(CtlTable, Sockets)
{
    EXPECT_EQ(formatSockets(socketsReply(), false),
              "SOCKET  ADDRESS                   FD  ORIGIN   SERVICES\n"
              "web     127.0.0.1:8080            7   bound    web,web-canary\n"
              "web     [::1]:8080                8   adopted  web,web-canary\n"
              "admin   unix:/run/app/admin.sock  -   -        -\n");
}

TEST(CtlTable, Connections)
{
    const auto reply = nlohmann::json::parse(R"({"services":[
      {"service":"web","handoff":true,"handoff_timeout_usec":30000000,
       "held":[{"id":17,"from_pid":4100,"from_generation":2,"held_usec":1500000,"state_bytes":2}],
       "instances":[{"index":0,"pid":4242,"generation":3,"adopted":51,"draining":false},
                    {"index":1,"pid":4100,"generation":2,"adopted":0,"draining":true}],
       "handed":204,"adopted":203,"expired":0,"hung_up":1,"refused":3},
      {"service":"batch","handoff":false,"handoff_timeout_usec":30000000,"held":[],"instances":[],
       "handed":0,"adopted":0,"expired":0,"hung_up":0,"refused":0}]})");
    EXPECT_EQ(formatConnections(reply, false),
              "web: handoff on, held 1, handed 204, adopted 203, expired 0, hung up 1, refused 3\n"
              "  INSTANCE  PID   GEN  ADOPTED  STATE\n"
              "  0         4242  3    51       serving\n"
              "  1         4100  2    0        draining\n"
              "  HELD  FROM-PID  FROM-GEN  FOR   STATE-BYTES\n"
              "  17    4100      2         1.5s  2\n"
              "batch: handoff off, held 0, handed 0, adopted 0, expired 0, hung up 0, refused 0\n");
}

TEST(CtlTable, ExternalWorkersInStatusAndConnections)
{
    const auto status = nlohmann::json::parse(R"({"services":[
  {"name":"web","state":"running","generation":2,"wanted":1,"ready":1,"restarts":0,"failed_reason":null,
   "instances":[{"index":0,"generation":2,"pid":200,"state":"ready","uptime_usec":2000000,"status":null,
                 "restarts":0,"last_exit":null,"last_error":null}],
   "external":[{"id":7,"pid":300,"uid":33,"gid":33,"ready":true,"draining":false,"status":"serving",
                "adopted":4,"connected_usec":65000000},
               {"id":9,"pid":301,"uid":33,"gid":33,"ready":true,"draining":true,"status":null,
                "adopted":0,"connected_usec":1000000}]}]})");
    EXPECT_EQ(formatStatus(status, false), "SERVICE  STATE    GEN  READY/WANTED  RESTARTS\n"
                                           "web      running  2    1/1           0\n"
                                           "  INSTANCE    PID  STATE     GEN  UPTIME  STATUS\n"
                                           "  0           200  ready     2    2s      -\n"
                                           "  external 7  300  ready     -    1m05s   serving\n"
                                           "  external 9  301  draining  -    1s      -\n");
    const auto connections = nlohmann::json::parse(R"({"services":[
      {"service":"web","handoff":true,"held":[],
       "instances":[{"index":0,"external":false,"pid":200,"generation":2,"adopted":3,"ready":false,
                     "draining":false},
                    {"index":null,"external":true,"id":7,"pid":300,"uid":33,"generation":2,"adopted":4,
                     "ready":true,"draining":false}],
       "handed":7,"adopted":7,"expired":0,"hung_up":0,"refused":0}]})");
    EXPECT_EQ(formatConnections(connections, false),
              "web: handoff on, held 0, handed 7, adopted 7, expired 0, hung up 0, refused 0\n"
              "  INSTANCE    PID  GEN  ADOPTED  STATE\n"
              "  0           200  2    3        starting\n"
              "  external 7  300  2    4        serving\n");
}

TEST(CtlTable, UnexpectedShapesPrintDashesInsteadOfFailing)
{
    EXPECT_EQ(formatStatus(nlohmann::json::array(), false), "SERVICE  STATE  GEN  READY/WANTED  RESTARTS\n");
    const auto odd = nlohmann::json::parse(R"({"services":[{"name":7,"rollout":[],"instances":[{}]}]})");
    EXPECT_EQ(formatStatus(odd, false), "SERVICE  STATE  GEN  READY/WANTED  RESTARTS\n"
                                        "7        -      -    -/-           -\n"
                                        "  INSTANCE  PID  STATE  GEN  UPTIME  STATUS\n"
                                        "  -         -    -      -    -       -\n");
}

TEST(CtlTable, Uptime)
{
    EXPECT_EQ(formatUptime(0), "0s");
    EXPECT_EQ(formatUptime(59999999), "59s");
    EXPECT_EQ(formatUptime(60000000), "1m00s");
    EXPECT_EQ(formatUptime(3599000000), "59m59s");
    EXPECT_EQ(formatUptime(3600000000), "1h00m");
    EXPECT_EQ(formatUptime(90000000000), "1d01h");
}

TEST(CtlTable, NewRepliesWithUnexpectedShapesPrintDashes)
{
    const nlohmann::json odd = {{"rollout", {{"id", "x"}, {"steps", 3}, {"failure", {{"output", "y"}}}}},
                                {"queued", -1}};
    EXPECT_EQ(formatRolloutStatus(odd, "web", false), "-: rollout x\n"
                                                      "  state:       -\n"
                                                      "  generation:  - \u2192 -\n"
                                                      "  order:       -\n"
                                                      "  batch:       -\n"
                                                      "  started:     -\n"
                                                      "  duration:    -\n"
                                                      "  failure:     -[-] (pid -, generation -): -\n");
    EXPECT_EQ(formatChanges({{"changes", {nlohmann::json::object()}}}, false),
              "KIND  NAME  ACTION  RESULT  REASON\n"
              "-     -     -       -       -\n");
    EXPECT_EQ(formatLogLines({{"lines", {nlohmann::json::object()}}}, "web", false), "- web[-] -: \n");
    EXPECT_EQ(formatConfigErrors(nlohmann::json::array()), "-: 0 errors, nothing changed\n");
}

TEST(CtlTable, ControlCharactersNeverReachTheTerminal)
{
    EXPECT_EQ(printable("a\033[2Jb\nc\x7f"), "a?[2Jb?c?");
    EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");
}

} // namespace
} // namespace fdsup::ctl
