// HttpResponseParser: one HTTP/1.x response to a GET, read incrementally as bytes arrive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fdsup::load {

// Handles Content-Length, chunked and close-delimited bodies, 1xx interim
// responses, and the HTTP/1.0 and 1.1 keep-alive rules. It reads exactly one
// response: bytes past its end are the caller's (fdsup-load never pipelines,
// so it treats them as a protocol error).
class HttpResponseParser {
public:
    enum class Progress { NeedMore, Complete, Error };

    // Feeds bytes; consumed is how many belong to this response (all of them
    // unless it completed, or an error stopped it).
    Progress feed(std::string_view data, size_t &consumed);
    // The peer ended the stream (EOF): Complete when the body is
    // close-delimited and the headers were read, otherwise Error (truncated).
    Progress finish();
    // Ready for the next response on the same connection.
    void reset();

    // Whether any byte of the response arrived.
    [[nodiscard]] bool started() const { return started_; }
    [[nodiscard]] int status() const { return status_; }
    // Whether the connection may be reused after this response.
    [[nodiscard]] bool keepAlive() const { return keepAlive_; }
    [[nodiscard]] const std::string &error() const { return error_; }

    // The longest status or header line, and chunk-size line, accepted.
    static constexpr size_t kMaxLine = size_t{16} * 1024;

private:
    enum class State {
        StatusLine,
        Headers,
        Body,
        ChunkSize,
        ChunkData,
        ChunkDataEnd,
        Trailers,
        UntilClose,
        Done,
        Failed
    };

    Progress fail(std::string why);
    // Takes one CRLF- (or LF-) terminated line from data into line_; true when it is whole.
    bool takeLine(std::string_view data, size_t &pos);
    Progress onLine();
    Progress onStatusLine();
    Progress onHeader();
    Progress onHeadersEnd();
    Progress onChunkSize();
    void skipBody(std::string_view data, size_t &pos);

    State state_ = State::StatusLine;
    std::string line_;
    std::string error_;
    bool started_ = false;
    int status_ = 0;
    bool http11_ = false;
    bool keepAlive_ = false;
    bool connectionClose_ = false;
    bool connectionKeepAlive_ = false;
    bool chunked_ = false;
    bool haveLength_ = false;
    uint64_t remaining_ = 0;
};

} // namespace fdsup::load
