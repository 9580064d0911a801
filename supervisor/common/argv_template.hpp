// Placeholders in a service's argv ({fd:NAME}, {addr:NAME}), checked at load and expanded at spawn.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace fdsup {

// One piece of an argv element: literal text, or a placeholder naming a socket.
//   {fd:NAME}    the number of the fd the worker gets for [socket.NAME]
//                (its first address when it has several)
//   {addr:NAME}  the address that fd is bound to: "127.0.0.1:8080",
//                "[::1]:8080", "/run/app.sock", "@abstract"
//   {{ and }}    a literal '{' and '}'
// Anything else between braces, a lone '}' or a '{' never closed is an error:
// a typo must not reach the server as a literal argument.
struct ArgPiece {
    enum class Kind { Literal, Fd, Address };
    Kind kind = Kind::Literal;
    std::string text; // Literal: the text (escapes undone); otherwise the socket name
};

// Splits one argv element. Errors say what and where, e.g.
// "unknown placeholder '{port:web}' at character 8 (known: {fd:NAME}, {addr:NAME}; write '{{' for a literal
// '{')".
Result<std::vector<ArgPiece>> parseArgTemplate(std::string_view arg);

// True when some piece is a placeholder.
[[nodiscard]] bool hasPlaceholder(const std::vector<ArgPiece> &pieces);

// Expands a parsed element: literals as they are, placeholders by lookup
// (which returns the text or an error that is passed on).
using PlaceholderLookup = std::function<Result<std::string>(ArgPiece::Kind, const std::string &socket)>;
Result<std::string> expandArgTemplate(const std::vector<ArgPiece> &pieces, const PlaceholderLookup &lookup);

} // namespace fdsup
