// Loads fdsupd.toml and everything it includes into the model, collecting every problem.
#include "config/config.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <toml++/toml.h>

#include "common/result.hpp"
#include "config/loader.hpp"
#include "config/names.hpp"
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

namespace detail {

namespace {

// A limit of the language itself, documented in docs/config/.
constexpr std::size_t kMaxNameLength = 64;

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

} // namespace

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

LoadResult Loader::finish()
{
    checkMetricsExposure();
    crossCheck();
    crossCheckAccess();
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
    supervisor_.preloadLibrary = FDSUP_PRELOAD_LIBRARY;
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

std::vector<TableKeys> Loader::catalogue()
{
    catalogue_.emplace();
    (void)loadMain("catalogue",
                   "[supervisor.limits]\n[[supervisor.access]]\n[socket.NAME]\n[service.NAME.limits]\n", "/");
    // walk() names tables as its messages do: "at the top level",
    // "in [socket.NAME]", "in 'limits' of [service.NAME]".
    std::vector<TableKeys> tables = std::move(*catalogue_);
    catalogue_.reset();
    for (auto &t : tables) {
        std::string &name = t.table;
        if (name == "at the top level") {
            name.clear();
        } else if (const auto of = name.find("' of ["); name.starts_with("in '") && of != std::string::npos) {
            name = name.substr(of + 6, name.size() - of - 7) + "." + name.substr(4, of - 4);
        } else if (name.starts_with("in [[")) {
            name = name.substr(5, name.size() - 7);
        } else if (name.starts_with("in [")) {
            name = name.substr(4, name.size() - 5);
        }
    }
    return tables;
}

} // namespace detail

std::vector<TableKeys> knownKeys()
{
    detail::Loader loader;
    return loader.catalogue();
}

LoadResult loadConfig(const std::string &path)
{
    detail::Loader loader;
    return loader.loadMainFile(path);
}

LoadResult loadConfigString(std::string_view text, const std::string &name, const std::string &baseDir)
{
    detail::Loader loader;
    return loader.loadMain(name, std::string(text), baseDir);
}

} // namespace fdsup::config
