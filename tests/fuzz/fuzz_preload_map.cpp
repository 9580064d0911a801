// Fuzz target: the preload shim's FDSUP_PRELOAD_MAP ("name=address;...") and its address syntax, parsed
// inside a wrapped server from its environment. A refusal says why; an address parsed matches itself.
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz.hpp"
#include "match.hpp"

namespace {

// Every directory exists and is its own canonical form, except those named
// "missing": the shim's realpath() without touching the machine's files.
bool resolve(const std::string &dir, std::string &canonical, void * /*context*/)
{
    if (dir.find("missing") != std::string::npos) {
        return false;
    }
    canonical = dir.empty() || dir.front() != '/' ? "/cwd/" + dir : dir;
    return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view text(reinterpret_cast<const char *>(data), size);
    std::vector<fdsup::preload::MapEntry> map;
    std::string why;
    const int r = fdsup::preload::parseMap(text, resolve, nullptr, map, why);
    if (r != 0 && (r != -EINVAL || why.empty())) {
        std::abort(); // -EINVAL, with the entry named
    }
    fdsup::preload::NormalAddress address;
    why.clear();
    if (fdsup::preload::parseConfigAddress(text, resolve, nullptr, address, why) == 0) {
        // An address matches itself, in its own type and family.
        if (fdsup::preload::matchAddress(address, address) != fdsup::preload::Match::Same ||
            fdsup::preload::formatNormalAddress(address).empty()) {
            std::abort();
        }
    } else if (why.empty()) {
        std::abort();
    }
    return 0;
}
