/* The single-threaded epoll server both libactivate examples run: listeners, channel, drain and handoff. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "activate/activate.h"
#include "listen.h"

/*
 * A connection's life: SERVING (read, answer) until the drain; then FLUSHING
 * (no more reading: unread bytes stay in the kernel and travel with the
 * socket) until its answers are out; then QUEUED for the channel, HANDED once
 * the HANDOFF was sent (out of epoll, neither read nor written, but our fd
 * stays open) until HANDOFF_RESULT. Accepted, our fd is closed. Refused (by
 * fdsupd, or too big to send at all), the connection is still ours alone:
 * LOCAL, read and answered here until the client closes or the drain
 * deadline. DEAD is freed at the end of the loop iteration (an event for it
 * may still be in the batch being dispatched).
 */
enum { PHASE_SERVING, PHASE_FLUSHING, PHASE_QUEUED, PHASE_HANDED, PHASE_LOCAL, PHASE_DEAD };

/* What the server is doing: serving; draining (hand everything over); finishing (close everything). */
enum { MODE_SERVING, MODE_DRAINING, MODE_FINISHING };

/* What an epoll event's data.ptr points at: the first member of a conn or a source. */
enum { KIND_CONN = 1, KIND_LISTENER, KIND_SIGNAL, KIND_CHANNEL };

struct source {
    int kind;
    int fd;
};

#define MAX_LISTENERS 64
#define MAX_EVENTS 64
#define READ_CHUNK (64 * 1024)
/* Without a channel, SIGTERM leaves this long to flush answers. */
#define FINISH_TIMEOUT_MSEC 5000
/* Be done this long before fdsupd's drain deadline, which ends in SIGKILL. */
#define DEADLINE_MARGIN_MSEC 250
/* An external worker's drain on SIGTERM (nobody sends it a DRAIN) lasts at most this long. */
#define EXTERNAL_DRAIN_MSEC 10000

const char *ex_name = "example";

static struct {
    const struct proto *proto;
    const char *connect; /* --connect PATH: an external worker */
    const char *listen;  /* --listen ADDR: our own listener when nobody passes one */
    int own_listener;    /* bound here for --listen */
    int ep;
    struct source sig;
    struct source chan;
    activate_channel *ch;
    uint32_t chan_events;
    uint32_t caps; /* granted in WELCOME */
    int welcomed;
    struct source listeners[MAX_LISTENERS];
    size_t nlisteners;

    struct conn *conns; /* every connection not DEAD, HANDED ones included */
    size_t nconns;
    size_t nlocal; /* of which LOCAL: nothing more to hand over once nconns == nlocal */
    struct conn *dead;
    struct conn *queue_head, *queue_tail;

    int mode;
    long long deadline_msec; /* CLOCK_MONOTONIC; 0 = none */
    int want_listeners, want_ready, done_sent;
    int quit;
    int exit_code;
    uint64_t id_counter;
    unsigned long long accepted, adopted, handed, refused, served_locally, closed_draining;
} S;

void ex_log(const char *fmt, ...)
{
    char line[1024];
    const size_t max = sizeof(line) - 2; /* room for '\n' and vsnprintf's NUL */
    int n = snprintf(line, sizeof(line) - 1, "%s[%ld]: ", ex_name, (long)getpid());
    if (n < 0) {
        return;
    }
    if ((size_t)n > max) {
        n = (int)max;
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - 1 - (size_t)n, fmt, ap);
    va_end(ap);
    if (m > 0) {
        n += m;
    }
    if ((size_t)n > max) {
        n = (int)max;
    }
    line[n++] = '\n';
    /* One write per line, so lines of several instances do not interleave. */
    ssize_t r = write(STDERR_FILENO, line, (size_t)n);
    (void)r;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            cap *= 2;
        }
        unsigned char *d = realloc(b->data, cap);
        if (d == NULL) {
            return -ENOMEM;
        }
        b->data = d;
        b->cap = cap;
    }
    if (n > 0) {
        memcpy(b->data + b->len, p, n);
        b->len += n;
    }
    return 0;
}

void buf_consume(struct buf *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static long long now_msec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Unique across the workers of a host: the adopter's log names the same ids. */
static uint64_t new_id(void)
{
    return ((uint64_t)(uint32_t)getpid() << 32) | (uint32_t)++S.id_counter;
}

static void stop(int code)
{
    S.quit = 1;
    S.exit_code = code;
}

/* ---- connections ---- */

/* Is c read and answered here? */
static int conn_serving(const struct conn *c)
{
    return c->phase == PHASE_SERVING || c->phase == PHASE_LOCAL;
}

static void conn_unwatch(struct conn *c)
{
    /*
     * As soon as the HANDOFF is sent, and always before close(): a
     * handed-over socket's file stays open in fdsupd (then in its adopter),
     * and epoll keeps reporting a file until every descriptor of it is
     * closed: to us, for bytes that are the adopter's now, with a data.ptr
     * pointing at a conn freed long ago. A HANDED connection is not watched.
     */
    if (c->fd >= 0 && c->phase != PHASE_HANDED) {
        epoll_ctl(S.ep, EPOLL_CTL_DEL, c->fd, NULL);
        c->events = 0;
    }
}

static void conn_release(struct conn *c)
{
    conn_unwatch(c);
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

static void conn_unlink(struct conn *c)
{
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        S.conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    c->prev = NULL;
    c->next = S.dead;
    S.dead = c;
    S.nconns--;
    if (c->phase == PHASE_LOCAL) {
        S.nlocal--;
    }
    c->phase = PHASE_DEAD;
}

static void conn_close(struct conn *c)
{
    if (c->phase == PHASE_DEAD) {
        return;
    }
    if (c->phase == PHASE_QUEUED) {
        struct conn **p = &S.queue_head;
        while (*p != c) {
            p = &(*p)->next_queued;
        }
        *p = c->next_queued;
        if (S.queue_tail == c) {
            S.queue_tail = NULL;
            for (struct conn *q = S.queue_head; q; q = q->next_queued) {
                S.queue_tail = q;
            }
        }
    }
    if (S.mode != MODE_SERVING && c->phase != PHASE_HANDED) {
        S.closed_draining++;
    }
    conn_release(c);
    conn_unlink(c);
}

static void free_dead(void)
{
    while (S.dead) {
        struct conn *c = S.dead;
        S.dead = c->next;
        buf_free(&c->in);
        buf_free(&c->out);
        free(c);
    }
}

static int conn_watch(struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.ptr = c;
    if (epoll_ctl(S.ep, op, c->fd, &ev) < 0) {
        return -errno;
    }
    c->events = events;
    return 0;
}

static struct conn *conn_new(int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        ex_log("out of memory, closing a connection");
        close(fd);
        return NULL;
    }
    c->kind = KIND_CONN;
    c->fd = fd;
    c->id = new_id();
    c->phase = PHASE_SERVING;
    int r = conn_watch(c, EPOLLIN, EPOLL_CTL_ADD);
    if (r < 0) {
        ex_log("epoll_ctl: %s, closing a connection", strerror(-r));
        close(fd);
        free(c);
        return NULL;
    }
    c->next = S.conns;
    if (S.conns) {
        S.conns->prev = c;
    }
    S.conns = c;
    S.nconns++;
    return c;
}

static void conn_queue(struct conn *c)
{
    c->phase = PHASE_QUEUED;
    c->next_queued = NULL;
    if (S.queue_tail) {
        S.queue_tail->next_queued = c;
    } else {
        S.queue_head = c;
    }
    S.queue_tail = c;
}

static int conn_input(struct conn *c)
{
    if (S.proto->on_input(c) < 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static void conn_settle(struct conn *c);

/*
 * A handoff fdsupd refused, or one too big to send: the connection is still
 * ours alone (fdsupd closed its copy, or never had one), so it is served
 * here until the client closes or the drain deadline rather than reset. The
 * drain stopped reading it: what it held back is read and answered again.
 */
static void conn_serve_locally(struct conn *c)
{
    int op = c->phase == PHASE_HANDED ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    c->phase = PHASE_LOCAL;
    S.nlocal++;
    S.served_locally++;
    int r = conn_watch(c, EPOLLIN, op);
    if (r < 0) {
        ex_log("epoll_ctl: %s, closing connection %llu", strerror(-r), (unsigned long long)c->id);
        conn_close(c);
        return;
    }
    if (c->in.len > 0 && conn_input(c) < 0) {
        return;
    }
    conn_settle(c);
}

/* Returns -1 (closed), 0 (all sent) or 1 (the socket is full). */
static int conn_flush(struct conn *c)
{
    while (c->out.len > 0) {
        ssize_t n = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 1;
            }
            conn_close(c);
            return -1;
        }
        buf_consume(&c->out, (size_t)n);
    }
    return 0;
}

/* After anything happened to c: send, move it along its phases, update its epoll interest. */
static void conn_settle(struct conn *c)
{
    for (;;) {
        int was_high = c->out.len >= EX_OUT_HIGH;
        if (conn_flush(c) < 0) {
            return;
        }
        /* Answering stopped at EX_OUT_HIGH with requests still buffered: go on. */
        if (was_high && c->out.len < EX_OUT_HIGH && conn_serving(c) && !c->close_after_flush &&
            c->in.len > 0) {
            if (conn_input(c) < 0) {
                return;
            }
            continue;
        }
        break;
    }
    if (c->finishing && c->in.len == 0 && !c->fresh && conn_serving(c)) {
        c->close_after_flush = 1; /* everything received is answered */
    }
    if (c->out.len == 0 && c->close_after_flush) {
        conn_close(c);
        return;
    }
    if (c->phase == PHASE_FLUSHING && c->out.len == 0) {
        if (S.mode != MODE_DRAINING) {
            conn_close(c);
            return;
        }
        conn_queue(c);
    }
    uint32_t events = 0;
    if (conn_serving(c) && !c->eof && !c->close_after_flush && c->out.len < EX_OUT_HIGH &&
        c->in.len < S.proto->max_input) {
        events |= EPOLLIN;
    }
    if (c->out.len > 0) {
        events |= EPOLLOUT;
    }
    if (events != c->events && conn_watch(c, events, EPOLL_CTL_MOD) < 0) {
        conn_close(c);
    }
}

static void conn_read(struct conn *c)
{
    size_t room = S.proto->max_input - c->in.len;
    if (room > READ_CHUNK) {
        room = READ_CHUNK;
    }
    if (room == 0) {
        return; /* not watched for input then; recv() of 0 bytes would look like EOF */
    }
    if (c->in.cap - c->in.len < room) {
        unsigned char *d = realloc(c->in.data, c->in.len + room);
        if (d == NULL) {
            ex_log("out of memory, closing connection %llu", (unsigned long long)c->id);
            conn_close(c);
            return;
        }
        c->in.data = d;
        c->in.cap = c->in.len + room;
    }
    ssize_t n = recv(c->fd, c->in.data + c->in.len, room, 0);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            conn_close(c);
        }
        return;
    }
    if (n == 0) {
        /* The client is done sending: answer what it asked, then close. */
        c->eof = 1;
        c->close_after_flush = 1;
        return;
    }
    c->in.len += (size_t)n;
    c->fresh = 0;
    if (conn_input(c) < 0) {
        return;
    }
    if (c->in.len >= S.proto->max_input && !c->close_after_flush && c->out.len < EX_OUT_HIGH) {
        ex_log("connection %llu: over %zu bytes of input without progress, closing it",
               (unsigned long long)c->id, S.proto->max_input);
        conn_close(c);
    }
}

static void conn_event(struct conn *c, uint32_t events)
{
    if (events & EPOLLERR) {
        conn_close(c);
        return;
    }
    if ((events & EPOLLIN) && conn_serving(c)) {
        conn_read(c);
        if (c->phase == PHASE_DEAD) {
            return;
        }
    }
    if (events & EPOLLHUP) {
        /* Both directions are gone: nothing can be answered or handed over. */
        conn_close(c);
        return;
    }
    conn_settle(c);
}

/* ---- listeners ---- */

static int add_listener(int fd)
{
    int type = 0, accepting = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
        return -ENOTSOCK;
    }
    len = sizeof(accepting);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 || !accepting) {
        return -EINVAL;
    }
    if (S.nlisteners == MAX_LISTENERS) {
        return -EMFILE;
    }
    /*
     * The listener is shared with fdsupd and the other instances: when epoll
     * wakes several of them, only one accept() wins, so ours must not block.
     */
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        return -errno;
    }
    struct source *l = &S.listeners[S.nlisteners];
    l->kind = KIND_LISTENER;
    l->fd = fd;
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.ptr = l;
    if (epoll_ctl(S.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        return -errno;
    }
    S.nlisteners++;
    return 0;
}

static void close_listeners(void)
{
    for (size_t i = 0; i < S.nlisteners; i++) {
        epoll_ctl(S.ep, EPOLL_CTL_DEL, S.listeners[i].fd, NULL);
        close(S.listeners[i].fd);
    }
    S.nlisteners = 0;
}

static void accept_some(int lfd)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                ex_log("accept: %s", strerror(errno));
            }
            return;
        }
        struct conn *c = conn_new(fd);
        if (c) {
            c->fresh = 1;
            S.accepted++;
        }
    }
}

/* ---- drain ---- */

/*
 * The polite drain without a handoff: read what the client already sent,
 * answer it (the protocol marks the last answer as closing), and close the
 * connection once nothing received is left unanswered: an idle keep-alive
 * connection at once. A request half received, and the first request of a
 * connection accepted just before (nothing read from it yet: closing it
 * would fail a client that did nothing wrong), are read on until whole
 * (answered, closing) or the deadline.
 */
static void conn_finish(struct conn *c)
{
    c->finishing = 1;
    conn_read(c);
    if (c->phase != PHASE_DEAD) {
        conn_settle(c);
    }
}

static void start_drain(int mode, long long deadline_msec)
{
    S.mode = mode;
    S.deadline_msec = deadline_msec;
    close_listeners();
    struct conn *next;
    for (struct conn *c = S.conns; c; c = next) {
        next = c->next;
        if (conn_serving(c) && mode == MODE_FINISHING) {
            conn_finish(c);
        } else if (conn_serving(c)) {
            if (c->phase == PHASE_LOCAL) {
                S.nlocal--;
            }
            c->phase = PHASE_FLUSHING;
            conn_settle(c);
        }
    }
}

static void close_everything(void)
{
    close_listeners();
    while (S.conns) {
        conn_close(S.conns);
    }
}

/* ---- channel ---- */

static void channel_lost(int code)
{
    epoll_ctl(S.ep, EPOLL_CTL_DEL, S.chan.fd, NULL);
    activate_channel_close(S.ch);
    S.ch = NULL;
    S.want_listeners = S.want_ready = 0;
    /* Whatever was handed and not answered is fdsupd's now, or gone. */
    struct conn *next;
    for (struct conn *c = S.conns; c; c = next) {
        next = c->next;
        if (c->phase == PHASE_HANDED || c->phase == PHASE_QUEUED) {
            conn_close(c);
        }
    }
    S.exit_code = code;
    if (S.mode == MODE_DRAINING && S.done_sent) {
        /* Nothing was left to hand over: the connections served here are ours alone, until the deadline. */
        return;
    }
    if (S.mode != MODE_FINISHING) {
        start_drain(MODE_FINISHING, now_msec() + FINISH_TIMEOUT_MSEC);
    }
}

static void channel_send_failed(const char *what, int r)
{
    ex_log("channel: cannot send %s: %s", what, strerror(-r));
    channel_lost(1);
}

/* Sends what waits for room in the channel, in order. Returns 1 when the channel is full. */
static int channel_push(void)
{
    int r;
    if (S.ch == NULL) {
        return 0;
    }
    if (S.want_listeners) {
        r = activate_channel_request_listeners(S.ch);
        if (r == -EAGAIN) {
            return 1;
        }
        if (r < 0) {
            channel_send_failed("LISTENERS_REQUEST", r);
            return 0;
        }
        S.want_listeners = 0;
    }
    if (S.want_ready) {
        r = activate_channel_ready(S.ch, "serving");
        if (r == -EAGAIN) {
            return 1;
        }
        if (r < 0) {
            channel_send_failed("READY", r);
            return 0;
        }
        S.want_ready = 0;
        ex_log("ready: serving %zu listener%s", S.nlisteners, S.nlisteners == 1 ? "" : "s");
    }
    while (S.queue_head) {
        struct conn *c = S.queue_head;
        r = activate_channel_handoff(S.ch, c->fd, c->id, c->in.data, c->in.len);
        if (r == -EAGAIN) {
            return 1;
        }
        S.queue_head = c->next_queued;
        if (S.queue_head == NULL) {
            S.queue_tail = NULL;
        }
        if (r == -EMSGSIZE || r == -ENOMEM) {
            /* Nothing was sent (the state is over fdsupd's limit, or memory is short): still ours. */
            ex_log("cannot hand connection %llu over: %s, serving it here until the deadline",
                   (unsigned long long)c->id, strerror(-r));
            conn_serve_locally(c);
            continue;
        }
        if (r < 0) {
            ex_log("cannot hand connection %llu over: %s, closing it", (unsigned long long)c->id,
                   strerror(-r));
            c->phase = PHASE_FLUSHING; /* no longer queued */
            conn_close(c);
            channel_lost(1);
            return 0;
        }
        /*
         * The message carries its own reference. Ours stays open, neither
         * read nor written, until HANDOFF_RESULT says whose it is.
         */
        conn_unwatch(c);
        c->phase = PHASE_HANDED;
    }
    /* Nothing QUEUED, FLUSHING or HANDED: what is left is served here. */
    if (S.mode == MODE_DRAINING && S.nconns == S.nlocal && !S.done_sent) {
        r = activate_channel_done(S.ch);
        if (r == -EAGAIN) {
            return 1;
        }
        if (r < 0) {
            channel_send_failed("DONE", r);
            return 0;
        }
        S.done_sent = 1;
        if (S.nlocal > 0) {
            ex_log("done: nothing more to hand over, serving %zu connection%s here until the deadline",
                   S.nlocal, S.nlocal == 1 ? "" : "s");
        }
    }
    return 0;
}

static void on_welcome(const activate_event *ev)
{
    S.caps = ev->welcome.capabilities;
    S.welcomed = 1;
    ex_log("welcome: service %s instance %u generation %llu capabilities 0x%x", ev->welcome.service,
           (unsigned)ev->welcome.instance, (unsigned long long)ev->welcome.generation, (unsigned)S.caps);
    if (S.nlisteners > 0) {
        S.want_ready = 1;
    } else if (S.caps & ACTIVATE_CAP_LISTENERS) {
        S.want_listeners = 1;
    } else {
        ex_log("no listeners: %s", S.connect ? "fdsupd does not grant LISTENERS to this worker"
                                             : "LISTEN_FDS is empty and fdsupd does not grant LISTENERS");
        stop(2);
    }
}

static void on_listeners(const activate_event *ev)
{
    if (S.mode != MODE_SERVING) {
        /* Asked for before a drain or stop began: nothing to accept any more. */
        for (size_t i = 0; i < ev->listeners.count; i++) {
            close(ev->listeners.fds[i]);
        }
        return;
    }
    for (size_t i = 0; i < ev->listeners.count; i++) {
        int r = add_listener(ev->listeners.fds[i]);
        if (r < 0) {
            ex_log("listener %s (fd %d) ignored: %s", ev->listeners.names[i], ev->listeners.fds[i],
                   strerror(-r));
            close(ev->listeners.fds[i]);
        }
    }
    if (S.nlisteners == 0) {
        ex_log("no stream listener among the %zu fdsupd sent", ev->listeners.count);
        stop(2);
        return;
    }
    ex_log("%zu listener%s from the channel", S.nlisteners, S.nlisteners == 1 ? "" : "s");
    S.want_ready = 1;
}

static void on_adopt(const activate_event *ev)
{
    int fd = ev->adopt.fd;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        ex_log("adopted connection %llu: %s, closing it", (unsigned long long)ev->adopt.id, strerror(errno));
        close(fd);
        return;
    }
    struct conn *c = conn_new(fd);
    if (c == NULL) {
        return;
    }
    if (buf_append(&c->in, ev->adopt.state, ev->adopt.state_size) < 0) {
        ex_log("adopted connection %llu: out of memory, closing it", (unsigned long long)ev->adopt.id);
        conn_close(c);
        return;
    }
    S.adopted++;
    if (ev->adopt.state_size > 0) {
        ex_log("adopted connection %llu as %llu (%zu state bytes)", (unsigned long long)ev->adopt.id,
               (unsigned long long)c->id, ev->adopt.state_size);
    }
    if (S.mode != MODE_SERVING) {
        /* Handed to us just before our own drain: straight back. */
        c->phase = PHASE_FLUSHING;
    } else if (conn_input(c) < 0) {
        return;
    }
    conn_settle(c);
}

static void on_handoff_result(const activate_event *ev)
{
    struct conn *c = S.conns;
    while (c && !(c->phase == PHASE_HANDED && c->id == ev->handoff_result.id)) {
        c = c->next;
    }
    if (c == NULL) {
        ex_log("HANDOFF_RESULT for unknown connection %llu", (unsigned long long)ev->handoff_result.id);
        return;
    }
    if (ev->handoff_result.error == 0) {
        S.handed++;
        if (c->in.len > 0) {
            ex_log("handed connection %llu over (%zu state bytes)", (unsigned long long)c->id, c->in.len);
        }
        conn_close(c);
        return;
    }
    S.refused++;
    ex_log("handoff of connection %llu refused: %s (%s), serving it here until the deadline",
           (unsigned long long)c->id, ev->handoff_result.reason, strerror(ev->handoff_result.error));
    conn_serve_locally(c);
}

static void process_channel(void)
{
    while (S.ch && !S.quit) {
        activate_event ev;
        int r = activate_channel_process(S.ch, &ev);
        if (r == -EAGAIN) {
            return;
        }
        if (r == -EINTR) {
            continue;
        }
        if (r < 0) {
            if (S.connect && !S.welcomed) {
                ex_log("channel: %s before WELCOME, giving up",
                       r == -ECONNRESET ? "closed by fdsupd" : strerror(-r));
                channel_lost(2);
                return;
            }
            if (r == -ECONNRESET && !S.connect && S.mode == MODE_SERVING && S.nlisteners > 0) {
                /* fdsupd stops the workers it spawned by signal, never by closing
                 * their channel: closed without an ERROR, it means fdsupd died.
                 * Serve on without a channel (the listeners are ours too) until a
                 * new fdsupd takes them over and signals us. */
                ex_log("channel: closed by fdsupd (gone?), serving on without a channel until signalled");
                epoll_ctl(S.ep, EPOLL_CTL_DEL, S.chan.fd, NULL);
                activate_channel_close(S.ch);
                S.ch = NULL;
                S.want_listeners = S.want_ready = 0;
                return;
            }
            /* fdsupd closing the channel means: exit. */
            ex_log("channel: %s", r == -ECONNRESET ? "closed by fdsupd" : strerror(-r));
            channel_lost(r == -ECONNRESET ? 0 : 1);
            return;
        }
        switch (ev.type) {
        case ACTIVATE_EVENT_WELCOME:
            on_welcome(&ev);
            break;
        case ACTIVATE_EVENT_LISTENERS:
            on_listeners(&ev);
            break;
        case ACTIVATE_EVENT_DRAIN:
            if (S.mode == MODE_SERVING) {
                long long deadline = 0;
                if (ev.drain.deadline_usec > 0) {
                    deadline = (long long)(ev.drain.deadline_usec / 1000) - DEADLINE_MARGIN_MSEC;
                    if (deadline <= 0) {
                        deadline = 1;
                    }
                }
                ex_log("drain: handing over %zu connection%s", S.nconns, S.nconns == 1 ? "" : "s");
                start_drain(MODE_DRAINING, deadline);
            }
            break;
        case ACTIVATE_EVENT_ADOPT:
            on_adopt(&ev);
            break;
        case ACTIVATE_EVENT_HANDOFF_RESULT:
            on_handoff_result(&ev);
            break;
        case ACTIVATE_EVENT_ERROR:
            if (S.connect && !S.welcomed) {
                /* REJECT, or ERROR for credentials fdsupd does not accept (EACCES): we never started. */
                ex_log("fdsupd refused this worker: %s (%s)", ev.error.reason, strerror(ev.error.error));
                channel_lost(2);
                return;
            }
            ex_log("channel: fdsupd says: %s (%s)", ev.error.reason, strerror(ev.error.error));
            channel_lost(1);
            return;
        default:
            break;
        }
    }
}

/*
 * Reads what fdsupd sent. Adoptions and handoffs are counted per read, and
 * logged one by one only with state: a line per idle connection would cost
 * the worker and fdsupd (which relays it) more than the handoff itself.
 */
static void channel_event(void)
{
    unsigned long long adopted = S.adopted, handed = S.handed;
    process_channel();
    if (S.adopted > adopted) {
        ex_log("adopted %llu connection%s", S.adopted - adopted, S.adopted - adopted == 1 ? "" : "s");
    }
    if (S.handed > handed) {
        ex_log("handed %llu connection%s over", S.handed - handed, S.handed - handed == 1 ? "" : "s");
    }
}

static const char *signal_name(uint32_t signo)
{
    return signo == SIGTERM ? "SIGTERM" : signo == SIGINT ? "SIGINT" : "signal";
}

static void signal_event(void)
{
    struct signalfd_siginfo si;
    while (read(S.sig.fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (S.mode == MODE_SERVING && S.connect && S.ch && (S.caps & ACTIVATE_CAP_HANDOFF)) {
            /* Nobody sends an external worker a DRAIN: its stop is one, so that no connection is lost. */
            ex_log("%s: handing over %zu connection%s", signal_name(si.ssi_signo), S.nconns,
                   S.nconns == 1 ? "" : "s");
            start_drain(MODE_DRAINING, now_msec() + EXTERNAL_DRAIN_MSEC);
        } else if (S.mode == MODE_SERVING) {
            ex_log("%s: finishing %zu connection%s", signal_name(si.ssi_signo), S.nconns,
                   S.nconns == 1 ? "" : "s");
            start_drain(MODE_FINISHING, now_msec() + FINISH_TIMEOUT_MSEC);
        } else {
            ex_log("%s again: closing %zu connection%s", signal_name(si.ssi_signo), S.nconns,
                   S.nconns == 1 ? "" : "s");
            close_everything();
            stop(S.exit_code);
        }
    }
}

/* ---- the loop ---- */

static void settle_loop(void)
{
    if (channel_push() == 1) {
        if (!(S.chan_events & EPOLLOUT)) {
            struct epoll_event ev;
            memset(&ev, 0, sizeof(ev));
            ev.events = EPOLLIN | EPOLLOUT;
            ev.data.ptr = &S.chan;
            epoll_ctl(S.ep, EPOLL_CTL_MOD, S.chan.fd, &ev);
            S.chan_events = ev.events;
        }
    } else if (S.ch && (S.chan_events & EPOLLOUT)) {
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.ptr = &S.chan;
        epoll_ctl(S.ep, EPOLL_CTL_MOD, S.chan.fd, &ev);
        S.chan_events = ev.events;
    }
    if ((S.mode == MODE_FINISHING || (S.mode == MODE_DRAINING && S.done_sent)) && S.nconns == 0) {
        stop(S.exit_code);
    }
    if (S.deadline_msec > 0 && now_msec() >= S.deadline_msec && !S.quit) {
        ex_log("deadline: closing %zu connection%s", S.nconns, S.nconns == 1 ? "" : "s");
        close_everything();
        if (S.ch && S.mode == MODE_DRAINING && !S.done_sent) {
            (void)activate_channel_done(S.ch);
        }
        stop(S.exit_code);
    }
}

static int setup(void)
{
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    signal(SIGPIPE, SIG_IGN);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
        return -errno;
    }
    S.ep = epoll_create1(EPOLL_CLOEXEC);
    if (S.ep < 0) {
        return -errno;
    }
    S.sig.kind = KIND_SIGNAL;
    S.sig.fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (S.sig.fd < 0) {
        return -errno;
    }
    struct epoll_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = &S.sig;
    if (epoll_ctl(S.ep, EPOLL_CTL_ADD, S.sig.fd, &ev) < 0) {
        return -errno;
    }
    return 0;
}

static void usage(const struct proto *p, FILE *f)
{
    fprintf(f,
            "usage: %s [--connect PATH | --listen ADDR]\n"
            "\n"
            "Serves the listeners passed in LISTEN_FDS (fdsupd, systemd) or sent over\n"
            "fdsupd's worker channel (FDSUP_CHANNEL); hands its connections over on DRAIN.\n"
            "Without a channel that hands over, SIGTERM or SIGINT drains politely: stop\n"
            "accepting, answer what was received (the last answer closes), close idle\n"
            "connections, exit.\n"
            "\n"
            "  --connect PATH  run as a worker fdsupd did not spawn: connect to the\n"
            "                  service's activation socket PATH (\"@NAME\": abstract) and\n"
            "                  get the listeners over it; SIGTERM or SIGINT then hands\n"
            "                  every connection over to fdsupd before exiting\n"
            "  --listen ADDR   when neither LISTEN_FDS nor a worker channel is there, bind\n"
            "                  and listen on ADDR itself (127.0.0.1:PORT, [::1]:PORT;\n"
            "                  SO_REUSEADDR, backlog 1024): no supervisor needed\n"
            "  -h, --help      show this help\n"
            "\n"
            "Exit status: 0 after a clean drain or stop, 1 on an error, 2 when it could\n"
            "not start.\n",
            p->name);
}

int ex_parse_args(const struct proto *p, int argc, char **argv, struct ex_options *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(p, stdout);
            return 0;
        }
        if (strcmp(a, "--connect") == 0 || strncmp(a, "--connect=", 10) == 0) {
            const char *path = a[9] == '=' ? a + 10 : i + 1 < argc ? argv[++i] : NULL;
            if (path == NULL || path[0] == '\0') {
                fprintf(stderr, "%s: --connect needs the PATH of an activation socket\n", p->name);
                usage(p, stderr);
                return 2;
            }
            o->connect = path;
            continue;
        }
        if (strcmp(a, "--listen") == 0 || strncmp(a, "--listen=", 9) == 0) {
            const char *addr = a[8] == '=' ? a + 9 : i + 1 < argc ? argv[++i] : NULL;
            struct sockaddr_storage ss;
            socklen_t len;
            const char *why = addr == NULL ? "--listen needs an ADDR" : ex_listen_parse(addr, &ss, &len);
            if (why != NULL) {
                fprintf(stderr, "%s: --listen %s: %s\n", p->name, addr ? addr : "", why);
                usage(p, stderr);
                return 2;
            }
            o->listen = addr;
            continue;
        }
        fprintf(stderr, "%s: unknown argument '%s'\n", p->name, a);
        usage(p, stderr);
        return 2;
    }
    if (o->connect && o->listen) {
        fprintf(
            stderr,
            "%s: --connect and --listen exclude each other (listeners come from fdsupd, or are our own)\n",
            p->name);
        usage(p, stderr);
        return 2;
    }
    return -1;
}

static const char *connect_hint(int r)
{
    switch (r) {
    case -ENOENT:
        return " (is fdsupd running, and does the service set activation_socket?)";
    case -ECONNREFUSED:
        return " (nobody listens there: is fdsupd running?)";
    case -EAGAIN:
        return " (fdsupd's accept queue is full: try again later)";
    default:
        return "";
    }
}

/* --listen ADDR: our own listener. Returns 0 or the exit code. */
static int start_listening(void)
{
    struct sockaddr_storage ss;
    socklen_t len;
    if (ex_listen_parse(S.listen, &ss, &len) != NULL) {
        return 2; /* ex_parse_args() checked it */
    }
    int fd = ex_listen_open(&ss, len);
    if (fd < 0) {
        ex_log("cannot listen on %s: %s", S.listen, strerror(-fd));
        return 2;
    }
    int r = add_listener(fd);
    if (r < 0) {
        ex_log("cannot watch the listener on %s: %s", S.listen, strerror(-r));
        close(fd);
        return 2;
    }
    S.own_listener = 1;
    ex_log("listening on %s (port %d)", S.listen, ex_listen_port(fd));
    return 0;
}

/* Listeners from LISTEN_FDS, and the worker channel if FDSUP_CHANNEL names one. Returns 0 or the exit code.
 */
static int start_spawned(void)
{
    int n = activate_listen_fds(1);
    if (n < 0) {
        ex_log("LISTEN_FDS: %s", strerror(-n));
        return 2;
    }
    for (int i = 0; i < n; i++) {
        /* Stored fds (FDSTORE) and datagram sockets are not for us: left alone. */
        (void)add_listener(ACTIVATE_LISTEN_FDS_START + i);
    }

    unsigned caps = ACTIVATE_CAP_HANDOFF | ACTIVATE_CAP_ADOPT;
    if (S.nlisteners == 0) {
        caps |= ACTIVATE_CAP_LISTENERS;
    }
    int r = activate_channel_open(&S.ch, caps);
    if (r < 0 && r != -ENOENT) {
        ex_log("cannot open the worker channel: %s", strerror(-r));
        return 2;
    }
    if (S.ch == NULL && S.nlisteners == 0 && S.listen) {
        return start_listening();
    }
    if (S.listen) {
        ex_log("--listen %s ignored: the listeners come from %s", S.listen,
               S.ch ? "the worker channel" : "LISTEN_FDS");
    }
    if (S.ch == NULL && S.nlisteners == 0) {
        ex_log("no listeners: run me under fdsupd or systemd-socket-activate, or with --connect or --listen");
        return 2;
    }
    return 0;
}

/* An external worker: the channel is the activation socket; the listeners come over it. */
static int start_external(void)
{
    int r = activate_channel_connect(&S.ch, S.connect,
                                     ACTIVATE_CAP_HANDOFF | ACTIVATE_CAP_ADOPT | ACTIVATE_CAP_LISTENERS);
    if (r < 0) {
        ex_log("cannot connect to the activation socket %s: %s%s", S.connect, strerror(-r), connect_hint(r));
        return 2;
    }
    return 0;
}

int ex_run(const struct proto *p, const struct ex_options *o)
{
    S.proto = p;
    S.connect = o->connect;
    S.listen = o->listen;
    ex_name = p->name;
    S.ep = S.sig.fd = S.chan.fd = -1;
    int r = setup();
    if (r < 0) {
        ex_log("cannot set up the event loop: %s", strerror(-r));
        return 2;
    }
    r = S.connect ? start_external() : start_spawned();
    if (r != 0) {
        return r;
    }
    if (S.ch) {
        S.chan.kind = KIND_CHANNEL;
        S.chan.fd = activate_channel_fd(S.ch);
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = S.chan_events = EPOLLIN;
        ev.data.ptr = &S.chan;
        if (epoll_ctl(S.ep, EPOLL_CTL_ADD, S.chan.fd, &ev) < 0) {
            ex_log("epoll_ctl: %s", strerror(errno));
            return 2;
        }
    }
    if (S.connect) {
        ex_log("started: connected to the activation socket %s", S.connect);
    } else {
        ex_log("started: %zu listener%s from %s, %s", S.nlisteners, S.nlisteners == 1 ? "" : "s",
               S.own_listener ? "--listen" : "LISTEN_FDS", S.ch ? "channel" : "no channel");
    }
    if (S.ch == NULL) {
        ex_log("ready: serving %zu listener%s", S.nlisteners, S.nlisteners == 1 ? "" : "s");
    }

    struct epoll_event events[MAX_EVENTS];
    int n;
    while (!S.quit) {
        int timeout = -1;
        if (S.deadline_msec > 0) {
            long long left = S.deadline_msec - now_msec();
            timeout = left < 0 ? 0 : (left > 60000 ? 60000 : (int)left);
        }
        n = epoll_wait(S.ep, events, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            ex_log("epoll_wait: %s", strerror(errno));
            close_everything();
            stop(1);
            break;
        }
        for (int i = 0; i < n && !S.quit; i++) {
            int kind = *(const int *)events[i].data.ptr;
            switch (kind) {
            case KIND_CONN: {
                struct conn *c = events[i].data.ptr;
                /* A HANDED one is not watched; its event may predate that. */
                if (c->phase != PHASE_DEAD && c->phase != PHASE_HANDED && c->fd >= 0) {
                    conn_event(c, events[i].events);
                }
                break;
            }
            case KIND_LISTENER:
                if (S.mode == MODE_SERVING) {
                    accept_some(((const struct source *)events[i].data.ptr)->fd);
                }
                break;
            case KIND_SIGNAL:
                signal_event();
                break;
            case KIND_CHANNEL:
                channel_event();
                break;
            default:
                break;
            }
        }
        if (!S.quit) {
            settle_loop();
        }
        free_dead();
    }

    close_everything();
    free_dead();
    activate_channel_close(S.ch);
    ex_log("exit %d: accepted %llu, adopted %llu, handed over %llu, refused %llu, served locally %llu, "
           "closed %llu",
           S.exit_code, S.accepted, S.adopted, S.handed, S.refused, S.served_locally, S.closed_draining);
    return S.exit_code;
}
