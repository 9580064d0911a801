// SocketSet::receive() and release(): the checks a socket that arrives from another fdsupd passes.
#include <cerrno>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "config/config.hpp"
#include "io/sockets.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

using ::testing::HasSubstr;

// A loopback socket of `type`, bound to `port` (0: any), listening when asked.
UniqueFd loopbackSocket(int type, bool listening, std::uint16_t port = 0)
{
    UniqueFd fd(socket(AF_INET, type | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(port);
    EXPECT_EQ(bind(fd.get(), reinterpret_cast<const sockaddr *>(&sa), sizeof sa), 0);
    if (listening) {
        EXPECT_EQ(listen(fd.get(), 16), 0);
    }
    return fd;
}

std::uint16_t portOf(BorrowedFd fd)
{
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    getsockname(fd.get(), reinterpret_cast<sockaddr *>(&sa), &len);
    return ntohs(sa.sin_port);
}

std::vector<UniqueFd> one(UniqueFd fd)
{
    std::vector<UniqueFd> fds;
    fds.push_back(std::move(fd));
    return fds;
}

class SocketTransfer : public ::testing::Test {
protected:
    // [socket.web] receive = true on `listen`; [socket.own] bound here.
    SocketSet open(const std::string &listen)
    {
        test::writeFile(dir_ / "fdsupd.toml", "[supervisor]\ncontrol = \"" + (dir_ / "c.sock").string() +
                                                  "\"\n[socket.web]\nlisten = \"" + listen +
                                                  "\"\nreceive = true\n[socket.own]\nlisten = "
                                                  "\"tcp://127.0.0.1:0\"\n");
        auto loaded = config::loadConfig((dir_ / "fdsupd.toml").string());
        EXPECT_TRUE(loaded.config.has_value())
            << (loaded.diagnostics.empty() ? "" : loaded.diagnostics[0].str());
        EXPECT_TRUE(loaded.config->sockets.at(0).receive);
        EXPECT_THAT(config::renderConfig(*loaded.config), HasSubstr("receive = true"));
        auto set = SocketSet::open(*loaded.config, InheritedFds{});
        EXPECT_TRUE(static_cast<bool>(set)) << set.error().message;
        return std::move(*set);
    }

    test::TempDir dir_;
};

TEST_F(SocketTransfer, AReceiveSocketIsNotBoundUntilItArrives)
{
    SocketSet set = open("tcp://127.0.0.1:0");
    EXPECT_TRUE(set.find("web")->fds.empty());
    EXPECT_EQ(set.find("own")->fds.size(), 1U);
    UniqueFd listener = loopbackSocket(SOCK_STREAM, true);
    const test::FileId id = test::fileId(listener.borrow());
    ASSERT_TRUE(set.receive("web", one(std::move(listener))));
    ASSERT_EQ(set.find("web")->fds.size(), 1U);
    EXPECT_EQ(test::fileId(set.find("web")->fds.at(0).borrow()), id);
    EXPECT_TRUE(set.find("web")->adopted);

    // Held now: a second one is refused and closed.
    const auto again = set.receive("web", one(loopbackSocket(SOCK_STREAM, true)));
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, EEXIST);

    EXPECT_EQ(set.release("web"), 1U);
    EXPECT_TRUE(set.find("web")->fds.empty());
}

TEST_F(SocketTransfer, WhatDoesNotMatchTheConfigurationIsRefusedAndClosed)
{
    UniqueFd bound = loopbackSocket(SOCK_STREAM, true);
    const std::uint16_t port = portOf(bound.borrow());
    SocketSet set = open("tcp://127.0.0.1:" + std::to_string(port == 65535 ? port - 1 : port + 1));
    const int before = test::countOpenFds();

    auto r = set.receive("web", one(std::move(bound)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EADDRNOTAVAIL);
    EXPECT_THAT(r.error().message, HasSubstr("received descriptor for socket 'web' is bound to 127.0.0.1:"));

    r = set.receive("web", one(loopbackSocket(SOCK_DGRAM, false)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EPROTOTYPE);

    r = set.receive("web", one(loopbackSocket(SOCK_STREAM, false)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_THAT(r.error().message, HasSubstr("is not listening"));

    r = set.receive("own", one(loopbackSocket(SOCK_STREAM, true)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EPERM);
    EXPECT_THAT(r.error().message, HasSubstr("not declared with receive = true"));

    r = set.receive("nope", one(loopbackSocket(SOCK_STREAM, true)));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENOENT);

    EXPECT_TRUE(set.find("web")->fds.empty());
    EXPECT_EQ(test::countOpenFds(), before - 1); // `bound` was given away and closed
}

} // namespace
} // namespace fdsup
