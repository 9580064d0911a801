// fdsup-load's command line: what a run does, parsed and checked before anything starts.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <sys/socket.h>

namespace fdsup::load {

enum class Mode { Keepalive, Newconn, Think, Stream };

std::string_view modeName(Mode mode);

// A resolved --target: the address to connect to and the text given (the
// Host header and the JSON's "target").
struct Target {
    sockaddr_storage address{};
    socklen_t length = 0;
    std::string text;
};

struct Options {
    Target target;
    Mode mode = Mode::Keepalive;
    int connections = 64;
    std::chrono::milliseconds duration{10'000};
    std::optional<std::string> restartCommand;
    int restarts = 3;
    std::chrono::milliseconds timeout{5'000};
    std::chrono::milliseconds think{20};
    std::string path = "/";
    std::optional<std::string> jsonFile;
    bool quiet = false;
};

// The outcome of parsing: options, or a request for the help text, or an
// error that says which option and why (the caller prints it and exits 2).
struct ParseResult {
    std::optional<Options> options;
    bool help = false;
    std::string error;
};

ParseResult parseOptions(const std::vector<std::string_view> &args);

// "10s", "500ms", "1.5s", "2m": a duration with its unit; nullopt when not one.
std::optional<std::chrono::milliseconds> parseDuration(std::string_view text);
// "127.0.0.1:8080" or "[::1]:8080"; nullopt when not one.
std::optional<Target> parseTarget(std::string_view text);

std::string usage();

} // namespace fdsup::load
