// Unit tests for parsing, printing and resolving listen addresses.
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include "common/address.hpp"
#include "test_support.hpp"

namespace fdsup {
namespace {

struct ValidCase {
    std::string_view text;
    std::string_view host;
    std::string_view canonical;
    Transport transport;
    std::uint16_t port;
    bool abstract;
};

const ValidCase kValid[] = {
    {"tcp://0.0.0.0:8080", "0.0.0.0", "tcp://0.0.0.0:8080", Transport::Tcp, 8080, false},
    {"tcp://[::]:8080", "::", "tcp://[::]:8080", Transport::Tcp, 8080, false},
    {"tcp://[::1]:0", "::1", "tcp://[::1]:0", Transport::Tcp, 0, false},
    {"tcp://[fe80::1%lo]:80", "fe80::1%lo", "tcp://[fe80::1%lo]:80", Transport::Tcp, 80, false},
    {"tcp://localhost:8080", "localhost", "tcp://localhost:8080", Transport::Tcp, 8080, false},
    {"tcp://example.com.:443", "example.com.", "tcp://example.com.:443", Transport::Tcp, 443, false},
    {"tcp://my-host_1.internal:65535", "my-host_1.internal", "tcp://my-host_1.internal:65535", Transport::Tcp,
     65535, false},
    {"TCP://127.0.0.1:80", "127.0.0.1", "tcp://127.0.0.1:80", Transport::Tcp, 80, false},
    {"udp://127.0.0.1:53", "127.0.0.1", "udp://127.0.0.1:53", Transport::Udp, 53, false},
    {"udp://[::1]:53", "::1", "udp://[::1]:53", Transport::Udp, 53, false},
    {"unix:/run/x.sock", "/run/x.sock", "unix:/run/x.sock", Transport::UnixStream, 0, false},
    {"unix:///run/x.sock", "/run/x.sock", "unix:/run/x.sock", Transport::UnixStream, 0, false},
    // Found by fuzz-address: repeated slashes are one, so printing round-trips.
    {"unix://///nn/x.sock", "/nn/x.sock", "unix:/nn/x.sock", Transport::UnixStream, 0, false},
    {"unix:/run//app///x.sock", "/run/app/x.sock", "unix:/run/app/x.sock", Transport::UnixStream, 0, false},
    {"unix:@abstract", "abstract", "unix:@abstract", Transport::UnixStream, 0, true},
    {"unix:@with space/and:colon", "with space/and:colon", "unix:@with space/and:colon",
     Transport::UnixStream, 0, true},
    {"unix-dgram:/p", "/p", "unix-dgram:/p", Transport::UnixDgram, 0, false},
    {"unix-dgram:@a", "a", "unix-dgram:@a", Transport::UnixDgram, 0, true},
    {"unix-seqpacket:/p", "/p", "unix-seqpacket:/p", Transport::UnixSeqpacket, 0, false},
    {"unix-seqpacket:@a", "a", "unix-seqpacket:@a", Transport::UnixSeqpacket, 0, true},
};

TEST(AddressTest, ValidFormsParseAndRoundTrip)
{
    for (const auto &c : kValid) {
        SCOPED_TRACE(c.text);
        auto parsed = parseAddress(c.text);
        ASSERT_TRUE(parsed.ok()) << parsed.error().message;
        EXPECT_EQ(parsed->transport, c.transport);
        EXPECT_EQ(parsed->host, c.host);
        EXPECT_EQ(parsed->port, c.port);
        EXPECT_EQ(parsed->abstract, c.abstract);
        EXPECT_EQ(formatAddress(*parsed), c.canonical);
        auto again = parseAddress(formatAddress(*parsed));
        ASSERT_TRUE(again.ok()) << again.error().message;
        EXPECT_EQ(*again, *parsed);
    }
}

TEST(AddressTest, LongestUnixNames)
{
    // sun_path is 108 bytes: a path needs a trailing NUL, an abstract name a
    // leading one, so 107 bytes of name fit either way and 108 do not.
    const std::string path = "/" + std::string(106, 'p');
    auto ok = parseAddress("unix:" + path);
    ASSERT_TRUE(ok.ok()) << ok.error().message;
    EXPECT_EQ(formatAddress(*ok), "unix:" + path);
    auto tooLong = parseAddress("unix:" + path + "p");
    ASSERT_FALSE(tooLong.ok());
    EXPECT_NE(tooLong.error().message.find("too long: 108 bytes, at most 107"), std::string::npos)
        << tooLong.error().message;

    const std::string name(107, 'a');
    ASSERT_TRUE(parseAddress("unix:@" + name).ok());
    auto abstractTooLong = parseAddress("unix:@" + name + "a");
    ASSERT_FALSE(abstractTooLong.ok());
    EXPECT_NE(abstractTooLong.error().message.find("abstract socket name"), std::string::npos);
    EXPECT_NE(abstractTooLong.error().message.find("at most 107"), std::string::npos);
}

TEST(AddressTest, HostKinds)
{
    auto v4 = parseAddress("tcp://127.0.0.1:1");
    auto v6 = parseAddress("tcp://[::1]:1");
    auto name = parseAddress("tcp://localhost:1");
    auto unix = parseAddress("unix:/x");
    ASSERT_TRUE(v4.ok() && v6.ok() && name.ok() && unix.ok());
    EXPECT_TRUE(v4->isNumericHost());
    EXPECT_FALSE(v4->isIpv6Literal());
    EXPECT_TRUE(v6->isNumericHost());
    EXPECT_TRUE(v6->isIpv6Literal());
    EXPECT_FALSE(name->isNumericHost());
    EXPECT_FALSE(name->isIpv6Literal());
    EXPECT_FALSE(unix->isNumericHost());
    EXPECT_EQ(v4->socketType(), SOCK_STREAM);
    EXPECT_EQ(parseAddress("udp://[::]:1")->socketType(), SOCK_DGRAM);
    EXPECT_EQ(unix->socketType(), SOCK_STREAM);
    EXPECT_EQ(parseAddress("unix-dgram:/x")->socketType(), SOCK_DGRAM);
    EXPECT_EQ(parseAddress("unix-seqpacket:@x")->socketType(), SOCK_SEQPACKET);
}

struct InvalidCase {
    std::string_view text;
    std::vector<std::string_view> fragments; // each must appear in the message
};

const std::vector<InvalidCase> &invalidCases()
{
    static const std::vector<InvalidCase> cases = {
        {"", {"empty address"}},
        {"0.0.0.0:8080", {"missing scheme", "'tcp://0.0.0.0:8080'"}},
        {"localhost:8080", {"missing scheme", "'tcp://localhost:8080'"}},
        {"[::1]:80", {"missing scheme", "'tcp://[::1]:80'"}},
        {"/run/x.sock", {"missing scheme", "'unix:/run/x.sock'"}},
        {"@name", {"missing scheme", "'unix:@name'"}},
        {"foo", {"missing scheme"}},
        {"tpc://0.0.0.0:80", {"unknown scheme 'tpc'", "did you mean 'tcp'?"}},
        {"unx:/run/x.sock", {"unknown scheme 'unx'", "did you mean 'unix'?"}},
        {"unix-stream:/x", {"unknown scheme 'unix-stream'", "expected tcp, udp, unix"}},
        {"http://example.com:80",
         {"unknown scheme 'http'", "expected tcp, udp, unix, unix-dgram, unix-seqpacket"}},
        {"tcp:0.0.0.0:80", {"expected 'tcp://'"}},
        {"tcp://", {"missing host and port", "'tcp://'"}},
        {"tcp://localhost", {"missing port", "'tcp://localhost:8080'"}},
        {"tcp://localhost:", {"missing port", "'tcp://localhost:'"}},
        {"tcp://[::1]", {"missing port", "'tcp://[::1]:8080'"}},
        {"tcp://[::1]:", {"missing port"}},
        {"tcp://1.2.3.4:http", {"invalid port 'http'", "must be a number 0-65535"}},
        {"tcp://1.2.3.4:99999", {"invalid port '99999' in 'tcp://1.2.3.4:99999': must be 0-65535"}},
        {"tcp://1.2.3.4:65536", {"invalid port '65536'", "0-65535"}},
        {"tcp://1.2.3.4:-1", {"invalid port '-1'"}},
        {"tcp://1.2.3.4:80x", {"unexpected 'x' after port 80"}},
        {"tcp://1.2.3.4:80 ", {"unexpected ' ' after port 80"}},
        {"tcp://[::1]:80]", {"unexpected ']' after port 80"}},
        {"tcp://:8080", {"empty host", "'tcp://0.0.0.0:8080'", "'tcp://[::]:8080'"}},
        {"tcp://[]:8080", {"empty host"}},
        {"tcp://::1:80", {"IPv6 addresses must be in brackets", "write 'tcp://[::1]:80'"}},
        {"tcp://fe80::1", {"IPv6 addresses must be in brackets"}},
        {"tcp://[::1:80", {"unterminated '['", "'[::1]:8080'"}},
        {"tcp://[::1]x:80", {"unexpected 'x:80' after ']'"}},
        {"tcp://[1.2.3.4]:80", {"invalid IPv6 address '1.2.3.4'"}},
        {"tcp://[::g]:80", {"invalid IPv6 address '::g'"}},
        {"tcp://[fe80::1%]:80", {"invalid IPv6 zone"}},
        {"tcp://1.2.3.256:80", {"invalid IPv4 address '1.2.3.256'"}},
        {"tcp://1.2.3:80", {"invalid IPv4 address '1.2.3'"}},
        {"tcp://local host:80", {"invalid character ' ' in host 'local host'"}},
        {"tcp://ex*ample:80", {"invalid character '*' in host 'ex*ample'"}},
        {"tcp://a..b:80", {"invalid host 'a..b'", "empty label"}},
        {"tcp://-a:80", {"invalid host '-a'", "'-'"}},
        {"tcp://localhost:80/path", {"unexpected path '/path'", "HOST:PORT only"}},
        {"udp://1.2.3.4/x", {"unexpected path '/x'", "udp://"}},
        {"unix:", {"missing path", "'unix:/run/x.sock'"}},
        {"unix:@", {"empty abstract socket name", "'unix:@name'"}},
        {"unix-dgram:@", {"empty abstract socket name", "'unix-dgram:@name'"}},
        {"unix:run/x.sock", {"'run/x.sock'", "must be absolute"}},
        {"unix-seqpacket:x", {"'x'", "must be absolute"}},
        {"unix://run/x.sock", {"must be absolute"}},
        {std::string_view("unix:/run/x\0y", 13), {"NUL byte"}},
        {std::string_view("tcp://a\0:80", 11), {"NUL byte"}},
    };
    return cases;
}

TEST(AddressTest, MalformedFormsAreExplained)
{
    for (const auto &c : invalidCases()) {
        SCOPED_TRACE(std::string(c.text));
        auto parsed = parseAddress(c.text);
        ASSERT_FALSE(parsed.ok()) << formatAddress(*parsed);
        EXPECT_EQ(parsed.error().code, EINVAL);
        for (std::string_view fragment : c.fragments) {
            EXPECT_NE(parsed.error().message.find(fragment), std::string::npos)
                << "'" << fragment << "' not in: " << parsed.error().message;
        }
    }
}

std::string format(const SocketAddress &a)
{
    return formatSocketAddress(reinterpret_cast<const sockaddr *>(&a.storage), a.length);
}

TEST(AddressTest, ResolveLocalhost)
{
    auto address = parseAddress("tcp://localhost:8080");
    ASSERT_TRUE(address.ok());
    auto resolved = resolveAddress(*address);
    ASSERT_TRUE(resolved.ok()) << resolved.error().message;
    ASSERT_GE(resolved->size(), 1U);
    for (std::size_t i = 0; i < resolved->size(); ++i) {
        const SocketAddress &a = (*resolved)[i];
        EXPECT_TRUE(a.family == AF_INET || a.family == AF_INET6);
        for (std::size_t j = 0; j < i; ++j) {
            EXPECT_NE(format(a), format((*resolved)[j])) << "duplicate result";
        }
        EXPECT_NE(format(a).find(":8080"), std::string::npos);
    }
}

TEST(AddressTest, ResolveIpv4Literal)
{
    auto resolved = resolveAddress(*parseAddress("udp://127.0.0.1:53"));
    ASSERT_TRUE(resolved.ok()) << resolved.error().message;
    ASSERT_EQ(resolved->size(), 1U);
    const SocketAddress &a = resolved->front();
    EXPECT_EQ(a.family, AF_INET);
    EXPECT_EQ(a.length, sizeof(sockaddr_in));
    sockaddr_in in{};
    std::memcpy(&in, &a.storage, sizeof(in));
    EXPECT_EQ(in.sin_family, AF_INET);
    EXPECT_EQ(ntohs(in.sin_port), 53);
    EXPECT_EQ(ntohl(in.sin_addr.s_addr), INADDR_LOOPBACK);
    EXPECT_EQ(format(a), "127.0.0.1:53");
}

TEST(AddressTest, ResolveIpv6Literal)
{
    auto resolved = resolveAddress(*parseAddress("tcp://[::1]:8080"));
    ASSERT_TRUE(resolved.ok()) << resolved.error().message;
    ASSERT_EQ(resolved->size(), 1U);
    const SocketAddress &a = resolved->front();
    EXPECT_EQ(a.family, AF_INET6);
    EXPECT_EQ(a.length, sizeof(sockaddr_in6));
    sockaddr_in6 in6{};
    std::memcpy(&in6, &a.storage, sizeof(in6));
    EXPECT_EQ(ntohs(in6.sin6_port), 8080);
    EXPECT_TRUE(IN6_IS_ADDR_LOOPBACK(&in6.sin6_addr));
    EXPECT_EQ(format(a), "[::1]:8080");

    auto any = resolveAddress(*parseAddress("tcp://[::]:0"));
    ASSERT_TRUE(any.ok());
    EXPECT_EQ(format(any->front()), "[::]:0");
    auto anyV4 = resolveAddress(*parseAddress("tcp://0.0.0.0:1"));
    ASSERT_TRUE(anyV4.ok());
    EXPECT_EQ(format(anyV4->front()), "0.0.0.0:1");
}

TEST(AddressTest, ResolveUnixPath)
{
    auto resolved = resolveAddress(*parseAddress("unix:/run/x.sock"));
    ASSERT_TRUE(resolved.ok()) << resolved.error().message;
    ASSERT_EQ(resolved->size(), 1U);
    const SocketAddress &a = resolved->front();
    EXPECT_EQ(a.family, AF_UNIX);
    // The path and its terminating NUL.
    EXPECT_EQ(a.length, offsetof(sockaddr_un, sun_path) + std::strlen("/run/x.sock") + 1);
    sockaddr_un un{};
    std::memcpy(&un, &a.storage, sizeof(un));
    EXPECT_EQ(un.sun_family, AF_UNIX);
    EXPECT_STREQ(un.sun_path, "/run/x.sock");
    EXPECT_EQ(format(a), "/run/x.sock");
}

TEST(AddressTest, ResolveUnixAbstract)
{
    auto resolved = resolveAddress(*parseAddress("unix-seqpacket:@fdsup-test"));
    ASSERT_TRUE(resolved.ok()) << resolved.error().message;
    ASSERT_EQ(resolved->size(), 1U);
    const SocketAddress &a = resolved->front();
    EXPECT_EQ(a.family, AF_UNIX);
    // A leading NUL and the name, with no trailing NUL: it would be part of the name.
    EXPECT_EQ(a.length, offsetof(sockaddr_un, sun_path) + 1 + std::strlen("fdsup-test"));
    sockaddr_un un{};
    std::memcpy(&un, &a.storage, sizeof(un));
    EXPECT_EQ(un.sun_path[0], '\0');
    EXPECT_EQ(std::string(un.sun_path + 1, std::strlen("fdsup-test")), "fdsup-test");
    EXPECT_EQ(format(a), "@fdsup-test");
}

TEST(AddressTest, ResolveFailureNamesAddress)
{
    // .invalid is reserved (RFC 6761) and never resolves.
    auto resolved = resolveAddress(*parseAddress("tcp://no-such-host.invalid:80"));
    ASSERT_FALSE(resolved.ok());
    EXPECT_NE(resolved.error().message.find("Failed to resolve 'tcp://no-such-host.invalid:80': "),
              std::string::npos)
        << resolved.error().message;
    EXPECT_NE(resolved.error().code, 0);
}

TEST(AddressTest, FormatUnnamedAndShort)
{
    sockaddr_un un{};
    un.sun_family = AF_UNIX;
    EXPECT_EQ(formatSocketAddress(reinterpret_cast<const sockaddr *>(&un), sizeof(sa_family_t)), "unnamed");
    EXPECT_EQ(formatSocketAddress(nullptr, 0), "unnamed");
}

} // namespace
} // namespace fdsup
