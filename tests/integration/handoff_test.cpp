// Connection handoff: a real fdsupd, workers on libactivate's channel, real clients on loopback.
#include <string>
#include <tuple>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "daemon_harness.hpp"
#include "test_support.hpp"

namespace fdsup::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr auto kEventDeadline = 20s;

// A hostile worker's abuse, and what fdsupd must answer (reported by the worker).
struct Abuse {
    const char *mode;
    const char *answer;
};

class HostileWorker : public ::testing::TestWithParam<Abuse> {
protected:
    void TearDown() override
    {
        if (HasFailure()) {
            std::cerr << "---- fdsupd log ----\n" << fdsupd_.log() << "--------------------\n";
        }
    }

    DaemonHarness fdsupd_;
};

TEST_P(HostileWorker, IsRefusedAndFdsupdKeepsServingEveryoneElse)
{
    const Abuse abuse = GetParam();
    std::string why;
    ASSERT_TRUE(fdsupd_.start(fdsupd_.supervisorTable() + R"(
[socket.web]
listen = "tcp://127.0.0.1:0"

[socket.other]
listen = "tcp://127.0.0.1:0"

[service.bad]
command = [")" + requireEnv("FDSUP_TEST_HOSTILE_WORKER") +
                                  "\", \"" + abuse.mode + "\", \"" + fdsupd_.reportPath() + R"("]
sockets = ["web"]
ready = "channel"
handoff = true
restart = "never"
stop_timeout = "5s"

[service.good]
command = )" + fdsupd_.workerCommand("serve") +
                                  R"(
sockets = ["other"]
)",
                              why))
        << why;
    // One control connection throughout, so that connections opened and
    // closed around the measurements cannot blur them.
    auto client = varlink::Client::connect(fdsupd_.controlPath(), 10s);
    ASSERT_TRUE(client) << client.error().message;
    auto call = [&](const char *method, const char *service) {
        auto reply = client->call(varlink::Call{method, {{"service", service}}, false, false});
        if (!reply) {
            throw std::runtime_error(reply.error().message);
        }
        return *reply;
    };
    // The baseline: everything up, the hostile one stopped.
    ASSERT_EQ(call("io.fdsup.Manager.Start", "good").error, "");
    ASSERT_EQ(call("io.fdsup.Manager.Stop", "bad").error, "");
    const int baseline = countFdsOf(fdsupd_.pid());

    ASSERT_EQ(call("io.fdsup.Manager.Start", "bad").error, "");
    const auto answer = fdsupd_.reports().waitFor(
        [](const std::string &m) {
            return m.starts_with("result ") || m.starts_with("error ") || m.starts_with("sent ") ||
                   m.starts_with("closed ") || m.starts_with("timeout ");
        },
        kEventDeadline);
    ASSERT_TRUE(answer.has_value()) << "the hostile worker reported nothing";
    EXPECT_THAT(*answer, HasSubstr(abuse.answer)) << *answer;

    // fdsupd still serves the other service and answers its control socket.
    const auto curl = runProcess({"/usr/bin/curl", "-sS", "--max-time", "10",
                                  "http://127.0.0.1:" + std::to_string(fdsupd_.port("other")) + "/"});
    EXPECT_EQ(curl.exitCode, 0) << curl.err;
    const auto connections = call("io.fdsup.Manager.Connections", "bad");
    ASSERT_EQ(connections.error, "");
    const auto &bad = connections.parameters.at("services").at(0);
    EXPECT_TRUE(bad.at("held").empty());
    EXPECT_EQ(bad.at("handed"), 0);
    // Nothing of the abuse stays in fdsupd.
    ASSERT_EQ(call("io.fdsup.Manager.Stop", "bad").error, "");
    EXPECT_EQ(countFdsOf(fdsupd_.pid()), baseline);
    EXPECT_EQ(fdsupd_.stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Abuses, HostileWorker,
                         ::testing::Values(Abuse{"garbage", "error 74"},       // EBADMSG
                                           Abuse{"no-fd", "error 74"},         // EBADMSG: fd count
                                           Abuse{"short", "sent"},             // half a header, then gone
                                           Abuse{"not-socket", "result 88"},   // ENOTSOCK
                                           Abuse{"listener", "result 95"},     // EOPNOTSUPP
                                           Abuse{"foreign", "result 1"},       // EPERM
                                           Abuse{"unconnected", "result 107"}, // ENOTCONN
                                           Abuse{"big-state", "result 90"},    // EMSGSIZE
                                           Abuse{"unsealed", "error 77"},      // EBADFD
                                           Abuse{"flood", "error 16"}),        // EBUSY
                         [](const auto &param) {
                             std::string name = param.param.mode;
                             std::erase(name, '-');
                             return name;
                         });

} // namespace
} // namespace fdsup::test
