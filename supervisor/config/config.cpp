// Loads fdsupd.toml and everything it includes into the model, collecting every problem.
#include "config/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <toml++/toml.h>

#include "common/result.hpp"
#include "common/users.hpp"
#include "config/names.hpp"
#include "core/fd.hpp"
#include "fdsup_build_config.h"

namespace fdsup::config {

std::string Location::str() const
{
    if (line == 0) {
        return file;
    }
    return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

std::string Diagnostic::str() const
{
    return where.str() + ": " + message;
}

const SocketConfig *Config::findSocket(std::string_view name) const
{
    for (const auto &socket : sockets) {
        if (socket.name == name) {
            return &socket;
        }
    }
    return nullptr;
}

const ServiceConfig *Config::findService(std::string_view name) const
{
    for (const auto &service : services) {
        if (service.name == name) {
            return &service;
        }
    }
    return nullptr;
}

std::string_view resourceLimitName(int resource)
{
    const auto *entry = names::limitByResource(resource);
    return entry != nullptr ? entry->name : std::string_view{};
}

namespace {

// Limits of the language itself; each is documented in docs/config/.
constexpr std::size_t kMaxFileSize = std::size_t{4} * 1024 * 1024;
constexpr std::size_t kMaxNameLength = 64;
constexpr std::int64_t kMaxInstances = 1024;
constexpr std::int64_t kMaxRolloutBatch = 1024;
constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMaxStateSize = 16 * kKiB * kKiB;
constexpr std::uint64_t kMinControlRequestSize = 4 * kKiB;
constexpr std::uint64_t kMaxControlRequestSize = 64 * kKiB * kKiB;
constexpr std::size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;
constexpr std::int64_t kMaxU32 = std::numeric_limits<std::uint32_t>::max();
constexpr std::int64_t kMaxInt = std::numeric_limits<int>::max();

// Set by fdsupd for every worker; a value in the config could only be overwritten.
constexpr std::array<std::string_view, 4> kReservedEnvironment{"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES",
                                                               "NOTIFY_SOCKET"};

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

// A name usable in LISTEN_FDNAMES (no ':'), in fdsupctl arguments and as a
// bare TOML key, so renderConfig() never has to quote it.
bool validName(std::string_view name)
{
    if (name.empty() || name.size() > kMaxNameLength) {
        return false;
    }
    return std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_';
    });
}

bool validEnvironmentName(std::string_view name)
{
    return !name.empty() && name.find('=') == std::string_view::npos &&
           name.find('\0') == std::string_view::npos;
}

// Reads a whole file with plain system calls so the error is an errno.
int readWholeFile(const std::string &path, std::string &out)
{
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd) {
        return errno;
    }
    std::string text;
    char buffer[16384];
    int err = 0;
    for (;;) {
        const ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            err = errno;
            break;
        }
        if (n == 0) {
            break;
        }
        text.append(buffer, static_cast<std::size_t>(n));
        if (text.size() > kMaxFileSize) {
            err = EFBIG;
            break;
        }
    }
    if (err == 0) {
        out = std::move(text);
    }
    return err;
}

bool hasGlobMagic(std::string_view s)
{
    return s.find_first_of("*?[") != std::string_view::npos;
}

std::string escapeGlob(std::string_view s)
{
    std::string out;
    for (char c : s) {
        if (c == '*' || c == '?' || c == '[' || c == '\\') {
            out += '\\';
        }
        out += c;
    }
    return out;
}

std::string nodeText(const toml::node &node)
{
    if (const auto *s = node.as_string()) {
        return s->get();
    }
    return {};
}

// One key = value of a table, with where the key and the value were written.
struct Entry {
    std::string_view key;
    Location keyAt;
    Location valueAt;
    const toml::node *value = nullptr;
};

using Handler = std::function<void(const Entry &)>;
struct KeyHandler {
    std::string_view key;
    Handler handle;
};

// What the loader knows about the file being read.
struct FileContext {
    std::string display;               // name used in messages
    std::filesystem::path absoluteDir; // for resolving relative paths
    bool isMain = false;
};

struct SocketDefinition {
    SocketConfig config;
    std::vector<Location> listenAt;
    bool complete = false; // has a valid listen; cross checks skip it otherwise
};

struct ServiceDefinition {
    ServiceConfig config;
    std::vector<Location> socketsAt;
    Location handoffAt;
    Location activationSocketAt;
    std::optional<Location> activationAccessAt; // activation_users or activation_groups
};

class Loader {
public:
    LoadResult loadMain(const std::string &display, const std::string &text,
                        const std::filesystem::path &dir);
    LoadResult loadMainFile(const std::string &path);

private:
    void error(const Location &where, std::string message)
    {
        diagnostics_.push_back(Diagnostic{where, std::move(message)});
    }

    Location locate(const toml::source_region &region, const Location &fallback) const
    {
        if (!region.path || region.begin.line == 0) {
            return fallback;
        }
        return Location{*region.path, region.begin.line, region.begin.column};
    }

    void loadDocument(const std::string &text, const FileContext &file);
    void loadIncludes(const Entry &entry, const FileContext &file);
    void loadIncluded(const std::filesystem::path &path, const std::string &display,
                      const Location &includedAt);

    // Visits every entry of table in the order written; keys without a
    // handler are reported as unknown, with a suggestion.
    void walk(const toml::table &table, const std::string &tableName, const Location &tableAt,
              const std::vector<KeyHandler> &handlers);

    void wrongType(const Entry &e, std::string_view expected)
    {
        error(e.valueAt, squote(e.key) + " must be " + std::string(expected) + ", not " +
                             std::string(typeName(e.value->type())));
    }

    std::optional<bool> getBool(const Entry &e);
    std::optional<std::string> getString(const Entry &e);
    std::optional<std::int64_t> getInt(const Entry &e, std::int64_t min, std::int64_t max);
    std::optional<std::vector<std::pair<std::string, Location>>> getStringArray(const Entry &e);
    std::optional<Duration> getDuration(const Entry &e);
    std::optional<std::chrono::seconds> getSeconds(const Entry &e, std::int64_t min, std::int64_t max);
    std::optional<std::uint64_t> getSize(const Entry &e, std::uint64_t min, std::uint64_t max);
    std::optional<mode_t> getOctal(const Entry &e, mode_t max);
    std::optional<int> getSignal(const Entry &e);
    std::string resolvePath(const std::string &path, const FileContext &file) const;
    std::string resolveUnixAddress(const std::string &text, const FileContext &file) const;

    template <typename E, std::size_t N>
    std::optional<E> getEnum(const Entry &e, const names::EnumTable<E, N> &table)
    {
        auto text = getString(e);
        if (!text) {
            return std::nullopt;
        }
        std::vector<std::string_view> allowed;
        for (const auto &[name, value] : table) {
            if (name == *text) {
                return value;
            }
            allowed.push_back(name);
        }
        badEnum(e, *text, allowed);
        return std::nullopt;
    }
    void badEnum(const Entry &e, const std::string &text, const std::vector<std::string_view> &allowed)
    {
        error(e.valueAt, squote(e.key) + ": unknown value " + squote(text) + " (allowed: " + joined(allowed) +
                             ")" + didYouMean(text, allowed));
    }

    void loadSupervisor(const toml::table &table, const Location &at, const FileContext &file);
    void loadSupervisorLimits(const toml::table &table, const Location &at);
    void loadSocket(const std::string &name, const toml::table &table, const Location &at,
                    const FileContext &file);
    void loadService(const std::string &name, const toml::table &table, const Location &at,
                     const FileContext &file);
    void loadServiceLimits(const std::string &tableName, const toml::table &table, const Location &at,
                           ServiceConfig &service);
    std::optional<std::uint64_t> getLimitValue(const Entry &e, names::LimitKind kind);
    // Looks a user (or group) name up for key; reports at `at` why it cannot.
    std::optional<std::uint32_t> resolveId(std::string_view key, const std::string &name, const Location &at,
                                           bool group);
    void checkUsers(const Entry &e, std::vector<std::string> &out, bool groups);

    void crossCheck();
    LoadResult finish();

    std::vector<Diagnostic> diagnostics_;
    std::vector<std::string> files_;
    std::map<std::string, Location> includedAt_;             // canonical path -> the include that read it
    std::vector<std::pair<std::string, std::string>> chain_; // canonical, display: files being read
    bool parseFailed_ = false;

    SupervisorConfig supervisor_;
    std::vector<SocketDefinition> sockets_;
    std::vector<ServiceDefinition> services_;
};

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

void Loader::loadSupervisor(const toml::table &table, const Location &at, const FileContext &file)
{
    supervisor_.where = at;
    auto &s = supervisor_;
    walk(table, "in [supervisor]", at,
         {
             {"control",
              [&](const Entry &e) {
                  if (auto v = getString(e)) {
                      std::string path = resolvePath(*v, file);
                      if (path.size() > kMaxUnixPath) {
                          error(e.valueAt, "'control': socket path " + squote(path) + " is too long (" +
                                               std::to_string(path.size()) + " bytes, at most " +
                                               std::to_string(kMaxUnixPath) + ")");
                      } else {
                          s.control = std::move(path);
                      }
                  }
              }},
             {"control_mode",
              [&](const Entry &e) {
                  if (auto v = getOctal(e, 0777)) {
                      s.controlMode = *v;
                  }
              }},
             {"allow_users",
              [&](const Entry &e) {
                  checkUsers(e, s.allowUsers, false);
              }},
             {"allow_groups",
              [&](const Entry &e) {
                  checkUsers(e, s.allowGroups, true);
              }},
             {"log_level",
              [&](const Entry &e) {
                  auto v = getString(e);
                  if (!v) {
                      return;
                  }
                  std::vector<std::string_view> allowed(names::kLogLevels.begin(), names::kLogLevels.end());
                  if (std::find(allowed.begin(), allowed.end(), *v) == allowed.end()) {
                      badEnum(e, *v, allowed);
                  } else {
                      s.logLevel = *v;
                  }
              }},
             {"log_target",
              [&](const Entry &e) {
                  if (auto v = getEnum(e, names::kLogTarget)) {
                      s.logTarget = *v;
                  }
              }},
             {"limits",
              [&](const Entry &e) {
                  if (const auto *t = e.value->as_table()) {
                      loadSupervisorLimits(*t, e.valueAt);
                  } else {
                      wrongType(e, "a table");
                  }
              }},
         });
}

void Loader::loadSupervisorLimits(const toml::table &table, const Location &at)
{
    auto &l = supervisor_.limits;
    walk(table, "in [supervisor.limits]", at,
         {
             {"nofile",
              [&](const Entry &e) {
                  if (const auto *s = e.value->as_string(); s != nullptr && s->get() == "max") {
                      l.nofile = 0;
                  } else if (e.value->is_string()) {
                      error(e.valueAt, "'nofile' must be a number of files or \"max\", not " +
                                           squote(nodeText(*e.value)));
                  } else if (e.value->is_integer()) {
                      if (auto v = getInt(e, 1, std::numeric_limits<std::int64_t>::max())) {
                          l.nofile = static_cast<std::uint64_t>(*v);
                      }
                  } else {
                      wrongType(e, "an integer or \"max\"");
                  }
              }},
             {"held_connections",
              [&](const Entry &e) {
                  if (auto v = getInt(e, 1, kMaxU32)) {
                      l.heldConnections = static_cast<std::uint32_t>(*v);
                  }
              }},
             {"held_connections_per_service",
              [&](const Entry &e) {
                  if (auto v = getInt(e, 1, kMaxU32)) {
                      l.heldConnectionsPerService = static_cast<std::uint32_t>(*v);
                  }
              }},
             {"state_size",
              [&](const Entry &e) {
                  if (auto v = getSize(e, 0, kMaxStateSize)) {
                      l.stateSize = *v;
                  }
              }},
             {"control_request_size",
              [&](const Entry &e) {
                  if (auto v = getSize(e, kMinControlRequestSize, kMaxControlRequestSize)) {
                      l.controlRequestSize = *v;
                  }
              }},
             {"control_clients",
              [&](const Entry &e) {
                  if (auto v = getInt(e, 1, kMaxU32)) {
                      l.controlClients = static_cast<std::uint32_t>(*v);
                  }
              }},
         });
}

void Loader::loadSocket(const std::string &name, const toml::table &table, const Location &at,
                        const FileContext &file)
{
    SocketDefinition def;
    def.config.name = name;
    def.config.where = at;
    auto &o = def.config.options;
    bool listenSeen = false;
    bool listenOk = true;
    std::map<std::string, Location, std::less<>> keyAt;

    auto addListen = [&](const std::string &text, const Location &where, const Entry &e) {
        if (text.find('\0') != std::string::npos) {
            error(where, "'listen' must not contain a NUL character");
            listenOk = false;
            return;
        }
        auto address = parseAddress(resolveUnixAddress(text, file));
        if (!address) {
            error(where, squote(e.key) + ": " + address.error().message);
            listenOk = false;
            return;
        }
        def.config.listen.push_back(std::move(*address));
        def.listenAt.push_back(where);
    };
    auto flag = [&](std::optional<bool> &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getBool(e)) {
                field = *v;
            }
        };
    };
    auto bufferSize = [&](std::optional<int> &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getSize(e, 0, static_cast<std::uint64_t>(kMaxInt))) {
                field = static_cast<int>(*v);
            }
        };
    };

    std::vector<KeyHandler> handlers{
        {"listen",
         [&](const Entry &e) {
             listenSeen = true;
             if (const auto *s = e.value->as_string()) {
                 addListen(s->get(), e.valueAt, e);
             } else if (const auto *array = e.value->as_array()) {
                 if (array->empty()) {
                     error(e.valueAt, "'listen' must not be an empty array");
                     listenOk = false;
                 }
                 for (const auto &element : *array) {
                     const Location where = locate(element.source(), e.valueAt);
                     if (const auto *text = element.as_string()) {
                         addListen(text->get(), where, e);
                     } else {
                         error(where, "'listen' must be an array of strings, but an element is " +
                                          std::string(typeName(element.type())));
                         listenOk = false;
                     }
                 }
             } else {
                 wrongType(e, "an address string or an array of them");
                 listenOk = false;
             }
         }},
        // Ranges that depend on the transport or the kernel are checked by
        // validateSocketOptions() below; here only what the type can hold.
        {"backlog",
         [&](const Entry &e) {
             if (auto v = getInt(e, 0, kMaxInt)) {
                 o.backlog = static_cast<int>(*v);
             }
         }},
        {"reuse_address", flag(o.reuseAddress)},
        {"reuse_port", flag(o.reusePort)},
        {"ipv6_only", flag(o.ipv6Only)},
        {"free_bind", flag(o.freeBind)},
        {"transparent", flag(o.transparent)},
        {"defer_accept",
         [&](const Entry &e) {
             if (auto v = getSeconds(e, 0, kMaxInt)) {
                 o.deferAccept = *v;
             }
         }},
        {"fastopen",
         [&](const Entry &e) {
             if (auto v = getInt(e, 0, kMaxInt)) {
                 o.fastOpen = static_cast<int>(*v);
             }
         }},
        {"keepalive", flag(o.keepAlive)},
        {"keepalive_time",
         [&](const Entry &e) {
             if (auto v = getSeconds(e, 0, kMaxInt)) {
                 o.keepAliveTime = *v;
             }
         }},
        {"keepalive_interval",
         [&](const Entry &e) {
             if (auto v = getSeconds(e, 0, kMaxInt)) {
                 o.keepAliveInterval = *v;
             }
         }},
        {"keepalive_count",
         [&](const Entry &e) {
             if (auto v = getInt(e, 0, kMaxInt)) {
                 o.keepAliveCount = static_cast<int>(*v);
             }
         }},
        {"nodelay", flag(o.noDelay)},
        {"send_buffer", bufferSize(o.sendBuffer)},
        {"receive_buffer", bufferSize(o.receiveBuffer)},
        {"bind_to_device",
         [&](const Entry &e) {
             if (auto v = getString(e)) {
                 o.bindToDevice = *v;
             }
         }},
        {"mode",
         [&](const Entry &e) {
             if (auto v = getOctal(e, 0777)) {
                 o.mode = *v;
             }
         }},
        {"owner",
         [&](const Entry &e) {
             if (e.value->is_integer()) {
                 if (auto v = getInt(e, 0, kMaxU32 - 1)) {
                     o.owner = static_cast<uid_t>(*v);
                 }
             } else if (auto v = getString(e)) {
                 if (auto uid = resolveId(e.key, *v, e.valueAt, false)) {
                     o.owner = *uid;
                 }
             }
         }},
        {"group",
         [&](const Entry &e) {
             if (e.value->is_integer()) {
                 if (auto v = getInt(e, 0, kMaxU32 - 1)) {
                     o.group = static_cast<gid_t>(*v);
                 }
             } else if (auto v = getString(e)) {
                 if (auto gid = resolveId(e.key, *v, e.valueAt, true)) {
                     o.group = *gid;
                 }
             }
         }},
        {"remove_stale",
         [&](const Entry &e) {
             if (auto v = getBool(e)) {
                 o.removeStale = *v;
             }
         }},
    };
    // Remember where each key was written so that validateSocketOptions()'s
    // messages, which name the key, can point at it.
    for (auto &handler : handlers) {
        handler.handle = [&keyAt, inner = std::move(handler.handle)](const Entry &e) {
            keyAt.emplace(std::string(e.key), e.keyAt);
            inner(e);
        };
    }
    walk(table, "in [socket." + name + "]", at, handlers);

    if (!listenSeen) {
        error(at, "missing required key 'listen' in [socket." + name + "]");
        listenOk = false;
    }
    std::vector<std::string> seen;
    for (const auto &address : def.config.listen) {
        for (auto &message : validateSocketOptions(address, o)) {
            if (std::find(seen.begin(), seen.end(), message) != seen.end()) {
                continue;
            }
            seen.push_back(message);
            Location where = at;
            // The messages name the offending key first: "'nodelay' applies ...".
            if (message.starts_with('\'')) {
                const auto end = message.find('\'', 1);
                if (end != std::string::npos) {
                    if (auto it = keyAt.find(std::string_view(message).substr(1, end - 1));
                        it != keyAt.end()) {
                        where = it->second;
                    }
                }
            }
            error(where, message);
        }
    }
    def.complete = listenOk;

    for (const auto &other : sockets_) {
        if (other.config.name == name) {
            error(at, "[socket." + name + "] is already defined at " + other.config.where.str());
            return;
        }
    }
    sockets_.push_back(std::move(def));
}

std::optional<std::uint64_t> Loader::getLimitValue(const Entry &e, names::LimitKind kind)
{
    if (const auto *s = e.value->as_string(); s != nullptr && s->get() == "infinity") {
        return RLIM_INFINITY;
    }
    switch (kind) {
    case names::LimitKind::Count:
        if (e.value->is_string()) {
            error(e.valueAt,
                  squote(e.key) + " must be a number or \"infinity\", not " + squote(nodeText(*e.value)));
            return std::nullopt;
        }
        if (!e.value->is_integer()) {
            wrongType(e, "an integer or \"infinity\"");
            return std::nullopt;
        }
        if (auto v = getInt(e, 0, std::numeric_limits<std::int64_t>::max())) {
            return static_cast<std::uint64_t>(*v);
        }
        return std::nullopt;
    case names::LimitKind::Size:
        if (auto v = getSize(e, 0, RLIM_INFINITY - 1)) {
            return *v;
        }
        return std::nullopt;
    case names::LimitKind::Seconds:
    case names::LimitKind::Microseconds: {
        const bool seconds = kind == names::LimitKind::Seconds;
        if (e.value->is_integer()) {
            if (auto v = getInt(e, 0, std::numeric_limits<std::int64_t>::max())) {
                return static_cast<std::uint64_t>(*v);
            }
            return std::nullopt;
        }
        if (!e.value->is_string()) {
            wrongType(e, seconds ? "a duration, a number of seconds or \"infinity\""
                                 : "a duration, a number of microseconds or \"infinity\"");
            return std::nullopt;
        }
        auto d = getDuration(e);
        if (!d) {
            return std::nullopt;
        }
        if (*d == Duration::max()) {
            return RLIM_INFINITY;
        }
        if (seconds && d->count() % 1000000 != 0) {
            error(e.valueAt,
                  squote(e.key) + " must be a whole number of seconds, not " + squote(nodeText(*e.value)));
            return std::nullopt;
        }
        return static_cast<std::uint64_t>(seconds ? d->count() / 1000000 : d->count());
    }
    }
    return std::nullopt;
}

void Loader::loadServiceLimits(const std::string &tableName, const toml::table &table, const Location &at,
                               ServiceConfig &service)
{
    std::vector<KeyHandler> handlers;
    handlers.reserve(names::kLimits.size());
    for (const auto &limit : names::kLimits) {
        handlers.push_back(
            {limit.name, [&, limit](const Entry &e) {
                 ResourceLimit value{limit.resource, 0, 0};
                 if (const auto *t = e.value->as_table()) {
                     std::optional<std::uint64_t> soft;
                     std::optional<std::uint64_t> hard;
                     walk(*t, "in " + squote(e.key) + " of " + tableName, e.valueAt,
                          {
                              {"soft",
                               [&](const Entry &v) {
                                   soft = getLimitValue(v, limit.kind);
                               }},
                              {"hard",
                               [&](const Entry &v) {
                                   hard = getLimitValue(v, limit.kind);
                               }},
                          });
                     const bool hasSoft = t->contains("soft");
                     const bool hasHard = t->contains("hard");
                     if (!hasSoft || !hasHard) {
                         error(e.valueAt, squote(e.key) + " needs both 'soft' and 'hard'");
                         return;
                     }
                     if (!soft || !hard) {
                         return;
                     }
                     if (*soft > *hard) {
                         error(e.valueAt, squote(e.key) + ": the soft limit must not exceed the hard limit");
                         return;
                     }
                     value.soft = *soft;
                     value.hard = *hard;
                 } else if (auto v = getLimitValue(e, limit.kind)) {
                     value.soft = value.hard = *v;
                 } else {
                     return;
                 }
                 service.limits.push_back(value);
             }});
    }
    walk(table, "in " + tableName, at, handlers);
    std::sort(service.limits.begin(), service.limits.end(),
              [](const ResourceLimit &a, const ResourceLimit &b) {
                  return resourceLimitName(a.resource) < resourceLimitName(b.resource);
              });
}

// Splits "python3 -m http.server" into a TOML array for the hint; only
// offered when the string has no quoting that a naive split would get wrong.
std::string commandHint(const std::string &text)
{
    if (text.find_first_of("\"'\\") != std::string::npos) {
        return {};
    }
    std::string out;
    std::size_t i = 0;
    while (i < text.size()) {
        if (text[i] == ' ' || text[i] == '\t') {
            ++i;
            continue;
        }
        const std::size_t end = text.find_first_of(" \t", i);
        const std::string word = text.substr(i, end == std::string::npos ? std::string::npos : end - i);
        out += (out.empty() ? "" : ", ") + std::string("\"") + word + "\"";
        i = end == std::string::npos ? text.size() : end;
    }
    return out.empty() ? out : "; write command = [" + out + "]";
}

void Loader::loadService(const std::string &name, const toml::table &table, const Location &at,
                         const FileContext &file)
{
    ServiceDefinition def;
    auto &s = def.config;
    s.name = name;
    s.where = at;
    const std::string tableName = "[service." + name + "]";
    bool commandSeen = false;
    std::optional<Location> restartDelayMaxAt;

    auto duration = [&](Duration &field) {
        return [&field, this](const Entry &e) {
            if (auto v = getDuration(e)) {
                field = *v;
            }
        };
    };
    auto lookup = [&](std::optional<std::string> &field, bool isGroup) {
        return [&field, isGroup, this](const Entry &e) {
            auto v = getString(e);
            if (v && resolveId(e.key, *v, e.valueAt, isGroup)) {
                field = *v;
            }
        };
    };
    auto environmentName = [&](const std::string &var, const Location &where, std::string_view key) {
        if (!validEnvironmentName(var)) {
            error(where, squote(key) + ": invalid variable name " + squote(var) +
                             " (it must not be empty or contain '=' or NUL)");
            return false;
        }
        if (std::find(kReservedEnvironment.begin(), kReservedEnvironment.end(), var) !=
            kReservedEnvironment.end()) {
            error(where, squote(key) + ": " + var + " is set by fdsupd for every worker");
            return false;
        }
        return true;
    };

    walk(table, "in " + tableName, at,
         {
             {"command",
              [&](const Entry &e) {
                  commandSeen = true;
                  if (const auto *str = e.value->as_string()) {
                      error(e.valueAt, "'command' must be an array of strings (argv), not a string" +
                                           commandHint(str->get()));
                      return;
                  }
                  auto argv = getStringArray(e);
                  if (!argv) {
                      return;
                  }
                  if (argv->empty()) {
                      error(e.valueAt, "'command' must not be empty");
                      return;
                  }
                  for (auto &[arg, where] : *argv) {
                      s.command.push_back(arg);
                  }
                  // A relative program path means "next to this file"; a bare
                  // name is left for the PATH search at spawn.
                  std::string &program = s.command.front();
                  if (program.find('/') != std::string::npos) {
                      program = resolvePath(program, file);
                  }
              }},
             {"environment",
              [&](const Entry &e) {
                  const auto *t = e.value->as_table();
                  if (t == nullptr) {
                      wrongType(e, "a table of strings");
                      return;
                  }
                  for (auto &&[key, value] : *t) {
                      const Location keyWhere = locate(key.source(), e.valueAt);
                      const Location valueWhere = locate(value.source(), keyWhere);
                      const std::string var(key.str());
                      if (!environmentName(var, keyWhere, "environment")) {
                          continue;
                      }
                      const auto *str = value.as_string();
                      if (str == nullptr) {
                          error(valueWhere, "'environment': the value of " + var + " must be a string, not " +
                                                std::string(typeName(value.type())));
                      } else if (str->get().find('\0') != std::string::npos) {
                          error(valueWhere, "'environment': the value of " + var + " must not contain NUL");
                      } else {
                          s.environment[var] = str->get();
                      }
                  }
              }},
             {"pass_environment",
              [&](const Entry &e) {
                  if (auto vars = getStringArray(e)) {
                      for (const auto &[var, where] : *vars) {
                          if (environmentName(var, where, e.key)) {
                              s.passEnvironment.push_back(var);
                          }
                      }
                  }
              }},
             {"working_directory",
              [&](const Entry &e) {
                  if (auto v = getString(e)) {
                      if (!v->starts_with('/')) {
                          error(e.valueAt, "'working_directory' must be an absolute path, not " + squote(*v));
                      } else {
                          std::string dir = std::filesystem::path(*v).lexically_normal().string();
                          // "/srv/app/" and "/srv/app" are the same directory; keep one spelling.
                          if (dir.size() > 1 && dir.ends_with('/')) {
                              dir.pop_back();
                          }
                          s.workingDirectory = std::move(dir);
                      }
                  }
              }},
             {"user", lookup(s.user, false)},
             {"group", lookup(s.group, true)},
             {"supplementary_groups",
              [&](const Entry &e) {
                  checkUsers(e, s.supplementaryGroups, true);
              }},
             {"umask",
              [&](const Entry &e) {
                  if (auto v = getOctal(e, 0777)) {
                      s.umask = *v;
                  }
              }},
             {"limits",
              [&](const Entry &e) {
                  if (const auto *t = e.value->as_table()) {
                      loadServiceLimits("[service." + name + ".limits]", *t, e.valueAt, s);
                  } else {
                      wrongType(e, "a table");
                  }
              }},
             {"no_new_privileges",
              [&](const Entry &e) {
                  if (auto v = getBool(e)) {
                      s.noNewPrivileges = *v;
                  }
              }},
             {"sockets",
              [&](const Entry &e) {
                  auto list = getStringArray(e);
                  if (!list) {
                      return;
                  }
                  for (const auto &[socket, where] : *list) {
                      auto it = std::find(s.sockets.begin(), s.sockets.end(), socket);
                      if (it != s.sockets.end()) {
                          error(where,
                                "'sockets': " + squote(socket) + " is listed twice (first at " +
                                    def.socketsAt[static_cast<std::size_t>(it - s.sockets.begin())].str() +
                                    ")");
                          continue;
                      }
                      s.sockets.push_back(socket);
                      def.socketsAt.push_back(where);
                  }
              }},
             {"instances",
              [&](const Entry &e) {
                  if (auto v = getInt(e, 0, kMaxInstances)) {
                      s.instances = static_cast<std::uint32_t>(*v);
                  }
              }},
             {"activation",
              [&](const Entry &e) {
                  if (auto v = getEnum(e, names::kActivation)) {
                      s.activation = *v;
                  }
              }},
             {"ready",
              [&](const Entry &e) {
                  if (auto v = getEnum(e, names::kReadiness)) {
                      s.ready = *v;
                  }
              }},
             {"restart",
              [&](const Entry &e) {
                  if (auto v = getEnum(e, names::kRestart)) {
                      s.restart = *v;
                  }
              }},
             {"restart_delay", duration(s.restartDelay)},
             {"restart_delay_max",
              [&](const Entry &e) {
                  if (auto v = getDuration(e)) {
                      s.restartDelayMax = *v;
                      restartDelayMaxAt = e.valueAt;
                  }
              }},
             {"start_limit_burst",
              [&](const Entry &e) {
                  if (auto v = getInt(e, 1, kMaxInt)) {
                      s.startLimitBurst = static_cast<std::uint32_t>(*v);
                  }
              }},
             {"start_limit_interval", duration(s.startLimitInterval)},
             {"start_timeout", duration(s.startTimeout)},
             {"ready_timeout", duration(s.readyTimeout)},
             {"drain_timeout", duration(s.drainTimeout)},
             {"handoff_timeout", duration(s.handoffTimeout)},
             {"stop_timeout", duration(s.stopTimeout)},
             {"watchdog_timeout", duration(s.watchdogTimeout)},
             {"stop_signal",
              [&](const Entry &e) {
                  auto sig = getSignal(e);
                  if (sig && *sig == SIGSTOP) {
                      error(e.valueAt, "'stop_signal' cannot be SIGSTOP: a stopped process never exits");
                  } else if (sig) {
                      s.stopSignal = *sig;
                  }
              }},
             {"drain_signal",
              [&](const Entry &e) {
                  auto sig = getSignal(e);
                  if (sig && (*sig == SIGKILL || *sig == SIGSTOP)) {
                      error(e.valueAt, "'drain_signal' cannot be " + signalName(*sig) +
                                           ": a worker must be able to catch it to drain");
                  } else if (sig) {
                      s.drainSignal = *sig;
                  }
              }},
             {"kill_mode",
              [&](const Entry &e) {
                  if (auto v = getEnum(e, names::kKillMode)) {
                      s.killMode = *v;
                  }
              }},
             {"output",
              [&](const Entry &e) {
                  if (auto v = getEnum(e, names::kOutput)) {
                      s.output = *v;
                  }
              }},
             {"handoff",
              [&](const Entry &e) {
                  if (auto v = getBool(e)) {
                      s.handoff = *v;
                      def.handoffAt = e.valueAt;
                  }
              }},
             {"activation_socket",
              [&](const Entry &e) {
                  auto v = getString(e);
                  if (!v) {
                      return;
                  }
                  std::string path = v->starts_with('@') ? *v : resolvePath(*v, file);
                  if (path.size() < 2 && path.starts_with('@')) {
                      error(e.valueAt, "'activation_socket': an abstract socket needs a name after '@'");
                  } else if (path.size() > kMaxUnixPath) {
                      error(e.valueAt, "'activation_socket': socket path " + squote(path) + " is too long (" +
                                           std::to_string(path.size()) + " bytes, at most " +
                                           std::to_string(kMaxUnixPath) + ")");
                  } else {
                      s.activationSocket = std::move(path);
                      def.activationSocketAt = e.valueAt;
                  }
              }},
             {"activation_users",
              [&](const Entry &e) {
                  checkUsers(e, s.activationUsers, false);
                  def.activationAccessAt = e.keyAt;
              }},
             {"activation_groups",
              [&](const Entry &e) {
                  checkUsers(e, s.activationGroups, true);
                  def.activationAccessAt = e.keyAt;
              }},
             {"rollout_batch",
              [&](const Entry &e) {
                  if (auto v = getInt(e, 1, kMaxRolloutBatch)) {
                      s.rolloutBatch = static_cast<std::uint32_t>(*v);
                  }
              }},
             {"rollout_order",
              [&](const Entry &e) {
                  if (auto v = getEnum(e, names::kRolloutOrder)) {
                      s.rolloutOrder = *v;
                  }
              }},
         });

    if (!commandSeen) {
        error(at, "missing required key 'command' in " + tableName);
    }
    if (restartDelayMaxAt) {
        if (s.restartDelayMax < s.restartDelay) {
            error(*restartDelayMaxAt, "'restart_delay_max' (" + formatDuration(s.restartDelayMax) +
                                          ") must not be less than 'restart_delay' (" +
                                          formatDuration(s.restartDelay) + ")");
        }
    } else if (s.restartDelayMax < s.restartDelay) {
        // Only restart_delay was written: a longer first delay than the
        // default cap means "no backoff", not a contradiction.
        s.restartDelayMax = s.restartDelay;
    }

    for (const auto &other : services_) {
        if (other.config.name == name) {
            error(at, tableName + " is already defined at " + other.config.where.str());
            return;
        }
    }
    services_.push_back(std::move(def));
}

void Loader::loadDocument(const std::string &text, const FileContext &file)
{
    files_.push_back(file.display);
    toml::table root;
    try {
        root = toml::parse(text, std::string_view(file.display));
    } catch (const toml::parse_error &e) {
        parseFailed_ = true;
        error(locate(e.source(), Location{file.display, 1, 1}), std::string(e.description()));
        return;
    }
    const Location fileAt{file.display, 1, 1};
    std::optional<Entry> include;

    auto definitions = [&](std::string_view kind) {
        return [&, kind](const Entry &e) {
            const auto *table = e.value->as_table();
            if (table == nullptr) {
                wrongType(e, "a table of [" + std::string(kind) + ".NAME] tables");
                return;
            }
            // Sorted by position so definitions keep the order written.
            std::vector<std::pair<const toml::key *, const toml::node *>> items;
            for (auto &&[key, value] : *table) {
                items.emplace_back(&key, &value);
            }
            std::stable_sort(items.begin(), items.end(), [](const auto &a, const auto &b) {
                const auto &pa = a.first->source().begin;
                const auto &pb = b.first->source().begin;
                return std::pair(pa.line, pa.column) < std::pair(pb.line, pb.column);
            });
            for (const auto &[key, value] : items) {
                const std::string name(key->str());
                const Location keyAt = locate(key->source(), e.valueAt);
                const Location at = locate(value->source(), keyAt);
                if (!validName(name)) {
                    error(keyAt, "invalid " + std::string(kind) + " name " + squote(name) +
                                     ": use letters, digits, '-' and '_' (at most " +
                                     std::to_string(kMaxNameLength) + ")");
                    continue;
                }
                const auto *body = value->as_table();
                if (body == nullptr) {
                    error(at, squote(std::string(kind) + "." + name) + " must be a table, not " +
                                  std::string(typeName(value->type())));
                    continue;
                }
                if (kind == "socket") {
                    loadSocket(name, *body, at, file);
                } else {
                    loadService(name, *body, at, file);
                }
            }
        };
    };

    walk(root, "at the top level", fileAt,
         {
             {"include",
              [&](const Entry &e) {
                  include = e;
              }},
             {"supervisor",
              [&](const Entry &e) {
                  if (!file.isMain) {
                      error(e.keyAt, "[supervisor] is only allowed in the main configuration file, not in an "
                                     "included one");
                  } else if (const auto *t = e.value->as_table()) {
                      loadSupervisor(*t, e.valueAt, file);
                  } else {
                      wrongType(e, "a table");
                  }
              }},
             {"socket", definitions("socket")},
             {"service", definitions("service")},
         });

    // Included files come after this one's own definitions, so definitions
    // are ordered like Config::files: depth first, in the order written.
    if (include) {
        loadIncludes(*include, file);
    }
}

void Loader::loadIncludes(const Entry &e, const FileContext &file)
{
    // One path may be written without the array.
    std::vector<std::pair<std::string, Location>> paths;
    if (e.value->is_string()) {
        if (auto v = getString(e)) {
            paths.emplace_back(*v, e.valueAt);
        }
    } else if (auto list = getStringArray(e)) {
        paths = std::move(*list);
    } else {
        return;
    }
    const std::filesystem::path displayDir = std::filesystem::path(file.display).parent_path();
    for (const auto &[pattern, at] : paths) {
        const bool absolute = pattern.starts_with('/');
        const std::string base = file.absoluteDir.string();
        auto displayOf = [&](const std::string &relative) {
            return absolute ? std::filesystem::path(relative).lexically_normal().string()
                            : (displayDir / relative).lexically_normal().string();
        };
        if (!hasGlobMagic(pattern)) {
            const std::filesystem::path path =
                absolute ? std::filesystem::path(pattern) : file.absoluteDir / pattern;
            struct stat st {};
            if (::stat(path.c_str(), &st) < 0) {
                error(at, "'include': cannot include " + squote(pattern) + ": " + errnoText(errno));
                continue;
            }
            if (S_ISDIR(st.st_mode)) {
                error(at, "'include': " + squote(pattern) + " is a directory (include " +
                              squote(pattern + "/*.toml") + " to read the files in it)");
                continue;
            }
            // A FIFO or a device could block the loader or never end.
            if (!S_ISREG(st.st_mode)) {
                error(at, "'include': " + squote(pattern) + " is not a regular file");
                continue;
            }
            loadIncluded(path, displayOf(pattern), at);
            continue;
        }
        const std::string full = absolute ? pattern : escapeGlob(base) + "/" + pattern;
        glob_t matches{};
        // NOLINTNEXTLINE(concurrency-mt-unsafe): the loader runs on fdsupd's one thread
        const int r = ::glob(full.c_str(), 0, nullptr, &matches);
        std::vector<std::string> found;
        if (r == 0) {
            for (std::size_t i = 0; i < matches.gl_pathc; ++i) {
                found.emplace_back(matches.gl_pathv[i]);
            }
        }
        ::globfree(&matches);
        if (r != 0 && r != GLOB_NOMATCH) {
            error(at, "'include': cannot expand " + squote(pattern) +
                          (r == GLOB_NOSPACE ? ": out of memory" : ": read error"));
            continue;
        }
        // Byte order, not the locale's collation: the same files in the same
        // order on every machine.
        std::sort(found.begin(), found.end());
        for (const auto &match : found) {
            struct stat st {};
            // Directories (and anything else but files) a pattern happens to match are not configuration.
            if (::stat(match.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
                continue;
            }
            const std::string relative = absolute ? match : match.substr(base.size() + 1);
            loadIncluded(match, displayOf(relative), at);
        }
    }
}

void Loader::loadIncluded(const std::filesystem::path &path, const std::string &display,
                          const Location &includedAt)
{
    char *real = ::realpath(path.c_str(), nullptr);
    if (real == nullptr) {
        error(includedAt, "'include': cannot include " + squote(display) + ": " + errnoText(errno));
        return;
    }
    const std::string canonical(real);
    std::free(real); // NOLINT(cppcoreguidelines-no-malloc): realpath() allocates with malloc
    for (const auto &[inChain, name] : chain_) {
        if (inChain == canonical) {
            std::string cycle;
            bool inCycle = false;
            for (const auto &[c, n] : chain_) {
                inCycle = inCycle || c == canonical;
                if (inCycle) {
                    cycle += n + " -> ";
                }
            }
            cycle += display;
            error(includedAt, "include cycle: " + cycle);
            return;
        }
    }
    if (auto it = includedAt_.find(canonical); it != includedAt_.end()) {
        error(includedAt, "'include': " + squote(display) + " is already included at " + it->second.str());
        return;
    }
    includedAt_.emplace(canonical, includedAt);
    std::string text;
    if (int err = readWholeFile(canonical, text); err != 0) {
        error(includedAt, "'include': cannot read " + squote(display) + ": " +
                              (err == EFBIG ? "larger than 4 MiB" : errnoText(err)));
        return;
    }
    chain_.emplace_back(canonical, display);
    loadDocument(text, FileContext{display, std::filesystem::path(canonical).parent_path(), false});
    chain_.pop_back();
}

// "tcp://[0:0::1]:53" and "tcp://[::1]:53" are the same address; host names
// stay as written (they are resolved only at bind time).
std::string canonicalInet(const Address &address)
{
    Address canonical = address;
    if (address.isNumericHost()) {
        unsigned char raw[sizeof(in6_addr)];
        char text[INET6_ADDRSTRLEN];
        const int family = address.isIpv6Literal() ? AF_INET6 : AF_INET;
        if (inet_pton(family, address.host.c_str(), raw) == 1 &&
            inet_ntop(family, raw, text, sizeof text) != nullptr) {
            canonical.host = text;
        }
    }
    return formatAddress(canonical);
}

void Loader::crossCheck()
{
    std::vector<std::string_view> socketNames;
    for (const auto &def : sockets_) {
        socketNames.push_back(def.config.name);
    }

    // Listen addresses: canonical text for inet (port 0 is "any free port",
    // never a clash), the path alone for unix, because a unix path or
    // abstract name is one name whatever the socket type.
    struct Use {
        const SocketDefinition *socket;
        Location at;
    };
    std::map<std::string, Use> used;
    for (const auto &def : sockets_) {
        for (std::size_t i = 0; i < def.config.listen.size(); ++i) {
            const Address &address = def.config.listen[i];
            const Location &at = def.listenAt[i];
            std::string key;
            if (address.isInet()) {
                if (address.port == 0) {
                    continue;
                }
                key = "inet " + canonicalInet(address);
            } else {
                key = (address.abstract ? "unix @" : "unix ") + address.host;
            }
            auto [it, inserted] = used.emplace(key, Use{&def, at});
            if (inserted) {
                continue;
            }
            const std::string what =
                address.isInet()
                    ? "listen address " + squote(formatAddress(address))
                    : "unix socket " + squote(address.abstract ? "@" + address.host : address.host);
            if (it->second.socket == &def) {
                error(at, what + " is listed twice in [socket." + def.config.name + "] (first at " +
                              it->second.at.str() + ")");
            } else {
                error(at, what + " is already used by [socket." + it->second.socket->config.name + "] at " +
                              it->second.at.str());
            }
        }
    }

    // Activation sockets: one name each, like any unix socket fdsupd binds.
    std::map<std::string, const ServiceDefinition *> activation;
    for (const auto &def : services_) {
        const auto &s = def.config;
        if (!s.activationSocket) {
            if (def.activationAccessAt && (!s.activationUsers.empty() || !s.activationGroups.empty())) {
                error(*def.activationAccessAt,
                      "'" +
                          std::string(s.activationUsers.empty() ? "activation_groups" : "activation_users") +
                          "' needs 'activation_socket' in [service." + s.name +
                          "]: without it no external worker can connect");
            }
            continue;
        }
        const std::string &path = *s.activationSocket;
        const std::string key = path.starts_with('@') ? "unix @" + path.substr(1) : "unix " + path;
        const std::string what = "'activation_socket': " + squote(path);
        if (auto it = used.find(key); it != used.end()) {
            error(def.activationSocketAt, what + " is already used by [socket." +
                                              it->second.socket->config.name + "] at " + it->second.at.str());
        } else if (path == supervisor_.control) {
            error(def.activationSocketAt, what + " is fdsupd's control socket");
        } else if (auto [other, inserted] = activation.emplace(key, &def); !inserted) {
            error(def.activationSocketAt, what + " is already the activation socket of [service." +
                                              other->second->config.name + "] at " +
                                              other->second->activationSocketAt.str());
        }
    }

    for (const auto &def : services_) {
        const auto &s = def.config;
        bool allKnown = true;
        bool stream = false;
        for (std::size_t i = 0; i < s.sockets.size(); ++i) {
            auto it = std::find_if(sockets_.begin(), sockets_.end(),
                                   [&](const SocketDefinition &d) { return d.config.name == s.sockets[i]; });
            if (it == sockets_.end()) {
                allKnown = false;
                // A file that failed to parse may hold the definition.
                if (!parseFailed_) {
                    error(def.socketsAt[i], "'sockets': no [socket." + s.sockets[i] + "] is defined" +
                                                didYouMean(s.sockets[i], socketNames));
                }
                continue;
            }
            if (!it->complete) {
                allKnown = false;
            }
            for (const auto &address : it->config.listen) {
                stream = stream || address.socketType() != SOCK_DGRAM;
            }
        }
        if (s.handoff && s.sockets.empty()) {
            error(def.handoffAt, "'handoff' needs a stream socket to hand connections over, but [service." +
                                     s.name + "] has no 'sockets'");
        } else if (s.handoff && allKnown && !stream) {
            error(def.handoffAt,
                  "'handoff' needs a stream socket to hand connections over, but every socket of "
                  "[service." +
                      s.name + "] is a datagram socket");
        }
    }
}

LoadResult Loader::finish()
{
    crossCheck();
    LoadResult result;
    if (!diagnostics_.empty()) {
        auto fileIndex = [&](const std::string &name) {
            auto it = std::find(files_.begin(), files_.end(), name);
            return static_cast<std::size_t>(it - files_.begin());
        };
        std::stable_sort(diagnostics_.begin(), diagnostics_.end(),
                         [&](const Diagnostic &a, const Diagnostic &b) {
                             return std::tuple(fileIndex(a.where.file), a.where.line, a.where.column) <
                                    std::tuple(fileIndex(b.where.file), b.where.line, b.where.column);
                         });
        result.diagnostics = std::move(diagnostics_);
        return result;
    }
    Config config;
    config.files = std::move(files_);
    config.supervisor = std::move(supervisor_);
    for (auto &def : sockets_) {
        config.sockets.push_back(std::move(def.config));
    }
    for (auto &def : services_) {
        config.services.push_back(std::move(def.config));
    }
    result.config = std::move(config);
    return result;
}

LoadResult Loader::loadMain(const std::string &display, const std::string &text,
                            const std::filesystem::path &dir)
{
    supervisor_.control = FDSUP_DEFAULT_CONTROL;
    std::error_code ec;
    std::filesystem::path absoluteDir = std::filesystem::absolute(dir.empty() ? "." : dir, ec);
    if (ec) {
        absoluteDir = dir;
    }
    absoluteDir = absoluteDir.lexically_normal();
    if (!absoluteDir.has_filename() && absoluteDir != absoluteDir.root_path()) {
        absoluteDir = absoluteDir.parent_path();
    }
    // The main file is in the chain too, so that including it is a cycle.
    const std::string mainPath = (absoluteDir / std::filesystem::path(display).filename()).string();
    char *real = ::realpath(mainPath.c_str(), nullptr);
    const std::string canonical = real != nullptr ? std::string(real) : mainPath;
    std::free(real); // NOLINT(cppcoreguidelines-no-malloc): realpath() allocates with malloc
    chain_.emplace_back(canonical, display);
    includedAt_.emplace(canonical, Location{display, 0, 0});
    loadDocument(text, FileContext{display, absoluteDir, true});
    chain_.clear();
    return finish();
}

LoadResult Loader::loadMainFile(const std::string &path)
{
    std::string text;
    if (int err = readWholeFile(path, text); err != 0) {
        LoadResult result;
        result.diagnostics.push_back(Diagnostic{
            Location{path, 0, 0}, "cannot read: " + (err == EFBIG ? "larger than 4 MiB" : errnoText(err))});
        return result;
    }
    return loadMain(path, text, std::filesystem::path(path).parent_path());
}

} // namespace

LoadResult loadConfig(const std::string &path)
{
    Loader loader;
    return loader.loadMainFile(path);
}

LoadResult loadConfigString(std::string_view text, const std::string &name, const std::string &baseDir)
{
    Loader loader;
    return loader.loadMain(name, std::string(text), baseDir);
}

} // namespace fdsup::config
