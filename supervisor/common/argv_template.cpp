// Placeholders in a service's argv: the one parser shared by the config loader and spawning.
#include "common/argv_template.hpp"

#include <algorithm>
#include <cerrno>

namespace fdsup {
namespace {

constexpr std::string_view kKnown = "known: {fd:NAME}, {addr:NAME}";

bool socketNameChar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

std::string at(std::size_t index)
{
    return " at character " + std::to_string(index + 1);
}

// The placeholder between braces ("fd:web"), or an error naming it.
Result<ArgPiece> parsePlaceholder(std::string_view inner, std::size_t start)
{
    const std::string shown = "'{" + std::string(inner) + "}'";
    const std::size_t colon = inner.find(':');
    const std::string_view kind = inner.substr(0, colon);
    ArgPiece piece;
    if (kind == "fd") {
        piece.kind = ArgPiece::Kind::Fd;
    } else if (kind == "addr") {
        piece.kind = ArgPiece::Kind::Address;
    } else {
        return Error{EINVAL, "unknown placeholder " + shown + at(start) + " (" + std::string(kKnown) +
                                 "; write '{{' for a literal '{')"};
    }
    const std::string_view name =
        colon == std::string_view::npos ? std::string_view{} : inner.substr(colon + 1);
    if (name.empty() || !std::all_of(name.begin(), name.end(), socketNameChar)) {
        return Error{EINVAL, "placeholder " + shown + at(start) + " needs a socket name after '" +
                                 std::string(kind) + ":' (letters, digits, '-', '_')"};
    }
    piece.text = name;
    return piece;
}

} // namespace

Result<std::vector<ArgPiece>> parseArgTemplate(std::string_view arg)
{
    std::vector<ArgPiece> pieces;
    std::string literal;
    auto flush = [&] {
        if (!literal.empty()) {
            pieces.push_back(ArgPiece{ArgPiece::Kind::Literal, std::move(literal)});
            literal.clear();
        }
    };
    for (std::size_t i = 0; i < arg.size(); ++i) {
        const char c = arg[i];
        if (c == '}') {
            if (i + 1 < arg.size() && arg[i + 1] == '}') {
                literal.push_back('}');
                ++i;
                continue;
            }
            return Error{EINVAL, "a lone '}'" + at(i) + " (write '}}' for a literal '}')"};
        }
        if (c != '{') {
            literal.push_back(c);
            continue;
        }
        if (i + 1 < arg.size() && arg[i + 1] == '{') {
            literal.push_back('{');
            ++i;
            continue;
        }
        const std::size_t close = arg.find('}', i + 1);
        const std::size_t nextOpen = arg.find('{', i + 1);
        if (close == std::string_view::npos || nextOpen < close) {
            return Error{EINVAL, "'{'" + at(i) + " is not closed (write '{{' for a literal '{')"};
        }
        auto piece = parsePlaceholder(arg.substr(i + 1, close - i - 1), i);
        if (!piece) {
            return piece.error();
        }
        flush();
        pieces.push_back(std::move(*piece));
        i = close;
    }
    flush();
    return pieces;
}

bool hasPlaceholder(const std::vector<ArgPiece> &pieces)
{
    return std::any_of(pieces.begin(), pieces.end(),
                       [](const ArgPiece &p) { return p.kind != ArgPiece::Kind::Literal; });
}

Result<std::string> expandArgTemplate(const std::vector<ArgPiece> &pieces, const PlaceholderLookup &lookup)
{
    std::string out;
    for (const auto &piece : pieces) {
        if (piece.kind == ArgPiece::Kind::Literal) {
            out += piece.text;
            continue;
        }
        auto value = lookup(piece.kind, piece.text);
        if (!value) {
            return value.error();
        }
        out += *value;
    }
    return out;
}

} // namespace fdsup
