/* libactivate: what a worker process links to receive its listeners from fdsupd. */
#ifndef ACTIVATE_ACTIVATE_H
#define ACTIVATE_ACTIVATE_H

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

#ifdef __cplusplus
}
#endif

#endif /* ACTIVATE_ACTIVATE_H */
