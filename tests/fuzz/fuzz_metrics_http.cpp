// Fuzz target: the metrics endpoint's HTTP request parser, with the properties its server relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz.hpp"
#include "io/http_request.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
    const std::string_view bytes(reinterpret_cast<const char *>(data), size);
    constexpr std::size_t kMax = 512;
    const fdsup::HttpParse parse = fdsup::parseHttpRequest(bytes, kMax);
    switch (parse.kind) {
    case fdsup::HttpParse::Kind::Incomplete:
        // More bytes are asked for only while under the limit.
        if (bytes.size() >= kMax) {
            std::abort();
        }
        break;
    case fdsup::HttpParse::Kind::Complete: {
        if (parse.request.path.empty() || parse.request.path.front() != '/' || parse.request.method.empty()) {
            std::abort();
        }
        const int status = fdsup::routeMetricsRequest(parse.request);
        if (status != 200 && status != 404 && status != 405) {
            std::abort();
        }
        break;
    }
    case fdsup::HttpParse::Kind::Error:
        if (parse.status < 400 || parse.status > 599 || parse.reason.empty()) {
            std::abort();
        }
        break;
    }
    // A prefix of a complete request is never an error: a request cut by the
    // network in any place is read on, not refused.
    if (parse.kind == fdsup::HttpParse::Kind::Complete && size > 0) {
        const auto prefix = fdsup::parseHttpRequest(bytes.substr(0, size - 1), kMax);
        if (prefix.kind == fdsup::HttpParse::Kind::Error) {
            std::abort();
        }
    }
    return 0;
}
