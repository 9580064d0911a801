// checkHandedConnection(): only connections accepted on the service's own listeners pass.
#include <cerrno>
#include <string>
#include <vector>

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "io/handoff_check.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

UniqueFd tcpListener(std::uint32_t address)
{
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(address);
    EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
    EXPECT_EQ(listen(fd.get(), 16), 0);
    return fd;
}

// A connection to the listener (127.0.0.1:its port): {client side, accepted side}.
std::pair<UniqueFd, UniqueFd> connectTo(BorrowedFd listener)
{
    sockaddr_storage a{};
    socklen_t length = sizeof a;
    EXPECT_EQ(getsockname(listener.get(), reinterpret_cast<sockaddr *>(&a), &length), 0);
    UniqueFd client(socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (a.ss_family == AF_INET) {
        reinterpret_cast<sockaddr_in &>(a).sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    EXPECT_EQ(connect(client.get(), reinterpret_cast<sockaddr *>(&a), length), 0);
    UniqueFd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    EXPECT_TRUE(accepted);
    return {std::move(client), std::move(accepted)};
}

int check(BorrowedFd fd, std::vector<BorrowedFd> listeners)
{
    const auto addresses = listenerAddresses(listeners);
    const auto result = checkHandedConnection(fd, addresses);
    return result ? 0 : result.error().code;
}

TEST(HandoffCheck, AConnectionAcceptedOnTheServicesListenerPasses)
{
    const UniqueFd listener = tcpListener(INADDR_LOOPBACK);
    auto [client, accepted] = connectTo(listener.borrow());
    EXPECT_EQ(check(accepted.borrow(), {listener.borrow()}), 0);
}

TEST(HandoffCheck, AWildcardListenerCoversEveryLocalAddress)
{
    const UniqueFd listener = tcpListener(INADDR_ANY);
    auto [client, accepted] = connectTo(listener.borrow());
    EXPECT_EQ(check(accepted.borrow(), {listener.borrow()}), 0);
}

TEST(HandoffCheck, AnotherServicesConnectionIsRefused)
{
    const UniqueFd mine = tcpListener(INADDR_LOOPBACK);
    const UniqueFd theirs = tcpListener(INADDR_LOOPBACK);
    auto [client, accepted] = connectTo(theirs.borrow());
    EXPECT_EQ(check(accepted.borrow(), {mine.borrow()}), EPERM);
    // The client side of one of our own connections is not ours either.
    auto [ownClient, ownAccepted] = connectTo(mine.borrow());
    EXPECT_EQ(check(ownClient.borrow(), {mine.borrow()}), EPERM);
}

TEST(HandoffCheck, AListenerIsNotAConnection)
{
    const UniqueFd listener = tcpListener(INADDR_LOOPBACK);
    EXPECT_EQ(check(listener.borrow(), {listener.borrow()}), EOPNOTSUPP);
}

TEST(HandoffCheck, AnUnconnectedSocketIsRefused)
{
    const UniqueFd listener = tcpListener(INADDR_LOOPBACK);
    const UniqueFd lone(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(check(lone.borrow(), {listener.borrow()}), ENOTCONN);
}

TEST(HandoffCheck, DatagramSocketsPipesAndFilesAreRefused)
{
    const UniqueFd listener = tcpListener(INADDR_LOOPBACK);
    const UniqueFd udp(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    EXPECT_EQ(check(udp.borrow(), {listener.borrow()}), EPROTOTYPE);
    int pipefd[2] = {-1, -1};
    ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
    const UniqueFd readEnd(pipefd[0]);
    const UniqueFd writeEnd(pipefd[1]);
    EXPECT_EQ(check(readEnd.borrow(), {listener.borrow()}), ENOTSOCK);
    const UniqueFd memfd(memfd_create("state", MFD_CLOEXEC));
    EXPECT_EQ(check(memfd.borrow(), {listener.borrow()}), ENOTSOCK);
}

TEST(HandoffCheck, UnixConnectionsMatchByPath)
{
    test::TempDir dir;
    auto unixListener = [&](const std::string &name) {
        UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        const std::string path = (dir / name).string();
        path.copy(a.sun_path, sizeof a.sun_path - 1);
        EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
        EXPECT_EQ(listen(fd.get(), 4), 0);
        return fd;
    };
    const UniqueFd mine = unixListener("mine.sock");
    const UniqueFd theirs = unixListener("theirs.sock");
    auto [client, accepted] = connectTo(mine.borrow());
    EXPECT_EQ(check(accepted.borrow(), {mine.borrow()}), 0);
    auto [otherClient, otherAccepted] = connectTo(theirs.borrow());
    EXPECT_EQ(check(otherAccepted.borrow(), {mine.borrow()}), EPERM);
}

} // namespace
} // namespace fdsup
