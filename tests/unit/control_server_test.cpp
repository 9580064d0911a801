// The control server on real unix sockets: framing, ordering, limits, access control, clean-up.
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "api/control_server.hpp"
#include "control/varlink.hpp"
#include "core/scm.hpp"
#include "io/event_loop.hpp"
#include "loop_driver.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using ::testing::HasSubstr;
using varlink::Call;
using varlink::Client;
using varlink::Reply;

constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr auto kClientTimeout = 10s;

Call call(std::string method, nlohmann::json parameters = nlohmann::json::object())
{
    return Call{std::move(method), std::move(parameters), false, false};
}

// A connected raw socket, for clients that break the protocol on purpose.
UniqueFd rawConnect(const std::string &path)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    path.copy(sa.sun_path, sizeof(sa.sun_path) - 1);
    if (!fd || connect(fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0) {
        return UniqueFd();
    }
    return fd;
}

bool writeAll(BorrowedFd fd, std::string_view data)
{
    while (!data.empty()) {
        const ssize_t n = send(fd.get(), data.data(), data.size(), MSG_NOSIGNAL);
        if (n < 0) {
            return false;
        }
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

// Everything until EOF (or a 10 s deadline), for clients that read raw bytes.
std::string readToEof(BorrowedFd fd)
{
    std::string out;
    char buffer[4096];
    for (;;) {
        pollfd p{fd.get(), POLLIN, 0};
        if (poll(&p, 1, 10000) <= 0) {
            return out;
        }
        const ssize_t n = recv(fd.get(), buffer, sizeof(buffer), 0);
        if (n <= 0) {
            return out;
        }
        out.append(buffer, static_cast<std::size_t>(n));
    }
}

// The messages in a raw byte stream, decoded.
std::vector<Reply> repliesIn(const std::string &stream)
{
    std::vector<Reply> replies;
    varlink::FrameReader reader(1U << 30);
    reader.append(stream);
    std::string message;
    while (reader.next(message) == 1) {
        auto r = varlink::decodeReply(message);
        EXPECT_TRUE(r) << message;
        if (r) {
            replies.push_back(std::move(*r));
        }
    }
    return replies;
}

class ControlServerTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop) << loop.error().message;
        loop_ = std::move(*loop);
        // sd-event opens a clock's timerfd with its first timer and keeps it:
        // opened here, not by a connection's idle deadline inside a count.
        ASSERT_TRUE(loop_->addTimer(std::chrono::hours(1), [] {}));
        // A directory the server has to create, as /run/fdsupd on first start.
        path_ = (dir_ / "run" / "control.sock").string();
        options_.path = path_;
        options_.version = "1.2.3";
        options_.url = "https://example.org/fdsup";
        // Every test records what the server logged.
        logged_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
        previousLogger_ = spdlog::default_logger();
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", logged_));
    }

    void TearDown() override
    {
        server_.reset();
        timers_.clear();
        held_.clear();
        loop_.reset();
        spdlog::set_default_logger(previousLogger_);
    }

    void startServer(ControlServer::Handler handler = nullptr, UniqueFd adopted = UniqueFd())
    {
        if (!handler) {
            handler = [this](const std::shared_ptr<PendingCall> &c) {
                calls_.push_back(c->call().method);
                c->reply({{"echo", c->call().parameters}});
            };
        }
        auto server = ControlServer::create(*loop_, options_, std::move(handler), std::move(adopted));
        ASSERT_TRUE(server) << server.error().message;
        server_ = std::move(*server);
    }

    // Drives the loop until pred() holds. Short slices: a client thread's
    // progress (a future, a byte it reads) is no event of this loop.
    bool runUntil(const std::function<bool()> &pred)
    {
        return test::runLoopUntil(*loop_, pred, test::kEventDeadline, 5ms);
    }

    // Runs fn on a client thread while this thread serves it.
    template <typename F>
    auto serve(F fn)
    {
        auto future = std::async(std::launch::async, std::move(fn));
        EXPECT_TRUE(runUntil([&] { return future.wait_for(0s) == std::future_status::ready; }));
        return future.get();
    }

    Result<Reply> callOnce(const Call &c)
    {
        return serve([this, c]() -> Result<Reply> {
            auto client = Client::connect(path_, kClientTimeout);
            if (!client) {
                return client.error();
            }
            return client->call(c);
        });
    }

    void expectServed()
    {
        const auto r = callOnce(call("org.varlink.service.GetInfo"));
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->error, "");
        EXPECT_EQ(r->parameters.at("product"), "fdsupd");
    }

    // Forks a child that drops to nobody (optionally keeping nogroup as its
    // group) and returns what fn returned as its exit status.
    int runAsNobody(const std::function<int()> &fn)
    {
        const pid_t pid = fork();
        if (pid == 0) {
            if (setgroups(0, nullptr) < 0 || setgid(kNogroup) < 0 || setuid(kNobody) < 0) {
                _exit(99);
            }
            _exit(fn());
        }
        EXPECT_GT(pid, 0);
        const UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
        EXPECT_TRUE(pidfd);
        std::optional<int> status;
        {
            auto source = loop_->addChild(pidfd.borrow(), [&](const siginfo_t &si) {
                status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
            });
            EXPECT_TRUE(source);
            EXPECT_TRUE(runUntil([&] { return status.has_value(); }));
        }
        return status.value_or(-1);
    }

    [[nodiscard]] bool loggedSomething(std::string_view what) const
    {
        for (const auto &line : logged_->last_formatted()) {
            if (line.find(what) != std::string::npos) {
                return true;
            }
        }
        return false;
    }

    test::TempDir dir_;
    std::string path_;
    ControlOptions options_;
    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<ControlServer> server_;
    std::vector<std::string> calls_;
    std::vector<EventSource> timers_;
    std::vector<std::shared_ptr<PendingCall>> held_;
    std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> logged_;
    std::shared_ptr<spdlog::logger> previousLogger_;
};

TEST_F(ControlServerTest, CreatesTheSocketWithItsModeAndRemovesIt)
{
    options_.mode = 0640;
    startServer();
    struct stat st {};
    ASSERT_EQ(lstat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0640U);
    server_.reset();
    EXPECT_NE(lstat(path_.c_str(), &st), 0) << "the socket file outlived the server";
}

TEST_F(ControlServerTest, ReplacesAStaleSocketButNotARegularFile)
{
    startServer();
    server_.reset();
    // A socket file nobody listens on, as a crashed fdsupd leaves behind.
    {
        UniqueFd stale(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        path_.copy(sa.sun_path, sizeof(sa.sun_path) - 1);
        ASSERT_EQ(bind(stale.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)), 0);
    }
    startServer();
    expectServed();
    server_.reset();

    test::writeFile(path_, "not a socket");
    auto refused = ControlServer::create(*loop_, options_, [](const std::shared_ptr<PendingCall> &) {});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, EEXIST) << refused.error().message;
    EXPECT_EQ(test::readFile(path_), "not a socket");
}

// A listening unix socket bound at `path`.
UniqueFd listeningAt(const std::string &path)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    path.copy(sa.sun_path, sizeof(sa.sun_path) - 1);
    EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)), 0) << path;
    EXPECT_EQ(listen(fd.get(), 16), 0);
    return fd;
}

// The socket this fdsupd bound before it re-executed: served again, and its
// file is still removed with the server.
TEST_F(ControlServerTest, AdoptsItsOwnListeningSocketAndStillRemovesItsFile)
{
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path());
    UniqueFd fd = listeningAt(path_);
    const auto id = test::fileId(fd.borrow());
    startServer(nullptr, std::move(fd));
    EXPECT_EQ(test::fileId(server_->listener()), id);
    expectServed();
    server_.reset();
    struct stat st {};
    EXPECT_NE(lstat(path_.c_str(), &st), 0) << "the socket file outlived the server";
}

TEST_F(ControlServerTest, RefusesToAdoptASocketBoundElsewhere)
{
    const std::string elsewhere = (dir_ / "elsewhere.sock").string();
    auto r = ControlServer::create(
        *loop_, options_, [](const std::shared_ptr<PendingCall> &) {}, listeningAt(elsewhere));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_THAT(r.error().message, HasSubstr("is bound to '" + elsewhere + "'"));
    struct stat st {};
    EXPECT_EQ(lstat(elsewhere.c_str(), &st), 0) << "not its file to remove";
}

TEST_F(ControlServerTest, RefusesToAdoptASocketThatDoesNotListen)
{
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    auto r = ControlServer::create(
        *loop_, options_, [](const std::shared_ptr<PendingCall> &) {}, std::move(fd));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EINVAL);
}

TEST_F(ControlServerTest, AnswersGetInfo)
{
    startServer();
    const auto r = callOnce(call("org.varlink.service.GetInfo"));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->error, "");
    EXPECT_EQ(r->parameters, nlohmann::json::parse(R"({"vendor":"fdsup","product":"fdsupd","version":"1.2.3",
        "url":"https://example.org/fdsup","interfaces":["org.varlink.service","io.fdsup.Manager"]})"));
    EXPECT_TRUE(calls_.empty());
}

TEST_F(ControlServerTest, DescribesItsInterfaces)
{
    startServer();
    auto r =
        callOnce(call("org.varlink.service.GetInterfaceDescription", {{"interface", "io.fdsup.Manager"}}));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->parameters.at("description"), varlink::managerInterfaceDescription());
    r = callOnce(call("org.varlink.service.GetInterfaceDescription", {{"interface", "org.varlink.service"}}));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->parameters.at("description"), varlink::serviceInterfaceDescription());
    r = callOnce(call("org.varlink.service.GetInterfaceDescription", {{"interface", "com.example.Nope"}}));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error, varlink::kErrorInterfaceNotFound);
    EXPECT_EQ(r->parameters.at("interface"), "com.example.Nope");
    r = callOnce(call("org.varlink.service.GetInterfaceDescription"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error, varlink::kErrorInvalidParameter);
    EXPECT_EQ(r->parameters.at("parameter"), "interface");
    r = callOnce(call("org.varlink.service.Nope"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error, varlink::kErrorMethodNotFound);
    r = callOnce(call("com.example.Other.Method"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->error, varlink::kErrorInterfaceNotFound);
    EXPECT_TRUE(calls_.empty());
}

TEST_F(ControlServerTest, PassesManagerCallsToTheHandler)
{
    startServer();
    const auto r = callOnce(call("io.fdsup.Manager.Status", {{"service", "web"}}));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->error, "");
    EXPECT_EQ(r->parameters.at("echo").at("service"), "web");
    EXPECT_EQ(calls_, std::vector<std::string>{"io.fdsup.Manager.Status"});
}

TEST_F(ControlServerTest, AHandlerMayReplyLater)
{
    startServer([this](const std::shared_ptr<PendingCall> &c) {
        EXPECT_EQ(c->peer().uid, getuid());
        EXPECT_EQ(c->peer().pid, getpid());
        auto timer = loop_->addTimer(20ms, [c] { c->reply({{"service", "web"}, {"state", "stopped"}}); });
        ASSERT_TRUE(timer);
        timers_.push_back(std::move(*timer));
    });
    const auto r = callOnce(call("io.fdsup.Manager.Stop", {{"service", "web"}}));
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->parameters.at("state"), "stopped");
}

TEST_F(ControlServerTest, StreamsRepliesToMoreCalls)
{
    startServer([](const std::shared_ptr<PendingCall> &c) {
        c->reply({{"n", 1}}, true);
        c->reply({{"n", 2}}, true);
        c->reply({{"n", 3}});
        EXPECT_TRUE(c->done());
    });
    const auto got = serve([this] {
        std::vector<int> ns;
        auto client = Client::connect(path_, kClientTimeout);
        if (!client) {
            return ns;
        }
        auto r = client->call(Call{"io.fdsup.Manager.Status", nlohmann::json::object(), true, false});
        while (r && r->error.empty()) {
            ns.push_back(r->parameters.at("n").get<int>());
            if (!r->continues) {
                break;
            }
            r = client->next();
        }
        return ns;
    });
    EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
}

TEST_F(ControlServerTest, ServesPipelinedCallsInOrder)
{
    std::vector<std::string> events;
    startServer([&](const std::shared_ptr<PendingCall> &c) {
        const std::string id = c->call().parameters.at("id");
        events.push_back("call " + id);
        if (id == "slow") {
            auto timer = loop_->addTimer(30ms, [c, &events] {
                events.emplace_back("reply slow");
                c->reply({{"id", "slow"}});
            });
            ASSERT_TRUE(timer);
            timers_.push_back(std::move(*timer));
            return;
        }
        c->reply({{"id", id}});
    });
    const auto replies = serve([this] {
        const UniqueFd fd = rawConnect(path_);
        // Four calls in one write; the second is oneway and gets no reply.
        std::string all = varlink::encodeCall(call("io.fdsup.Manager.Status", {{"id", "slow"}}));
        all += varlink::encodeCall(Call{"io.fdsup.Manager.Status", {{"id", "oneway"}}, false, true});
        all += varlink::encodeCall(call("io.fdsup.Manager.Status", {{"id", "a"}}));
        all += varlink::encodeCall(call("io.fdsup.Manager.Status", {{"id", "b"}}));
        EXPECT_TRUE(writeAll(fd.borrow(), all));
        // Half-close: the server must still answer everything sent.
        shutdown(fd.get(), SHUT_WR);
        return repliesIn(readToEof(fd.borrow()));
    });
    ASSERT_EQ(replies.size(), 3U);
    EXPECT_EQ(replies[0].parameters.at("id"), "slow");
    EXPECT_EQ(replies[1].parameters.at("id"), "a");
    EXPECT_EQ(replies[2].parameters.at("id"), "b");
    EXPECT_EQ(events,
              (std::vector<std::string>{"call slow", "reply slow", "call oneway", "call a", "call b"}));
    EXPECT_TRUE(runUntil([&] { return server_->clients() == 0; }));
}

TEST_F(ControlServerTest, AnswersGarbageAndKeepsTheConnection)
{
    startServer();
    const auto replies = serve([this] {
        const UniqueFd fd = rawConnect(path_);
        std::string all = "hello\0"s;
        all += "[1,2]\0"s;
        all += R"({"method":"io.fdsup.Manager.Status","parameters":[]})"s + '\0';
        all += varlink::encodeCall(call("io.fdsup.Manager.Status", {{"after", "garbage"}}));
        EXPECT_TRUE(writeAll(fd.borrow(), all));
        shutdown(fd.get(), SHUT_WR);
        return repliesIn(readToEof(fd.borrow()));
    });
    ASSERT_EQ(replies.size(), 4U);
    for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(replies[i].error, varlink::kErrorInvalidRequest);
        EXPECT_TRUE(replies[i].parameters.at("reason").is_string());
    }
    EXPECT_THAT(replies[0].parameters.at("reason").get<std::string>(), HasSubstr("not valid JSON"));
    EXPECT_THAT(replies[2].parameters.at("reason").get<std::string>(), HasSubstr("'parameters'"));
    EXPECT_EQ(replies[3].error, "");
    EXPECT_EQ(replies[3].parameters.at("echo").at("after"), "garbage");
}

TEST_F(ControlServerTest, ATruncatedRequestIsDiscardedWithItsConnection)
{
    startServer();
    {
        const UniqueFd fd = rawConnect(path_);
        ASSERT_TRUE(writeAll(fd.borrow(), R"({"method":"io.fdsup.Mana)"));
    }
    // A client that shut down its side in the middle of a message is told.
    const auto replies = serve([this] {
        const UniqueFd fd = rawConnect(path_);
        EXPECT_TRUE(writeAll(fd.borrow(), R"({"method":"io.fdsup.Mana)"));
        shutdown(fd.get(), SHUT_WR);
        return repliesIn(readToEof(fd.borrow()));
    });
    ASSERT_EQ(replies.size(), 1U);
    EXPECT_EQ(replies[0].error, varlink::kErrorInvalidRequest);
    expectServed();
    EXPECT_TRUE(runUntil([&] { return server_->clients() == 0; }));
    EXPECT_TRUE(calls_.empty());
}

TEST_F(ControlServerTest, AHugeRequestIsRefusedAndTheConnectionClosed)
{
    options_.maxRequest = 4096;
    startServer();
    // Through the ordinary client: it still sees the reply although fdsupd
    // hangs up while the request is being sent.
    const auto r = serve([this]() -> Result<std::pair<Reply, int>> {
        auto client = Client::connect(path_, kClientTimeout);
        if (!client) {
            return client.error();
        }
        auto reply = client->call(call("io.fdsup.Manager.Status", {{"x", std::string(1U << 20, 'x')}}));
        if (!reply) {
            return reply.error();
        }
        auto after = client->next();
        return std::pair{*reply, after ? 0 : after.error().code};
    });
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->first.error, varlink::kErrorRequestTooLarge);
    EXPECT_EQ(r->first.parameters.at("limit"), 4096);
    EXPECT_EQ(r->second, ECONNRESET) << "the connection stays open";
    EXPECT_TRUE(loggedSomething("exceeds 4096 bytes"));
    // Exactly the limit is fine.
    std::string exact = varlink::encodeCall(call("io.fdsup.Manager.Status", {{"x", ""}}));
    const std::size_t fill = 4096 - (exact.size() - 1);
    const auto ok = callOnce(call("io.fdsup.Manager.Status", {{"x", std::string(fill, 'y')}}));
    ASSERT_TRUE(ok) << ok.error().message;
    EXPECT_EQ(ok->error, "");
    const auto over = callOnce(call("io.fdsup.Manager.Status", {{"x", std::string(fill + 1, 'y')}}));
    ASSERT_TRUE(over) << over.error().message;
    EXPECT_EQ(over->error, varlink::kErrorRequestTooLarge);
    expectServed();
}

TEST_F(ControlServerTest, AHangUpEndsThePendingCall)
{
    std::shared_ptr<PendingCall> pending;
    startServer([&](const std::shared_ptr<PendingCall> &c) { pending = c; });
    {
        const UniqueFd fd = rawConnect(path_);
        ASSERT_TRUE(writeAll(fd.borrow(), varlink::encodeCall(call("io.fdsup.Manager.Stop"))));
        ASSERT_TRUE(runUntil([&] { return pending != nullptr; }));
        EXPECT_FALSE(pending->done());
        EXPECT_EQ(server_->clients(), 1U);
    }
    EXPECT_TRUE(runUntil([&] { return pending->done(); }));
    EXPECT_EQ(server_->clients(), 0U);
    // Replying to a client that has gone is harmless.
    pending->reply({{"state", "stopped"}});
    expectServed();
}

TEST_F(ControlServerTest, ACallDroppedWithoutAReplyClosesTheConnection)
{
    startServer([](const std::shared_ptr<PendingCall> &) {});
    const auto r = callOnce(call("io.fdsup.Manager.Status"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ECONNRESET);
    EXPECT_TRUE(loggedSomething("was dropped without a reply"));
}

TEST_F(ControlServerTest, AHandlerThatThrowsDoesNotTakeTheDaemonDown)
{
    startServer([](const std::shared_ptr<PendingCall> &c) {
        if (c->call().parameters.contains("boom")) {
            throw std::runtime_error("boom");
        }
        c->reply({});
    });
    const auto r = callOnce(call("io.fdsup.Manager.Status", {{"boom", true}}));
    EXPECT_FALSE(r);
    EXPECT_TRUE(loggedSomething("boom"));
    const auto ok = callOnce(call("io.fdsup.Manager.Status"));
    ASSERT_TRUE(ok) << ok.error().message;
}

TEST_F(ControlServerTest, DropsAClientThatDoesNotReadItsReplies)
{
    options_.maxOutput = 1024;
    bool answered = false;
    startServer([&](const std::shared_ptr<PendingCall> &c) {
        // Far more than a socket buffer holds.
        c->reply({{"blob", std::string(16U << 20, 'z')}});
        answered = true;
    });
    const UniqueFd fd = rawConnect(path_);
    ASSERT_TRUE(writeAll(fd.borrow(), varlink::encodeCall(call("io.fdsup.Manager.Status"))));
    ASSERT_TRUE(runUntil([&] { return answered && server_->clients() == 0; }));
    EXPECT_TRUE(loggedSomething("does not read its replies"));
    const std::string got = readToEof(fd.borrow());
    EXPECT_EQ(got.find('\0'), std::string::npos) << "a partial reply must not look complete";
}

// A connection with no call in progress and no complete request within
// idleTimeout is closed; one whose call is still in progress is not, and a
// client trickling half a request is idle all the same.
TEST_F(ControlServerTest, ClosesIdleConnectionsButNotOnesWithACallInProgress)
{
    options_.idleTimeout = std::chrono::milliseconds(500);
    std::vector<std::shared_ptr<PendingCall>> inProgress;
    startServer([&](const std::shared_ptr<PendingCall> &c) { inProgress.push_back(c); });
    // Connected first: had its deadline been armed, it would fire first.
    const UniqueFd busy = rawConnect(path_);
    ASSERT_TRUE(writeAll(busy.borrow(), varlink::encodeCall(call("io.fdsup.Manager.Status"))));
    ASSERT_TRUE(runUntil([&] { return inProgress.size() == 1; }));
    const UniqueFd idle = rawConnect(path_);
    const UniqueFd trickling = rawConnect(path_);
    ASSERT_TRUE(writeAll(trickling.borrow(), "{\"method\":"));
    ASSERT_TRUE(runUntil([&] { return server_->clients() == 3; }));
    ASSERT_TRUE(runUntil([&] { return server_->clients() == 1; }));
    EXPECT_TRUE(loggedSomething("sent no request in"));
    char byte = 0;
    EXPECT_EQ(recv(idle.get(), &byte, 1, MSG_DONTWAIT), 0);
    EXPECT_EQ(recv(trickling.get(), &byte, 1, MSG_DONTWAIT), 0);
    // The call's reply ends its time in progress: idle from then on.
    inProgress.front()->reply({});
    ASSERT_TRUE(runUntil([&] { return server_->clients() == 0; }));
    inProgress.clear();
}

TEST_F(ControlServerTest, EnforcesMaxClients)
{
    options_.maxClients = 2;
    startServer();
    const UniqueFd a = rawConnect(path_);
    const UniqueFd b = rawConnect(path_);
    ASSERT_TRUE(runUntil([&] { return server_->clients() == 2; }));
    const UniqueFd c = rawConnect(path_);
    ASSERT_TRUE(c);
    // The third is accepted and closed at once: it reads EOF.
    char byte = 0;
    ASSERT_TRUE(runUntil([&] { return recv(c.get(), &byte, 1, MSG_DONTWAIT) == 0; }));
    EXPECT_EQ(server_->clients(), 2U);
    EXPECT_TRUE(loggedSomething("too many clients (limit 2)"));
    // The first two are still served.
    ASSERT_TRUE(writeAll(a.borrow(), varlink::encodeCall(call("org.varlink.service.GetInfo"))));
    shutdown(a.get(), SHUT_WR);
    std::string got;
    ASSERT_TRUE(runUntil([&] {
        char buffer[4096];
        const ssize_t n = recv(a.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
        if (n > 0) {
            got.append(buffer, static_cast<std::size_t>(n));
        }
        return n == 0;
    }));
    const auto replies = repliesIn(got);
    ASSERT_EQ(replies.size(), 1U);
    EXPECT_EQ(replies[0].parameters.at("product"), "fdsupd");
}

// The children below connect as nobody: the directories must let them in.
class ControlServerAccessTest : public ControlServerTest {
protected:
    void SetUp() override
    {
        ControlServerTest::SetUp();
        ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);
    }

    // Exit status of a nobody child that calls GetInfo, then Status.
    enum Outcome : std::uint8_t {
        kConnectRefused = 10,
        kConnectFailed = 11,
        kGetInfoFailed = 12,
        kCallFailed = 13,
        kPermissionDenied = 20,
        kAnswered = 21,
        kOtherError = 22,
        kStillOpen = 23,
    };

    int callAsNobody()
    {
        const std::string path = path_;
        return runAsNobody([path] {
            auto client = Client::connect(path, kClientTimeout);
            if (!client) {
                return client.error().code == EACCES ? kConnectRefused : kConnectFailed;
            }
            const auto info = client->call(call("org.varlink.service.GetInfo"));
            if (!info || !info->error.empty()) {
                return kGetInfoFailed;
            }
            const auto r = client->call(call("io.fdsup.Manager.Status"));
            if (!r) {
                return kCallFailed;
            }
            if (r->error == varlink::kErrorPermissionDenied) {
                const auto after = client->next();
                return !after && after.error().code == ECONNRESET ? kPermissionDenied : kStillOpen;
            }
            return r->error.empty() ? kAnswered : kOtherError;
        });
    }
};

TEST_F(ControlServerAccessTest, ANobodyGetsPermissionDenied)
{
    options_.mode = 0666;
    startServer();
    EXPECT_EQ(callAsNobody(), kPermissionDenied);
    EXPECT_TRUE(calls_.empty()) << "the handler saw an unauthorised call";
    // The refusal is an audit line (docs/access.md).
    EXPECT_TRUE(loggedSomething("audit: uid=65534 pid="));
    EXPECT_TRUE(
        loggedSomething(" method=io.fdsup.Manager.Status service=- params={} result=denied: uid 65534 is "
                        "not in allow_users, allow_groups or any [[supervisor.access]] entry"));
    expectServed();
}

TEST_F(ControlServerAccessTest, AllowedUsersAndGroupsAreServed)
{
    options_.mode = 0666;
    options_.allowUids = {kNobody};
    startServer();
    EXPECT_EQ(callAsNobody(), kAnswered);
    server_.reset();
    options_.allowUids.clear();
    options_.allowGids = {kNogroup};
    startServer();
    EXPECT_EQ(callAsNobody(), kAnswered);
    EXPECT_EQ(calls_.size(), 2U);
}

TEST_F(ControlServerAccessTest, TheSocketModeKeepsOthersOut)
{
    options_.mode = 0660;
    startServer();
    EXPECT_EQ(callAsNobody(), kConnectRefused);
    EXPECT_TRUE(calls_.empty());
}

TEST_F(ControlServerTest, DestroyingTheServerEndsEveryConnection)
{
    std::shared_ptr<PendingCall> pending;
    startServer([&](const std::shared_ptr<PendingCall> &c) { pending = c; });
    const UniqueFd fd = rawConnect(path_);
    ASSERT_TRUE(writeAll(fd.borrow(), varlink::encodeCall(call("io.fdsup.Manager.Stop"))));
    ASSERT_TRUE(runUntil([&] { return pending != nullptr; }));
    server_.reset();
    EXPECT_TRUE(pending->done());
    pending->reply({});
    char byte = 0;
    EXPECT_EQ(recv(fd.get(), &byte, 1, MSG_DONTWAIT), 0);
}

// Export's reply and Import's call carry descriptors; a call that does not
// take what came with it closes it; the same file arrives (st_ino).
TEST_F(ControlServerTest, DescriptorsRideOnACallAndOnItsReply)
{
    int pipeFds[2];
    ASSERT_EQ(pipe2(pipeFds, O_CLOEXEC), 0);
    UniqueFd readEnd(pipeFds[0]);
    UniqueFd writeEnd(pipeFds[1]);
    const test::FileId sent = test::fileId(readEnd.borrow());
    std::vector<test::FileId> arrived;
    startServer([&](const std::shared_ptr<PendingCall> &c) {
        if (c->call().method == "io.fdsup.Manager.Import") {
            for (const auto &fd : c->takeFds()) {
                arrived.push_back(test::fileId(fd.borrow()));
            }
            c->reply({{"taken", arrived.size()}});
        } else if (c->call().method == "io.fdsup.Manager.Export") {
            std::vector<UniqueFd> copies;
            copies.emplace_back(fcntl(readEnd.get(), F_DUPFD_CLOEXEC, 3));
            copies.emplace_back(fcntl(writeEnd.get(), F_DUPFD_CLOEXEC, 3));
            c->replyWithFds({{"fds", 2}}, std::move(copies));
        } else {
            c->reply({}); // takes nothing: what came with it is closed
        }
    });
    const int before = test::countOpenFds();
    const auto got = serve([&]() -> std::vector<test::FileId> {
        auto client = Client::connect(path_, kClientTimeout);
        if (!client) {
            return {};
        }
        const std::array<BorrowedFd, 1> one{readEnd.borrow()};
        auto imported = client->call(call("io.fdsup.Manager.Import"), one);
        EXPECT_TRUE(imported && imported->parameters.value("taken", 0) == 1);
        auto ignored = client->call(call("io.fdsup.Manager.Status"), one);
        EXPECT_TRUE(ignored && ignored->error.empty());
        auto exported = client->call(call("io.fdsup.Manager.Export"));
        EXPECT_TRUE(exported && exported->parameters.value("fds", 0) == 2);
        std::vector<test::FileId> ids;
        for (const auto &fd : client->takeFds()) {
            ids.push_back(test::fileId(fd.borrow()));
        }
        return ids;
    });
    EXPECT_EQ(arrived, std::vector<test::FileId>{sent});
    EXPECT_EQ(got, (std::vector<test::FileId>{sent, test::fileId(writeEnd.borrow())}));
    // The server closes its end once it has seen the client hang up (ASan's
    // timing showed the count taken before that: 8 vs 7).
    EXPECT_TRUE(runUntil([&] { return server_->clients() == 0; }));
    EXPECT_EQ(test::countOpenFds(), before);
}

// More than kMaxCallFds descriptors before a call is complete: the
// connection is closed without a reply, and nothing is kept.
TEST_F(ControlServerTest, TooManyDescriptorsCloseTheConnection)
{
    startServer();
    const int before = test::countOpenFds();
    const std::string stream = serve([&]() -> std::string {
        // The client refuses more than kMaxCallFds itself.
        auto client = Client::connect(path_, kClientTimeout);
        const UniqueFd devNull(open("/dev/null", O_RDONLY | O_CLOEXEC));
        EXPECT_FALSE(client &&
                     client->call(call("io.fdsup.Manager.Import"),
                                  std::vector<BorrowedFd>(varlink::kMaxCallFds + 1, devNull.borrow())));
        // A raw client sends 253 with the first byte and 253 with the rest.
        const UniqueFd raw = rawConnect(path_);
        const std::vector<BorrowedFd> fds(varlink::kMaxCallFds, devNull.borrow());
        const std::string message = varlink::encodeCall(call("io.fdsup.Manager.Import"));
        const auto bytes = std::as_bytes(std::span(message));
        EXPECT_EQ(sendStreamWithFds(raw.borrow(), bytes.first(1), fds, 0), 1);
        EXPECT_GT(sendStreamWithFds(raw.borrow(), bytes.subspan(1), fds, 0), 0);
        return readToEof(raw.borrow());
    });
    EXPECT_EQ(stream, "");
    EXPECT_TRUE(runUntil([&] { return server_->clients() == 0; }));
    EXPECT_THAT(calls_, testing::IsEmpty());
    EXPECT_EQ(test::countOpenFds(), before);
}

} // namespace
} // namespace fdsup
