/* libactivate: what a worker process links to receive its listeners from fdsupd. */
#ifndef ACTIVATE_ACTIVATE_H
#define ACTIVATE_ACTIVATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The first descriptor passed by the socket activation protocol (LISTEN_FDS),
 * as in sd-daemon.h: listeners are at ACTIVATE_LISTEN_FDS_START ... + n - 1.
 */
#define ACTIVATE_LISTEN_FDS_START 3

/*
 * Returns the version of the library as a static string, e.g. "0.1.0".
 * Never fails.
 */
const char *activate_version(void);

/*
 * Checks the socket activation environment set by fdsupd (or systemd):
 * LISTEN_PID must equal getpid(), LISTEN_FDS is the number of descriptors
 * starting at ACTIVATE_LISTEN_FDS_START and LISTEN_FDNAMES, when set, names
 * each of them (colon-separated). Every passed descriptor gets FD_CLOEXEC set,
 * so a worker's own children do not inherit listeners by accident.
 *
 * If unset_environment is non-zero, LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES
 * are removed from the environment before returning (also on failure).
 *
 * Returns the number of descriptors passed (>= 0; 0 when the environment is
 * not set or meant for another process), or a negative errno:
 *   -EINVAL   LISTEN_PID/LISTEN_FDS malformed, or LISTEN_FDNAMES does not
 *             name exactly LISTEN_FDS descriptors;
 *   -EBADF    a passed descriptor is not open.
 * Not thread-safe (it reads and may change the environment), like
 * sd_listen_fds().
 */
int activate_listen_fds(int unset_environment);

/*
 * Returns the descriptor of the first passed listener named name (as in
 * LISTEN_FDNAMES), or a negative errno:
 *   -ENOENT   no descriptor of that name was passed;
 *   -EINVAL   name is NULL or empty, or the environment is malformed.
 * Descriptors without LISTEN_FDNAMES are named "unknown", as systemd does.
 * The environment is left in place. The descriptor stays owned by the
 * process; calling this twice returns the same number.
 */
int activate_listener(const char *name);

/*
 * The worker channel (docs/worker-channel.md): a private AF_UNIX
 * SOCK_SEQPACKET socket to fdsupd, inherited as the descriptor named by
 * FDSUP_CHANNEL. Every call below is non-blocking and starts no thread: poll
 * activate_channel_fd() for POLLIN and call activate_channel_process() until
 * it returns -EAGAIN; when a send returns -EAGAIN, poll for POLLOUT and call
 * it again. Nothing is sent partially. A channel is not thread-safe.
 */

/* Capabilities offered in HELLO (activate_channel_open). */
#define ACTIVATE_CAP_HANDOFF 0x1u   /* this worker hands connections over on drain */
#define ACTIVATE_CAP_ADOPT 0x2u     /* this worker adopts handed-over connections */
#define ACTIVATE_CAP_LISTENERS 0x4u /* this worker requests its listeners over the channel */

/* The instance index WELCOME gives a worker fdsupd did not spawn (activate_channel_connect). */
#define ACTIVATE_INSTANCE_EXTERNAL 0xFFFFFFFFu

/* The environment variable naming the channel's descriptor number. */
#define ACTIVATE_CHANNEL_ENV "FDSUP_CHANNEL"

/* NOLINTBEGIN(readability-identifier-naming): a C ABI, named like sd-daemon.h */
typedef struct activate_channel activate_channel;

typedef enum activate_event_type {
    ACTIVATE_EVENT_WELCOME = 1,        /* fdsupd accepted HELLO: see ev->welcome */
    ACTIVATE_EVENT_LISTENERS = 2,      /* see ev->listeners */
    ACTIVATE_EVENT_DRAIN = 3,          /* stop accepting, finish, hand over: ev->drain */
    ACTIVATE_EVENT_ADOPT = 4,          /* a connection to serve: ev->adopt */
    ACTIVATE_EVENT_HANDOFF_RESULT = 5, /* see ev->handoff_result */
    ACTIVATE_EVENT_ERROR = 6           /* REJECT or ERROR: ev->error; the channel is over */
} activate_event_type;

/*
 * What activate_channel_process() read. Only the member named by type is
 * filled. Pointers point into the channel and stay valid until the next
 * activate_channel_process() or activate_channel_close() on it. Descriptors
 * are the caller's, with FD_CLOEXEC set.
 */
typedef struct activate_event {
    int type; /* an activate_event_type */
    struct {
        unsigned version;          /* the protocol version fdsupd chose */
        uint32_t capabilities;     /* the subset of the offered ones fdsupd grants */
        const char *service;       /* the service this worker is an instance of */
        uint32_t instance;         /* its instance index, from 0 */
        uint64_t generation;       /* its generation (increases with each rollout) */
        uint32_t max_inline_state; /* state up to this size travels inline */
        uint64_t max_state;        /* the largest state fdsupd accepts */
    } welcome;
    struct {
        size_t count;
        const int *fds;     /* count listeners; the caller owns (and closes) them */
        const char **names; /* count names, in the same order */
    } listeners;
    struct {
        uint64_t deadline_usec; /* CLOCK_MONOTONIC microseconds by which to be done; 0 = none */
    } drain;
    struct {
        int fd;            /* the connection; the caller owns (and closes) it */
        uint64_t id;       /* the id the previous worker gave it */
        const void *state; /* its state, state_size bytes (NULL when 0) */
        size_t state_size;
    } adopt;
    struct {
        uint64_t id;        /* as given to activate_channel_handoff() */
        int error;          /* 0 accepted, or a positive errno why it was refused */
        const char *reason; /* "" when accepted */
    } handoff_result;
    struct {
        int error; /* a positive errno */
        const char *reason;
    } error;
    uint64_t reserved[8]; /* room to grow without changing the size */
} activate_event;
/* NOLINTEND(readability-identifier-naming) */

/*
 * Opens the channel named by FDSUP_CHANNEL (which is then unset, also on
 * failure), makes it non-blocking and close-on-exec, and queues HELLO offering
 * capabilities (ACTIVATE_CAP_*). The WELCOME (or REJECT) arrives as an event.
 *
 * Returns 0 and sets *out, or a negative errno:
 *   -ENOENT       FDSUP_CHANNEL is not set (not run with a channel);
 *   -EINVAL       out is NULL, FDSUP_CHANNEL is malformed, or capabilities
 *                 has unknown bits;
 *   -EBADF        the named descriptor is not open;
 *   -ENOTSOCK, -EPROTOTYPE  it is not an AF_UNIX SOCK_SEQPACKET socket;
 *   -ENOMEM, or what sendmsg() reports (-EPIPE: fdsupd is gone).
 * On failure the descriptor is left open (it was not the library's yet).
 */
int activate_channel_open(activate_channel **out, unsigned capabilities);

/*
 * For a worker fdsupd did not spawn (docs/worker-channel.md, "External
 * workers"): connects to a service's activation socket at path (a file
 * path, or "@name" for an abstract socket) and queues HELLO offering
 * capabilities, as activate_channel_open() does. fdsupd checks the caller's
 * credentials (SO_PEERCRED) against the service's activation_users and
 * activation_groups: a refusal arrives as an ACTIVATE_EVENT_ERROR with error
 * EACCES. Offer ACTIVATE_CAP_LISTENERS to receive the service's listeners.
 * The connect() is non-blocking: it never waits.
 *
 * Returns 0 and sets *out, or a negative errno:
 *   -EINVAL       out or path is NULL, path is empty or too long for a unix
 *                 socket address, or capabilities has unknown bits;
 *   -ENOENT       no socket at path (fdsupd not running, or the service has
 *                 no activation_socket);
 *   -ECONNREFUSED nobody listens there;
 *   -EACCES       the socket file's permissions forbid it;
 *   -EAGAIN       fdsupd's accept queue is full: try again later;
 *   -ENOMEM, or what socket(), connect() and sendmsg() report.
 */
int activate_channel_connect(activate_channel **out, const char *path, unsigned capabilities);

/*
 * Returns the channel's descriptor, to poll (>= 0), or -EINVAL if ch is NULL.
 * It stays owned by the channel: do not read, write or close it.
 */
int activate_channel_fd(const activate_channel *ch);

/*
 * Reads at most one message and fills *ev. Returns 0 when ev was filled, or a
 * negative errno:
 *   -EAGAIN       nothing pending;
 *   -EINVAL       ch or ev is NULL;
 *   -ECONNRESET   fdsupd closed the channel;
 *   -EBADMSG, -EPROTONOSUPPORT, -EMSGSIZE, -EBADFD  a malformed message (see
 *                 docs/worker-channel.md), or one fdsupd never sends;
 *   -EMFILE       a message whose descriptors the kernel could not give this
 *                 process (its RLIMIT_NOFILE reached): that connection or
 *                 listener is lost;
 *   -ENOTCONN     an ERROR/REJECT was already delivered;
 *   other         as recvmsg() reports them.
 * After any error but -EAGAIN and -EINTR the channel is unusable: close it.
 * Every descriptor that arrived with a refused message is closed.
 */
int activate_channel_process(activate_channel *ch, activate_event *ev);

/*
 * Tells fdsupd the worker is ready; status (may be NULL) is a short UTF-8
 * text shown by fdsupctl. Returns 0, or -EAGAIN (socket full: retry on
 * POLLOUT), -EINVAL (ch NULL, status over 1024 bytes or not UTF-8),
 * -ENOTCONN (after an ERROR/REJECT), or what sendmsg() reports.
 */
int activate_channel_ready(activate_channel *ch, const char *status);

/*
 * Asks for the listeners (answered by an ACTIVATE_EVENT_LISTENERS). Returns 0,
 * -EAGAIN, -EINVAL, -ENOTCONN, -EOPNOTSUPP (ACTIVATE_CAP_LISTENERS was not
 * offered) or what sendmsg() reports.
 */
int activate_channel_request_listeners(activate_channel *ch);

/*
 * Hands the connected socket fd over with state (len bytes, may be NULL when
 * len is 0) under the caller's id, which HANDOFF_RESULT and the adopting
 * worker see again. State larger than the inline limit of WELCOME (16 KiB
 * before WELCOME arrives) travels in a sealed memfd the library creates.
 *
 * The library does not take fd: the message carries its own reference. On
 * success the caller should close fd and not touch the connection again; on
 * failure nothing was sent and fd is untouched.
 *
 * Returns 0, or -EAGAIN (retry on POLLOUT), -EINVAL (ch NULL, fd < 0, state
 * NULL with len > 0), -EMSGSIZE (len over the limit of WELCOME, 64 MiB before
 * it), -EOPNOTSUPP (ACTIVATE_CAP_HANDOFF not offered), -ENOTCONN, or what
 * memfd_create() or sendmsg() report.
 */
int activate_channel_handoff(activate_channel *ch, int fd, uint64_t id, const void *state, size_t len);

/*
 * Tells fdsupd this worker has nothing more to hand over. Returns 0, -EAGAIN,
 * -EINVAL, -ENOTCONN or what sendmsg() reports.
 */
int activate_channel_done(activate_channel *ch);

/*
 * Closes the channel and frees it; NULL is accepted. Descriptors already
 * delivered in events stay the caller's. Never fails.
 */
void activate_channel_close(activate_channel *ch);

#ifdef __cplusplus
}
#endif

#endif /* ACTIVATE_ACTIVATE_H */
