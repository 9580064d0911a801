// Parsing and printing durations and sizes, and "did you mean" suggestions.
#include "common/units.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fdsup {

namespace {

struct Unit {
    std::string_view name;
    std::uint64_t factor;
};

// A unit is the whole run of letters after a number, matched exactly, so
// "ms" is never read as "m" followed by junk.
constexpr std::array kDurationUnits{
    Unit{"us", 1},         Unit{"ms", 1000},         Unit{"min", 60'000'000},   Unit{"s", 1'000'000},
    Unit{"m", 60'000'000}, Unit{"h", 3'600'000'000}, Unit{"d", 86'400'000'000},
};

// Printed largest first; "min" is accepted on input but "m" is canonical.
constexpr std::array kDurationFormatUnits{
    Unit{"d", 86'400'000'000}, Unit{"h", 3'600'000'000}, Unit{"m", 60'000'000},
    Unit{"s", 1'000'000},      Unit{"ms", 1000},         Unit{"us", 1},
};

constexpr std::uint64_t kKiB = 1024;
constexpr std::array kSizeUnits{
    Unit{"", 1},
    Unit{"B", 1},
    // Single letters are binary, as in systemd and most daemons' configs.
    Unit{"K", kKiB},
    Unit{"M", kKiB *kKiB},
    Unit{"G", kKiB *kKiB *kKiB},
    Unit{"T", kKiB *kKiB *kKiB *kKiB},
    Unit{"KiB", kKiB},
    Unit{"MiB", kKiB *kKiB},
    Unit{"GiB", kKiB *kKiB *kKiB},
    Unit{"TiB", kKiB *kKiB *kKiB *kKiB},
    Unit{"kB", 1000},
    Unit{"KB", 1000},
    Unit{"MB", std::uint64_t{1000} * 1000},
    Unit{"GB", std::uint64_t{1000} * 1000 * 1000},
    Unit{"TB", std::uint64_t{1000} * 1000 * 1000 * 1000},
};

constexpr std::array kSizeFormatUnits{
    Unit{"TiB", kKiB *kKiB *kKiB *kKiB},
    Unit{"GiB", kKiB *kKiB *kKiB},
    Unit{"MiB", kKiB *kKiB},
    Unit{"KiB", kKiB},
};

bool isDigit(char c)
{
    return c >= '0' && c <= '9';
}
bool isSpace(char c)
{
    return c == ' ' || c == '\t';
}

Error invalid(std::string_view kind, std::string_view text, std::string_view why)
{
    return Error{EINVAL,
                 "invalid " + std::string(kind) + " '" + std::string(text) + "': " + std::string(why)};
}

// Reads a run of digits; nullopt on overflow of uint64.
std::optional<std::uint64_t> readNumber(std::string_view text, std::size_t &pos)
{
    std::uint64_t value = 0;
    while (pos < text.size() && isDigit(text[pos])) {
        const auto digit = static_cast<std::uint64_t>(text[pos] - '0');
        if (value > (std::numeric_limits<std::uint64_t>::max() - digit) / 10) {
            return std::nullopt;
        }
        value = value * 10 + digit;
        ++pos;
    }
    return value;
}

std::string_view readUnit(std::string_view text, std::size_t &pos)
{
    const std::size_t start = pos;
    while (pos < text.size() && !isDigit(text[pos]) && !isSpace(text[pos]) && text[pos] != '.' &&
           text[pos] != '-' && text[pos] != '+') {
        ++pos;
    }
    return text.substr(start, pos - start);
}

std::string_view trim(std::string_view text)
{
    while (!text.empty() && isSpace(text.front())) {
        text.remove_prefix(1);
    }
    while (!text.empty() && isSpace(text.back())) {
        text.remove_suffix(1);
    }
    return text;
}

char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Optimal string alignment distance (Levenshtein plus adjacent
// transpositions): "lsiten" is one slip away from "listen", not two.
std::size_t editDistance(std::string_view a, std::string_view b)
{
    const std::size_t n = a.size();
    const std::size_t m = b.size();
    std::vector<std::size_t> d((n + 1) * (m + 1));
    auto at = [&](std::size_t i, std::size_t j) -> std::size_t & {
        return d[i * (m + 1) + j];
    };
    for (std::size_t i = 0; i <= n; ++i) {
        at(i, 0) = i;
    }
    for (std::size_t j = 0; j <= m; ++j) {
        at(0, j) = j;
    }
    for (std::size_t i = 1; i <= n; ++i) {
        for (std::size_t j = 1; j <= m; ++j) {
            const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
            at(i, j) = std::min({at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost});
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1])) {
                at(i, j) = std::min(at(i, j), at(i - 2, j - 2) + 1);
            }
        }
    }
    return at(n, m);
}

} // namespace

Result<Duration> parseDuration(std::string_view text)
{
    const std::string_view s = trim(text);
    if (s.empty()) {
        return Error{EINVAL,
                     "invalid duration '" + std::string(text) + "': empty; write e.g. '30s' or '500ms'"};
    }
    if (s == "infinity") {
        return Duration::max();
    }
    if (s.front() == '-') {
        return invalid("duration", text, "must not be negative");
    }
    if (s.find('\0') != std::string_view::npos) {
        return invalid("duration", text, "contains a NUL byte");
    }

    // Duration::max() means "infinity", so a finite value must stay below it.
    const auto limit = static_cast<std::uint64_t>(Duration::max().count());
    std::uint64_t total = 0;
    std::size_t pos = 0;
    while (pos < s.size()) {
        while (pos < s.size() && isSpace(s[pos])) {
            ++pos;
        }
        if (pos >= s.size() || !isDigit(s[pos])) {
            return invalid("duration", text, "expected a number at '" + std::string(s.substr(pos)) + "'");
        }
        const auto number = readNumber(s, pos);
        if (!number) {
            return invalid("duration", text, "too large");
        }
        if (pos < s.size() && s[pos] == '.') {
            return invalid("duration", text,
                           "fractions are not supported; use a smaller unit, e.g. '1500ms'");
        }
        while (pos < s.size() && isSpace(s[pos])) {
            ++pos;
        }
        const std::string_view unit = readUnit(s, pos);
        if (unit.empty()) {
            return invalid("duration", text,
                           "missing unit; add one, e.g. '" + std::to_string(*number) + "s' or '" +
                               std::to_string(*number) + "ms' (units: us, ms, s, m, h, d)");
        }
        const auto *found = std::find_if(kDurationUnits.begin(), kDurationUnits.end(),
                                         [&](const Unit &u) { return u.name == unit; });
        if (found == kDurationUnits.end()) {
            return invalid("duration", text,
                           "unknown unit '" + std::string(unit) + "' (units: us, ms, s, m, h, d)");
        }
        if (*number > (limit - 1) / found->factor || total > limit - 1 - *number * found->factor) {
            return invalid("duration", text, "too large");
        }
        total += *number * found->factor;
    }
    return Duration(static_cast<Duration::rep>(total));
}

std::string formatDuration(Duration d)
{
    if (d == Duration::max()) {
        return "infinity";
    }
    if (d.count() == 0) {
        return "0s";
    }
    if (d.count() < 0) {
        // Negation of min() overflows; nothing produces it, but do not crash.
        if (d == Duration::min()) {
            return "-" + std::to_string(static_cast<std::uint64_t>(-(d.count() + 1)) + 1) + "us";
        }
        return "-" + formatDuration(-d);
    }
    auto rest = static_cast<std::uint64_t>(d.count());
    std::string out;
    for (const Unit &unit : kDurationFormatUnits) {
        if (rest >= unit.factor) {
            out += std::to_string(rest / unit.factor);
            out += unit.name;
            rest %= unit.factor;
        }
    }
    return out;
}

Result<std::uint64_t> parseSize(std::string_view text)
{
    const std::string_view s = trim(text);
    if (s.empty()) {
        return Error{EINVAL, "invalid size '" + std::string(text) + "': empty; write e.g. '64KiB' or '4096'"};
    }
    if (s.front() == '-') {
        return invalid("size", text, "must not be negative");
    }
    if (!isDigit(s.front())) {
        return invalid("size", text, "expected a number, e.g. '64KiB'");
    }
    std::size_t pos = 0;
    const auto number = readNumber(s, pos);
    if (!number) {
        return invalid("size", text, "too large");
    }
    if (pos < s.size() && s[pos] == '.') {
        return invalid("size", text, "fractions are not supported; use a smaller unit, e.g. '1536KiB'");
    }
    while (pos < s.size() && isSpace(s[pos])) {
        ++pos;
    }
    const std::string_view unit = s.substr(pos);
    const auto *found =
        std::find_if(kSizeUnits.begin(), kSizeUnits.end(), [&](const Unit &u) { return u.name == unit; });
    if (found == kSizeUnits.end()) {
        return invalid("size", text,
                       "unknown unit '" + std::string(unit) +
                           "' (units: B, K/KiB, M/MiB, G/GiB, T/TiB for powers of 1024; kB, MB, GB, TB for "
                           "powers of 1000)");
    }
    if (*number > std::numeric_limits<std::uint64_t>::max() / found->factor) {
        return invalid("size", text, "too large");
    }
    return *number * found->factor;
}

std::string formatSize(std::uint64_t bytes)
{
    for (const Unit &unit : kSizeFormatUnits) {
        if (bytes != 0 && bytes % unit.factor == 0) {
            return std::to_string(bytes / unit.factor) + std::string(unit.name);
        }
    }
    return std::to_string(bytes);
}

std::string closestMatch(std::string_view word, const std::vector<std::string_view> &candidates)
{
    // Beyond about a third of the word, a "suggestion" is a different word.
    const std::size_t threshold = std::max<std::size_t>(1, word.size() / 3);
    std::string_view best;
    std::size_t bestDistance = threshold + 1;
    for (std::string_view candidate : candidates) {
        const std::size_t distance = editDistance(word, candidate);
        if (distance < bestDistance) {
            bestDistance = distance;
            best = candidate;
        }
    }
    return std::string(best);
}

} // namespace fdsup
