// Unit tests for the sd_notify server: the parser, and the socket against the real libsystemd client.
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/fd.hpp"
#include "io/event_loop.hpp"
#include "io/notify.hpp"
#include "loop_driver.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using namespace std::chrono_literals;
using test::fileId;

NotifyMessage parseOk(std::string_view text)
{
    auto r = parseNotify(text);
    if (!r) {
        ADD_FAILURE() << "parseNotify(\"" << text << "\") failed: " << r.error().message;
        return {};
    }
    return std::move(r).value();
}

// Asserts that text is refused and that the error names the culprit.
void expectInvalid(std::string_view text, std::string_view mention)
{
    auto r = parseNotify(text);
    ASSERT_FALSE(r) << "accepted: " << text;
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_NE(r.error().message.find(mention), std::string::npos)
        << "error '" << r.error().message << "' does not mention '" << mention << "'";
}

TEST(ParseNotify, EachAssignment)
{
    EXPECT_TRUE(parseOk("READY=1").ready);
    EXPECT_TRUE(parseOk("RELOADING=1").reloading);
    EXPECT_TRUE(parseOk("STOPPING=1").stopping);
    EXPECT_TRUE(parseOk("WATCHDOG=1").watchdog);
    EXPECT_FALSE(parseOk("WATCHDOG=1").watchdogTrigger);
    EXPECT_TRUE(parseOk("WATCHDOG=trigger").watchdogTrigger);
    EXPECT_FALSE(parseOk("WATCHDOG=trigger").watchdog);
    EXPECT_EQ(parseOk("WATCHDOG_USEC=20000000").watchdogUsec, 20000000U);
    EXPECT_EQ(parseOk("WATCHDOG_USEC=0").watchdogUsec, 0U);
    EXPECT_EQ(parseOk("WATCHDOG_USEC=18446744073709551615").watchdogUsec, UINT64_MAX);
    EXPECT_EQ(parseOk("EXTEND_TIMEOUT_USEC=5000000").extendTimeoutUsec, 5000000U);
    EXPECT_EQ(parseOk("STATUS=Completed 66% of file system check...").status,
              "Completed 66% of file system check...");
    EXPECT_EQ(parseOk("STATUS=").status, ""); // clears the status
    EXPECT_EQ(parseOk("STATUS=a=b").status, "a=b");
    EXPECT_EQ(parseOk("ERRNO=2").errnoValue, 2);
    EXPECT_EQ(parseOk("ERRNO=0").errnoValue, 0);
    EXPECT_EQ(parseOk("ERRNO=2147483647").errnoValue, 2147483647);
    EXPECT_EQ(parseOk("MAINPID=4711").mainPid, 4711);
    EXPECT_TRUE(parseOk("FDSTORE=1").fdStore);
    EXPECT_TRUE(parseOk("BARRIER=1").barrier);

    const auto remove = parseOk("FDSTOREREMOVE=1\nFDNAME=cache");
    EXPECT_TRUE(remove.fdStoreRemove);
    EXPECT_EQ(remove.fdName, "cache");

    EXPECT_FALSE(parseOk("FDPOLL=0").fdPoll);
    EXPECT_TRUE(parseOk("FDPOLL=1").fdPoll);
}

TEST(ParseNotify, Defaults)
{
    const auto m = parseOk("");
    EXPECT_FALSE(m.ready || m.reloading || m.stopping || m.watchdog || m.watchdogTrigger);
    EXPECT_FALSE(m.fdStore || m.fdStoreRemove || m.barrier);
    EXPECT_FALSE(m.watchdogUsec || m.status || m.errnoValue || m.extendTimeoutUsec || m.mainPid);
    EXPECT_EQ(m.fdName, "stored"); // systemd's name for unnamed stored fds
    EXPECT_TRUE(m.fdPoll);
    EXPECT_TRUE(m.unknown.empty());
    EXPECT_EQ(m.pid, 0); // filled by the server from the credentials, never by the parser
}

TEST(ParseNotify, Combinations)
{
    const auto m = parseOk("READY=1\nSTATUS=serving\nMAINPID=42\nWATCHDOG=1\n");
    EXPECT_TRUE(m.ready);
    EXPECT_TRUE(m.watchdog);
    EXPECT_EQ(m.status, "serving");
    EXPECT_EQ(m.mainPid, 42);

    const auto store = parseOk("FDSTORE=1\nFDNAME=listener\nFDPOLL=0");
    EXPECT_TRUE(store.fdStore);
    EXPECT_EQ(store.fdName, "listener");
    EXPECT_FALSE(store.fdPoll);

    // Empty lines, leading, trailing and doubled newlines are all fine.
    EXPECT_TRUE(parseOk("\n\nREADY=1\n\n\n").ready);
}

TEST(ParseNotify, ValuesSystemdDoesNotActOnAreKept)
{
    const auto m =
        parseOk("READY=0\nSTOPPING=yes\nWATCHDOG=2\nFDSTORE=0\nFDPOLL=maybe\nBUSERROR=org.x.Y\nX_APP=1");
    EXPECT_FALSE(m.ready);
    EXPECT_FALSE(m.stopping);
    EXPECT_FALSE(m.watchdog || m.watchdogTrigger);
    EXPECT_FALSE(m.fdStore);
    EXPECT_TRUE(m.fdPoll);
    EXPECT_EQ(m.unknown, (std::vector<std::string>{"READY=0", "STOPPING=yes", "WATCHDOG=2", "FDSTORE=0",
                                                   "FDPOLL=maybe", "BUSERROR=org.x.Y", "X_APP=1"}));
}

TEST(ParseNotify, FirstValueOfARepeatedKeyCounts)
{
    const auto m = parseOk("STATUS=a\nSTATUS=b\nERRNO=1\nERRNO=2\nFDNAME=x\nFDNAME=y\nFDPOLL=0\nFDPOLL=1\n"
                           "MAINPID=5\nMAINPID=6\nWATCHDOG_USEC=7\nWATCHDOG_USEC=8");
    EXPECT_EQ(m.status, "a");
    EXPECT_EQ(m.errnoValue, 1);
    EXPECT_EQ(m.fdName, "x");
    EXPECT_FALSE(m.fdPoll);
    EXPECT_EQ(m.mainPid, 5);
    EXPECT_EQ(m.watchdogUsec, 7U);
    // ...but a later invalid one still spoils the datagram.
    expectInvalid("STATUS=ok\nERRNO=1\nERRNO=x", "ERRNO=x");
}

TEST(ParseNotify, StatusMustBeUtf8)
{
    // "grüße ✓ 😀": two-, three- and four-byte sequences.
    const std::string text = "gr\xc3\xbc\xc3\x9f"
                             "e \xe2\x9c\x93 \xf0\x9f\x98\x80";
    EXPECT_EQ(parseOk("STATUS=" + text).status, text);
    expectInvalid("STATUS=\xff", "UTF-8");
    expectInvalid("STATUS=\xc0\xaf", "UTF-8");         // overlong '/'
    expectInvalid("STATUS=\xe0\x80\xaf", "UTF-8");     // overlong, 3 bytes
    expectInvalid("STATUS=\xed\xa0\x80", "UTF-8");     // a surrogate
    expectInvalid("STATUS=\xf4\x90\x80\x80", "UTF-8"); // above U+10FFFF
    expectInvalid("STATUS=\xe2\x9c", "UTF-8");         // cut short
    expectInvalid("STATUS=\xe2\x28\xa1", "UTF-8");     // bad continuation
}

TEST(ParseNotify, InvalidLinesSpoilTheDatagram)
{
    expectInvalid("READY", "READY");
    expectInvalid("READY=1\nbogus\nSTATUS=x", "bogus");
    expectInvalid("=1", "not KEY=VALUE");
    expectInvalid(std::string_view("READY=1\0STATUS=x", 16), "NUL");
    expectInvalid(std::string_view("READY=1\n\0", 9), "NUL");
}

TEST(ParseNotify, Numbers)
{
    for (const char *bad :
         {"WATCHDOG_USEC=", "WATCHDOG_USEC=abc", "WATCHDOG_USEC=-1", "WATCHDOG_USEC=+1", "WATCHDOG_USEC= 1",
          "WATCHDOG_USEC=1 ", "WATCHDOG_USEC=0x10", "WATCHDOG_USEC=1.5", "WATCHDOG_USEC=18446744073709551616",
          "WATCHDOG_USEC=99999999999999999999999", "EXTEND_TIMEOUT_USEC=1s", "EXTEND_TIMEOUT_USEC=-5"}) {
        SCOPED_TRACE(bad);
        expectInvalid(bad, "microseconds");
    }
    for (const char *bad : {"ERRNO=", "ERRNO=-1", "ERRNO=2147483648", "ERRNO=EIO"}) {
        SCOPED_TRACE(bad);
        expectInvalid(bad, "errno");
    }
    for (const char *bad : {"MAINPID=0", "MAINPID=-5", "MAINPID=abc", "MAINPID=2147483648", "MAINPID="}) {
        SCOPED_TRACE(bad);
        expectInvalid(bad, "pid");
    }
    EXPECT_EQ(parseOk("ERRNO=007").errnoValue, 7);
}

TEST(ParseNotify, FdName)
{
    EXPECT_EQ(parseOk("FDSTORE=1\nFDNAME=with space").fdName, "with space");
    EXPECT_EQ(parseOk("FDNAME=" + std::string(255, 'n')).fdName, std::string(255, 'n'));
    expectInvalid("FDNAME=", "FDNAME=");
    expectInvalid("FDSTORE=1\nFDNAME=a:b", "':'");
    expectInvalid("FDNAME=\x01", "FDNAME=");
    expectInvalid("FDNAME=" + std::string(256, 'n'), "255");
    expectInvalid("FDNAME=caf\xc3\xa9", "FDNAME=");
}

TEST(ParseNotify, FdStoreRemoveNeedsAName)
{
    expectInvalid("FDSTOREREMOVE=1", "FDNAME=");
    EXPECT_TRUE(parseOk("FDSTOREREMOVE=1\nFDNAME=stored").fdStoreRemove);
}

TEST(ParseNotify, BarrierIsAlone)
{
    expectInvalid("BARRIER=1\nREADY=1", "BARRIER=1");
    EXPECT_TRUE(parseOk("\nBARRIER=1\n").barrier);
}

TEST(ValidFdName, Rules)
{
    for (const std::string &good : {std::string("x"), std::string("stored"), std::string("with space"),
                                    std::string("~!@#$%^&*()"), std::string(255, 'a')}) {
        EXPECT_TRUE(validFdName(good)) << good;
    }
    for (const std::string &bad :
         {std::string(), std::string(":"), std::string("a:b"), std::string("a\tb"), std::string("\x7f"),
          std::string("caf\xc3\xa9"), std::string("a\nb"), std::string(256, 'a')}) {
        EXPECT_FALSE(validFdName(bad)) << bad;
    }
}

// --- The server ---

std::string uniqueName()
{
    static int counter = 0;
    return "fdsup-test-notify-" + std::to_string(::getpid()) + "-" + std::to_string(++counter);
}

// A datagram as a buggy or hostile sender would send it, bypassing
// libsystemd. Returns 0 or -errno.
int sendRaw(const std::string &path, std::string_view text, const std::vector<int> &fds = {})
{
    const UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!sock) {
        return -errno;
    }
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    address.sun_path[0] = '\0';
    iovec iov{const_cast<char *>(text.data()), text.size()};
    msghdr msg{};
    msg.msg_name = &address;
    msg.msg_namelen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (c == nullptr) {
            return -EINVAL;
        }
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    return ::sendmsg(sock.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
}

struct Pipe {
    UniqueFd read;
    UniqueFd write;
};

Pipe makePipe()
{
    std::array<int, 2> fds{};
    if (::pipe2(fds.data(), O_CLOEXEC) < 0) {
        throw std::runtime_error("pipe2 failed");
    }
    return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// True when every write end of the pipe is closed, i.e. nobody else (the
// server) still holds a copy of one that was sent.
bool pipeAtEof(const Pipe &pipe)
{
    pollfd p{pipe.read.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) != 1 || (p.revents & POLLHUP) == 0) {
        return false;
    }
    char c = 0;
    return ::read(pipe.read.get(), &c, 1) == 0;
}

class NotifyServerTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop) << loop.error().message;
        loop_ = std::move(loop).value();
        auto server = NotifyServer::create(*loop_, uniqueName(), [this](NotifyMessage &&m) {
            if (onMessage_) {
                onMessage_(m);
            }
            messages_.push_back(std::move(m));
        });
        ASSERT_TRUE(server) << server.error().message;
        server_ = std::move(server).value();
    }

    void TearDown() override
    {
        server_.reset();
        messages_.clear();
        loop_.reset();
    }

    bool runUntil(const std::function<bool()> &done) { return test::runLoopUntil(*loop_, done); }

    // Runs iterations until one dispatches nothing: everything pending is handled.
    void drain()
    {
        while (loop_->runOnce(0us) > 0) {
        }
    }

    // A running notify-sender, watched through its pidfd by our own loop so
    // that waiting for it never stops the server from reading.
    struct Sender {
        pid_t pid = -1;
        UniqueFd pidfd;
        EventSource source;
        std::optional<int> exitStatus; // -1 when killed by a signal

        Sender() = default;
        Sender(const Sender &) = delete;
        Sender &operator=(const Sender &) = delete;
        Sender(Sender &&) = delete;
        Sender &operator=(Sender &&) = delete;
        ~Sender()
        {
            if (pid > 0 && !exitStatus) {
                ::kill(pid, SIGKILL);
                ::waitpid(pid, nullptr, 0);
            }
        }
    };

    // Starts the real-libsystemd sender with NOTIFY_SOCKET pointing at our
    // server; fds are passed as 200, 201, ... (above anything the test has
    // open, so the dup2()s cannot clobber each other).
    std::unique_ptr<Sender> spawnSender(std::vector<std::string> args, const std::vector<int> &fds = {})
    {
        const std::string path = test::requireEnv("FDSUP_TEST_NOTIFY_SENDER");
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        std::string fdList;
        for (std::size_t i = 0; i < fds.size(); ++i) {
            const int target = 200 + static_cast<int>(i);
            posix_spawn_file_actions_adddup2(&actions, fds[i], target);
            fdList += (i == 0 ? "" : ",") + std::to_string(target);
        }
        if (!fds.empty()) {
            args.insert(args.begin(), "--fds=" + fdList);
        }
        args.insert(args.begin(), path);

        std::vector<std::string> env;
        for (char **e = environ; *e != nullptr; ++e) {
            if (!std::string_view(*e).starts_with("NOTIFY_SOCKET=")) {
                env.emplace_back(*e);
            }
        }
        env.push_back("NOTIFY_SOCKET=" + server_->socketPath());

        std::vector<char *> argv;
        argv.reserve(args.size() + 1);
        for (auto &a : args) {
            argv.push_back(a.data());
        }
        argv.push_back(nullptr);
        std::vector<char *> envp;
        envp.reserve(env.size() + 1);
        for (auto &e : env) {
            envp.push_back(e.data());
        }
        envp.push_back(nullptr);

        auto sender = std::make_unique<Sender>();
        const int r = posix_spawn(&sender->pid, path.c_str(), &actions, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&actions);
        if (r != 0) {
            ADD_FAILURE() << "posix_spawn " << path << ": " << std::strerror(r);
            return nullptr;
        }
        sender->pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, sender->pid, 0)));
        if (!sender->pidfd) {
            ADD_FAILURE() << "pidfd_open: " << std::strerror(errno);
            return nullptr;
        }
        Sender *raw = sender.get();
        auto source = loop_->addChild(sender->pidfd.borrow(), [raw](const siginfo_t &info) {
            raw->exitStatus = info.si_code == CLD_EXITED ? info.si_status : -1;
        });
        if (!source) {
            ADD_FAILURE() << source.error().message;
            return nullptr;
        }
        sender->source = std::move(source).value();
        return sender;
    }

    std::unique_ptr<EventLoop> loop_;
    std::unique_ptr<NotifyServer> server_;
    std::vector<NotifyMessage> messages_;
    std::function<void(const NotifyMessage &)> onMessage_;
};

TEST_F(NotifyServerTest, CreateValidatesTheName)
{
    EXPECT_EQ(server_->socketPath().front(), '@');
    auto noop = [](NotifyMessage &&) {
    };
    auto empty = NotifyServer::create(*loop_, "", noop);
    ASSERT_FALSE(empty);
    EXPECT_EQ(empty.error().code, EINVAL);
    auto tooLong = NotifyServer::create(*loop_, std::string(108, 'n'), noop);
    ASSERT_FALSE(tooLong);
    EXPECT_EQ(tooLong.error().code, EINVAL);
    EXPECT_TRUE(NotifyServer::create(*loop_, std::string(107, 'n'), noop));

    auto taken = NotifyServer::create(*loop_, server_->socketPath().substr(1), noop);
    ASSERT_FALSE(taken);
    EXPECT_EQ(taken.error().code, EADDRINUSE);
    EXPECT_NE(taken.error().message.find(server_->socketPath()), std::string::npos) << taken.error().message;
}

TEST_F(NotifyServerTest, ReadyFromLibsystemdCarriesTheKernelsPid)
{
    // MAINPID=1 in the text must not change who the sender is.
    const auto sender = spawnSender({"READY=1\nSTATUS=serving\nMAINPID=1"});
    ASSERT_TRUE(sender);
    ASSERT_TRUE(runUntil([&] { return !messages_.empty() && sender->exitStatus; }));
    EXPECT_EQ(sender->exitStatus, 0);
    ASSERT_EQ(messages_.size(), 1U);
    const auto &m = messages_[0];
    EXPECT_TRUE(m.ready);
    EXPECT_EQ(m.status, "serving");
    EXPECT_EQ(m.pid, sender->pid);
    EXPECT_EQ(m.mainPid, 1);
    EXPECT_EQ(m.uid, ::getuid());
    EXPECT_EQ(m.gid, ::getgid());
    EXPECT_TRUE(m.fds.empty());
    EXPECT_EQ(server_->dropped(), 0U);
}

TEST_F(NotifyServerTest, FdStoreDeliversTheSameFiles)
{
    Pipe pipe = makePipe();
    std::array<int, 2> pair{};
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair.data()), 0);
    const UniqueFd a(pair[0]);
    const UniqueFd b(pair[1]);

    const auto sender = spawnSender({"FDSTORE=1\nFDNAME=x\nFDPOLL=0"}, {pipe.read.get(), a.get()});
    ASSERT_TRUE(sender);
    ASSERT_TRUE(runUntil([&] { return !messages_.empty() && sender->exitStatus; }));
    EXPECT_EQ(sender->exitStatus, 0);

    ASSERT_EQ(messages_.size(), 1U);
    const auto &m = messages_[0];
    EXPECT_EQ(m.pid, sender->pid);
    EXPECT_TRUE(m.fdStore);
    EXPECT_EQ(m.fdName, "x");
    EXPECT_FALSE(m.fdPoll);
    ASSERT_EQ(m.fds.size(), 2U);
    EXPECT_EQ(fileId(m.fds[0].borrow()), fileId(pipe.read.borrow()));
    EXPECT_EQ(fileId(m.fds[1].borrow()), fileId(a.borrow()));
    for (const auto &fd : m.fds) {
        EXPECT_EQ(::fcntl(fd.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC) << "received fds are born CLOEXEC";
    }
}

TEST_F(NotifyServerTest, FdsWithoutFdStoreAreClosed)
{
    Pipe pipe = makePipe();
    ASSERT_EQ(sendRaw(server_->socketPath(), "READY=1", {pipe.write.get()}), 0);
    pipe.write.reset();
    ASSERT_TRUE(runUntil([&] { return !messages_.empty(); }));
    EXPECT_TRUE(messages_[0].ready);
    EXPECT_TRUE(messages_[0].fds.empty());
    EXPECT_TRUE(pipeAtEof(pipe)) << "the server kept the write end";
    EXPECT_EQ(server_->dropped(), 0U);
}

TEST_F(NotifyServerTest, BarrierIsAnswered)
{
    // sd_notify_barrier() returns only once its fd is closed; the helper exits
    // non-zero if it does not.
    const auto sender = spawnSender({"--barrier", "READY=1"});
    ASSERT_TRUE(sender);
    ASSERT_TRUE(runUntil([&] { return sender->exitStatus.has_value(); }));
    EXPECT_EQ(sender->exitStatus, 0);
    ASSERT_EQ(messages_.size(), 1U) << "BARRIER=1 is answered by the server, not passed on";
    EXPECT_TRUE(messages_[0].ready);
    EXPECT_EQ(server_->dropped(), 0U);
}

TEST_F(NotifyServerTest, MalformedDatagramIsDroppedWithItsFds)
{
    Pipe pipe = makePipe();
    ASSERT_EQ(sendRaw(server_->socketPath(), "READY=1\nno-equals-sign", {pipe.write.get()}), 0);
    ASSERT_EQ(sendRaw(server_->socketPath(), std::string_view("READY=1\0", 8)), 0);
    ASSERT_EQ(sendRaw(server_->socketPath(), "STATUS=\xff"), 0);
    pipe.write.reset();
    ASSERT_TRUE(runUntil([&] { return server_->dropped() == 3; }));
    drain();
    EXPECT_TRUE(messages_.empty());
    EXPECT_TRUE(pipeAtEof(pipe)) << "the fd of a dropped datagram was kept";

    // The socket goes on serving.
    ASSERT_EQ(sendRaw(server_->socketPath(), "READY=1"), 0);
    ASSERT_TRUE(runUntil([&] { return !messages_.empty(); }));
    EXPECT_EQ(server_->dropped(), 3U);
}

// An empty datagram says nothing: dropped and counted like any malformed one
// (systemd ignores it), not handed on as a message; the socket serves on.
TEST_F(NotifyServerTest, AnEmptyDatagramIsDroppedAndCounted)
{
    ASSERT_EQ(sendRaw(server_->socketPath(), ""), 0);
    ASSERT_EQ(sendRaw(server_->socketPath(), "READY=1"), 0);
    ASSERT_TRUE(runUntil([&] { return !messages_.empty() && messages_.back().ready; }));
    EXPECT_EQ(messages_.size(), 1U) << "the empty datagram was handed on";
    EXPECT_EQ(server_->dropped(), 1U);
}

TEST_F(NotifyServerTest, OversizedDatagramIsDropped)
{
    const std::string prefix = "STATUS=";
    const std::string fits = prefix + std::string(kNotifyMaxDatagram - prefix.size(), 'a');
    const std::string tooBig = fits + "a";
    Pipe pipe = makePipe();
    ASSERT_EQ(sendRaw(server_->socketPath(), tooBig, {pipe.write.get()}), 0);
    ASSERT_EQ(sendRaw(server_->socketPath(), fits), 0);
    pipe.write.reset();
    ASSERT_TRUE(runUntil([&] { return !messages_.empty(); }));
    EXPECT_EQ(server_->dropped(), 1U);
    ASSERT_EQ(messages_.size(), 1U);
    EXPECT_EQ(messages_[0].status->size(), kNotifyMaxDatagram - prefix.size());
    EXPECT_TRUE(pipeAtEof(pipe));
}

TEST_F(NotifyServerTest, ManyDatagramsAreAllDeliveredInOrder)
{
    // More than the kernel queues (net.unix.max_dgram_qlen) and more than one
    // wake-up reads: the blocking sender waits for us, nothing is lost.
    constexpr int kCount = 500;
    const auto sender = spawnSender({"--repeat=" + std::to_string(kCount), "STATUS="});
    ASSERT_TRUE(sender);
    ASSERT_TRUE(runUntil([&] { return messages_.size() >= kCount && sender->exitStatus; }));
    EXPECT_EQ(sender->exitStatus, 0);
    ASSERT_EQ(messages_.size(), static_cast<std::size_t>(kCount));
    for (int i = 0; i < kCount; ++i) {
        EXPECT_EQ(messages_[i].status, std::to_string(i));
        EXPECT_EQ(messages_[i].pid, sender->pid);
    }
    EXPECT_EQ(server_->dropped(), 0U);
}

TEST_F(NotifyServerTest, AQueuedBurstIsReadInOneWakeup)
{
    int sent = 0;
    // The kernel queues net.unix.max_dgram_qlen (often 10) before EAGAIN.
    while (sent < static_cast<int>(kNotifyMaxPerWakeup) &&
           sendRaw(server_->socketPath(), "STATUS=" + std::to_string(sent)) == 0) {
        ++sent;
    }
    ASSERT_GT(sent, 1);
    ASSERT_GT(loop_->runOnce(5s), 0);
    ASSERT_EQ(messages_.size(), static_cast<std::size_t>(sent));
    for (int i = 0; i < sent; ++i) {
        EXPECT_EQ(messages_[i].status, std::to_string(i));
    }
}

TEST_F(NotifyServerTest, HandlerMayDestroyTheServer)
{
    for (int i = 0; i < 3; ++i) {
        ASSERT_EQ(sendRaw(server_->socketPath(), "READY=1"), 0);
    }
    int calls = 0;
    onMessage_ = [&](const NotifyMessage &) {
        ++calls;
        server_.reset();
    };
    ASSERT_TRUE(runUntil([&] { return calls > 0; }));
    drain();
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(server_);
}

TEST_F(NotifyServerTest, AThrowingHandlerIsContained)
{
    onMessage_ = [](const NotifyMessage &m) {
        if (m.status == "throw") {
            throw std::runtime_error("handler bug");
        }
    };
    ASSERT_EQ(sendRaw(server_->socketPath(), "STATUS=throw"), 0);
    ASSERT_EQ(sendRaw(server_->socketPath(), "STATUS=fine"), 0);
    ASSERT_TRUE(runUntil([&] { return !messages_.empty(); }));
    ASSERT_EQ(messages_.size(), 1U);
    EXPECT_EQ(messages_[0].status, "fine");
    EXPECT_EQ(server_->dropped(), 1U);
}

} // namespace
} // namespace fdsup
