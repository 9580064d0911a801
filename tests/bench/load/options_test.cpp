// fdsup-load's command line: every option, and bad input refused with what, where and why.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include "options.hpp"

using namespace fdsup::load;
using namespace std::chrono_literals;

namespace {

ParseResult parse(const std::vector<std::string_view> &args)
{
    return parseOptions(args);
}

} // namespace

TEST(LoadOptions, DefaultsAreTheContracts)
{
    auto r = parse({"--target", "127.0.0.1:8080"});
    ASSERT_TRUE(r.options) << r.error;
    const Options &o = *r.options;
    EXPECT_EQ(o.mode, Mode::Keepalive);
    EXPECT_EQ(o.connections, 64);
    EXPECT_EQ(o.duration, 10s);
    EXPECT_FALSE(o.restartCommand);
    EXPECT_EQ(o.restarts, 3);
    EXPECT_EQ(o.timeout, 5s);
    EXPECT_EQ(o.think, 20ms);
    EXPECT_EQ(o.path, "/");
    EXPECT_FALSE(o.jsonFile);
    EXPECT_FALSE(o.quiet);
    const auto *a = reinterpret_cast<const sockaddr_in *>(&o.target.address);
    EXPECT_EQ(a->sin_family, AF_INET);
    EXPECT_EQ(ntohs(a->sin_port), 8080);
    EXPECT_EQ(a->sin_addr.s_addr, htonl(INADDR_LOOPBACK));
}

TEST(LoadOptions, EveryOptionInBothSpellings)
{
    auto r = parse({"--target=[::1]:9000", "--mode", "stream", "--connections=3", "--duration", "1.5s",
                    "--restart", "fdsupctl restart web --wait", "--restarts=0", "--timeout", "250ms",
                    "--think=0ms", "--path", "/a/b?c=d", "--json", "out.json", "--quiet"});
    ASSERT_TRUE(r.options) << r.error;
    const Options &o = *r.options;
    EXPECT_EQ(o.target.text, "[::1]:9000");
    EXPECT_EQ(o.target.address.ss_family, AF_INET6);
    EXPECT_EQ(o.mode, Mode::Stream);
    EXPECT_EQ(o.connections, 3);
    EXPECT_EQ(o.duration, 1500ms);
    EXPECT_EQ(o.restartCommand, "fdsupctl restart web --wait");
    EXPECT_EQ(o.restarts, 0);
    EXPECT_EQ(o.timeout, 250ms);
    EXPECT_EQ(o.think, 0ms);
    EXPECT_EQ(o.path, "/a/b?c=d");
    EXPECT_EQ(o.jsonFile, "out.json");
    EXPECT_TRUE(o.quiet);
}

TEST(LoadOptions, Durations)
{
    EXPECT_EQ(parseDuration("2m"), 120s);
    EXPECT_EQ(parseDuration("10s"), 10s);
    EXPECT_EQ(parseDuration("0.25s"), 250ms);
    EXPECT_EQ(parseDuration("20ms"), 20ms);
    for (auto bad : {"", "10", "s", "ms", "-1s", "1h", "1.5.5s", "abc", "1 s", "nans"}) {
        EXPECT_FALSE(parseDuration(bad)) << bad;
    }
}

TEST(LoadOptions, BadInputSaysWhichOptionAndWhy)
{
    struct Case {
        std::vector<std::string_view> args;
        std::string_view says;
    } cases[] = {
        {{}, "--target HOST:PORT is required"},
        {{"--target", "localhost:80"}, "--target: 'localhost:80' is not IPV4:PORT or [IPV6]:PORT"},
        {{"--target", "127.0.0.1"}, "--target: '127.0.0.1' is not"},
        {{"--target", "127.0.0.1:0"}, "--target: '127.0.0.1:0' is not"},
        {{"--target", "127.0.0.1:65536"}, "--target: '127.0.0.1:65536' is not"},
        {{"--target", "::1:80"}, "--target: '::1:80' is not"},
        {{"--target", "127.0.0.1:80", "--mode", "fast"}, "--mode: 'fast' is not one of keepalive, newconn"},
        {{"--target", "127.0.0.1:80", "--connections", "0"}, "--connections: '0' is not an integer from 1"},
        {{"--target", "127.0.0.1:80", "--connections", "12x"}, "--connections: '12x' is not an integer"},
        {{"--target", "127.0.0.1:80", "--duration", "10"}, "--duration: '10' is not a duration with a unit"},
        {{"--target", "127.0.0.1:80", "--duration", "0s"}, "--duration: must be longer than 0"},
        {{"--target", "127.0.0.1:80", "--timeout", "0ms"}, "--timeout: must be longer than 0"},
        {{"--target", "127.0.0.1:80", "--restarts", "-1"}, "--restarts: '-1' is not an integer from 0"},
        {{"--target", "127.0.0.1:80", "--restart", ""}, "--restart: the command is empty"},
        {{"--target", "127.0.0.1:80", "--path", "x"}, "--path: 'x' does not start with /"},
        {{"--target", "127.0.0.1:80", "--path", "/a b"},
         "--path: '/a b' does not start with / or holds a space"},
        {{"--target", "127.0.0.1:80", "--json"}, "--json: needs a value"},
        {{"--target", "127.0.0.1:80", "--frobnicate"}, "unknown option '--frobnicate'"},
        {{"--target", "127.0.0.1:80", "extra"}, "unknown option 'extra'"},
    };
    for (const auto &c : cases) {
        auto r = parse(c.args);
        EXPECT_FALSE(r.options) << c.says;
        EXPECT_FALSE(r.help);
        EXPECT_TRUE(r.error.starts_with(c.says)) << "got: " << r.error << "\nwanted: " << c.says;
    }
}

TEST(LoadOptions, Help)
{
    EXPECT_TRUE(parse({"--help"}).help);
    EXPECT_TRUE(parse({"-h"}).help);
    EXPECT_NE(usage().find("--restart CMD"), std::string::npos);
}
