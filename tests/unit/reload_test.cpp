// Reload on a real daemon whose services run nothing: validate, plan, prepare, apply, and refusals change
// nothing.
#include <optional>
#include <string>

#include <netinet/in.h>
#include <sys/socket.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "daemon/daemon.hpp"
#include "loop_driver.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class ReloadTest : public ::testing::Test {
protected:
    ReloadTest()
    {
        auto loop = EventLoop::create();
        EXPECT_TRUE(loop);
        loop_ = std::move(*loop);
    }

    // [supervisor] with the control socket in the temp dir (never opened
    // here: no control API in this test), then `body`.
    std::string file(const std::string &body) const
    {
        return "[supervisor]\ncontrol = \"" + (dir_ / "control.sock").string() + "\"\n" + body;
    }
    static std::string service(const std::string &name, const std::string &socket,
                               const std::string &extra = "", int instances = 0)
    {
        return "\n[service." + name + "]\ncommand = [\"/bin/sleep\", \"1000\"]\nsockets = [\"" + socket +
               "\"]\ninstances = " + std::to_string(instances) + "\nready = \"started\"\n" + extra;
    }
    void start(const std::string &body)
    {
        test::writeFile(path_, file(body));
        auto loaded = config::loadConfig(path_.string());
        ASSERT_TRUE(loaded.config) << (loaded.diagnostics.empty() ? "" : loaded.diagnostics[0].str());
        auto daemon = Daemon::create(*loop_, std::move(*loaded.config), InheritedFds{});
        ASSERT_TRUE(daemon) << daemon.error().message;
        daemon_ = std::move(*daemon);
    }
    // Writes the file, reloads, and waits for the outcome.
    ReloadOutcome reload(const std::string &body)
    {
        test::writeFile(path_, file(body));
        std::optional<ReloadOutcome> outcome;
        daemon_->reload([&](const ReloadOutcome &o) { outcome = o; });
        EXPECT_TRUE(test::runLoopUntil(
            *loop_, [&] { return outcome.has_value(); }, 10s));
        return outcome.value_or(ReloadOutcome{});
    }
    static std::string actions(const ReloadOutcome &outcome)
    {
        std::string s;
        for (const auto &c : outcome.changes) {
            s += (s.empty() ? "" : ", ") + c.kind + " " + c.name + " " + c.action +
                 (c.status == ReloadChange::Status::Failed ? " failed" : "");
        }
        return s;
    }

    std::unique_ptr<EventLoop> loop_;
    test::TempDir dir_;
    std::filesystem::path path_ = dir_ / "fdsupd.toml";
    std::unique_ptr<Daemon> daemon_;
};

const std::string kWeb = "\n[socket.web]\nlisten = \"tcp://127.0.0.1:0\"\n";

TEST_F(ReloadTest, AnInvalidFileGetsEveryErrorAndChangesNothing)
{
    ASSERT_NO_FATAL_FAILURE(start(kWeb + service("web", "web")));
    const auto outcome = reload(kWeb + service("web", "wbe") + "\n[service.x]\ninstances = \"many\"\n");
    EXPECT_EQ(outcome.kind, ReloadOutcome::Kind::Invalid);
    EXPECT_GE(outcome.errors.size(), 2U);
    EXPECT_EQ(daemon_->config().services.size(), 1U);
    EXPECT_EQ(daemon_->config().services[0].sockets, std::vector<std::string>{"web"});
}

TEST_F(ReloadTest, AddsASocketAndAServiceAndRemovesAnother)
{
    ASSERT_NO_FATAL_FAILURE(start(kWeb + service("web", "web") + service("gone", "web")));
    const auto outcome = reload(kWeb + "\n[socket.api]\nlisten = \"tcp://127.0.0.1:0\"\n" +
                                service("web", "web") + service("api", "api"));
    EXPECT_EQ(outcome.kind, ReloadOutcome::Kind::Done) << actions(outcome);
    EXPECT_EQ(actions(outcome), "socket api added, service gone removed, service api added");
    EXPECT_NE(daemon_->sockets().find("api"), nullptr);
    EXPECT_NE(daemon_->findService("api"), nullptr);
    EXPECT_EQ(daemon_->findService("gone"), nullptr);
    EXPECT_NE(daemon_->config().findService("api"), nullptr);
    EXPECT_EQ(daemon_->config().findService("gone"), nullptr);
}

TEST_F(ReloadTest, TheSameFileAgainChangesNothing)
{
    ASSERT_NO_FATAL_FAILURE(start(kWeb + service("web", "web")));
    const auto outcome = reload(kWeb + service("web", "web"));
    EXPECT_EQ(outcome.kind, ReloadOutcome::Kind::Done);
    EXPECT_TRUE(outcome.changes.empty());
}

TEST_F(ReloadTest, ASocketThatCannotBeBoundRefusesTheWholeReload)
{
    // A port taken by someone else.
    UniqueFd taken(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(taken.get(), reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
    socklen_t length = sizeof a;
    ASSERT_EQ(getsockname(taken.get(), reinterpret_cast<sockaddr *>(&a), &length), 0);
    ASSERT_EQ(listen(taken.get(), 1), 0);
    const std::string port = std::to_string(ntohs(a.sin_port));

    ASSERT_NO_FATAL_FAILURE(start(kWeb + service("web", "web")));
    const int fds = test::countOpenFds();
    // One new socket binds, the other cannot: neither stays bound, and the
    // new service is not added either.
    const auto outcome = reload(kWeb + "\n[socket.one]\nlisten = \"tcp://127.0.0.1:0\"\n" +
                                "\n[socket.two]\nlisten = \"tcp://127.0.0.1:" + port +
                                "\"\nreuse_port = false\n" + service("web", "web") + service("two", "two"));
    EXPECT_EQ(outcome.kind, ReloadOutcome::Kind::Refused);
    ASSERT_EQ(outcome.reasons.size(), 1U);
    EXPECT_THAT(outcome.reasons[0], HasSubstr("Address already in use"));
    EXPECT_EQ(daemon_->sockets().find("one"), nullptr);
    EXPECT_EQ(daemon_->findService("two"), nullptr);
    EXPECT_EQ(test::countOpenFds(), fds) << "nothing bound or created is left behind";
}

TEST_F(ReloadTest, WhatCannotBeAppliedInPlaceIsRefusedWithAReasonPerKey)
{
    ASSERT_NO_FATAL_FAILURE(start(kWeb + service("web", "web")));
    const auto outcome = reload("\n[socket.web]\nlisten = \"tcp://127.0.0.2:0\"\n" + service("web", "web"));
    EXPECT_EQ(outcome.kind, ReloadOutcome::Kind::Refused);
    ASSERT_EQ(outcome.reasons.size(), 1U);
    EXPECT_THAT(outcome.reasons[0], HasSubstr("listen changed"));
}

TEST_F(ReloadTest, AChangedServiceWhoseBinaryCannotBeFoundIsRefused)
{
    ASSERT_NO_FATAL_FAILURE(start(kWeb + service("web", "web")));
    std::string changed = service("web", "web");
    changed.replace(changed.find("/bin/sleep"), 10, "/nonexistent/app");
    const auto outcome = reload(kWeb + changed);
    EXPECT_EQ(outcome.kind, ReloadOutcome::Kind::Refused);
    ASSERT_EQ(outcome.reasons.size(), 1U);
    EXPECT_THAT(outcome.reasons[0], HasSubstr("Service 'web'"));
    EXPECT_THAT(outcome.reasons[0], HasSubstr("/nonexistent/app"));
    EXPECT_EQ(daemon_->findService("web")->generation(), 1U);
    EXPECT_EQ(daemon_->config().findService("web")->command.front(), "/bin/sleep");
}

TEST_F(ReloadTest, AServiceWithoutInstancesIsRolledOutAsTheNextGeneration)
{
    ASSERT_NO_FATAL_FAILURE(start(kWeb + service("web", "web")));
    const auto outcome = reload(kWeb + service("web", "web", "environment = { RELEASE = \"2\" }\n"));
    EXPECT_EQ(outcome.kind, ReloadOutcome::Kind::Done) << actions(outcome);
    EXPECT_EQ(actions(outcome), "service web restarted");
    EXPECT_EQ(daemon_->findService("web")->generation(), 2U);
    EXPECT_EQ(daemon_->config().findService("web")->environment.at("RELEASE"), "2");
}

TEST_F(ReloadTest, ASecondReloadWhileOneIsInProgressIsRefused)
{
    ASSERT_NO_FATAL_FAILURE(start(kWeb + service("web", "web") + service("gone", "web", "", 1)));
    // Removing a running service is in progress until its worker exits.
    test::writeFile(path_, file(kWeb + service("web", "web")));
    std::optional<ReloadOutcome> first;
    daemon_->findService("gone")->start();
    daemon_->reload([&](const ReloadOutcome &o) { first = o; });
    std::optional<ReloadOutcome> second;
    daemon_->reload([&](const ReloadOutcome &o) { second = o; });
    ASSERT_TRUE(second.has_value());
    EXPECT_EQ(second->kind, ReloadOutcome::Kind::Refused);
    EXPECT_THAT(second->reasons, ::testing::ElementsAre("a reload is already in progress"));
    ASSERT_TRUE(test::runLoopUntil(
        *loop_, [&] { return first.has_value(); }, 20s));
    EXPECT_EQ(first->kind, ReloadOutcome::Kind::Done);
}

} // namespace
} // namespace fdsup
