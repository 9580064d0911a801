// HttpResponseParser: a small state machine over lines and body bytes (RFC 9112 framing).
#include "http_response.hpp"

#include <algorithm>
#include <charconv>

#include <strings.h>

namespace fdsup::load {

namespace {

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
        s.remove_suffix(1);
    }
    return s;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Does the comma-separated list hold token (any case)?
bool listHas(std::string_view list, std::string_view token)
{
    while (!list.empty()) {
        size_t comma = list.find(',');
        if (equalsIgnoreCase(trim(list.substr(0, comma)), token)) {
            return true;
        }
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    }
    return false;
}

// The last transfer coding of the list.
std::string_view lastCoding(std::string_view list)
{
    size_t comma = list.rfind(',');
    return trim(comma == std::string_view::npos ? list : list.substr(comma + 1));
}

} // namespace

void HttpResponseParser::reset()
{
    *this = HttpResponseParser();
}

HttpResponseParser::Progress HttpResponseParser::fail(std::string why)
{
    state_ = State::Failed;
    error_ = std::move(why);
    return Progress::Error;
}

bool HttpResponseParser::takeLine(std::string_view data, size_t &pos)
{
    size_t nl = data.find('\n', pos);
    size_t end = nl == std::string_view::npos ? data.size() : nl;
    line_.append(data.substr(pos, end - pos));
    pos = nl == std::string_view::npos ? data.size() : nl + 1;
    if (nl == std::string_view::npos) {
        return false;
    }
    if (!line_.empty() && line_.back() == '\r') {
        line_.pop_back();
    }
    return true;
}

HttpResponseParser::Progress HttpResponseParser::feed(std::string_view data, size_t &consumed)
{
    size_t pos = 0;
    started_ = started_ || !data.empty();
    while (pos < data.size() && state_ != State::Done && state_ != State::Failed) {
        if (state_ == State::Body || state_ == State::ChunkData || state_ == State::UntilClose) {
            skipBody(data, pos);
            continue;
        }
        if (!takeLine(data, pos)) {
            if (line_.size() > kMaxLine) {
                consumed = pos;
                return fail("a line longer than 16 KiB");
            }
            break;
        }
        if (onLine() == Progress::Error) {
            consumed = pos;
            return Progress::Error;
        }
    }
    consumed = pos;
    if (state_ == State::Failed) {
        return Progress::Error;
    }
    return state_ == State::Done ? Progress::Complete : Progress::NeedMore;
}

void HttpResponseParser::skipBody(std::string_view data, size_t &pos)
{
    uint64_t available = data.size() - pos;
    if (state_ == State::UntilClose) {
        pos = data.size();
        return;
    }
    uint64_t take = std::min(available, remaining_);
    pos += take;
    remaining_ -= take;
    if (remaining_ == 0) {
        state_ = state_ == State::Body ? State::Done : State::ChunkDataEnd;
    }
}

HttpResponseParser::Progress HttpResponseParser::onLine()
{
    Progress p = Progress::NeedMore;
    switch (state_) {
    case State::StatusLine:
        p = onStatusLine();
        break;
    case State::Headers:
        p = line_.empty() ? onHeadersEnd() : onHeader();
        break;
    case State::ChunkSize:
        p = onChunkSize();
        break;
    case State::ChunkDataEnd:
        if (!line_.empty()) {
            return fail("chunk data longer than its size");
        }
        state_ = State::ChunkSize;
        break;
    case State::Trailers:
        if (line_.empty()) {
            state_ = State::Done;
        }
        break;
    case State::Body:
    case State::ChunkData:
    case State::UntilClose:
    case State::Done:
    case State::Failed:
        break;
    }
    line_.clear();
    return p;
}

HttpResponseParser::Progress HttpResponseParser::onStatusLine()
{
    // HTTP/1.x SP 3DIGIT [SP reason]
    std::string_view line = line_;
    if (line.size() < 12 || !line.starts_with("HTTP/1.") || (line[7] != '0' && line[7] != '1') ||
        line[8] != ' ') {
        return fail("not an HTTP/1.0 or 1.1 status line: '" + line_.substr(0, 64) + "'");
    }
    int code = 0;
    auto [ptr, ec] = std::from_chars(line.data() + 9, line.data() + 12, code);
    if (ec != std::errc() || ptr != line.data() + 12 || code < 100 || code > 599 ||
        (line.size() > 12 && line[12] != ' ')) {
        return fail("a bad status code in '" + line_.substr(0, 64) + "'");
    }
    http11_ = line[7] == '1';
    status_ = code;
    state_ = State::Headers;
    return Progress::NeedMore;
}

HttpResponseParser::Progress HttpResponseParser::onHeader()
{
    std::string_view line = line_;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 || line.front() == ' ' || line.front() == '\t') {
        return fail("a bad header line: '" + line_.substr(0, 64) + "'");
    }
    std::string_view name = line.substr(0, colon);
    std::string_view value = trim(line.substr(colon + 1));
    if (equalsIgnoreCase(name, "Content-Length")) {
        uint64_t n = 0;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (value.empty() || ec != std::errc() || ptr != value.data() + value.size() ||
            (haveLength_ && n != remaining_)) {
            return fail("a bad Content-Length: '" + std::string(value) + "'");
        }
        haveLength_ = true;
        remaining_ = n;
    } else if (equalsIgnoreCase(name, "Transfer-Encoding")) {
        chunked_ = equalsIgnoreCase(lastCoding(value), "chunked");
    } else if (equalsIgnoreCase(name, "Connection")) {
        connectionClose_ = connectionClose_ || listHas(value, "close");
        connectionKeepAlive_ = connectionKeepAlive_ || listHas(value, "keep-alive");
    }
    return Progress::NeedMore;
}

HttpResponseParser::Progress HttpResponseParser::onHeadersEnd()
{
    if (status_ < 200) {
        if (status_ == 101) {
            return fail("101 Switching Protocols to a GET that asked for no upgrade");
        }
        // An interim response (100 Continue, 103 Early Hints): the final one follows.
        bool started = started_;
        reset();
        started_ = started;
        return Progress::NeedMore;
    }
    keepAlive_ = http11_ ? !connectionClose_ : (connectionKeepAlive_ && !connectionClose_);
    if (status_ == 204 || status_ == 304) {
        state_ = State::Done;
    } else if (chunked_) {
        state_ = State::ChunkSize;
    } else if (haveLength_) {
        state_ = remaining_ == 0 ? State::Done : State::Body;
    } else {
        // Without a length the body ends when the server closes the connection.
        keepAlive_ = false;
        state_ = State::UntilClose;
    }
    return Progress::NeedMore;
}

HttpResponseParser::Progress HttpResponseParser::onChunkSize()
{
    std::string_view line = line_;
    line = line.substr(0, line.find(';')); // chunk extensions are ignored
    line = trim(line);
    uint64_t size = 0;
    auto [ptr, ec] = std::from_chars(line.data(), line.data() + line.size(), size, 16);
    if (line.empty() || ec != std::errc() || ptr != line.data() + line.size()) {
        return fail("a bad chunk size: '" + line_.substr(0, 64) + "'");
    }
    remaining_ = size;
    state_ = size == 0 ? State::Trailers : State::ChunkData;
    return Progress::NeedMore;
}

HttpResponseParser::Progress HttpResponseParser::finish()
{
    if (state_ == State::UntilClose) {
        state_ = State::Done;
        return Progress::Complete;
    }
    if (state_ == State::Done) {
        return Progress::Complete;
    }
    return fail(started_ ? "the connection ended in the middle of the response" : "the connection ended");
}

} // namespace fdsup::load
