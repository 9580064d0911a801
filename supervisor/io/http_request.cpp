// The HTTP/1.1 request parser of the metrics endpoint, and its responses.
#include "io/http_request.hpp"

#include <algorithm>

namespace fdsup {
namespace {

// RFC 9110 5.6.2: tchar.
bool isTokenChar(char c)
{
    const auto u = static_cast<unsigned char>(c);
    if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) {
        return true;
    }
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool isToken(std::string_view s)
{
    return !s.empty() && std::all_of(s.begin(), s.end(), isTokenChar);
}

// Visible ASCII only: no space, no control, no byte above 0x7e.
bool isVisible(std::string_view s)
{
    return std::all_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u < 0x7f;
    });
}

// A field value: visible characters, spaces and tabs (obs-text refused).
bool isFieldValue(std::string_view s)
{
    return std::all_of(s.begin(), s.end(), [](char c) {
        const auto u = static_cast<unsigned char>(c);
        return (u >= 0x20 && u < 0x7f) || u == '\t';
    });
}

HttpParse failed(int status, std::string reason)
{
    HttpParse parse;
    parse.kind = HttpParse::Kind::Error;
    parse.status = status;
    parse.reason = std::move(reason);
    return parse;
}

// The next line of `bytes` from `pos` without its CRLF or LF; npos when the
// line has not ended yet. `next` is where the line after it begins.
std::size_t lineEnd(std::string_view bytes, std::size_t pos, std::size_t &next)
{
    const std::size_t lf = bytes.find('\n', pos);
    if (lf == std::string_view::npos) {
        return lf;
    }
    next = lf + 1;
    return lf > pos && bytes[lf - 1] == '\r' ? lf - 1 : lf;
}

HttpParse parseRequestLine(std::string_view line)
{
    const std::size_t sp1 = line.find(' ');
    const std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos) {
        return failed(400, "malformed request line");
    }
    const std::string_view method = line.substr(0, sp1);
    const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
    const std::string_view version = line.substr(sp2 + 1);
    if (!isToken(method)) {
        return failed(400, "malformed method");
    }
    if (target.empty() || target.front() != '/' || !isVisible(target)) {
        return failed(400, "the target must be a path such as /metrics");
    }
    if (version.size() != 8 || !version.starts_with("HTTP/")) {
        return failed(400, "malformed HTTP version");
    }
    if (version != "HTTP/1.1" && version != "HTTP/1.0") {
        return failed(505, "only HTTP/1.0 and HTTP/1.1 are served");
    }
    HttpParse parse;
    parse.kind = HttpParse::Kind::Complete;
    parse.request.method = std::string(method);
    parse.request.path = std::string(target.substr(0, target.find('?')));
    parse.request.minorVersion = version.back() - '0';
    return parse;
}

std::string_view reasonPhrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

} // namespace

HttpParse parseHttpRequest(std::string_view bytes, std::size_t maxSize)
{
    const std::string_view window = bytes.substr(0, std::min(bytes.size(), maxSize));
    std::size_t next = 0;
    const std::size_t end = lineEnd(window, 0, next);
    if (end == std::string_view::npos) {
        return bytes.size() >= maxSize ? failed(414, "the request line is too long") : HttpParse{};
    }
    HttpParse parse = parseRequestLine(window.substr(0, end));
    if (parse.kind == HttpParse::Kind::Error) {
        return parse;
    }
    for (;;) {
        const std::size_t pos = next;
        const std::size_t lineStop = lineEnd(window, pos, next);
        if (lineStop == std::string_view::npos) {
            return bytes.size() >= maxSize ? failed(431, "the request headers are too large") : HttpParse{};
        }
        const std::string_view line = window.substr(pos, lineStop - pos);
        if (line.empty()) {
            return parse;
        }
        if (line.front() == ' ' || line.front() == '\t') {
            return failed(400, "obsolete header line folding");
        }
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos || !isToken(line.substr(0, colon)) ||
            !isFieldValue(line.substr(colon + 1))) {
            return failed(400, "malformed header line");
        }
    }
}

int routeMetricsRequest(const HttpRequest &request)
{
    if (request.path != "/metrics" && request.path != "/") {
        return 404;
    }
    return request.method == "GET" || request.method == "HEAD" ? 200 : 405;
}

std::string httpResponse(int status, std::string_view contentType, std::string_view body, bool head)
{
    std::string out = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reasonPhrase(status)) + "\r\n";
    out += "Content-Type: " + std::string(contentType) + "\r\n";
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    if (status == 405) {
        out += "Allow: GET, HEAD\r\n";
    }
    out += "Connection: close\r\n\r\n";
    if (!head) {
        out += body;
    }
    return out;
}

} // namespace fdsup
