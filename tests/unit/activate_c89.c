/* Proves activate.h is plain C89: compiled with -std=c89 -pedantic-errors. */
#include <errno.h>
#include <stdio.h>

#include <activate/activate.h>

int main(void)
{
    activate_channel *ch = NULL;
    activate_event ev;
    int n = activate_listen_fds(0);
    int r = activate_channel_open(&ch, ACTIVATE_CAP_HANDOFF | ACTIVATE_CAP_ADOPT);
    printf("libactivate %s: %d listeners\n", activate_version(), n);
    if (r == 0) {
        while (activate_channel_process(ch, &ev) == 0) {
            printf("channel event %d\n", ev.type);
        }
        activate_channel_close(ch);
    } else if (r != -ENOENT) {
        return 1;
    }
    return n < 0 ? 1 : 0;
}
