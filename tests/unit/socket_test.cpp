// Unit tests for socket option validation and binding listening sockets.
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "common/result.hpp"
#include "common/socket.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using std::chrono::seconds;

Address parse(std::string_view text)
{
    auto address = parseAddress(text);
    EXPECT_TRUE(address.ok()) << address.error().message;
    return address.ok() ? *address : Address{};
}

// Binds the single result of a numeric or unix address.
Result<UniqueFd> bindOne(const Address &address, const SocketOptions &options = {})
{
    auto resolved = resolveAddress(address);
    if (!resolved) {
        return resolved.error();
    }
    EXPECT_EQ(resolved->size(), 1U);
    return bindSocket(address, resolved->front(), options);
}

Result<UniqueFd> bindOne(std::string_view text, const SocketOptions &options = {})
{
    return bindOne(parse(text), options);
}

int getInt(const UniqueFd &fd, int level, int name)
{
    int value = -1;
    socklen_t length = sizeof(value);
    EXPECT_EQ(getsockopt(fd.get(), level, name, &value, &length), 0) << errnoText(errno);
    return value;
}

bool isListening(const UniqueFd &fd)
{
    return getInt(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1;
}

bool isCloexec(const UniqueFd &fd)
{
    return (fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0;
}

// Connects to where fd is bound and accepts the connection, within a deadline.
void expectAccepts(const UniqueFd &fd)
{
    sockaddr_storage storage{};
    socklen_t length = sizeof(storage);
    ASSERT_EQ(getsockname(fd.get(), reinterpret_cast<sockaddr *>(&storage), &length), 0);
    UniqueFd client(socket(storage.ss_family, getInt(fd, SOL_SOCKET, SO_TYPE) | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(client.isValid()) << errnoText(errno);
    ASSERT_EQ(connect(client.get(), reinterpret_cast<sockaddr *>(&storage), length), 0) << errnoText(errno);
    // With defer_accept the listener only wakes once data arrives.
    ASSERT_EQ(send(client.get(), "x", 1, MSG_NOSIGNAL), 1) << errnoText(errno);
    pollfd pfd{fd.get(), POLLIN, 0};
    ASSERT_EQ(poll(&pfd, 1, 5000), 1) << "no connection to accept within 5s";
    UniqueFd accepted(accept4(fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(accepted.isValid()) << errnoText(errno);
}

std::uint16_t localPort(const UniqueFd &fd)
{
    sockaddr_storage storage{};
    socklen_t length = sizeof(storage);
    EXPECT_EQ(getsockname(fd.get(), reinterpret_cast<sockaddr *>(&storage), &length), 0);
    if (storage.ss_family == AF_INET6) {
        return ntohs(reinterpret_cast<sockaddr_in6 *>(&storage)->sin6_port);
    }
    return ntohs(reinterpret_cast<sockaddr_in *>(&storage)->sin_port);
}

struct stat statPath(const std::filesystem::path &path)
{
    struct stat st {};
    EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << errnoText(errno);
    return st;
}

// A name no other test process uses, so tests can run in parallel.
std::string uniqueAbstractName(std::string_view tag)
{
    std::random_device random;
    return "fdsup-test-" + std::string(tag) + "-" + std::to_string(getpid()) + "-" + std::to_string(random());
}

bool contains(const std::string &haystack, std::string_view needle)
{
    return haystack.find(needle) != std::string::npos;
}

TEST(SocketTest, TcpDefaults)
{
    auto fd = bindOne("tcp://127.0.0.1:0");
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    EXPECT_TRUE(isCloexec(*fd));
    EXPECT_EQ(getInt(*fd, SOL_SOCKET, SO_TYPE), SOCK_STREAM);
    // SO_REUSEADDR is on for TCP unless switched off, as in systemd.
    EXPECT_EQ(getInt(*fd, SOL_SOCKET, SO_REUSEADDR), 1);
    EXPECT_TRUE(isListening(*fd));
    EXPECT_NE(localPort(*fd), 0);
    expectAccepts(*fd);
}

TEST(SocketTest, ReuseAddressCanBeSwitchedOff)
{
    SocketOptions options;
    options.reuseAddress = false;
    auto fd = bindOne("tcp://127.0.0.1:0", options);
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    EXPECT_EQ(getInt(*fd, SOL_SOCKET, SO_REUSEADDR), 0);
}

TEST(SocketTest, TcpOptionsReadBack)
{
    SocketOptions options;
    options.backlog = 16;
    options.reusePort = true;
    options.deferAccept = seconds(5);
    options.fastOpen = 16;
    options.keepAlive = true;
    options.keepAliveTime = seconds(60);
    options.keepAliveInterval = seconds(10);
    options.keepAliveCount = 5;
    options.noDelay = true;
    options.sendBuffer = 65536;
    options.receiveBuffer = 98304;
    auto fd = bindOne("tcp://127.0.0.1:0", options);
    ASSERT_TRUE(fd.ok()) << fd.error().message;

    EXPECT_EQ(getInt(*fd, SOL_SOCKET, SO_REUSEADDR), 1);
    EXPECT_EQ(getInt(*fd, SOL_SOCKET, SO_REUSEPORT), 1);
    // The kernel stores retransmits, not seconds, and rounds on the way back.
    EXPECT_GT(getInt(*fd, IPPROTO_TCP, TCP_DEFER_ACCEPT), 0);
    EXPECT_EQ(getInt(*fd, IPPROTO_TCP, TCP_FASTOPEN), 16);
    EXPECT_EQ(getInt(*fd, SOL_SOCKET, SO_KEEPALIVE), 1);
    EXPECT_EQ(getInt(*fd, IPPROTO_TCP, TCP_KEEPIDLE), 60);
    EXPECT_EQ(getInt(*fd, IPPROTO_TCP, TCP_KEEPINTVL), 10);
    EXPECT_EQ(getInt(*fd, IPPROTO_TCP, TCP_KEEPCNT), 5);
    EXPECT_EQ(getInt(*fd, IPPROTO_TCP, TCP_NODELAY), 1);
    // The kernel doubles buffer sizes for its own bookkeeping.
    EXPECT_GE(getInt(*fd, SOL_SOCKET, SO_SNDBUF), 65536);
    EXPECT_GE(getInt(*fd, SOL_SOCKET, SO_RCVBUF), 98304);
    EXPECT_TRUE(isListening(*fd));
    expectAccepts(*fd);
}

TEST(SocketTest, FreeBindReadBack)
{
    SocketOptions options;
    options.freeBind = true;
    auto v4 = bindOne("tcp://127.0.0.1:0", options);
    ASSERT_TRUE(v4.ok()) << v4.error().message;
    EXPECT_EQ(getInt(*v4, IPPROTO_IP, IP_FREEBIND), 1);

    auto v6 = bindOne("udp://[::1]:0", options);
    ASSERT_TRUE(v6.ok()) << v6.error().message;
    EXPECT_EQ(getInt(*v6, IPPROTO_IPV6, IPV6_FREEBIND), 1);

    // free_bind is what lets a listener bind an address the host does not have yet.
    auto foreign = bindOne("tcp://192.0.2.1:0", options);
    EXPECT_TRUE(foreign.ok()) << foreign.error().message;
}

TEST(SocketTest, TransparentReadBack)
{
    SocketOptions options;
    options.transparent = true;
    auto fd = bindOne("tcp://127.0.0.1:0", options);
    if (!fd.ok() && fd.error().code == EPERM) {
        GTEST_SKIP() << "IP_TRANSPARENT needs CAP_NET_ADMIN: " << fd.error().message;
    }
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    EXPECT_EQ(getInt(*fd, IPPROTO_IP, IP_TRANSPARENT), 1);
}

TEST(SocketTest, BindToDeviceReadBack)
{
    SocketOptions options;
    options.bindToDevice = "lo";
    auto fd = bindOne("tcp://127.0.0.1:0", options);
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    std::array<char, IFNAMSIZ> name{};
    socklen_t length = name.size();
    ASSERT_EQ(getsockopt(fd->get(), SOL_SOCKET, SO_BINDTODEVICE, name.data(), &length), 0)
        << errnoText(errno);
    EXPECT_STREQ(name.data(), "lo");
}

TEST(SocketTest, FailingOptionIsNamed)
{
    SocketOptions options;
    options.bindToDevice = "fdsupnodev9";
    auto fd = bindOne("tcp://127.0.0.1:0", options);
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.error().code, ENODEV);
    EXPECT_TRUE(
        contains(fd.error().message, "Failed to set SO_BINDTODEVICE=fdsupnodev9 on tcp://127.0.0.1:0: "))
        << fd.error().message;
    EXPECT_TRUE(contains(fd.error().message, "No such device")) << fd.error().message;
}

TEST(SocketTest, Ipv6OnlyReadBack)
{
    // Only the wildcard shows the setting: bind() to a specific IPv6 address
    // such as ::1 makes the socket IPv6-only whatever was asked.
    for (bool value : {true, false}) {
        SocketOptions options;
        options.ipv6Only = value;
        auto fd = bindOne("tcp://[::]:0", options);
        ASSERT_TRUE(fd.ok()) << fd.error().message;
        EXPECT_EQ(getInt(*fd, IPPROTO_IPV6, IPV6_V6ONLY), value ? 1 : 0);
        expectAccepts(*fd);

        // Dual-stack means IPv4 clients reach it too. With IPV6_V6ONLY the
        // IPv4 port stays free, and another process may listen on it: what
        // counts is whether this socket ever gets the connection (on
        // loopback the handshake is done when connect() returns).
        sockaddr_in v4{};
        v4.sin_family = AF_INET;
        v4.sin_port = htons(localPort(*fd));
        v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
        ASSERT_TRUE(client.isValid());
        const int rc = connect(client.get(), reinterpret_cast<sockaddr *>(&v4), sizeof(v4));
        const int err = errno;
        pollfd pending{fd->get(), POLLIN, 0};
        const bool reached = poll(&pending, 1, 0) == 1;
        if (value) {
            EXPECT_FALSE(reached) << "an IPv4 client reached an IPv6-only socket";
        } else {
            EXPECT_EQ(rc, 0) << errnoText(err);
            EXPECT_TRUE(reached) << "an IPv4 client did not reach a dual-stack socket";
            UniqueFd accepted(accept4(fd->get(), nullptr, nullptr, SOCK_CLOEXEC));
            EXPECT_TRUE(accepted.isValid());
        }
    }
}

TEST(SocketTest, AddressInUseIsReported)
{
    auto first = bindOne("tcp://127.0.0.1:0");
    ASSERT_TRUE(first.ok()) << first.error().message;
    const std::string text = "tcp://127.0.0.1:" + std::to_string(localPort(*first));
    auto second = bindOne(text);
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.error().code, EADDRINUSE);
    EXPECT_EQ(second.error().message, "Failed to bind " + text + ": Address already in use");
}

TEST(SocketTest, Udp)
{
    auto fd = bindOne("udp://127.0.0.1:0");
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    EXPECT_EQ(getInt(*fd, SOL_SOCKET, SO_TYPE), SOCK_DGRAM);
    // SO_REUSEADDR defaults on only for TCP; for UDP it would share the port.
    EXPECT_EQ(getInt(*fd, SOL_SOCKET, SO_REUSEADDR), 0);
    EXPECT_NE(localPort(*fd), 0);
    EXPECT_TRUE(isCloexec(*fd));

    SocketOptions options;
    options.reusePort = true;
    options.receiveBuffer = 1 << 20;
    auto tuned = bindOne("udp://[::1]:0", options);
    ASSERT_TRUE(tuned.ok()) << tuned.error().message;
    EXPECT_EQ(getInt(*tuned, SOL_SOCKET, SO_REUSEPORT), 1);
    EXPECT_GE(getInt(*tuned, SOL_SOCKET, SO_RCVBUF), 1 << 20);
}

TEST(SocketTest, UnixTransportsBindAndListen)
{
    test::TempDir dir;
    struct Case {
        std::string scheme;
        int type;
    };
    for (const Case &c : {Case{"unix", SOCK_STREAM}, Case{"unix-dgram", SOCK_DGRAM},
                          Case{"unix-seqpacket", SOCK_SEQPACKET}}) {
        SCOPED_TRACE(c.scheme);
        const auto path = dir / (c.scheme + ".sock");
        auto fd = bindOne(c.scheme + ":" + path.string());
        ASSERT_TRUE(fd.ok()) << fd.error().message;
        EXPECT_EQ(getInt(*fd, SOL_SOCKET, SO_TYPE), c.type);
        EXPECT_TRUE(S_ISSOCK(statPath(path).st_mode));
        EXPECT_TRUE(isCloexec(*fd));
        if (c.type == SOCK_DGRAM) {
            EXPECT_FALSE(isListening(*fd));
        } else {
            EXPECT_TRUE(isListening(*fd));
            expectAccepts(*fd);
        }
    }
}

TEST(SocketTest, AbstractSocketsBind)
{
    for (const char *scheme : {"unix", "unix-dgram", "unix-seqpacket"}) {
        SCOPED_TRACE(scheme);
        const std::string name = uniqueAbstractName(scheme);
        auto fd = bindOne(std::string(scheme) + ":@" + name);
        ASSERT_TRUE(fd.ok()) << fd.error().message;
        sockaddr_storage storage{};
        socklen_t length = sizeof(storage);
        ASSERT_EQ(getsockname(fd->get(), reinterpret_cast<sockaddr *>(&storage), &length), 0);
        EXPECT_EQ(formatSocketAddress(reinterpret_cast<sockaddr *>(&storage), length), "@" + name);
        if (std::string_view(scheme) != "unix-dgram") {
            expectAccepts(*fd);
        }
        // The same name twice is in use: abstract names have no stale files.
        auto again = bindOne(std::string(scheme) + ":@" + name);
        ASSERT_FALSE(again.ok());
        EXPECT_EQ(again.error().code, EADDRINUSE);
    }
}

TEST(SocketTest, UnixModeApplied)
{
    test::TempDir dir;
    const mode_t oldMask = umask(022);
    for (mode_t mode : {mode_t{0600}, mode_t{0660}, mode_t{0666}, mode_t{0700}}) {
        SCOPED_TRACE(mode);
        const auto path = dir / "mode.sock";
        SocketOptions options;
        options.mode = mode;
        auto fd = bindOne("unix:" + path.string(), options);
        ASSERT_TRUE(fd.ok()) << fd.error().message;
        EXPECT_EQ(statPath(path).st_mode, S_IFSOCK | mode);
        ASSERT_EQ(unlink(path.c_str()), 0);
    }
    // bindSocket's temporary umask must not stay behind.
    EXPECT_EQ(umask(oldMask), mode_t{022});
}

TEST(SocketTest, UnixOwnerAndGroupApplied)
{
    if (geteuid() != 0) {
        GTEST_SKIP() << "changing a file's owner needs root";
    }
    test::TempDir dir;
    const auto path = dir / "owned.sock";
    SocketOptions options;
    options.owner = 65534; // nobody
    options.group = 65534; // nogroup
    options.mode = 0660;
    auto fd = bindOne("unix-seqpacket:" + path.string(), options);
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    const struct stat st = statPath(path);
    EXPECT_EQ(st.st_uid, 65534U);
    EXPECT_EQ(st.st_gid, 65534U);
    EXPECT_EQ(st.st_mode, S_IFSOCK | 0660);

    // Group alone leaves the owner as it is.
    const auto groupOnly = dir / "group.sock";
    SocketOptions groupOptions;
    groupOptions.group = 65534;
    auto fd2 = bindOne("unix:" + groupOnly.string(), groupOptions);
    ASSERT_TRUE(fd2.ok()) << fd2.error().message;
    EXPECT_EQ(statPath(groupOnly).st_uid, geteuid());
    EXPECT_EQ(statPath(groupOnly).st_gid, 65534U);
}

// Leaves a socket file nobody listens on, as a crashed daemon does.
void makeStaleSocket(const std::filesystem::path &path)
{
    auto fd = bindOne("unix:" + path.string());
    ASSERT_TRUE(fd.ok()) << fd.error().message;
}

TEST(SocketTest, StaleSocketIsReplaced)
{
    test::TempDir dir;
    const auto path = dir / "stale.sock";
    makeStaleSocket(path);
    ASSERT_TRUE(S_ISSOCK(statPath(path).st_mode));

    auto fd = bindOne("unix:" + path.string());
    ASSERT_TRUE(fd.ok()) << fd.error().message;
    expectAccepts(*fd);
}

TEST(SocketTest, StaleSocketKeptWhenRemoveStaleOff)
{
    test::TempDir dir;
    const auto path = dir / "stale.sock";
    makeStaleSocket(path);
    const ino_t inode = statPath(path).st_ino;

    SocketOptions options;
    options.removeStale = false;
    auto fd = bindOne("unix:" + path.string(), options);
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.error().code, EADDRINUSE);
    EXPECT_TRUE(contains(fd.error().message, "remove_stale")) << fd.error().message;
    EXPECT_EQ(statPath(path).st_ino, inode);
}

TEST(SocketTest, LiveSocketIsRefused)
{
    test::TempDir dir;
    for (const char *scheme : {"unix", "unix-dgram", "unix-seqpacket"}) {
        SCOPED_TRACE(scheme);
        const auto path = dir / (std::string(scheme) + ".sock");
        auto live = bindOne(std::string(scheme) + ":" + path.string());
        ASSERT_TRUE(live.ok()) << live.error().message;
        const ino_t inode = statPath(path).st_ino;

        auto second = bindOne(std::string(scheme) + ":" + path.string());
        ASSERT_FALSE(second.ok());
        EXPECT_EQ(second.error().code, EADDRINUSE);
        EXPECT_TRUE(contains(second.error().message, "Failed to bind " + std::string(scheme) + ":" +
                                                         path.string() + ": Address already in use"))
            << second.error().message;
        EXPECT_TRUE(contains(second.error().message, "another process is listening"))
            << second.error().message;
        EXPECT_EQ(statPath(path).st_ino, inode);
    }

    // A live socket of another type is still live.
    const auto path = dir / "typed.sock";
    auto live = bindOne("unix-seqpacket:" + path.string());
    ASSERT_TRUE(live.ok()) << live.error().message;
    auto other = bindOne("unix:" + path.string());
    ASSERT_FALSE(other.ok());
    EXPECT_EQ(other.error().code, EADDRINUSE);
    expectAccepts(*live);
}

TEST(SocketTest, NonSocketInTheWayIsLeftAlone)
{
    test::TempDir dir;
    const auto file = dir / "data.sock";
    test::writeFile(file, "precious");
    auto fd = bindOne("unix:" + file.string());
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.error().code, EEXIST);
    EXPECT_TRUE(contains(fd.error().message, "is a regular file")) << fd.error().message;
    EXPECT_EQ(test::readFile(file), "precious");

    const auto subdir = dir / "dir.sock";
    std::filesystem::create_directory(subdir);
    auto onDir = bindOne("unix:" + subdir.string());
    ASSERT_FALSE(onDir.ok());
    EXPECT_EQ(onDir.error().code, EEXIST);
    EXPECT_TRUE(contains(onDir.error().message, "is a directory")) << onDir.error().message;
    EXPECT_TRUE(std::filesystem::is_directory(subdir));

    // A symlink to a stale socket is still not a socket: never follow it.
    const auto target = dir / "target.sock";
    makeStaleSocket(target);
    const auto link = dir / "link.sock";
    std::filesystem::create_symlink(target, link);
    auto onLink = bindOne("unix:" + link.string());
    ASSERT_FALSE(onLink.ok());
    EXPECT_EQ(onLink.error().code, EEXIST);
    EXPECT_TRUE(contains(onLink.error().message, "is a symbolic link")) << onLink.error().message;
    EXPECT_TRUE(std::filesystem::is_symlink(link));
    EXPECT_TRUE(S_ISSOCK(statPath(target).st_mode));
}

TEST(SocketTest, FailedUnixBindLeavesNothing)
{
    test::TempDir dir;
    const auto path = dir / "missing-dir" / "x.sock";
    auto fd = bindOne("unix:" + path.string());
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.error().code, ENOENT);
    EXPECT_EQ(fd.error().message, "Failed to bind unix:" + path.string() + ": No such file or directory");
}

TEST(SocketTest, InvalidOptionsRefusedBeforeBinding)
{
    test::TempDir dir;
    const auto path = dir / "x.sock";
    SocketOptions options;
    options.noDelay = true;
    auto fd = bindOne("unix:" + path.string(), options);
    ASSERT_FALSE(fd.ok());
    EXPECT_EQ(fd.error().code, EINVAL);
    EXPECT_TRUE(contains(fd.error().message, "'nodelay' applies only to tcp:// sockets"))
        << fd.error().message;
    EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(path)));
}

TEST(SocketTest, BindAllBindsEveryResult)
{
    const Address address = parse("tcp://localhost:0");
    auto resolved = resolveAddress(address);
    ASSERT_TRUE(resolved.ok()) << resolved.error().message;
    auto fds = bindAll(address, {});
    ASSERT_TRUE(fds.ok()) << fds.error().message;
    ASSERT_EQ(fds->size(), resolved->size());
    bool haveV4 = false;
    bool haveV6 = false;
    for (const SocketAddress &a : *resolved) {
        haveV4 = haveV4 || a.family == AF_INET;
        haveV6 = haveV6 || a.family == AF_INET6;
    }
    const std::uint16_t port = localPort(fds->front());
    for (const UniqueFd &fd : *fds) {
        EXPECT_TRUE(isListening(fd));
        // One name, one port, even when the kernel picked it.
        EXPECT_EQ(localPort(fd), port);
        if (haveV4 && haveV6 && getInt(fd, SOL_SOCKET, SO_DOMAIN) == AF_INET6) {
            EXPECT_EQ(getInt(fd, IPPROTO_IPV6, IPV6_V6ONLY), 1);
        }
        expectAccepts(fd);
    }
}

TEST(SocketTest, BindAllUnix)
{
    test::TempDir dir;
    auto fds = bindAll(parse("unix:" + (dir / "all.sock").string()), {});
    ASSERT_TRUE(fds.ok()) << fds.error().message;
    ASSERT_EQ(fds->size(), 1U);
    expectAccepts(fds->front());
}

TEST(SocketTest, BindAllNamesTheResolvedAddressOnFailure)
{
    auto first = bindOne("tcp://127.0.0.1:0");
    ASSERT_TRUE(first.ok()) << first.error().message;
    const std::string port = std::to_string(localPort(*first));
    auto resolved = resolveAddress(parse("tcp://localhost:" + port));
    ASSERT_TRUE(resolved.ok());
    bool hasLoopbackV4 = false;
    for (const SocketAddress &a : *resolved) {
        hasLoopbackV4 = hasLoopbackV4 || formatSocketAddress(reinterpret_cast<const sockaddr *>(&a.storage),
                                                             a.length) == "127.0.0.1:" + port;
    }
    if (!hasLoopbackV4) {
        GTEST_SKIP() << "localhost does not resolve to 127.0.0.1 here";
    }
    auto fds = bindAll(parse("tcp://localhost:" + port), {});
    ASSERT_FALSE(fds.ok());
    EXPECT_EQ(fds.error().code, EADDRINUSE);
    EXPECT_TRUE(contains(fds.error().message, "Failed to bind tcp://localhost:" + port +
                                                  " (127.0.0.1:" + port + "): Address already in use"))
        << fds.error().message;
}

struct ValidationCase {
    std::string_view address;
    SocketOptions options;
    std::vector<std::string_view> fragments; // each appears in some problem
    std::size_t count = 1;                   // problems expected when fragments is not empty
};

SocketOptions with(void (*set)(SocketOptions &))
{
    SocketOptions options;
    set(options);
    return options;
}

const std::vector<ValidationCase> &validationCases()
{
    static const std::vector<ValidationCase> cases = {
        // Applicable everywhere they are set: no problems.
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) {
             o.backlog = 128;
             o.reuseAddress = true;
             o.reusePort = true;
             o.freeBind = true;
             o.transparent = true;
             o.deferAccept = seconds(0);
             o.fastOpen = 0;
             o.keepAlive = true;
             o.keepAliveTime = seconds(1);
             o.keepAliveInterval = seconds(32767);
             o.keepAliveCount = 127;
             o.noDelay = true;
             o.sendBuffer = 1;
             o.receiveBuffer = 1;
             o.bindToDevice = "eth0";
         }),
         {}},
        {"tcp://[::]:80", with([](SocketOptions &o) { o.ipv6Only = true; }), {}},
        {"tcp://localhost:80", with([](SocketOptions &o) { o.ipv6Only = false; }), {}},
        {"unix:/run/x.sock",
         with([](SocketOptions &o) {
             o.backlog = 1;
             o.mode = 0660;
             o.owner = 0;
             o.group = 0;
             o.sendBuffer = 4096;
         }),
         {}},
        {"unix-seqpacket:@x", with([](SocketOptions &o) { o.backlog = 65535; }), {}},
        {"udp://0.0.0.0:53",
         with([](SocketOptions &o) {
             o.reusePort = true;
             o.bindToDevice = "lo";
         }),
         {}},

        // backlog
        {"udp://0.0.0.0:53",
         with([](SocketOptions &o) { o.backlog = 10; }),
         {"'backlog' applies only to stream and seqpacket sockets", "not to udp:// sockets"}},
        {"unix-dgram:/x",
         with([](SocketOptions &o) { o.backlog = 10; }),
         {"'backlog' applies only to stream and seqpacket sockets"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.backlog = 0; }),
         {"'backlog' must be between 1 and 65535, got 0"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.backlog = 70000; }),
         {"'backlog' must be between 1 and 65535, got 70000"}},

        // inet only
        {"unix:/x",
         with([](SocketOptions &o) { o.reuseAddress = true; }),
         {"'reuse_address' applies only to tcp:// and udp:// sockets, not to unix: sockets"}},
        {"unix:@x",
         with([](SocketOptions &o) { o.reusePort = true; }),
         {"'reuse_port' applies only to tcp:// and udp:// sockets"}},
        {"unix-dgram:/x",
         with([](SocketOptions &o) { o.freeBind = true; }),
         {"'free_bind' applies only to tcp:// and udp:// sockets, not to unix-dgram: sockets"}},
        {"unix-seqpacket:/x",
         with([](SocketOptions &o) { o.transparent = true; }),
         {"'transparent' applies only to tcp:// and udp:// sockets, not to unix-seqpacket: sockets"}},
        {"unix:/x",
         with([](SocketOptions &o) { o.bindToDevice = "lo"; }),
         {"'bind_to_device' applies only to tcp:// and udp:// sockets"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.bindToDevice = ""; }),
         {"'bind_to_device' must name a network interface"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.bindToDevice = "a-very-long-ifname"; }),
         {"'bind_to_device' 'a-very-long-ifname' is too long", "at most 15"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.bindToDevice = "eth/0"; }),
         {"'bind_to_device' 'eth/0' is not a valid interface name"}},

        // ipv6_only
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.ipv6Only = true; }),
         {"'ipv6_only' applies only to IPv6 addresses", "not to the IPv4 address '0.0.0.0'"}},
        {"udp://127.0.0.1:53",
         with([](SocketOptions &o) { o.ipv6Only = false; }),
         {"'ipv6_only' applies only to IPv6 addresses"}},
        {"unix:/x",
         with([](SocketOptions &o) { o.ipv6Only = true; }),
         {"'ipv6_only' applies only to IPv6 addresses", "not to unix: sockets"}},

        // tcp only
        {"udp://0.0.0.0:53",
         with([](SocketOptions &o) { o.deferAccept = seconds(1); }),
         {"'defer_accept' applies only to tcp:// sockets, not to udp:// sockets"}},
        {"unix:/x",
         with([](SocketOptions &o) { o.fastOpen = 5; }),
         {"'fastopen' applies only to tcp:// sockets"}},
        {"udp://0.0.0.0:53",
         with([](SocketOptions &o) { o.keepAlive = true; }),
         {"'keepalive' applies only to tcp:// sockets"}},
        {"unix:/x",
         with([](SocketOptions &o) { o.keepAliveTime = seconds(1); }),
         {"'keepalive_time' applies only to tcp:// sockets"}},
        {"unix-seqpacket:/x",
         with([](SocketOptions &o) { o.keepAliveInterval = seconds(1); }),
         {"'keepalive_interval' applies only to tcp:// sockets"}},
        {"udp://[::]:53",
         with([](SocketOptions &o) { o.keepAliveCount = 3; }),
         {"'keepalive_count' applies only to tcp:// sockets"}},
        {"unix:@x",
         with([](SocketOptions &o) { o.noDelay = true; }),
         {"'nodelay' applies only to tcp:// sockets"}},

        // tcp ranges
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.fastOpen = -1; }),
         {"'fastopen' must be between 0 and"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.keepAliveTime = seconds(0); }),
         {"'keepalive_time' must be between 1 and 32767, got 0"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.keepAliveInterval = seconds(40000); }),
         {"'keepalive_interval' must be between 1 and 32767, got 40000"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.keepAliveCount = 0; }),
         {"'keepalive_count' must be between 1 and 127, got 0"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.keepAliveCount = 128; }),
         {"'keepalive_count' must be between 1 and 127, got 128"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.deferAccept = seconds(-1); }),
         {"'defer_accept' must be between 0 and"}},

        // buffers
        {"udp://0.0.0.0:53",
         with([](SocketOptions &o) { o.sendBuffer = 0; }),
         {"'send_buffer' must be between 1 and 1073741823, got 0"}},
        {"unix:/x",
         with([](SocketOptions &o) { o.receiveBuffer = -5; }),
         {"'receive_buffer' must be between 1 and"}},

        // unix path only
        {"unix:@x",
         with([](SocketOptions &o) { o.mode = 0600; }),
         {"'mode' applies only to unix sockets with a path"}},
        {"tcp://0.0.0.0:80",
         with([](SocketOptions &o) { o.owner = 0; }),
         {"'owner' applies only to unix sockets with a path", "not to tcp:// sockets"}},
        {"unix-dgram:@x",
         with([](SocketOptions &o) { o.group = 0; }),
         {"'group' applies only to unix sockets with a path"}},
        {"unix:/x",
         with([](SocketOptions &o) { o.mode = 010000; }),
         {"'mode' must be an octal permission between 0000 and 7777"}},

        // several at once: one message each
        {"udp://0.0.0.0:53",
         with([](SocketOptions &o) {
             o.backlog = 5;
             o.noDelay = true;
             o.mode = 0600;
         }),
         {"'backlog'", "'nodelay'", "'mode'"},
         3},
    };
    return cases;
}

TEST(SocketTest, ValidateOptions)
{
    for (const ValidationCase &c : validationCases()) {
        const auto problems = validateSocketOptions(parse(c.address), c.options);
        std::string all;
        for (const std::string &p : problems) {
            all += "\n  " + p;
        }
        SCOPED_TRACE(std::string(c.address) + all);
        EXPECT_EQ(problems.size(), c.fragments.empty() ? 0 : c.count);
        for (std::string_view fragment : c.fragments) {
            EXPECT_TRUE(contains(all, fragment)) << fragment;
        }
    }
}

} // namespace
} // namespace fdsup
