/* --listen ADDR: the examples' own listener, when nobody passes them one. */
#define _GNU_SOURCE
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG 1024

/* "PORT" (decimal, 0..65535, nothing else) into *port. Returns 0 or -1. */
static int parse_port(const char *s, unsigned short *port)
{
    if (s[0] == '\0' || strlen(s) > 5) {
        return -1;
    }
    unsigned long n = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        n = n * 10 + (unsigned long)(*p - '0');
    }
    if (n > 65535) {
        return -1;
    }
    *port = (unsigned short)n;
    return 0;
}

const char *ex_listen_parse(const char *addr, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *port;
    int v6 = addr[0] == '[';
    if (v6) {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':') {
            return "an IPv6 address is written [ADDRESS]:PORT";
        }
        if ((size_t)(close - addr - 1) >= sizeof(host)) {
            return "not an IPv6 address";
        }
        memcpy(host, addr + 1, (size_t)(close - addr - 1));
        host[close - addr - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(addr, ':');
        if (colon == NULL) {
            return "no port: write HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";
        }
        if ((size_t)(colon - addr) >= sizeof(host)) {
            return "not an IPv4 address (host names are not resolved)";
        }
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
        port = colon + 1;
    }
    unsigned short p;
    if (parse_port(port, &p) < 0) {
        return "the port is not a number from 0 to 65535";
    }
    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(p);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
            return "not an IPv6 address";
        }
        *len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(p);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            return "not an IPv4 address (host names are not resolved)";
        }
        *len = sizeof(*a);
    }
    return NULL;
}

int ex_listen_open(const struct sockaddr_storage *ss, socklen_t len)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -errno;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)ss, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

int ex_listen_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        return -1;
    }
    return ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                    : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}
