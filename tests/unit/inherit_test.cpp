// The argv placeholder parser and the announcement of listeners (NGINX=, SERVER_STARTER_PORT=,
// {fd:}/{addr:}).
#include <string>
#include <vector>

#include <fcntl.h>

#include <gtest/gtest.h>

#include "common/address.hpp"
#include "common/argv_template.hpp"
#include "common/socket.hpp"
#include "model/inherit.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

// "L:text" for a literal, "F:name" for {fd:name}, "A:name" for {addr:name}.
std::vector<std::string> pieces(std::string_view arg)
{
    auto parsed = parseArgTemplate(arg);
    if (!parsed) {
        return {"error: " + parsed.error().message};
    }
    std::vector<std::string> out;
    for (const auto &piece : *parsed) {
        const char *kind = piece.kind == ArgPiece::Kind::Literal ? "L:"
                           : piece.kind == ArgPiece::Kind::Fd    ? "F:"
                                                                 : "A:";
        out.push_back(kind + piece.text);
    }
    return out;
}

using Strings = std::vector<std::string>;

TEST(ArgTemplate, ParsesPlaceholdersAndEscapes)
{
    EXPECT_EQ(pieces(""), Strings{});
    EXPECT_EQ(pieces("--workers=2"), Strings{"L:--workers=2"});
    EXPECT_EQ(pieces("{fd:web}"), Strings{"F:web"});
    EXPECT_EQ(pieces("fd://{fd:web}"), (Strings{"L:fd://", "F:web"}));
    EXPECT_EQ(pieces("{addr:a-b_1}/{fd:x}"), (Strings{"A:a-b_1", "L:/", "F:x"}));
    EXPECT_EQ(pieces("{{fd:web}}"), Strings{"L:{fd:web}"});
    EXPECT_EQ(pieces("{{{fd:web}}}"), (Strings{"L:{", "F:web", "L:}"}));
    EXPECT_EQ(pieces("{{\"a\": 1}}"), Strings{"L:{\"a\": 1}"});
}

TEST(ArgTemplate, RefusesWhatIsNotAPlaceholder)
{
    EXPECT_EQ(pieces("{port:web}"), Strings{"error: unknown placeholder '{port:web}' at character 1 (known: "
                                            "{fd:NAME}, {addr:NAME}; write '{{' for a literal '{')"});
    EXPECT_EQ(pieces("{}"), Strings{"error: unknown placeholder '{}' at character 1 (known: {fd:NAME}, "
                                    "{addr:NAME}; write '{{' for a literal '{')"});
    EXPECT_EQ(pieces("x}"), Strings{"error: a lone '}' at character 2 (write '}}' for a literal '}')"});
    EXPECT_EQ(pieces("ab{fd:web"),
              Strings{"error: '{' at character 3 is not closed (write '{{' for a literal '{')"});
    EXPECT_EQ(pieces("{a{fd:web}"),
              Strings{"error: '{' at character 1 is not closed (write '{{' for a literal '{')"});
    EXPECT_EQ(pieces("{fd:}"),
              Strings{"error: placeholder '{fd:}' at character 1 needs a socket name after 'fd:' "
                      "(letters, digits, '-', '_')"});
    EXPECT_EQ(pieces("{fd}"),
              Strings{"error: placeholder '{fd}' at character 1 needs a socket name after 'fd:' "
                      "(letters, digits, '-', '_')"});
    EXPECT_EQ(pieces("{addr:a.b}"),
              Strings{"error: placeholder '{addr:a.b}' at character 1 needs a socket name "
                      "after 'addr:' (letters, digits, '-', '_')"});
}

UniqueFd listener(const std::string &address)
{
    auto parsed = parseAddress(address);
    EXPECT_TRUE(parsed.ok()) << parsed.error().message;
    auto bound = parsed ? bindAll(*parsed, {}) : Result<std::vector<UniqueFd>>(parsed.error());
    EXPECT_TRUE(bound.ok()) << bound.error().message;
    if (!bound || bound->size() != 1) {
        return UniqueFd();
    }
    return std::move(bound->front());
}

int portOf(BorrowedFd fd)
{
    auto address = boundAddress(fd);
    return address ? std::stoi(address->substr(address->rfind(':') + 1)) : -1;
}

class Announce : public ::testing::Test {
protected:
    void SetUp() override
    {
        web4_ = listener("tcp://127.0.0.1:0");
        web6_ = listener("tcp://[::1]:0");
        admin_ = listener("unix:" + (dir_ / "admin.sock").string());
        stored_ = listener("tcp://127.0.0.1:0");
        ASSERT_TRUE(web4_ && web6_ && admin_ && stored_);
        // As Service::spawn lays them out: the listeners, then a stored fd.
        request_.argv = {"/usr/bin/{app}", "--fd", "{fd:web}", "--admin={addr:admin}", "{{fd:web}}"};
        request_.environment = {"PATH=/bin"};
        request_.fds = {web4_.borrow(), web6_.borrow(), admin_.borrow(), stored_.borrow()};
        request_.fdNames = {"web", "web", "admin", "stored"};
        config_.sockets = {"web", "admin"};
    }

    test::TempDir dir_;
    UniqueFd web4_, web6_, admin_, stored_;
    SpawnRequest request_;
    config::ServiceConfig config_;
};

TEST_F(Announce, NothingAskedChangesNothingButTheEscapes)
{
    request_.argv = {"/usr/bin/app", "plain", "{{x}}"};
    ASSERT_TRUE(announceListeners(config_, 3, request_).ok());
    EXPECT_EQ(request_.argv, (Strings{"/usr/bin/app", "plain", "{x}"}));
    EXPECT_EQ(request_.environment, Strings{"PATH=/bin"});
}

TEST_F(Announce, EveryConventionNamesTheListenersOnly)
{
    config_.inherit = {config::InheritConvention::Nginx, config::InheritConvention::ServerStarter};
    auto done = announceListeners(config_, 3, request_);
    ASSERT_TRUE(done.ok()) << done.error().message;
    const std::string p4 = std::to_string(portOf(web4_.borrow()));
    const std::string p6 = std::to_string(portOf(web6_.borrow()));
    EXPECT_EQ(request_.environment, (Strings{"PATH=/bin", "NGINX=3;4;5;",
                                             "SERVER_STARTER_PORT=127.0.0.1:" + p4 + "=3;[::1]:" + p6 +
                                                 "=4;" + (dir_ / "admin.sock").string() + "=5"}));
    // argv[0] is never a template; {fd:web} is the first of web's two fds.
    EXPECT_EQ(request_.argv, (Strings{"/usr/bin/{app}", "--fd", "3",
                                      "--admin=" + (dir_ / "admin.sock").string(), "{fd:web}"}));
}

// nginx's workers accept on the listener each time it is readable: a
// blocking one would hold a worker that lost the race in accept().
TEST_F(Announce, NginxGetsNonBlockingListeners)
{
    const auto nonBlocking = [](const UniqueFd &fd) {
        return (fcntl(fd.get(), F_GETFL) & O_NONBLOCK) != 0;
    };
    ASSERT_FALSE(nonBlocking(web4_));
    config_.inherit = {config::InheritConvention::ServerStarter};
    ASSERT_TRUE(announceListeners(config_, 3, request_).ok());
    EXPECT_FALSE(nonBlocking(web4_));
    config_.inherit = {config::InheritConvention::Nginx};
    ASSERT_TRUE(announceListeners(config_, 3, request_).ok());
    EXPECT_TRUE(nonBlocking(web4_));
    EXPECT_TRUE(nonBlocking(web6_));
    EXPECT_TRUE(nonBlocking(admin_));
    EXPECT_FALSE(nonBlocking(stored_)); // not a listener
}

TEST_F(Announce, AnUnknownSocketAtSpawnIsAnError)
{
    request_.argv = {"/usr/bin/app", "{fd:stored}"};
    auto done = announceListeners(config_, 3, request_);
    ASSERT_FALSE(done.ok());
    EXPECT_EQ(done.error().message,
              "argument 1 ({fd:stored}): no listener of socket 'stored' is passed to the worker");
}

} // namespace
} // namespace fdsup
