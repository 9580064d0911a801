// Unit tests for fdsupd's side of its manager's protocol: LISTEN_PIDFDID, the messages, the descriptor store.
#include <array>
#include <cstdlib>
#include <ctime>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "core/scm.hpp"
#include "daemon/manager.hpp"
#include "io/manager_notify.hpp"
#include "io/sockets.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using test::TempDir;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::optional<std::uint64_t> ownPidfdInode()
{
    const UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0)));
    struct statfs fs {};
    struct stat st {};
    if (!pidfd || fstatfs(pidfd.get(), &fs) < 0 || fs.f_type != 0x50494446 || fstat(pidfd.get(), &st) < 0) {
        return std::nullopt;
    }
    return st.st_ino;
}

// A fake environment for fdsupd's own LISTEN_* variables, restored after.
class ListenEnv : public ::testing::Test {
protected:
    void TearDown() override
    {
        for (const char *name : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "LISTEN_PIDFDID"}) {
            unsetenv(name);
        }
    }
    static void set(const std::string &pidfdId)
    {
        setenv("LISTEN_FDS", "1", 1);
        setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
        setenv("LISTEN_FDNAMES", "web", 1);
        setenv("LISTEN_PIDFDID", pidfdId.c_str(), 1);
    }
};

TEST_F(ListenEnv, AbsentPidfdIdLeavesTheDecisionToListenPid)
{
    setenv("LISTEN_FDS", "1", 1);
    auto ours = listenFdsAreOurs();
    ASSERT_TRUE(ours.ok());
    EXPECT_TRUE(*ours);
    EXPECT_NE(getenv("LISTEN_FDS"), nullptr);
}

TEST_F(ListenEnv, OurOwnPidfdIdIsOurs)
{
    const auto own = ownPidfdInode();
    if (!own) {
        GTEST_SKIP() << "pidfds are not on pidfs here (Linux < 6.9): LISTEN_PIDFDID cannot be compared";
    }
    set(std::to_string(*own));
    auto ours = listenFdsAreOurs();
    ASSERT_TRUE(ours.ok()) << ours.error().message;
    EXPECT_TRUE(*ours);
    EXPECT_EQ(getenv("LISTEN_PIDFDID"), nullptr); // workers never see it
    EXPECT_NE(getenv("LISTEN_FDS"), nullptr);
}

TEST_F(ListenEnv, AnotherProcessesPidfdIdIsNotOursAndClearsTheEnvironment)
{
    const auto own = ownPidfdInode();
    if (!own) {
        GTEST_SKIP() << "pidfds are not on pidfs here (Linux < 6.9): LISTEN_PIDFDID cannot be compared";
    }
    set(std::to_string(*own + 1));
    auto ours = listenFdsAreOurs();
    ASSERT_TRUE(ours.ok()) << ours.error().message;
    EXPECT_FALSE(*ours);
    for (const char *name : {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "LISTEN_PIDFDID"}) {
        EXPECT_EQ(getenv(name), nullptr) << name;
    }
}

TEST_F(ListenEnv, MalformedPidfdIdIsAnError)
{
    for (const std::string bad : {"", "12x", "-1", "99999999999999999999999"}) {
        set(bad);
        auto ours = listenFdsAreOurs();
        ASSERT_FALSE(ours.ok()) << bad;
        EXPECT_THAT(ours.error().message, HasSubstr("LISTEN_PIDFDID")) << bad;
    }
}

// A socket of ours put where LISTEN_FDS says (fd 3), whatever sat there restored after.
class AtFdThree {
public:
    explicit AtFdThree(BorrowedFd fd)
    {
        if (fcntl(3, F_GETFD) >= 0) {
            saved_ = UniqueFd(fcntl(3, F_DUPFD_CLOEXEC, 10));
        }
        EXPECT_EQ(dup3(fd.get(), 3, O_CLOEXEC), 3);
    }
    ~AtFdThree()
    {
        if (saved_) {
            dup3(saved_.get(), 3, O_CLOEXEC);
        } else {
            ::close(3);
        }
    }
    AtFdThree(const AtFdThree &) = delete;
    AtFdThree &operator=(const AtFdThree &) = delete;

private:
    UniqueFd saved_;
};

TEST_F(ListenEnv, FromEnvironmentIgnoresDescriptorsMeantForAnotherProcess)
{
    const auto own = ownPidfdInode();
    if (!own) {
        GTEST_SKIP() << "pidfds are not on pidfs here (Linux < 6.9)";
    }
    const UniqueFd made(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    const UniqueFd sock(fcntl(made.get(), F_DUPFD_CLOEXEC, 10)); // never fd 3 itself
    const AtFdThree placed(sock.borrow());
    set(std::to_string(*own + 1));
    auto inherited = InheritedFds::fromEnvironment();
    ASSERT_TRUE(inherited.ok()) << inherited.error().message;
    EXPECT_TRUE(inherited->byName.empty());
    EXPECT_GE(fcntl(3, F_GETFD), 0); // not ours: left open, not taken

    // The same with our own id: fd 3 is adopted under its name.
    set(std::to_string(*own));
    auto adopted = InheritedFds::fromEnvironment();
    ASSERT_TRUE(adopted.ok()) << adopted.error().message;
    ASSERT_EQ(adopted->byName.count("web"), 1U);
    UniqueFd taken = std::move(adopted->byName.find("web")->second);
    EXPECT_EQ(taken.get(), 3);
    (void)taken.release(); // AtFdThree closes or restores fd 3
}

// A manager's notify socket the test reads, descriptors included.
class FakeManager : public ::testing::Test {
protected:
    void SetUp() override
    {
        path_ = (dir_ / "notify").string();
        fd_ = UniqueFd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        path_.copy(addr.sun_path, path_.size());
        ASSERT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr *>(&addr), sizeof addr), 0);
        setenv("NOTIFY_SOCKET", path_.c_str(), 1);
    }
    void TearDown() override { unsetenv("NOTIFY_SOCKET"); }

    // The next datagram (the test sent it already: nothing to wait for).
    std::string next(std::vector<UniqueFd> *fds = nullptr)
    {
        std::vector<UniqueFd> received;
        std::array<std::byte, 4096> buffer{};
        std::size_t here = 0;
        const ssize_t n = recvDatagram(fd_.borrow(), MSG_DONTWAIT, buffer, received, here);
        EXPECT_GT(n, 0);
        if (fds != nullptr) {
            *fds = std::move(received);
        }
        return n > 0 ? std::string(reinterpret_cast<const char *>(buffer.data()), static_cast<std::size_t>(n))
                     : std::string();
    }

    TempDir dir_;
    std::string path_;
    UniqueFd fd_;
};

TEST_F(FakeManager, ReadyCarriesMainPidAndStatus)
{
    ManagerNotifier manager;
    ASSERT_TRUE(manager.enabled());
    ASSERT_EQ(manager.ready("2/2 services running"), 0);
    EXPECT_EQ(next(), "READY=1\nMAINPID=" + std::to_string(getpid()) + "\nSTATUS=2/2 services running");
    manager.status("2/2 services running"); // unchanged: not sent again
    manager.status("1/2 services running");
    EXPECT_EQ(next(), "STATUS=1/2 services running");
}

TEST_F(FakeManager, ReloadingCarriesTheMonotonicClockNow)
{
    ManagerNotifier manager;
    timespec before{};
    timespec after{};
    clock_gettime(CLOCK_MONOTONIC, &before);
    ASSERT_EQ(manager.reloading(), 0);
    clock_gettime(CLOCK_MONOTONIC, &after);
    const std::string message = next();
    ASSERT_THAT(message, StartsWith("RELOADING=1\nMONOTONIC_USEC="));
    const std::string rest = message.substr(message.find("MONOTONIC_USEC=") + 15);
    const std::uint64_t usec = std::stoull(rest.substr(0, rest.find('\n')));
    const auto us = [](const timespec &t) {
        return static_cast<std::uint64_t>(t.tv_sec) * 1000000U +
               static_cast<std::uint64_t>(t.tv_nsec) / 1000U;
    };
    EXPECT_GE(usec, us(before));
    EXPECT_LE(usec, us(after));
    EXPECT_THAT(message, HasSubstr("\nSTATUS=reloading"));
}

TEST_F(FakeManager, StoresOnlyTheListenersItBoundAndForgetsUnmatchedNames)
{
    ManagerNotifier manager;
    config::Config config;
    for (const char *name : {"bound", "adopted"}) {
        config::SocketConfig socket;
        socket.name = name;
        socket.listen.push_back(*parseAddress("tcp://127.0.0.1:0"));
        config.sockets.push_back(socket);
    }
    // "adopted" comes in as if from the store or a .socket unit, "gone" matches nothing.
    auto adoptedFds = bindAll(config.sockets[1].listen.front(), {});
    ASSERT_TRUE(adoptedFds.ok());
    const test::FileId adoptedId = test::fileId(adoptedFds->front().borrow());
    InheritedFds inherited;
    inherited.byName.emplace("adopted", std::move(adoptedFds->front()));
    inherited.byName.emplace("gone", UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)));

    forgetUnmatched(manager, config, inherited);
    EXPECT_EQ(next(), "FDSTOREREMOVE=1\nFDNAME=gone");

    auto set = SocketSet::open(config, std::move(inherited));
    ASSERT_TRUE(set.ok()) << set.error().message;
    EXPECT_EQ(storeListeners(manager, *set), 1U);
    std::vector<UniqueFd> fds;
    EXPECT_EQ(next(&fds), "FDSTORE=1\nFDPOLL=0\nFDNAME=bound");
    ASSERT_EQ(fds.size(), 1U);
    EXPECT_EQ(test::fileId(fds[0].borrow()), test::fileId(set->find("bound")->fds[0].borrow()));
    EXPECT_NE(test::fileId(fds[0].borrow()), adoptedId);
    std::vector<UniqueFd> none;
    std::array<std::byte, 64> buffer{};
    std::size_t here = 0;
    EXPECT_EQ(recvDatagram(fd_.borrow(), MSG_DONTWAIT, buffer, none, here), -EAGAIN); // "adopted" not sent

    ASSERT_EQ(manager.removeStored("bound"), 0);
    EXPECT_EQ(next(), "FDSTOREREMOVE=1\nFDNAME=bound");
}

TEST(ManagerNotifierOff, WithoutNotifySocketNothingIsSent)
{
    unsetenv("NOTIFY_SOCKET");
    ManagerNotifier manager;
    EXPECT_FALSE(manager.enabled());
    EXPECT_EQ(manager.ready("x"), 0);
    EXPECT_EQ(manager.reloading(), 0);
}

} // namespace
} // namespace fdsup
