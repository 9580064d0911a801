// Unit tests for fdsupd's side of its manager's protocol: LISTEN_PIDFDID, the messages, the descriptor store.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <ctime>
#include <set>
#include <string>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include "common/address.hpp"
#include "common/socket.hpp"
#include "core/channel.hpp"
#include "core/scm.hpp"
#include "daemon/held_store.hpp"
#include "daemon/manager.hpp"
#include "daemon_harness.hpp"
#include "io/manager_notify.hpp"
#include "io/sockets.hpp"
#include "loop_driver.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using test::loopbackAccepts;
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
    EXPECT_EQ(next(&fds), "FDSTORE=1\nFDPOLL=0\nFDNAME=fdsup.socket.bound");
    ASSERT_EQ(fds.size(), 1U);
    EXPECT_EQ(test::fileId(fds[0].borrow()), test::fileId(set->find("bound")->fds[0].borrow()));
    EXPECT_NE(test::fileId(fds[0].borrow()), adoptedId);
    std::vector<UniqueFd> none;
    std::array<std::byte, 64> buffer{};
    std::size_t here = 0;
    EXPECT_EQ(recvDatagram(fd_.borrow(), MSG_DONTWAIT, buffer, none, here), -EAGAIN); // "adopted" not sent

    forgetStored(manager, "bound");
    EXPECT_EQ(next(), "FDSTOREREMOVE=1\nFDNAME=fdsup.socket.bound");
    EXPECT_EQ(next(), "FDSTOREREMOVE=1\nFDNAME=bound"); // as earlier versions stored it
}

// A TCP socket named `name` listening on each of `listen`.
config::SocketConfig tcpSocket(const std::string &name, const std::vector<std::string> &listen)
{
    config::SocketConfig socket;
    socket.name = name;
    for (const auto &address : listen) {
        socket.listen.push_back(*parseAddress(address));
    }
    return socket;
}

// A listener on 127.0.0.1 (port 0: any), its port.
UniqueFd listener(int &port)
{
    auto fds = bindAll(*parseAddress("tcp://127.0.0.1:0"), {});
    EXPECT_TRUE(fds.ok());
    sockaddr_in local{};
    socklen_t length = sizeof local;
    getsockname(fds->front().get(), reinterpret_cast<sockaddr *>(&local), &length);
    port = ntohs(local.sin_port);
    return std::move(fds->front());
}

TEST_F(FakeManager, AStoredListenerStillBoundAsConfiguredIsAdoptedUnderItsSocketsName)
{
    ManagerNotifier manager;
    int port = 0;
    UniqueFd fd = listener(port);
    const test::FileId id = test::fileId(fd.borrow());
    config::Config config;
    config.sockets.push_back(tcpSocket("any", {"tcp://127.0.0.1:0"})); // port 0: any port will do
    config.sockets.push_back(tcpSocket("same", {"tcp://127.0.0.1:" + std::to_string(port)}));
    config.sockets.push_back(tcpSocket("byname", {"tcp://localhost:" + std::to_string(port)}));
    InheritedFds inherited;
    for (const char *name : {"any", "same", "byname"}) {
        inherited.byName.emplace(storedSocketName(name), UniqueFd(fcntl(fd.get(), F_DUPFD_CLOEXEC, 3)));
    }
    inherited.byName.emplace("unit", std::move(fd)); // a .socket unit's: left alone

    reclaimStored(manager, config, inherited);
    ASSERT_EQ(inherited.byName.size(), 4U);
    for (const char *name : {"any", "same", "byname", "unit"}) {
        ASSERT_EQ(inherited.byName.count(name), 1U) << name;
        EXPECT_EQ(test::fileId(inherited.byName.find(name)->second.borrow()), id) << name;
    }
    std::vector<UniqueFd> none;
    std::array<std::byte, 64> buffer{};
    std::size_t here = 0;
    EXPECT_EQ(recvDatagram(fd_.borrow(), MSG_DONTWAIT, buffer, none, here), -EAGAIN); // nothing removed
    EXPECT_TRUE(loopbackAccepts(port));
}

TEST_F(FakeManager, AStoredListenerBoundForAnOlderConfigurationIsShutDownAndRemoved)
{
    ManagerNotifier manager;
    int oldPort = 0;
    int otherPort = 0;
    UniqueFd old = listener(oldPort);
    UniqueFd other = listener(otherPort);
    UniqueFd gone = listener(otherPort);
    // The test keeps a copy of each, as the manager does.
    UniqueFd managersCopy(fcntl(old.get(), F_DUPFD_CLOEXEC, 3));
    config::Config config;
    const int newPort = oldPort == 65535 ? oldPort - 1 : oldPort + 1;
    config.sockets.push_back(tcpSocket("web", {"tcp://127.0.0.1:" + std::to_string(newPort)}));
    // Another address added beside the stored one: it is not bound as configured either.
    config.sockets.push_back(tcpSocket("two", {"tcp://127.0.0.1:0", "tcp://[::1]:0"}));
    InheritedFds inherited;
    inherited.byName.emplace(storedSocketName("web"), std::move(old));
    inherited.byName.emplace(storedSocketName("two"), std::move(other));
    inherited.byName.emplace(storedSocketName("gone"), std::move(gone));

    reclaimStored(manager, config, inherited);
    EXPECT_TRUE(inherited.byName.empty()); // both bound anew by SocketSet::open()
    std::set<std::string> removed;
    for (int i = 0; i < 3; ++i) {
        removed.insert(next());
    }
    EXPECT_EQ(removed, (std::set<std::string>{"FDSTOREREMOVE=1\nFDNAME=fdsup.socket.web",
                                              "FDSTOREREMOVE=1\nFDNAME=fdsup.socket.two",
                                              "FDSTOREREMOVE=1\nFDNAME=fdsup.socket.gone"}));
    // Shut down: the old port refuses at once, though the manager's copy is open still.
    EXPECT_FALSE(loopbackAccepts(oldPort));
    int listening = 1;
    socklen_t length = sizeof listening;
    ASSERT_EQ(getsockopt(managersCopy.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &length), 0);
    EXPECT_EQ(listening, 0);
}

TEST_F(FakeManager, AStoredListenerIsDroppedWhenASocketUnitPassesTheSameName)
{
    ManagerNotifier manager;
    int port = 0;
    UniqueFd stored = listener(port);
    int unitPort = 0;
    UniqueFd unit = listener(unitPort);
    const test::FileId unitId = test::fileId(unit.borrow());
    config::Config config;
    config.sockets.push_back(tcpSocket("web", {"tcp://127.0.0.1:0"}));
    InheritedFds inherited;
    inherited.byName.emplace(storedSocketName("web"), std::move(stored));
    inherited.byName.emplace("web", std::move(unit));

    reclaimStored(manager, config, inherited);
    ASSERT_EQ(inherited.byName.size(), 1U);
    EXPECT_EQ(test::fileId(inherited.byName.find("web")->second.borrow()), unitId);
    EXPECT_EQ(next(), "FDSTOREREMOVE=1\nFDNAME=fdsup.socket.web");
    EXPECT_FALSE(loopbackAccepts(port));
}

// A server-side connection to `listener`; the client end goes to `client`.
UniqueFd acceptedFrom(BorrowedFd listener, UniqueFd &client)
{
    sockaddr_in addr{};
    socklen_t length = sizeof addr;
    getsockname(listener.get(), reinterpret_cast<sockaddr *>(&addr), &length);
    client = UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(connect(client.get(), reinterpret_cast<sockaddr *>(&addr), length), 0);
    return UniqueFd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
}

TEST_F(FakeManager, AHeldConnectionIsStoredWithItsStateInASealedMemfdAndRemoved)
{
    ManagerNotifier manager;
    HeldStore store(manager, 3);
    int port = 0;
    UniqueFd listening = listener(port);
    UniqueFd client;
    HeldConnection held;
    held.id = 42;
    held.from = 1234;
    held.fd = acceptedFrom(listening.borrow(), client);
    const std::string state = "GET / HTTP/1.1\r\n";
    for (const char c : state) {
        held.state.push_back(static_cast<std::byte>(c));
    }
    held.stateSize = state.size();
    store.put("web", held);
    EXPECT_EQ(held.storedAs, "fdsup.held.web.1234.42");
    std::vector<UniqueFd> fds;
    EXPECT_EQ(next(&fds), "FDSTORE=1\nFDPOLL=0\nFDNAME=fdsup.held.web.1234.42");
    ASSERT_EQ(fds.size(), 2U);
    EXPECT_EQ(test::fileId(fds[0].borrow()), test::fileId(held.fd.borrow()));
    std::vector<std::byte> read;
    ASSERT_EQ(readStateMemfd(fds[1].borrow(), state.size(), read), 0); // sealed, of the state's size
    EXPECT_EQ(read, held.state);

    store.remove(held);
    EXPECT_EQ(next(), "FDSTOREREMOVE=1\nFDNAME=fdsup.held.web.1234.42");
}

TEST_F(FakeManager, PastItsCapacityTheStoreTakesNoMoreAndSaysSoOnce)
{
    ManagerNotifier manager;
    HeldStore store(manager, 2);
    int port = 0;
    UniqueFd listening = listener(port);
    std::vector<UniqueFd> clients(4);
    std::vector<HeldConnection> held(4);
    for (std::size_t i = 0; i < held.size(); ++i) {
        held[i].id = i;
        held[i].fd = acceptedFrom(listening.borrow(), clients[i]);
    }
    store.put("web", held[0]);
    store.put("web", held[1]);
    EXPECT_THAT(next(), HasSubstr("FDNAME=fdsup.held.web.0.0"));
    EXPECT_THAT(next(), HasSubstr("FDNAME=fdsup.held.web.0.1"));
    const auto logged = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
    const auto previous = spdlog::default_logger();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", logged));
    store.put("web", held[2]);
    store.put("web", held[3]);
    spdlog::set_default_logger(previous);
    EXPECT_TRUE(held[2].storedAs.empty());
    EXPECT_TRUE(held[3].storedAs.empty());
    const auto lines = logged->last_formatted();
    ASSERT_EQ(lines.size(), 1U); // said once
    EXPECT_THAT(lines[0], HasSubstr("The manager's descriptor store is full (2 of 2 descriptors for held "
                                    "connections)"));
    std::vector<UniqueFd> none;
    std::array<std::byte, 64> buffer{};
    std::size_t here = 0;
    EXPECT_EQ(recvDatagram(fd_.borrow(), MSG_DONTWAIT, buffer, none, here), -EAGAIN);
    // Room again once one leaves.
    store.remove(held[0]);
    EXPECT_THAT(next(), HasSubstr("FDSTOREREMOVE=1"));
    store.put("web", held[2]);
    EXPECT_EQ(held[2].storedAs, "fdsup.held.web.0.2");
}

TEST_F(FakeManager, StoredHeldConnectionsAreTakenOutOfTheInheritedOnesByName)
{
    ManagerNotifier manager;
    InheritedFds inherited;
    const auto socketFd = [] {
        return UniqueFd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    };
    inherited.byName.emplace("fdsup.held.web.12.34", socketFd());
    inherited.byName.emplace("fdsup.held.web.12.34", socketFd()); // its state, say
    inherited.byName.emplace("fdsup.held.api-2.5.6", socketFd());
    inherited.byName.emplace("fdsup.held.web.x.1", socketFd());
    inherited.byName.emplace("fdsup.socket.web", socketFd());
    inherited.byName.emplace("web", socketFd());
    auto held = takeStoredHeld(manager, inherited);
    ASSERT_EQ(held.size(), 2U);
    std::sort(held.begin(), held.end(), [](const auto &a, const auto &b) { return a.name < b.name; });
    EXPECT_EQ(held[0].service, "api-2");
    EXPECT_EQ(held[0].from, 5);
    EXPECT_EQ(held[0].id, 6U);
    EXPECT_EQ(held[1].service, "web");
    EXPECT_EQ(held[1].from, 12);
    EXPECT_EQ(held[1].id, 34U);
    EXPECT_EQ(held[1].fds.size(), 2U);
    EXPECT_EQ(next(), "FDSTOREREMOVE=1\nFDNAME=fdsup.held.web.x.1"); // not a held connection's name
    EXPECT_EQ(inherited.byName.size(), 2U);                          // the listeners' are left
}

// A manager that reads slowly: its queue (net.unix.max_dgram_qlen, 10 by
// default) fills, and what does not fit waits in the notifier's outbox.
class SlowManager : public FakeManager {
protected:
    void SetUp() override
    {
        FakeManager::SetUp();
        auto loop = EventLoop::create();
        ASSERT_TRUE(loop.ok());
        loop_ = std::move(*loop);
    }
    // Stores `count` names "n0".."nN-1", each with a descriptor of its own.
    void storeMany(ManagerNotifier &manager, int count)
    {
        for (int i = 0; i < count; ++i) {
            UniqueFd fd(eventfd(0, EFD_CLOEXEC));
            ASSERT_TRUE(fd);
            const BorrowedFd fds[] = {fd.borrow()};
            ASSERT_EQ(manager.store("n" + std::to_string(i), fds), 0) << i;
        } // the caller's copies are closed here: the outbox keeps its own
    }
    // Reads as the manager does, on the loop, until `last` arrives.
    std::vector<std::pair<std::string, std::size_t>> readUntil(std::string_view last)
    {
        std::vector<std::pair<std::string, std::size_t>> got;
        auto reader = loop_->addIo(fd_.borrow(), EPOLLIN, [&](std::uint32_t) {
            std::vector<UniqueFd> fds;
            std::string text = next(&fds);
            got.emplace_back(std::move(text), fds.size());
        });
        EXPECT_TRUE(reader.ok());
        EXPECT_TRUE(
            test::runLoopUntil(*loop_, [&] { return !got.empty() && got.back().first.starts_with(last); }));
        return got;
    }
    std::unique_ptr<EventLoop> loop_;
};

TEST_F(SlowManager, EveryStoreWaitsForRoomAndGoesInOrderWithReadyLast)
{
    const auto before = test::openFds();
    {
        ManagerNotifier manager;
        manager.attach(*loop_);
        storeMany(manager, 200);
        EXPECT_GT(manager.pending(), 0U); // the queue filled
        ASSERT_EQ(manager.ready("1/1 services running"), 0);
        manager.status("later"); // waits behind READY=1, the latest line only
        const auto got = readUntil("READY=1");
        ASSERT_EQ(got.size(), 201U);
        for (int i = 0; i < 200; ++i) {
            EXPECT_EQ(got[static_cast<std::size_t>(i)].first,
                      "FDSTORE=1\nFDPOLL=0\nFDNAME=n" + std::to_string(i));
            EXPECT_EQ(got[static_cast<std::size_t>(i)].second, 1U) << i;
        }
        EXPECT_EQ(manager.pending(), 0U);
        EXPECT_TRUE(test::runLoopUntil(*loop_, [&] {
            std::vector<UniqueFd> fds;
            std::array<std::byte, 256> buffer{};
            std::size_t here = 0;
            const ssize_t n = recvDatagram(fd_.borrow(), MSG_DONTWAIT, buffer, fds, here);
            return n > 0 && std::string(reinterpret_cast<const char *>(buffer.data()),
                                        static_cast<std::size_t>(n)) == "STATUS=later";
        }));
    }
    EXPECT_EQ(test::openFds(), before); // the outbox's copies were closed once sent
}

TEST_F(SlowManager, AStoreRemovedWhileItWaitedNeverReachesTheManager)
{
    ManagerNotifier manager;
    manager.attach(*loop_);
    storeMany(manager, 50);
    ASSERT_GT(manager.pending(), 0U);
    UniqueFd fd(eventfd(0, EFD_CLOEXEC));
    const BorrowedFd fds[] = {fd.borrow()};
    ASSERT_EQ(manager.store("late", fds), 0);
    const std::size_t waiting = manager.pending();
    ASSERT_EQ(manager.removeStored("late"), 0);
    EXPECT_EQ(manager.pending(), waiting - 1); // neither the store nor a removal goes out
    ASSERT_EQ(manager.removeStored("n0"), 0);  // n0 was sent: its removal is
    const auto got = readUntil("FDSTOREREMOVE=1");
    EXPECT_EQ(got.size(), 51U);
    EXPECT_EQ(got.back().first, "FDSTOREREMOVE=1\nFDNAME=n0");
    for (const auto &[text, count] : got) {
        EXPECT_THAT(text, ::testing::Not(HasSubstr("late")));
    }
}

TEST_F(FakeManager, UnattachedAFullQueueRefusesWithEagainAsBefore)
{
    ManagerNotifier manager; // no loop: nothing can wait
    int r = 0;
    int sent = 0;
    while ((r = manager.ready("x")) == 0) {
        ++sent; // the queue is bounded (max_dgram_qlen): this ends
    }
    EXPECT_EQ(r, -EAGAIN);
    EXPECT_GT(sent, 0);
    EXPECT_EQ(manager.pending(), 0U);
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
