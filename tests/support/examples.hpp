// The units/examples/ files as the tests run them: copied into a temporary
// directory with their installed paths, runtime directory and port rewritten.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fdsup::test {

// What the example files say, and prepareExample() rewrites: where the
// examples are installed, where their runtime files go, and their port.
inline constexpr std::string_view kInstalledDir = "/usr/share/doc/fdsup/examples";
inline constexpr std::string_view kRunDir = "/run/fdsup-examples";
inline constexpr std::string_view kExamplePort = "8080";

// A TCP port on 127.0.0.1 where nothing listens: bound once, then closed
// (another process may take it before the test binds it: rare on loopback).
int freePort();

// Replaces every occurrence of from in text with to.
void replaceAll(std::string &text, std::string_view from, std::string_view to);

// Copies units/examples/NAME.toml and the directory NAME/ beside it (if
// any) into dir, with the installed paths (dir), the runtime directory
// (dir/run), the port and then each of `extra` (from, to) rewritten in every
// file; returns the unit file's text.
std::string prepareExample(const std::filesystem::path &dir, const std::string &name, int port,
                           const std::vector<std::pair<std::string, std::string>> &extra = {});

} // namespace fdsup::test
