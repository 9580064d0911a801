/* --listen ADDR: the examples' own listener, when nobody passes them one. */
#ifndef EXAMPLES_LISTEN_H
#define EXAMPLES_LISTEN_H

#include <sys/socket.h>

/*
 * Parses "A.B.C.D:PORT" or "[IPV6]:PORT" (numeric hosts, port 0..65535) into
 * *ss and *len. Returns NULL, or why it is not an address (*ss undefined).
 */
const char *ex_listen_parse(const char *addr, struct sockaddr_storage *ss, socklen_t *len);

/* A listening TCP socket on ss (SO_REUSEADDR, backlog 1024, CLOEXEC, blocking), or -errno. */
int ex_listen_open(const struct sockaddr_storage *ss, socklen_t len);

/* The port fd is bound to (for --listen with port 0), or -1. */
int ex_listen_port(int fd);

#endif /* EXAMPLES_LISTEN_H */
