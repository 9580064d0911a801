// The re-exec state's JSON codec, shared by the files that read and write its parts: a reader that names
// the field it fails on, and the codecs of the parts kept in their own files.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "model/snapshot.hpp"

namespace fdsup::state_json {

using Json = nlohmann::json;

// A field that is missing, of the wrong type or out of range: `path` names it.
struct FieldError {
    std::string path;
    std::string what;
};

// A read position in the document: every getter names the field it failed on.
class Reader {
public:
    Reader(const Json &json, std::string path) : json_(json), path_(std::move(path)) {}

    [[nodiscard]] Reader at(std::string_view key) const
    {
        const std::string path = join(key);
        if (!json_.is_object()) {
            throw FieldError{path_, "expected an object"};
        }
        const auto it = json_.find(std::string(key));
        if (it == json_.end()) {
            throw FieldError{path, "missing"};
        }
        return Reader(*it, path);
    }
    [[nodiscard]] bool has(std::string_view key) const
    {
        return json_.is_object() && json_.contains(std::string(key)) && !json_.at(std::string(key)).is_null();
    }
    template <class T>
    [[nodiscard]] T integer(std::int64_t min, std::int64_t max) const
    {
        if (!json_.is_number_integer()) {
            throw FieldError{path_, "expected an integer"};
        }
        const auto v = json_.get<std::int64_t>();
        if (v < min || v > max) {
            throw FieldError{path_, std::to_string(v) + " is out of range"};
        }
        return static_cast<T>(v);
    }
    [[nodiscard]] std::uint64_t unsigned64() const
    {
        if (!json_.is_number_unsigned()) {
            throw FieldError{path_, "expected a non-negative integer"};
        }
        return json_.get<std::uint64_t>();
    }
    [[nodiscard]] std::string string() const
    {
        if (!json_.is_string()) {
            throw FieldError{path_, "expected a string"};
        }
        return json_.get<std::string>();
    }
    [[nodiscard]] bool boolean() const
    {
        if (!json_.is_boolean()) {
            throw FieldError{path_, "expected true or false"};
        }
        return json_.get<bool>();
    }
    template <class F>
    void each(F &&read) const
    {
        if (!json_.is_array()) {
            throw FieldError{path_, "expected an array"};
        }
        for (std::size_t i = 0; i < json_.size(); ++i) {
            read(Reader(json_[i], path_ + "[" + std::to_string(i) + "]"));
        }
    }
    [[nodiscard]] const std::string &path() const { return path_; }

private:
    [[nodiscard]] std::string join(std::string_view key) const
    {
        return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
    }
    const Json &json_;
    std::string path_;
};

inline constexpr std::int64_t kMaxInt = 0x7fffffff;
inline constexpr std::int64_t kMaxUsec = std::numeric_limits<std::int64_t>::max();

inline int fdField(const Reader &r, std::string_view key, bool optional = false)
{
    if (optional && !r.has(key)) {
        return -1;
    }
    return r.at(key).integer<int>(3, kMaxInt);
}

inline unsigned uintField(const Reader &r, std::string_view key)
{
    return r.at(key).integer<unsigned>(0, 0xffffffffLL);
}

// A wrapped service's preload socket, and an activation socket with its
// external workers (reexec_state_peers.cpp). null: none.
Json encodePreload(const std::optional<PreloadSnapshot> &preload);
PreloadSnapshot decodePreload(const Reader &r);
Json encodeActivation(const std::optional<ActivationSnapshot> &activation);
ActivationSnapshot decodeActivation(const Reader &r);
// Exactly `into.size()` non-negative integers.
template <std::size_t N>
void decodeCounts(const Reader &r, std::array<std::uint64_t, N> &into)
{
    std::size_t n = 0;
    r.each([&](const Reader &count) {
        if (n >= N) {
            throw FieldError{r.path(), "more than " + std::to_string(N) + " counts"};
        }
        into.at(n++) = count.unsigned64();
    });
    if (n != N) {
        throw FieldError{r.path(), std::to_string(n) + " counts, not " + std::to_string(N)};
    }
}

// A service's metrics counters (reexec_state_metrics.cpp); added within
// version 1: an older state has none and they start at 0.
Json encodeServiceMetrics(const ServiceSnapshot &s);
void decodeServiceMetrics(const Reader &r, ServiceSnapshot &s);

} // namespace fdsup::state_json
