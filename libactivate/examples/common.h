/* The event loop, listener, channel and handoff plumbing the libactivate examples share. */
#ifndef EXAMPLES_COMMON_H
#define EXAMPLES_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer; consumed from the front. */
struct buf {
    unsigned char *data;
    size_t len;
    size_t cap;
};

/* Appends n bytes. Returns 0, or -ENOMEM (the buffer is unchanged). */
int buf_append(struct buf *b, const void *p, size_t n);
/* Drops the first n (<= len) bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_free(struct buf *b);

/*
 * One client connection. The protocol sees `in` (bytes read and not yet
 * consumed: what is handed over as state on drain) and `out` (bytes to send),
 * and may set close_after_flush.
 */
struct conn {
    int kind; /* the loop's: must stay the first member */
    int fd;
    uint64_t id;
    struct buf in;
    struct buf out;
    int close_after_flush; /* answer what is in `out`, then close: never handed over */
    /*
     * Set when the server stops without a handoff (SIGTERM without a channel
     * that hands over, handoff = false): the protocol answers the requests
     * received, the last answer saying it closes (HTTP: "Connection: close");
     * once nothing received is left unanswered the loop closes the connection.
     */
    int finishing;
    /* Accepted and nothing read from it yet: its first request may still be on its way. */
    int fresh;
    /* The loop's own bookkeeping. */
    int phase;
    int eof;
    uint32_t events; /* the epoll interest currently registered */
    struct conn *prev, *next;
    struct conn *next_queued; /* waiting for the channel to take its handoff */
};

/*
 * While this much output is unsent the loop stops reading the client, and
 * on_input may stop answering: it is called again once the output is below.
 */
#define EX_OUT_HIGH (256 * 1024)

struct proto {
    const char *name;
    /* The most `in` may hold; a protocol must make progress before that. */
    size_t max_input;
    /*
     * Consumes what it can of c->in and appends the answers to c->out. Called
     * after every read, after ADOPT (in = the adopted state) and when output
     * fell below EX_OUT_HIGH while input is pending. During a drain only for
     * a connection whose handoff was refused: it is served here again.
     * Returns 0, or -1 to close c at once.
     */
    int (*on_input)(struct conn *c);
};

/* Writes "NAME[PID]: message\n" to stderr. */
void ex_log(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* The example's name, as given to ex_run() (for ex_log()). */
extern const char *ex_name;

/* What the command line asked for. */
struct ex_options {
    /*
     * --connect PATH: a worker fdsupd did not spawn, on the service's
     * activation socket at PATH ("@NAME": abstract); NULL: LISTEN_FDS and
     * FDSUP_CHANNEL, as fdsupd or systemd spawned it.
     */
    const char *connect;
    /*
     * --listen ADDR ("127.0.0.1:PORT", "[::1]:PORT"): with no LISTEN_FDS and
     * no worker channel, bind and listen on ADDR here (no supervisor at all);
     * NULL: no such fallback.
     */
    const char *listen;
};

/*
 * Reads the command line (-h/--help, --connect PATH, --listen ADDR) into *o. Returns -1 to
 * run, or the exit code: 0 after --help (usage on stdout), 2 for a bad
 * command line (the reason and the usage on stderr).
 */
int ex_parse_args(const struct proto *p, int argc, char **argv, struct ex_options *o);

/*
 * Runs the server: listeners from LISTEN_FDS, the worker channel, an
 * activation socket (o->connect) or its own (o->listen), accept, read, on_input, write, ADOPT, DRAIN
 * and handoff, SIGTERM. Returns the exit code: 0 after a clean drain or stop,
 * 1 on a runtime or channel error, 2 when it could not start (fdsupd refused
 * an external worker included).
 */
int ex_run(const struct proto *p, const struct ex_options *o);

#endif /* EXAMPLES_COMMON_H */
