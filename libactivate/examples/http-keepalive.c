/* http-keepalive: an HTTP/1.1 keep-alive server whose idle connections survive a restart. */
/*
 * Every GET (or HEAD), whatever the path, is answered 200 with
 * {"pid":PID,"generation":"FDSUP_GENERATION"}: a client sees which worker
 * served it. Requests are parsed as far as keep-alive needs: request line and
 * headers up to the empty line, a Content-Length body read and discarded,
 * pipelined requests answered in order. Transfer-Encoding (chunked request
 * bodies) is refused with 501, other methods answered 405, both keeping
 * framing intact where they can.
 *
 * A request is answered only once it arrived whole (headers and body), so
 * the input buffer always holds the raw bytes of requests not answered yet.
 * That is the state handed over on drain: the adopter puts it in front of
 * what it reads next and parses on, so a client that sent half a request
 * before the drain and the rest after is answered by the adopter. Responses
 * in flight are flushed before the handoff; "Connection: close" requests are
 * answered and closed, never handed over.
 *
 * Stopped without a handoff (SIGTERM, handoff = false, --listen), the drain
 * is polite: the requests already received are answered, the last of them
 * with "Connection: close", and idle connections are closed (common.c).
 *
 * Everything else (the command line, listeners from LISTEN_FDS, the worker
 * channel or --connect's activation socket, epoll, DRAIN, ADOPT, HANDOFF,
 * SIGTERM) is common.c, shared with seqnum-echo.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common.h"

#define MAX_HEADER (16 * 1024)
#define MAX_BODY (1024 * 1024)

static char body[128];
static size_t body_len;

/* Does the comma-separated list value (Connection:) hold token, in any case? */
static int has_token(const char *v, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
            i++;
        }
        size_t start = i;
        while (i < len && v[i] != ',') {
            i++;
        }
        size_t end = i;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) {
            end--;
        }
        if (end - start == tlen && strncasecmp(v + start, token, tlen) == 0) {
            return 1;
        }
    }
    return 0;
}

static int respond(struct conn *c, int status, const char *reason, int keep_alive, int head)
{
    const char *content = status == 200 ? body : reason;
    size_t content_len = status == 200 ? body_len : strlen(reason);
    char header[256];
    int n = snprintf(header, sizeof(header),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "Connection: %s\r\n"
                     "\r\n",
                     status, reason, status == 200 ? "application/json" : "text/plain", content_len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "", keep_alive ? "keep-alive" : "close");
    if (n < 0 || (size_t)n >= sizeof(header) || buf_append(&c->out, header, (size_t)n) < 0 ||
        (!head && buf_append(&c->out, content, content_len) < 0)) {
        return -1;
    }
    if (!keep_alive) {
        c->close_after_flush = 1;
        c->in.len = 0; /* whatever was pipelined after it is not answered */
    }
    return 0;
}

/* Does c->in hold another request's whole header (pipelined), to be answered before closing? */
static int request_follows(const struct conn *c)
{
    const char *data = (const char *)c->in.data;
    size_t len = c->in.len;
    while (len >= 2 && data[0] == '\r' && data[1] == '\n') {
        data += 2;
        len -= 2;
    }
    return len >= 4 && memmem(data, len, "\r\n\r\n", 4) != NULL;
}

/* A request the connection cannot go on after: answer and close. */
static int refuse(struct conn *c, int status, const char *reason)
{
    return respond(c, status, reason, 0, 0);
}

/*
 * Answers the first request in c->in if it is complete. Returns 1 (answered,
 * look for the next), 0 (incomplete: wait for more bytes) or -1 (close).
 */
static int answer_one(struct conn *c)
{
    const char *data = (const char *)c->in.data;
    size_t len = c->in.len;

    /* RFC 9112 2.2: ignore empty lines before a request line. */
    size_t skip = 0;
    while (skip + 2 <= len && data[skip] == '\r' && data[skip + 1] == '\n') {
        skip += 2;
    }
    if (skip > 0) {
        buf_consume(&c->in, skip);
        data = (const char *)c->in.data;
        len = c->in.len;
    }

    const char *end = memmem(data, len < MAX_HEADER ? len : MAX_HEADER, "\r\n\r\n", 4);
    if (end == NULL) {
        return len >= MAX_HEADER ? (refuse(c, 431, "Request Header Fields Too Large") < 0 ? -1 : 1) : 0;
    }
    size_t header_len = (size_t)(end - data) + 4;

    /* The request line: METHOD SP TARGET SP HTTP/1.x */
    const char *line_end = memmem(data, header_len, "\r\n", 2);
    const char *sp1 = memchr(data, ' ', (size_t)(line_end - data));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1)) : NULL;
    if (sp1 == NULL || sp1 == data || sp2 == NULL || sp2 == sp1 + 1) {
        return refuse(c, 400, "Bad Request") < 0 ? -1 : 1;
    }
    size_t version_len = (size_t)(line_end - sp2 - 1);
    int http11;
    if (version_len == 8 && memcmp(sp2 + 1, "HTTP/1.1", 8) == 0) {
        http11 = 1;
    } else if (version_len == 8 && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0) {
        http11 = 0;
    } else if (version_len >= 5 && memcmp(sp2 + 1, "HTTP/", 5) == 0) {
        return refuse(c, 505, "HTTP Version Not Supported") < 0 ? -1 : 1;
    } else {
        return refuse(c, 400, "Bad Request") < 0 ? -1 : 1;
    }
    size_t method_len = (size_t)(sp1 - data);
    int get = method_len == 3 && memcmp(data, "GET", 3) == 0;
    int head = method_len == 4 && memcmp(data, "HEAD", 4) == 0;

    /* The header fields: NAME ":" OWS VALUE OWS */
    int conn_close = 0, conn_keep_alive = 0, have_length = 0;
    unsigned long long length = 0;
    const char *p = line_end + 2;
    const char *fields_end = end + 2; /* after the last field's CRLF */
    while (p < fields_end) {
        const char *eol = memmem(p, (size_t)(fields_end - p), "\r\n", 2);
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL || colon == p || *p == ' ' || *p == '\t') {
            return refuse(c, 400, "Bad Request") < 0 ? -1 : 1; /* also obsolete line folding */
        }
        size_t name_len = (size_t)(colon - p);
        for (size_t i = 0; i < name_len; i++) {
            if (p[i] == ' ' || p[i] == '\t') {
                return refuse(c, 400, "Bad Request") < 0 ? -1 : 1;
            }
        }
        const char *v = colon + 1;
        const char *v_end = eol;
        while (v < v_end && (*v == ' ' || *v == '\t')) {
            v++;
        }
        while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t')) {
            v_end--;
        }
        size_t v_len = (size_t)(v_end - v);
        if (name_len == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
            unsigned long long n = 0;
            if (v_len == 0) {
                return refuse(c, 400, "Bad Request") < 0 ? -1 : 1;
            }
            for (size_t i = 0; i < v_len; i++) {
                if (!isdigit((unsigned char)v[i])) {
                    return refuse(c, 400, "Bad Request") < 0 ? -1 : 1;
                }
                n = n * 10 + (unsigned)(v[i] - '0');
                if (n > MAX_BODY) {
                    return refuse(c, 413, "Content Too Large") < 0 ? -1 : 1;
                }
            }
            if (have_length && n != length) {
                return refuse(c, 400, "Bad Request") < 0 ? -1 : 1;
            }
            have_length = 1;
            length = n;
        } else if (name_len == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0) {
            return refuse(c, 501, "Not Implemented") < 0 ? -1 : 1;
        } else if (name_len == 10 && strncasecmp(p, "Connection", 10) == 0) {
            conn_close |= has_token(v, v_len, "close");
            conn_keep_alive |= has_token(v, v_len, "keep-alive");
        }
        p = eol + 2;
    }
    if (len < header_len + length) {
        return 0; /* the body is still coming */
    }

    int keep_alive = !conn_close && (http11 || conn_keep_alive);
    buf_consume(&c->in, header_len + (size_t)length);
    if (c->finishing && !request_follows(c)) {
        keep_alive = 0; /* the polite drain: the last request received is answered "Connection: close" */
    }
    int r = get || head ? respond(c, 200, "OK", keep_alive, head)
                        : respond(c, 405, "Method Not Allowed", keep_alive, 0);
    return r < 0 ? -1 : 1;
}

static int answer_requests(struct conn *c)
{
    while (!c->close_after_flush && c->in.len > 0 && c->out.len < EX_OUT_HIGH) {
        int r = answer_one(c);
        if (r < 0) {
            ex_log("connection %llu: out of memory, closing it", (unsigned long long)c->id);
            return -1;
        }
        if (r == 0) {
            break;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct proto http = {
        "http-keepalive",
        MAX_HEADER + MAX_BODY,
        answer_requests,
    };
    struct ex_options options;
    int r = ex_parse_args(&http, argc, argv, &options);
    if (r >= 0) {
        return r;
    }

    /* Only digits make it into the JSON: nothing to escape. */
    char generation[32] = "";
    const char *g = getenv("FDSUP_GENERATION");
    for (size_t i = 0; g && g[i] && i < sizeof(generation) - 1 && isdigit((unsigned char)g[i]); i++) {
        generation[i] = g[i];
    }
    int n = snprintf(body, sizeof(body), "{\"pid\":%ld,\"generation\":\"%s\"}\n", (long)getpid(), generation);
    body_len = n > 0 ? (size_t)n : 0;
    return ex_run(&http, &options);
}
