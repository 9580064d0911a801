/* Proves activate.h is plain C89: compiled with -std=c89 -pedantic-errors. */
#include <stdio.h>

#include <activate/activate.h>

int main(void)
{
    int n = activate_listen_fds(0);
    printf("libactivate %s: %d listeners\n", activate_version(), n);
    return n < 0 ? 1 : 0;
}
