// Strict UTF-8 validation, for text that crosses a trust boundary (worker channel, sd_notify).
#pragma once

#include <string_view>

namespace fdsup {

// True when text is well-formed UTF-8: no overlong forms, no surrogates
// (U+D800-U+DFFF), nothing above U+10FFFF, no truncated sequence. NUL is a
// valid character here; callers that put text into C strings refuse it
// themselves.
bool validUtf8(std::string_view text);

} // namespace fdsup
