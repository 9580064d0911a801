// The config loader's internals, shared by its .cpp files only: the Loader, what it records, its helpers.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>
#include <sys/un.h>

#include <toml++/toml.h>

#include "common/argv_template.hpp"
#include "config/config.hpp"
#include "config/names.hpp"

namespace fdsup::config::detail {

// Limits of the language that more than one table checks; each is documented in docs/config/.
constexpr std::size_t kMaxUnixPath = sizeof(sockaddr_un::sun_path) - 1;
constexpr std::int64_t kMaxU32 = std::numeric_limits<std::uint32_t>::max();
constexpr std::int64_t kMaxInt = std::numeric_limits<int>::max();

std::string squote(std::string_view s);
std::string_view typeName(toml::node_type type);
std::string joined(const std::vector<std::string_view> &words);
// "; did you mean 'x'?" when a candidate is close to word, else "".
std::string didYouMean(std::string_view word, const std::vector<std::string_view> &candidates);
// The text of a string node, "" for any other node.
std::string nodeText(const toml::node &node);
// 0 or an errno; EFBIG above the 4 MiB a configuration file may have.
int readWholeFile(const std::string &path, std::string &out);

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
    std::optional<Location> restartDelayMaxAt;  // only when written and valid
    Location readyAt;
    Location wrapAt;
    Location pidFileAt;
    std::optional<Location> preloadMapAt;
    std::map<std::string, Location> preloadMapEntryAt;
    // The placeholders of command[1..], each where its argument is written.
    std::vector<std::pair<ArgPiece, Location>> placeholders;
    Location inheritAt;
};

// One load: reads the main file and its includes, checks them against each
// other and returns the model or every problem found. Each table's reader
// reports what is wrong and carries on, so one pass finds everything.
class Loader {
public:
    LoadResult loadMain(const std::string &display, const std::string &text,
                        const std::filesystem::path &dir);
    LoadResult loadMainFile(const std::string &path);
    // Loads a document with every table (and no value) while recording the
    // keys each walk() knows: config::knownKeys().
    std::vector<TableKeys> catalogue();

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

    // config.cpp: one document, the main file or an included one; then the
    // cross checks and the result.
    void loadDocument(const std::string &text, const FileContext &file);
    LoadResult finish();

    // includes.cpp
    void loadIncludes(const Entry &entry, const FileContext &file);
    void loadIncluded(const std::filesystem::path &path, const std::string &display,
                      const Location &includedAt);

    // readers.cpp. Each typed reader returns the value, or reports at the
    // entry why it cannot be used and returns nullopt.

    // Visits every entry of table in the order written; keys without a
    // handler are reported as unknown, with a suggestion.
    void walk(const toml::table &table, const std::string &tableName, const Location &tableAt,
              const std::vector<KeyHandler> &handlers);

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
    // Looks a user (or group) name up for key; reports at `at` why it cannot.
    std::optional<std::uint32_t> resolveId(std::string_view key, const std::string &name, const Location &at,
                                           bool group);
    void checkUsers(const Entry &e, std::vector<std::string> &out, bool groups);

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

    void wrongType(const Entry &e, std::string_view expected)
    {
        error(e.valueAt, squote(e.key) + " must be " + std::string(expected) + ", not " +
                             std::string(typeName(e.value->type())));
    }

    // supervisor_table.cpp
    void loadSupervisor(const toml::table &table, const Location &at, const FileContext &file);
    void loadSupervisorLimits(const toml::table &table, const Location &at);
    void loadMetricsAddress(const Entry &e, const std::string &text, const FileContext &file);
    void checkMetricsExposure();
    // access_table.cpp: [[supervisor.access]]; its services are checked by crossCheckAccess().
    void loadAccess(const Entry &e);
    void loadAccessEntry(const toml::table &table, const Location &at);
    void checkRights(const Entry &e, std::vector<std::string> &out);
    void crossCheckAccess();

    // socket_table.cpp
    void loadSocket(const std::string &name, const toml::table &table, const Location &at,
                    const FileContext &file);
    // The keys of [socket.NAME] in groups, concatenated in this order (the
    // order in which "did you mean" breaks ties). The handlers write into def
    // and read file, so they may only run while both live.
    std::vector<KeyHandler> listenKeys(SocketDefinition &def, const FileContext &file);
    std::vector<KeyHandler> optionKeys(SocketDefinition &def);
    std::vector<KeyHandler> unixFileKeys(SocketDefinition &def);
    void addListen(SocketDefinition &def, const Entry &e, const std::string &text, const Location &where,
                   const FileContext &file);

    // service_table.cpp
    void loadService(const std::string &name, const toml::table &table, const Location &at,
                     const FileContext &file);
    // The keys of [service.NAME] in groups, concatenated in this order (the
    // order in which "did you mean" breaks ties). The handlers write into def
    // and read file, so they may only run while both live.
    std::vector<KeyHandler> processKeys(ServiceDefinition &def, const FileContext &file);
    std::vector<KeyHandler> credentialKeys(ServiceDefinition &def);
    std::vector<KeyHandler> workerKeys(ServiceDefinition &def);
    std::vector<KeyHandler> lifecycleKeys(ServiceDefinition &def);
    std::vector<KeyHandler> handoffKeys(ServiceDefinition &def, const FileContext &file);
    // inherit_keys.cpp: 'inherit', the placeholders of 'command' and their checks.
    std::vector<KeyHandler> inheritKeys(ServiceDefinition &def);
    void checkPlaceholders(ServiceDefinition &def, const std::string &arg, const Location &where);
    void crossCheckInherit(const ServiceDefinition &def);
    bool checkEnvironmentName(const std::string &var, const Location &where, std::string_view key);
    // wrap_keys.cpp
    std::vector<KeyHandler> wrapKeys(ServiceDefinition &def, const FileContext &file);
    void checkWrap(const ServiceDefinition &def, const Location &readyAt);
    void crossCheckPreloadMap(const ServiceDefinition &def);
    void loadServiceLimits(const std::string &tableName, const toml::table &table, const Location &at,
                           ServiceConfig &service);
    std::optional<std::uint64_t> getLimitValue(const Entry &e, names::LimitKind kind);

    // cross_check.cpp: what only the whole configuration shows (an address
    // bound twice, an unknown socket, handoff without a stream socket).
    void crossCheck();

    std::vector<Diagnostic> diagnostics_;
    std::optional<std::vector<TableKeys>> catalogue_; // recorded by walk() when set
    std::vector<std::string> files_;
    std::map<std::string, Location> includedAt_;             // canonical path -> the include that read it
    std::vector<std::pair<std::string, std::string>> chain_; // canonical, display: files being read
    bool parseFailed_ = false;

    SupervisorConfig supervisor_;
    Location metricsAt_;                                  // of [supervisor] metrics, when set
    std::vector<std::vector<Location>> accessServicesAt_; // per access entry, where each service is named
    std::vector<SocketDefinition> sockets_;
    std::vector<ServiceDefinition> services_;
};

} // namespace fdsup::config::detail
