// The preload shim's address matching as a table: normalisation, the match rules, the map, the bind decision.
#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <gtest/gtest.h>

#include "match.hpp"
#include "test_support.hpp"

namespace fdsup::preload {
namespace {

bool realResolve(const std::string &dir, std::string &canonical, void * /*context*/)
{
    char buf[PATH_MAX];
    if (::realpath(dir.c_str(), buf) == nullptr) {
        return false;
    }
    canonical = buf;
    return true;
}

NormalAddress config(std::string_view text)
{
    NormalAddress out;
    std::string why;
    EXPECT_EQ(parseConfigAddress(text, realResolve, nullptr, out, why), 0) << text << ": " << why;
    return out;
}

// An app's unix bind() address as written (relative paths allowed).
NormalAddress unixPath(const std::string &path, int type = SOCK_STREAM)
{
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
    NormalAddress out;
    EXPECT_EQ(
        normaliseSockaddr(reinterpret_cast<sockaddr *>(&sun), sizeof(sun), type, realResolve, nullptr, out),
        0)
        << path;
    return out;
}

NormalAddress withType(NormalAddress a, int type)
{
    a.type = type;
    return a;
}

struct MatchCase {
    const char *what;
    const char *app;
    const char *listener;
    Match expected;
};

const MatchCase kInet[] = {
    {"same v4 address", "tcp://127.0.0.1:8080", "tcp://127.0.0.1:8080", Match::Same},
    {"another port", "tcp://127.0.0.1:8081", "tcp://127.0.0.1:8080", Match::None},
    {"another host", "tcp://127.0.0.2:8080", "tcp://127.0.0.1:8080", Match::None},
    {"v4 wildcard vs v4 wildcard", "tcp://0.0.0.0:80", "tcp://0.0.0.0:80", Match::Same},
    {"v6 wildcard vs v4 wildcard", "tcp://[::]:80", "tcp://0.0.0.0:80", Match::Same},
    {"v4 wildcard on a v6 wildcard: AF_INET cannot take AF_INET6", "tcp://0.0.0.0:80", "tcp://[::]:80",
     Match::FamilyMismatch},
    {"wildcard vs a specific host", "tcp://0.0.0.0:80", "tcp://127.0.0.1:80", Match::None},
    {"specific host vs wildcard", "tcp://127.0.0.1:80", "tcp://0.0.0.0:80", Match::None},
    {"IPv4-mapped vs IPv4", "tcp://[::ffff:127.0.0.1]:80", "tcp://127.0.0.1:80", Match::Same},
    {"IPv4-mapped wildcard vs v4 wildcard", "tcp://[::ffff:0.0.0.0]:80", "tcp://0.0.0.0:80", Match::Same},
    {"v6 loopback vs v4 loopback", "tcp://[::1]:80", "tcp://127.0.0.1:80", Match::None},
    {"same v6 address", "tcp://[::1]:80", "tcp://[::1]:80", Match::Same},
    {"v6 spelled differently", "tcp://[0:0:0:0:0:0:0:1]:80", "tcp://[::1]:80", Match::Same},
    {"udp on a tcp listener", "udp://127.0.0.1:53", "tcp://127.0.0.1:53", Match::TypeMismatch},
    {"udp on a udp listener", "udp://127.0.0.1:53", "udp://127.0.0.1:53", Match::Same},
    {"udp on another port", "udp://127.0.0.1:54", "tcp://127.0.0.1:53", Match::None},
    {"unix vs inet", "unix:@x", "tcp://127.0.0.1:53", Match::None},
    {"abstract names", "unix:@fdsup-test", "unix:@fdsup-test", Match::Same},
    {"another abstract name", "unix:@fdsup-test2", "unix:@fdsup-test", Match::None},
    {"abstract vs path", "unix:@/tmp/x", "unix:/tmp/x", Match::None},
    {"seqpacket on a stream listener", "unix-seqpacket:@n", "unix:@n", Match::TypeMismatch},
    {"dgram on a dgram listener", "unix-dgram:@n", "unix-dgram:@n", Match::Same},
};

TEST(PreloadMatch, InetAndAbstractTable)
{
    for (const auto &row : kInet) {
        EXPECT_EQ(matchAddress(config(row.app), config(row.listener)), row.expected)
            << row.what << ": " << row.app << " vs " << row.listener;
    }
}

TEST(PreloadMatch, PortZeroNeverMatches)
{
    // bind(port 0) asks the kernel for a fresh port, even where a listener has port 0 itself.
    sockaddr_in any{};
    any.sin_family = AF_INET;
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    NormalAddress app;
    ASSERT_EQ(normaliseSockaddr(reinterpret_cast<sockaddr *>(&any), sizeof(any), SOCK_STREAM, realResolve,
                                nullptr, app),
              0);
    EXPECT_EQ(matchAddress(app, app), Match::None);
}

TEST(PreloadMatch, UnixPathsAreCanonical)
{
    test::TempDir tmp;
    std::filesystem::create_directory(tmp / "real");
    std::filesystem::create_directory_symlink(tmp / "real", tmp / "link");
    std::filesystem::create_directory(tmp / "real" / "sub");
    NormalAddress listener = config("unix:" + (tmp / "real" / "s.sock").string());
    std::string cwd = std::filesystem::current_path();
    std::filesystem::current_path(tmp.path());
    struct Row {
        const char *what;
        NormalAddress app;
        Match expected;
    };
    const Row rows[] = {
        {"the same path", unixPath((tmp / "real" / "s.sock").string()), Match::Same},
        {"through a symlinked directory", unixPath((tmp / "link" / "s.sock").string()), Match::Same},
        {"with .. in the directory", unixPath((tmp / "real" / "sub" / ".." / "s.sock").string()),
         Match::Same},
        {"relative to the working directory", unixPath("real/s.sock"), Match::Same},
        {"relative through the symlink", unixPath("./link/s.sock"), Match::Same},
        {"another name", unixPath("real/t.sock"), Match::None},
        {"a datagram socket", unixPath("real/s.sock", SOCK_DGRAM), Match::TypeMismatch},
    };
    std::filesystem::current_path(cwd);
    for (const auto &row : rows) {
        EXPECT_EQ(matchAddress(row.app, listener), row.expected) << row.what << ": " << row.app.path;
    }
    NormalAddress out;
    sockaddr_un missing{};
    missing.sun_family = AF_UNIX;
    std::strcpy(missing.sun_path, "/nonexistent-dir-fdsup/s.sock");
    EXPECT_EQ(normaliseSockaddr(reinterpret_cast<sockaddr *>(&missing), sizeof(missing), SOCK_STREAM,
                                realResolve, nullptr, out),
              -ENOENT);
}

TEST(PreloadMatch, NormaliseRefusesWhatItCannotMatch)
{
    NormalAddress out;
    sockaddr_un unnamed{};
    unnamed.sun_family = AF_UNIX;
    EXPECT_EQ(normaliseSockaddr(reinterpret_cast<sockaddr *>(&unnamed), sizeof(sa_family_t), SOCK_STREAM,
                                realResolve, nullptr, out),
              -EINVAL);
    sockaddr other{};
    other.sa_family = AF_NETLINK;
    EXPECT_EQ(normaliseSockaddr(&other, sizeof(other), SOCK_STREAM, realResolve, nullptr, out),
              -EAFNOSUPPORT);
    sockaddr_in shortV4{};
    shortV4.sin_family = AF_INET;
    EXPECT_EQ(
        normaliseSockaddr(reinterpret_cast<sockaddr *>(&shortV4), 4, SOCK_STREAM, realResolve, nullptr, out),
        -EINVAL);
}

TEST(PreloadMatch, ConfigAddressErrorsSayWhy)
{
    const char *bad[] = {"tcp://localhost:80",
                         "tcp://127.0.0.1",
                         "tcp://127.0.0.1:0",
                         "tcp://127.0.0.1:70000",
                         "tcp://[::1:80",
                         "unix:relative.sock",
                         "unix:",
                         "http://x:80",
                         "unix:/nonexistent-fdsup/x"};
    for (const char *text : bad) {
        NormalAddress out;
        std::string why;
        EXPECT_EQ(parseConfigAddress(text, realResolve, nullptr, out, why), -EINVAL) << text;
        EXPECT_NE(why.find('\''), std::string::npos) << text << ": " << why;
    }
}

TEST(PreloadMatch, MapParsing)
{
    std::vector<MapEntry> map;
    std::string why;
    ASSERT_EQ(parseMap("web=tcp://0.0.0.0:8080;admin=unix:@adm", realResolve, nullptr, map, why), 0) << why;
    ASSERT_EQ(map.size(), 2U);
    EXPECT_EQ(map[0].name, "web");
    EXPECT_EQ(map[0].address.port, 8080);
    EXPECT_TRUE(map[1].address.abstract);
    EXPECT_EQ(parseMap("", realResolve, nullptr, map, why), 0);
    EXPECT_TRUE(map.empty());
    for (const char *bad : {"web", "=tcp://1.2.3.4:5", "web=tcp://nohost:80", "a=unix:@x;b"}) {
        std::vector<MapEntry> untouched{MapEntry{"keep", {}}};
        EXPECT_EQ(parseMap(bad, realResolve, nullptr, untouched, why), -EINVAL) << bad;
        EXPECT_EQ(untouched.size(), 1U) << bad;
        EXPECT_FALSE(why.empty());
    }
}

struct DecideCase {
    const char *what;
    const char *app;
    const char *map;
    BindDecision::Action action;
    std::size_t listener; // Claim
    int error;            // Refuse
};

// Listeners: 0 "web" tcp 127.0.0.1:8080, 1 "web" tcp [::1]:8080, 2 "dns" udp 0.0.0.0:5353,
// 3 "ctl" unix @ctl.
const DecideCase kDecide[] = {
    {"own address", "tcp://127.0.0.1:8080", "", BindDecision::Action::Claim, 0, 0},
    {"second address of a name", "tcp://[::1]:8080", "", BindDecision::Action::Claim, 1, 0},
    {"nothing matches", "tcp://127.0.0.1:9090", "", BindDecision::Action::PassThrough, 0, 0},
    {"udp listener", "udp://0.0.0.0:5353", "", BindDecision::Action::Claim, 2, 0},
    {"tcp on the udp listener's address", "tcp://0.0.0.0:5353", "", BindDecision::Action::Refuse, 0,
     EPROTOTYPE},
    {"unix", "unix:@ctl", "", BindDecision::Action::Claim, 3, 0},
    {"unix seqpacket on a stream listener", "unix-seqpacket:@ctl", "", BindDecision::Action::Refuse, 0,
     EPROTOTYPE},
    {"map: another address to web", "tcp://0.0.0.0:9000", "web=tcp://0.0.0.0:9000",
     BindDecision::Action::Claim, 0, 0},
    {"map: an IPv6 socket gets web's first usable address", "tcp://[::]:9000", "web=tcp://0.0.0.0:9000",
     BindDecision::Action::Claim, 0, 0},
    {"map: the entry wins over an own address", "tcp://127.0.0.1:8080", "ctl=tcp://127.0.0.1:8080",
     BindDecision::Action::Refuse, 0, EAFNOSUPPORT},
    {"map: unknown listener name", "tcp://0.0.0.0:9000", "nope=tcp://0.0.0.0:9000",
     BindDecision::Action::Refuse, 0, EADDRNOTAVAIL},
    {"map: another address passes", "tcp://0.0.0.0:9001", "web=tcp://0.0.0.0:9000",
     BindDecision::Action::PassThrough, 0, 0},
    {"map: udp app on a tcp listener", "udp://0.0.0.0:9000", "web=udp://0.0.0.0:9000",
     BindDecision::Action::Refuse, 0, EPROTOTYPE},
};

TEST(PreloadMatch, DecideBindTable)
{
    std::vector<Listener> listeners = {
        {"web", config("tcp://127.0.0.1:8080")},
        {"web", config("tcp://[::1]:8080")},
        {"dns", config("udp://0.0.0.0:5353")},
        {"ctl", config("unix:@ctl")},
    };
    for (const auto &row : kDecide) {
        std::vector<MapEntry> map;
        std::string why;
        ASSERT_EQ(parseMap(row.map, realResolve, nullptr, map, why), 0) << why;
        BindDecision d = decideBind(config(row.app), listeners, map);
        EXPECT_EQ(d.action, row.action) << row.what;
        if (row.action == BindDecision::Action::Claim) {
            EXPECT_EQ(d.listener, row.listener) << row.what;
        }
        if (row.action == BindDecision::Action::Refuse) {
            EXPECT_EQ(d.error, row.error) << row.what;
            EXPECT_FALSE(d.reason.empty()) << row.what;
        }
    }
}

TEST(PreloadMatch, FamilyMismatchIsRefusedWithAReason)
{
    std::vector<Listener> listeners = {{"web", config("tcp://[::]:8080")}};
    BindDecision d = decideBind(config("tcp://0.0.0.0:8080"), listeners, {});
    EXPECT_EQ(d.action, BindDecision::Action::Refuse);
    EXPECT_EQ(d.error, EAFNOSUPPORT);
    EXPECT_NE(d.reason.find("AF_INET6"), std::string::npos) << d.reason;
    EXPECT_EQ(formatNormalAddress(withType(config("tcp://[::1]:80"), SOCK_STREAM)), "[::1]:80");
    EXPECT_EQ(formatNormalAddress(config("udp://127.0.0.1:53")), "127.0.0.1:53 (datagram)");
}

} // namespace
} // namespace fdsup::preload
