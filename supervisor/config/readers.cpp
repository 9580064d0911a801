// The loader's typed readers: each turns one TOML value into a model value, or reports why it cannot.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/units.hpp"
#include "common/users.hpp"
#include "config/loader.hpp"

namespace fdsup::config::detail {

std::string squote(std::string_view s)
{
    return "'" + std::string(s) + "'";
}

std::string_view typeName(toml::node_type type)
{
    switch (type) {
    case toml::node_type::none:
        return "nothing";
    case toml::node_type::table:
        return "a table";
    case toml::node_type::array:
        return "an array";
    case toml::node_type::string:
        return "a string";
    case toml::node_type::integer:
        return "an integer";
    case toml::node_type::floating_point:
        return "a float";
    case toml::node_type::boolean:
        return "a boolean";
    case toml::node_type::date:
        return "a date";
    case toml::node_type::time:
        return "a time";
    case toml::node_type::date_time:
        return "a date-time";
    }
    return "something else";
}

std::string joined(const std::vector<std::string_view> &words)
{
    std::string out;
    for (const auto &word : words) {
        if (!out.empty()) {
            out += ", ";
        }
        out += word;
    }
    return out;
}

std::string didYouMean(std::string_view word, const std::vector<std::string_view> &candidates)
{
    const std::string match = closestMatch(word, candidates);
    return match.empty() ? std::string() : "; did you mean " + squote(match) + "?";
}

std::string nodeText(const toml::node &node)
{
    if (const auto *s = node.as_string()) {
        return s->get();
    }
    return {};
}

void Loader::walk(const toml::table &table, const std::string &tableName, const Location &tableAt,
                  const std::vector<KeyHandler> &handlers)
{
    std::vector<Entry> entries;
    for (auto &&[key, value] : table) {
        entries.push_back(Entry{key.str(), locate(key.source(), tableAt), {}, &value});
        entries.back().valueAt = locate(value.source(), entries.back().keyAt);
    }
    std::stable_sort(entries.begin(), entries.end(), [](const Entry &a, const Entry &b) {
        return std::pair(a.keyAt.line, a.keyAt.column) < std::pair(b.keyAt.line, b.keyAt.column);
    });
    std::vector<std::string_view> known;
    known.reserve(handlers.size());
    for (const auto &handler : handlers) {
        known.push_back(handler.key);
    }
    if (catalogue_) {
        catalogue_->push_back(TableKeys{tableName, {known.begin(), known.end()}});
    }
    for (const auto &entry : entries) {
        auto it = std::find_if(handlers.begin(), handlers.end(),
                               [&](const KeyHandler &h) { return h.key == entry.key; });
        if (it == handlers.end()) {
            error(entry.keyAt,
                  "unknown key " + squote(entry.key) + " " + tableName + didYouMean(entry.key, known));
            continue;
        }
        it->handle(entry);
    }
}

std::optional<bool> Loader::getBool(const Entry &e)
{
    if (const auto *b = e.value->as_boolean()) {
        return b->get();
    }
    wrongType(e, "a boolean (true or false)");
    return std::nullopt;
}

std::optional<std::string> Loader::getString(const Entry &e)
{
    const auto *s = e.value->as_string();
    if (s == nullptr) {
        wrongType(e, "a string");
        return std::nullopt;
    }
    // Every string ends up in a C API (paths, argv, environ, NSS).
    if (s->get().find('\0') != std::string::npos) {
        error(e.valueAt, squote(e.key) + " must not contain a NUL character");
        return std::nullopt;
    }
    if (s->get().empty()) {
        error(e.valueAt, squote(e.key) + " must not be empty");
        return std::nullopt;
    }
    return s->get();
}

std::optional<std::int64_t> Loader::getInt(const Entry &e, std::int64_t min, std::int64_t max)
{
    const auto *i = e.value->as_integer();
    if (i == nullptr) {
        wrongType(e, "an integer");
        return std::nullopt;
    }
    const std::int64_t value = i->get();
    if (value < min || value > max) {
        // A bound that is only the C type's limit is not worth mentioning
        // when the other one was crossed.
        const bool typeLimit = max == std::numeric_limits<std::int64_t>::max() || max == kMaxInt ||
                               max == kMaxU32 || max == kMaxU32 - 1;
        if (typeLimit && value < min) {
            error(e.valueAt, squote(e.key) + " must be at least " + std::to_string(min) + ", not " +
                                 std::to_string(value));
        } else if (typeLimit) {
            error(e.valueAt, squote(e.key) + " must be at most " + std::to_string(max) + ", not " +
                                 std::to_string(value));
        } else {
            error(e.valueAt, squote(e.key) + " must be between " + std::to_string(min) + " and " +
                                 std::to_string(max) + ", not " + std::to_string(value));
        }
        return std::nullopt;
    }
    return value;
}

std::optional<std::vector<std::pair<std::string, Location>>> Loader::getStringArray(const Entry &e)
{
    const auto *array = e.value->as_array();
    if (array == nullptr) {
        wrongType(e, "an array of strings");
        return std::nullopt;
    }
    std::vector<std::pair<std::string, Location>> out;
    bool ok = true;
    for (const auto &element : *array) {
        const Location at = locate(element.source(), e.valueAt);
        const auto *s = element.as_string();
        if (s == nullptr) {
            error(at, squote(e.key) + " must be an array of strings, but an element is " +
                          std::string(typeName(element.type())));
            ok = false;
        } else if (s->get().empty()) {
            error(at, squote(e.key) + " must not contain an empty string");
            ok = false;
        } else if (s->get().find('\0') != std::string::npos) {
            error(at, squote(e.key) + " must not contain a NUL character");
            ok = false;
        } else {
            out.emplace_back(s->get(), at);
        }
    }
    if (!ok) {
        return std::nullopt;
    }
    return out;
}

std::optional<Duration> Loader::getDuration(const Entry &e)
{
    const auto *s = e.value->as_string();
    if (s == nullptr) {
        wrongType(e, "a duration string such as \"30s\"");
        return std::nullopt;
    }
    auto parsed = parseDuration(s->get());
    if (!parsed) {
        error(e.valueAt, squote(e.key) + ": " + parsed.error().message);
        return std::nullopt;
    }
    return *parsed;
}

// Socket options the kernel takes in whole seconds (an int).
std::optional<std::chrono::seconds> Loader::getSeconds(const Entry &e, std::int64_t min, std::int64_t max)
{
    auto d = getDuration(e);
    if (!d) {
        return std::nullopt;
    }
    const std::string text = nodeText(*e.value);
    if (*d == Duration::max() || d->count() % 1000000 != 0) {
        error(e.valueAt, squote(e.key) + " must be a whole number of seconds, not " + squote(text));
        return std::nullopt;
    }
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(*d);
    if (seconds.count() < min || seconds.count() > max) {
        error(e.valueAt, squote(e.key) + " must be between " + std::to_string(min) + "s and " +
                             std::to_string(max) + "s, not " + squote(text));
        return std::nullopt;
    }
    return seconds;
}

std::optional<std::uint64_t> Loader::getSize(const Entry &e, std::uint64_t min, std::uint64_t max)
{
    std::uint64_t value = 0;
    if (const auto *i = e.value->as_integer()) {
        if (i->get() < 0) {
            error(e.valueAt, squote(e.key) + " must not be negative, not " + std::to_string(i->get()));
            return std::nullopt;
        }
        value = static_cast<std::uint64_t>(i->get());
    } else if (const auto *s = e.value->as_string()) {
        auto parsed = parseSize(s->get());
        if (!parsed) {
            error(e.valueAt, squote(e.key) + ": " + parsed.error().message);
            return std::nullopt;
        }
        value = *parsed;
    } else {
        wrongType(e, "a size such as \"64KiB\" or a number of bytes");
        return std::nullopt;
    }
    if (value < min || value > max) {
        error(e.valueAt, squote(e.key) + " must be between " + formatSize(min) + " and " + formatSize(max) +
                             ", not " + formatSize(value));
        return std::nullopt;
    }
    return value;
}

// File modes: "0660" or 0o660. A decimal integer is refused because 660
// written in decimal is almost certainly a forgotten 0o, not mode 01224.
std::optional<mode_t> Loader::getOctal(const Entry &e, mode_t max)
{
    std::uint64_t value = 0;
    if (const auto *i = e.value->as_integer()) {
        const bool octal = (i->flags() & toml::value_flags::format_as_octal) != toml::value_flags::none;
        if (!octal && i->get() != 0) {
            error(e.valueAt, squote(e.key) + " must be written in octal, as \"0" + std::to_string(i->get()) +
                                 "\" or 0o" + std::to_string(i->get()) + ", not as the decimal " +
                                 std::to_string(i->get()));
            return std::nullopt;
        }
        if (i->get() < 0) {
            error(e.valueAt, squote(e.key) + " must not be negative");
            return std::nullopt;
        }
        value = static_cast<std::uint64_t>(i->get());
    } else if (const auto *s = e.value->as_string()) {
        const std::string &text = s->get();
        const bool digits =
            !text.empty() && text.size() <= 5 &&
            std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '7'; });
        if (!digits) {
            error(e.valueAt, squote(e.key) + " must be an octal mode such as \"0660\", not " + squote(text));
            return std::nullopt;
        }
        value = std::stoull(text, nullptr, 8);
    } else {
        wrongType(e, "an octal mode such as \"0660\" or 0o660");
        return std::nullopt;
    }
    if (value > max) {
        char buffer[96];
        (void)std::snprintf(buffer, sizeof buffer, "must be at most 0%o, not 0%llo",
                            static_cast<unsigned>(max), static_cast<unsigned long long>(value));
        error(e.valueAt, squote(e.key) + " " + buffer);
        return std::nullopt;
    }
    return static_cast<mode_t>(value);
}

std::optional<int> Loader::getSignal(const Entry &e)
{
    if (e.value->as_string() == nullptr) {
        wrongType(e, "a signal name such as \"SIGTERM\"");
        return std::nullopt;
    }
    auto text = getString(e);
    if (!text) {
        return std::nullopt;
    }
    const int sig = signalFromName(*text);
    if (sig < 0) {
        error(e.valueAt,
              squote(e.key) + ": unknown signal " + squote(*text) + didYouMean(*text, signalNames()));
        return std::nullopt;
    }
    return sig;
}

// Relative paths in a file are relative to that file's directory, never to
// fdsupd's working directory, so a configuration means the same thing
// wherever fdsupd is started from.
std::string Loader::resolvePath(const std::string &path, const FileContext &file) const
{
    if (path.starts_with('/')) {
        return std::filesystem::path(path).lexically_normal().string();
    }
    return (file.absoluteDir / path).lexically_normal().string();
}

// parseAddress() wants absolute unix paths; a relative one in the file is
// made absolute first, by the same rule as every other path.
std::string Loader::resolveUnixAddress(const std::string &text, const FileContext &file) const
{
    for (std::string_view scheme : {"unix:", "unix-dgram:", "unix-seqpacket:"}) {
        if (!text.starts_with(scheme)) {
            continue;
        }
        const std::string rest = text.substr(scheme.size());
        if (rest.empty() || rest.starts_with('/') || rest.starts_with('@')) {
            return text;
        }
        return std::string(scheme) + resolvePath(rest, file);
    }
    return text;
}

std::optional<std::uint32_t> Loader::resolveId(std::string_view key, const std::string &name,
                                               const Location &at, bool group)
{
    // A numeric id needs no entry; ESRCH is "no such entry", anything else
    // is NSS failing, which must not read as an unknown name.
    const Result<std::uint32_t> id = group ? lookUpGroup(name) : lookUpUid(name);
    if (id) {
        return *id;
    }
    if (id.error().code == ESRCH) {
        error(at, squote(key) + ": unknown " + (group ? "group " : "user ") + squote(name));
    } else {
        error(at, squote(key) + ": cannot look up " + squote(name) + ": " + errnoText(id.error().code));
    }
    return std::nullopt;
}

void Loader::checkUsers(const Entry &e, std::vector<std::string> &out, bool groups)
{
    auto names = getStringArray(e);
    if (!names) {
        return;
    }
    for (const auto &[name, at] : *names) {
        if (resolveId(e.key, name, at, groups)) {
            out.push_back(name);
        }
    }
}

} // namespace fdsup::config::detail
