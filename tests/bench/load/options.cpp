// fdsup-load's command line: a hand-written parser (the program depends on libc and the standard library
// only).
#include "options.hpp"

#include <charconv>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>

#include <arpa/inet.h>
#include <netinet/in.h>

namespace fdsup::load {

namespace {

std::optional<long long> parseInteger(std::string_view text)
{
    long long value = 0;
    const char *end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end) {
        return std::nullopt;
    }
    return value;
}

std::optional<Mode> parseMode(std::string_view text)
{
    for (Mode m : {Mode::Keepalive, Mode::Newconn, Mode::Think, Mode::Stream}) {
        if (text == modeName(m)) {
            return m;
        }
    }
    return std::nullopt;
}

bool validPath(std::string_view path)
{
    if (path.empty() || path.front() != '/') {
        return false;
    }
    for (char c : path) {
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
            return false;
        }
    }
    return true;
}

// Each option that takes a value: how it is stored, or why the value is bad.
using Setter = std::function<std::string(Options &, std::string_view)>;

std::string setCount(int &out, std::string_view value, long long min, long long max)
{
    auto n = parseInteger(value);
    if (!n || *n < min || *n > max) {
        return "'" + std::string(value) + "' is not an integer from " + std::to_string(min) + " to " +
               std::to_string(max);
    }
    out = static_cast<int>(*n);
    return {};
}

std::string setDuration(std::chrono::milliseconds &out, std::string_view value, bool zeroAllowed)
{
    auto d = parseDuration(value);
    if (!d) {
        return "'" + std::string(value) + "' is not a duration with a unit (such as 500ms, 10s, 2m)";
    }
    if (!zeroAllowed && d->count() == 0) {
        return "must be longer than 0";
    }
    out = *d;
    return {};
}

const std::map<std::string_view, Setter> &setters()
{
    static const std::map<std::string_view, Setter> table{
        {"--target",
         [](Options &o, std::string_view v) -> std::string {
             auto t = parseTarget(v);
             if (!t) {
                 return "'" + std::string(v) + "' is not IPV4:PORT or [IPV6]:PORT (such as 127.0.0.1:8080)";
             }
             o.target = *t;
             return {};
         }},
        {"--mode",
         [](Options &o, std::string_view v) -> std::string {
             auto m = parseMode(v);
             if (!m) {
                 return "'" + std::string(v) + "' is not one of keepalive, newconn, think, stream";
             }
             o.mode = *m;
             return {};
         }},
        {"--connections",
         [](Options &o, std::string_view v) {
             return setCount(o.connections, v, 1, 100000);
         }},
        {"--duration",
         [](Options &o, std::string_view v) {
             return setDuration(o.duration, v, false);
         }},
        {"--restart",
         [](Options &o, std::string_view v) -> std::string {
             if (v.empty()) {
                 return "the command is empty";
             }
             o.restartCommand = std::string(v);
             return {};
         }},
        {"--restarts",
         [](Options &o, std::string_view v) {
             return setCount(o.restarts, v, 0, 10000);
         }},
        {"--timeout",
         [](Options &o, std::string_view v) {
             return setDuration(o.timeout, v, false);
         }},
        {"--think",
         [](Options &o, std::string_view v) {
             return setDuration(o.think, v, true);
         }},
        {"--path",
         [](Options &o, std::string_view v) -> std::string {
             if (!validPath(v)) {
                 return "'" + std::string(v) +
                        "' does not start with / or holds a space or control character";
             }
             o.path = std::string(v);
             return {};
         }},
        {"--json",
         [](Options &o, std::string_view v) -> std::string {
             if (v.empty()) {
                 return "the file name is empty";
             }
             o.jsonFile = std::string(v);
             return {};
         }},
    };
    return table;
}

} // namespace

std::string_view modeName(Mode mode)
{
    switch (mode) {
    case Mode::Keepalive:
        return "keepalive";
    case Mode::Newconn:
        return "newconn";
    case Mode::Think:
        return "think";
    case Mode::Stream:
        return "stream";
    }
    return "?";
}

std::optional<std::chrono::milliseconds> parseDuration(std::string_view text)
{
    static const std::pair<std::string_view, double> units[] = {{"ms", 1.0}, {"s", 1000.0}, {"m", 60000.0}};
    for (const auto &[unit, factor] : units) {
        if (text.size() <= unit.size() || !text.ends_with(unit)) {
            continue;
        }
        std::string_view number = text.substr(0, text.size() - unit.size());
        double value = 0;
        const char *end = number.data() + number.size();
        auto [ptr, ec] = std::from_chars(number.data(), end, value, std::chars_format::fixed);
        if (ec != std::errc() || ptr != end || !std::isfinite(value) || value < 0 || value * factor > 1e10) {
            return std::nullopt;
        }
        return std::chrono::milliseconds(std::llround(value * factor));
    }
    return std::nullopt;
}

std::optional<Target> parseTarget(std::string_view text)
{
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        return std::nullopt;
    }
    auto port = parseInteger(text.substr(colon + 1));
    if (!port || *port < 1 || *port > 65535) {
        return std::nullopt;
    }
    std::string host(text.substr(0, colon));
    Target t;
    t.text = std::string(text);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(static_cast<uint16_t>(*port));
        if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a.sin6_addr) != 1) {
            return std::nullopt;
        }
        std::memcpy(&t.address, &a, sizeof a);
        t.length = sizeof a;
        return t;
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(*port));
    if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1) {
        return std::nullopt;
    }
    std::memcpy(&t.address, &a, sizeof a);
    t.length = sizeof a;
    return t;
}

ParseResult parseOptions(const std::vector<std::string_view> &args)
{
    Options options;
    bool haveTarget = false;
    for (size_t i = 0; i < args.size(); ++i) {
        std::string_view arg = args[i];
        if (arg == "-h" || arg == "--help") {
            return {.options = std::nullopt, .help = true, .error = {}};
        }
        if (arg == "--quiet") {
            options.quiet = true;
            continue;
        }
        std::string_view name = arg;
        std::optional<std::string_view> value;
        if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
            name = arg.substr(0, eq);
            value = arg.substr(eq + 1);
        }
        auto setter = setters().find(name);
        if (setter == setters().end()) {
            return {
                .options = std::nullopt, .help = false, .error = "unknown option '" + std::string(arg) + "'"};
        }
        if (!value) {
            if (i + 1 == args.size()) {
                return {
                    .options = std::nullopt, .help = false, .error = std::string(name) + ": needs a value"};
            }
            value = args[++i];
        }
        if (std::string why = setter->second(options, *value); !why.empty()) {
            return {.options = std::nullopt, .help = false, .error = std::string(name) + ": " + why};
        }
        haveTarget = haveTarget || name == "--target";
    }
    if (!haveTarget) {
        return {.options = std::nullopt, .help = false, .error = "--target HOST:PORT is required"};
    }
    return {.options = options, .help = false, .error = {}};
}

std::string usage()
{
    return "usage: fdsup-load --target HOST:PORT [--mode keepalive|newconn|think|stream]\n"
           "                  [--connections 64] [--duration 10s] [--restart CMD] [--restarts 3]\n"
           "                  [--timeout 5s] [--think 20ms] [--path /] [--json FILE] [--quiet]\n"
           "Drives HTTP (or seqnum streams) at HOST:PORT (127.0.0.1:8080, [::1]:8080) while\n"
           "running `/bin/sh -c CMD` --restarts times, and classifies what every request saw.\n"
           "Exit status: 0 the run completed, 1 it could not run, 2 a bad command line.\n"
           "Reference: tests/bench/load/README.md\n";
}

} // namespace fdsup::load
