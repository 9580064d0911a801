// Fuzz target: the argv placeholders ({fd:NAME}, {addr:NAME}, {{ and }}) of a service's command, parsed at
// load from the configuration and again at spawn. What parses must expand to its literal text with its
// placeholders replaced, and escaping the pieces back must parse to the same pieces.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/argv_template.hpp"
#include "fuzz.hpp"

namespace {

std::string escape(std::string_view literal)
{
    std::string out;
    for (const char c : literal) {
        out += c;
        if (c == '{' || c == '}') {
            out += c;
        }
    }
    return out;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view arg(reinterpret_cast<const char *>(data), size);
    const auto pieces = fdsup::parseArgTemplate(arg);
    if (!pieces) {
        if (pieces.error().message.empty()) {
            std::abort(); // every refusal says what and where
        }
        return 0;
    }
    std::string written;
    std::string expected;
    bool placeholder = false;
    for (const auto &piece : *pieces) {
        switch (piece.kind) {
        case fdsup::ArgPiece::Kind::Literal:
            written += escape(piece.text);
            expected += piece.text;
            break;
        case fdsup::ArgPiece::Kind::Fd:
            written += "{fd:" + piece.text + "}";
            expected += "<fd " + piece.text + ">";
            placeholder = true;
            break;
        case fdsup::ArgPiece::Kind::Address:
            written += "{addr:" + piece.text + "}";
            expected += "<addr " + piece.text + ">";
            placeholder = true;
            break;
        }
    }
    if (placeholder != fdsup::hasPlaceholder(*pieces)) {
        std::abort();
    }
    const auto again = fdsup::parseArgTemplate(written);
    if (!again || again->size() != pieces->size()) {
        std::abort();
    }
    for (std::size_t i = 0; i < pieces->size(); ++i) {
        if ((*again)[i].kind != (*pieces)[i].kind || (*again)[i].text != (*pieces)[i].text) {
            std::abort();
        }
    }
    const auto expanded = fdsup::expandArgTemplate(
        *pieces, [](fdsup::ArgPiece::Kind kind, const std::string &socket) -> fdsup::Result<std::string> {
            return (kind == fdsup::ArgPiece::Kind::Fd ? "<fd " : "<addr ") + socket + ">";
        });
    if (!expanded || *expanded != expected) {
        std::abort();
    }
    return 0;
}
