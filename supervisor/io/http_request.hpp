// The HTTP/1.1 request parser of the metrics endpoint: bytes in, a request or a status out (pure; fuzzed).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace fdsup {

// The metrics endpoint reads one request per connection and answers it with
// `Connection: close`, so it needs the request line and the end of the
// headers, nothing more: a body is never read (GET has none).
struct HttpRequest {
    std::string method; // "GET"
    std::string path;   // the target without its query: "/metrics"
    int minorVersion = 1;
};

struct HttpParse {
    enum class Kind : unsigned char {
        Incomplete, // no end of headers yet, within the limit: read more
        Complete,   // request is set
        Error,      // status and reason are set: answer them and close
    };
    Kind kind = Kind::Incomplete;
    HttpRequest request;
    int status = 0;     // 400, 414, 431, 505
    std::string reason; // for the response body: "malformed request line"
};

// Parses the start of a connection's bytes. `maxSize` bounds the request
// line plus headers: more bytes than that without their end is 431 (414
// when even the request line does not end). Lines end in CRLF or a bare LF
// (RFC 9112 2.2); a header line must be `name: value` with a token name;
// obsolete line folding, a control character or a target that is not an
// origin form ("/...") is 400; a version other than HTTP/1.0 or 1.1 is 505.
HttpParse parseHttpRequest(std::string_view bytes, std::size_t maxSize);

// What the endpoint answers a well-formed request: 200 for GET and HEAD of
// "/metrics" and "/", 405 for another method on them, 404 for any other path.
int routeMetricsRequest(const HttpRequest &request);

// A complete response with `Connection: close`. `contentType` and `body` are
// sent as given; `head` leaves the body out but keeps its Content-Length.
std::string httpResponse(int status, std::string_view contentType, std::string_view body, bool head);

} // namespace fdsup
