// Unit tests for /proc/net parsing and the /proc lookups of crash recovery: who holds which listener.
#include <algorithm>
#include <csignal>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/socket.hpp"
#include "io/proc_net.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Address parse(std::string_view text)
{
    auto address = parseAddress(text);
    EXPECT_TRUE(address.ok()) << address.error().message;
    return address.ok() ? *address : Address{};
}

ino_t inodeOf(const UniqueFd &fd)
{
    struct stat st {};
    EXPECT_EQ(fstat(fd.get(), &st), 0);
    return st.st_ino;
}

// Binds `text` (one resolved address) and returns the fd and that address.
std::pair<UniqueFd, SocketAddress> bound(std::string_view text)
{
    const Address address = parse(text);
    auto resolved = resolveAddress(address);
    EXPECT_TRUE(resolved.ok());
    auto fd = bindSocket(address, resolved->front(), {});
    EXPECT_TRUE(fd.ok()) << fd.error().message;
    // Port 0 bound: the address /proc/net shows is the one the kernel chose.
    SocketAddress actual = resolved->front();
    actual.length = sizeof actual.storage;
    getsockname(fd->get(), reinterpret_cast<sockaddr *>(&actual.storage), &actual.length);
    return {std::move(*fd), actual};
}

TEST(ProcNet, ParsesATcpListener)
{
    const auto socket = parseInetLine("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 "
                                      "00000000     0        0 285 1 000000009c9df83b 100 0 0 10 0");
    ASSERT_TRUE(socket);
    EXPECT_EQ(socket->local, "0100007F:1F90");
    EXPECT_EQ(socket->state, 0x0AU);
    EXPECT_EQ(socket->inode, 285U);
}

TEST(ProcNet, ParsesAnIpv6UdpSocket)
{
    const auto socket =
        parseInetLine(" 1: 00000000000000000000000001000000:0035 "
                      "00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 "
                      "00000000   101        0 4242 2 0000000000000000 0");
    ASSERT_TRUE(socket);
    EXPECT_EQ(socket->local, "00000000000000000000000001000000:0035");
    EXPECT_EQ(socket->state, 0x07U);
    EXPECT_EQ(socket->inode, 4242U);
}

TEST(ProcNet, RefusesHeadersAndGarbage)
{
    EXPECT_FALSE(
        parseInetLine("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   "
                      "uid  timeout inode"));
    EXPECT_FALSE(parseInetLine(""));
    EXPECT_FALSE(parseInetLine("   0: 0100007F:1F90 00000000:0000 ZZ 0 0 0 0 0 12"));
    EXPECT_FALSE(parseUnixLine("Num       RefCount Protocol Flags    Type St Inode Path"));
    EXPECT_FALSE(parseUnixLine("0000: 00000002 00000000 00010000 0001 01 x /run/a.sock"));
}

TEST(ProcNet, ParsesUnixSocketsWithTheirPaths)
{
    const auto listening =
        parseUnixLine("000000003f937a61: 00000002 00000000 00010000 0001 01 31337 /run/a b.sock");
    ASSERT_TRUE(listening);
    EXPECT_EQ(listening->local, "/run/a b.sock");
    EXPECT_TRUE(listening->listening);
    EXPECT_EQ(listening->type, static_cast<unsigned>(SOCK_STREAM));
    EXPECT_EQ(listening->inode, 31337U);

    const auto unnamed = parseUnixLine("000000009ac1a5e1: 00000003 00000000 00000000 0002 03  1103");
    ASSERT_TRUE(unnamed);
    EXPECT_EQ(unnamed->local, "");
    EXPECT_FALSE(unnamed->listening);
    EXPECT_EQ(unnamed->type, static_cast<unsigned>(SOCK_DGRAM));

    const auto abstract = parseUnixLine("00000000deadbeef: 00000002 00000000 00010000 0005 01 77 @fdsup/x");
    ASSERT_TRUE(abstract);
    EXPECT_EQ(abstract->local, "@fdsup/x");
    EXPECT_EQ(abstract->type, static_cast<unsigned>(SOCK_SEQPACKET));
}

// The kernel's own view of sockets this test binds: found by address, by
// the inode fstat() gives, and only while they serve.
TEST(ProcNet, FindsTheListenerBoundToAnAddress)
{
    for (const char *text : {"tcp://127.0.0.1:0", "tcp://[::1]:0", "udp://127.0.0.1:0", "udp://[::1]:0"}) {
        SCOPED_TRACE(text);
        auto [fd, address] = bound(text);
        auto inodes = listeningInodes(parse(text), address);
        ASSERT_TRUE(inodes.ok()) << inodes.error().message;
        EXPECT_THAT(*inodes, ElementsAre(inodeOf(fd)));
    }
}

TEST(ProcNet, FindsUnixListenersByPathAndAbstractName)
{
    const test::TempDir dir;
    const std::string name = "fdsup-proc-net-" + std::to_string(getpid());
    for (const std::string &text : {"unix:" + (dir / "a.sock").string(),
                                    "unix-dgram:" + (dir / "d.sock").string(), "unix-seqpacket:@" + name}) {
        SCOPED_TRACE(text);
        auto [fd, address] = bound(text);
        auto inodes = listeningInodes(parse(text), address);
        ASSERT_TRUE(inodes.ok()) << inodes.error().message;
        EXPECT_THAT(*inodes, ElementsAre(inodeOf(fd)));
    }
}

TEST(ProcNet, AConnectionOnTheSameAddressIsNotAListener)
{
    auto [listener, address] = bound("tcp://127.0.0.1:0");
    const UniqueFd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(connect(client.get(), reinterpret_cast<const sockaddr *>(&address.storage), address.length), 0);
    const UniqueFd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(accepted);
    auto inodes = listeningInodes(parse("tcp://127.0.0.1:0"), address);
    ASSERT_TRUE(inodes.ok());
    EXPECT_THAT(*inodes, ElementsAre(inodeOf(listener)));
    listener.reset();
    inodes = listeningInodes(parse("tcp://127.0.0.1:0"), address);
    ASSERT_TRUE(inodes.ok());
    EXPECT_TRUE(inodes->empty()) << "the accepted connection shares the address but does not listen";
}

// Another process holding a socket is found with its descriptor number; the
// caller itself is never listed.
TEST(ProcNet, FindsTheProcessesHoldingASocket)
{
    const test::TempDir dir;
    auto [fd, address] = bound("tcp://127.0.0.1:0");
    // Inheritable, so the child holds it at the same number.
    ASSERT_EQ(fcntl(fd.get(), F_SETFD, 0), 0);
    test::BackgroundProcess child({"/bin/sleep", "1000"}, dir / "child.log");
    ASSERT_EQ(fcntl(fd.get(), F_SETFD, FD_CLOEXEC), 0);

    // Once it runs sleep, not the test's copy before exec.
    ASSERT_TRUE(test::waitUntil([&] { return commandOf(child.pid()) == "/bin/sleep 1000"; }));
    const auto holders = socketHolders(inodeOf(fd));
    ASSERT_EQ(holders.size(), 1U);
    EXPECT_EQ(holders.front().pid, child.pid());
    EXPECT_EQ(holders.front().fd, fd.get());
    EXPECT_EQ(ownerOf(child.pid()), getuid());
    auto environment = environmentOf(child.pid());
    ASSERT_TRUE(environment.ok()) << environment.error().message;
    EXPECT_THAT(*environment, Contains(::testing::StartsWith("PATH=")));
    EXPECT_THAT(processGroupMembers(getpgrp()), Contains(child.pid()));

    child.signal(SIGKILL);
    ASSERT_TRUE(child.wait(test::kEventDeadline));
    EXPECT_TRUE(socketHolders(inodeOf(fd)).empty());
    EXPECT_EQ(commandOf(child.pid()), "?");
    EXPECT_FALSE(ownerOf(child.pid()));
    EXPECT_THAT(environmentOf(child.pid()).error().message, HasSubstr("No such file or directory"));
}

} // namespace
} // namespace fdsup
