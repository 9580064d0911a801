// fdsupctl's tables: golden text for the replies the daemon sends.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "table.hpp"

namespace fdsup::ctl {
namespace {

// Functions, not globals: parsing may throw, which a test reports but a
// static initialiser cannot.
nlohmann::json statusReply()
{
    return nlohmann::json::parse(R"({"services":[
  {"name":"web","state":"running","wanted":2,"ready":2,"restarts":3,"failed_reason":null,"notify_dropped":0,
   "fdstore":[{"name":"x","fds":1}],
   "instances":[
     {"index":0,"generation":1,"pid":1234,"state":"ready","since_usec":123456,"uptime_usec":5000000,
      "status":"serving","restarts":0,"last_exit":null,"last_error":null},
     {"index":1,"generation":12,"pid":98765,"state":"starting","since_usec":123456,"uptime_usec":3725000000,
      "status":null,"restarts":2,"last_exit":"exited with status 1","last_error":null}]},
  {"name":"api-backend","state":"failed","wanted":1,"ready":0,"restarts":5,
   "failed_reason":"restarted too often","notify_dropped":0,"fdstore":[],
   "instances":[
     {"index":0,"generation":6,"pid":null,"state":"failed","since_usec":1,"uptime_usec":0,
      "status":"bye\u001b[2J","restarts":5,"last_exit":null,"last_error":"exec /x: No such file or directory"}]},
  {"name":"idle","state":"stopped","wanted":0,"ready":0,"restarts":0,"failed_reason":null,
   "notify_dropped":0,"fdstore":[],"instances":[]}]})");
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
              "SERVICE      STATE    READY/WANTED  RESTARTS  REASON\n"
              "web          running  2/2           3\n"
              "  INSTANCE  PID    STATE     GEN  UPTIME  STATUS\n"
              "  0         1234   ready     1    5s      serving\n"
              "  1         98765  starting  12   1h02m   -\n"
              "api-backend  failed   0/1           5         restarted too often\n"
              "  INSTANCE  PID    STATE     GEN  UPTIME  STATUS\n"
              "  0         -      failed    6    -       exec /x: No such file or directory\n"
              "idle         stopped  0/0           0\n");
}

TEST(CtlTable, StatusWithoutFailuresHasNoReasonColumn)
{
    nlohmann::json one = {{"services", {statusReply()["services"][2]}}};
    EXPECT_EQ(formatStatus(one, false), "SERVICE  STATE    READY/WANTED  RESTARTS\n"
                                        "idle     stopped  0/0           0\n");
}

TEST(CtlTable, StatusColoursOnlyWhenAsked)
{
    nlohmann::json one = {{"services", {statusReply()["services"][2]}}};
    EXPECT_EQ(formatStatus(one, true), "SERVICE  STATE    READY/WANTED  RESTARTS\n"
                                       "idle     \033[2mstopped\033[0m  0/0           0\n");
}

TEST(CtlTable, Sockets)
{
    EXPECT_EQ(formatSockets(socketsReply(), false),
              "SOCKET  ADDRESS                   FD  ORIGIN   SERVICES\n"
              "web     127.0.0.1:8080            7   bound    web,web-canary\n"
              "web     [::1]:8080                8   adopted  web,web-canary\n"
              "admin   unix:/run/app/admin.sock  -   -        -\n");
}

TEST(CtlTable, UnexpectedShapesPrintDashesInsteadOfFailing)
{
    EXPECT_EQ(formatStatus(nlohmann::json::array(), false), "SERVICE  STATE  READY/WANTED  RESTARTS\n");
    const auto odd = nlohmann::json::parse(R"({"services":[{"name":7,"instances":[{}]}]})");
    EXPECT_EQ(formatStatus(odd, false), "SERVICE  STATE  READY/WANTED  RESTARTS\n"
                                        "7        -      -/-           -\n"
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

TEST(CtlTable, ControlCharactersNeverReachTheTerminal)
{
    EXPECT_EQ(printable("a\033[2Jb\nc\x7f"), "a?[2Jb?c?");
    EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");
}

} // namespace
} // namespace fdsup::ctl
