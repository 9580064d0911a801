/* seqnum-echo: the takeover demo; echoes 4-byte sequence numbers and hands every connection over on drain. */
/*
 * The protocol: the client sends 4-byte big-endian sequence numbers, the
 * server sends each 4 bytes back as they are. A client that checks every
 * echo against what it sent sees any byte lost, repeated or reordered.
 *
 * The state handed over on drain is the 0 to 3 bytes of an incomplete number
 * already read: the adopter puts them in front of what it reads next. The
 * bytes not read yet stay in the socket and travel with it; answers already
 * computed are flushed before the handoff. So no byte is lost or echoed twice.
 *
 * Everything else (the command line, listeners from LISTEN_FDS, the worker
 * channel or --connect's activation socket, epoll, DRAIN, ADOPT, HANDOFF,
 * SIGTERM) is common.c, shared with http-keepalive.
 */
#include "common.h"

static int echo_whole_numbers(struct conn *c)
{
    size_t whole = c->in.len - c->in.len % 4;
    if (whole == 0) {
        return 0;
    }
    if (buf_append(&c->out, c->in.data, whole) < 0) {
        ex_log("connection %llu: out of memory, closing it", (unsigned long long)c->id);
        return -1;
    }
    buf_consume(&c->in, whole);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct proto seqnum = {
        "seqnum-echo",
        64 * 1024,
        echo_whole_numbers,
    };
    struct ex_options options;
    int r = ex_parse_args(&seqnum, argc, argv, &options);
    if (r >= 0) {
        return r;
    }
    return ex_run(&seqnum, &options);
}
