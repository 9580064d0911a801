// fdsup-load's HTTP response parser: framing, keep-alive rules, split reads and bad input.
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "http_response.hpp"

using fdsup::load::HttpResponseParser;
using Progress = HttpResponseParser::Progress;

namespace {

// Feeds text in pieces of `step` bytes; the progress after the last piece and the bytes consumed in all.
Progress feedInPieces(HttpResponseParser &p, std::string_view text, size_t step, size_t &consumed)
{
    Progress last = Progress::NeedMore;
    consumed = 0;
    for (size_t at = 0; at < text.size() && last == Progress::NeedMore; at += step) {
        size_t used = 0;
        last = p.feed(text.substr(at, std::min(step, text.size() - at)), used);
        consumed += used;
    }
    return last;
}

Progress feedAll(HttpResponseParser &p, std::string_view text)
{
    size_t consumed = 0;
    return feedInPieces(p, text, text.size(), consumed);
}

} // namespace

TEST(HttpResponse, ContentLengthCompletesExactlyAtTheLastByte)
{
    std::string text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    for (size_t step = 1; step <= text.size(); ++step) {
        HttpResponseParser p;
        size_t consumed = 0;
        ASSERT_EQ(feedInPieces(p, text, step, consumed), Progress::Complete) << "step " << step;
        EXPECT_EQ(consumed, text.size());
        EXPECT_EQ(p.status(), 200);
        EXPECT_TRUE(p.keepAlive());
    }
    HttpResponseParser p;
    EXPECT_EQ(feedAll(p, text.substr(0, text.size() - 1)), Progress::NeedMore);
    EXPECT_TRUE(p.started());
}

TEST(HttpResponse, BytesPastTheResponseAreNotConsumed)
{
    HttpResponseParser p;
    size_t used = 0;
    std::string text = "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1";
    EXPECT_EQ(p.feed(text, used), Progress::Complete);
    EXPECT_EQ(used, text.size() - 8);
}

TEST(HttpResponse, ChunkedBodyWithExtensionsAndTrailersSplitAnywhere)
{
    std::string text = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                       "3\r\nhel\r\n2;name=value\r\nlo\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
    for (size_t step = 1; step <= text.size(); ++step) {
        HttpResponseParser p;
        size_t consumed = 0;
        ASSERT_EQ(feedInPieces(p, text, step, consumed), Progress::Complete) << "step " << step;
        EXPECT_EQ(consumed, text.size());
        EXPECT_TRUE(p.keepAlive());
    }
}

TEST(HttpResponse, CloseDelimitedBodyEndsAtEof)
{
    HttpResponseParser p;
    EXPECT_EQ(feedAll(p, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body"), Progress::NeedMore);
    EXPECT_EQ(p.finish(), Progress::Complete);
    EXPECT_FALSE(p.keepAlive());
}

TEST(HttpResponse, EofBeforeTheEndIsAnError)
{
    HttpResponseParser p;
    EXPECT_EQ(feedAll(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"), Progress::NeedMore);
    EXPECT_EQ(p.finish(), Progress::Error);
    HttpResponseParser headersCut;
    EXPECT_EQ(feedAll(headersCut, "HTTP/1.1 200 OK\r\nContent-Le"), Progress::NeedMore);
    EXPECT_EQ(headersCut.finish(), Progress::Error);
    HttpResponseParser nothing;
    EXPECT_FALSE(nothing.started());
    EXPECT_EQ(nothing.finish(), Progress::Error);
}

TEST(HttpResponse, KeepAliveRulesOfHttp10And11)
{
    struct Case {
        const char *headers;
        bool keepAlive;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", true},
        {"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n", false},
        {"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\nContent-Length: 0\r\n", false},
        {"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n", false},
        {"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n", true},
        {"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\nContent-Length: 0\r\n", true},
    };
    for (const auto &c : cases) {
        HttpResponseParser p;
        EXPECT_EQ(feedAll(p, std::string(c.headers) + "\r\n"), Progress::Complete) << c.headers;
        EXPECT_EQ(p.keepAlive(), c.keepAlive) << c.headers;
    }
}

TEST(HttpResponse, InterimResponsesAreSkippedAndStatusIsKept)
{
    HttpResponseParser p;
    EXPECT_EQ(
        feedAll(p, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno"),
        Progress::Complete);
    EXPECT_EQ(p.status(), 404);
    EXPECT_TRUE(p.started());
}

TEST(HttpResponse, LfOnlyLinesAreAccepted)
{
    HttpResponseParser p;
    EXPECT_EQ(feedAll(p, "HTTP/1.1 200 OK\nContent-Length: 2\n\nok"), Progress::Complete);
}

TEST(HttpResponse, ResetForTheNextResponseOnTheSameConnection)
{
    HttpResponseParser p;
    EXPECT_EQ(feedAll(p, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"), Progress::Complete);
    p.reset();
    EXPECT_FALSE(p.started());
    EXPECT_EQ(feedAll(p, "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"), Progress::Complete);
    EXPECT_EQ(p.status(), 201);
}

TEST(HttpResponse, BadInputIsAnErrorThatSaysWhat)
{
    const char *bad[] = {
        "SSH-2.0-OpenSSH_9.2\r\n",
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 600 Nope\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\n folded: header\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
        "HTTP/1.1 101 Switching Protocols\r\n\r\n",
    };
    for (const char *text : bad) {
        HttpResponseParser p;
        EXPECT_EQ(feedAll(p, text), Progress::Error) << text;
        EXPECT_FALSE(p.error().empty()) << text;
    }
}

TEST(HttpResponse, AnEndlessLineIsRefused)
{
    HttpResponseParser p;
    std::string text = "HTTP/1.1 200 OK\r\nX-Long: " + std::string(HttpResponseParser::kMaxLine + 1, 'a');
    EXPECT_EQ(feedAll(p, text), Progress::Error);
    EXPECT_NE(p.error().find("16 KiB"), std::string::npos) << p.error();
}
