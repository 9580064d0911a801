// include = [...]: expanding the patterns and reading the files they name, once each, without cycles.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/result.hpp"
#include "config/loader.hpp"
#include "core/fd.hpp"

namespace fdsup::config::detail {

namespace {

// A limit of the language itself, documented in docs/config/.
constexpr std::size_t kMaxFileSize = std::size_t{4} * 1024 * 1024;

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

} // namespace

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

} // namespace fdsup::config::detail
