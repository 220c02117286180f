/* args.c: strict option parsing and signal set-up shared by sigflow,
 * sigflow-replay and sigflow-bench. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/args.h"

int sf_args_long(const char *s, long min, long max, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int sf_args_double(const char *s, double min, double max, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int sf_args_bad(const char *prog, const char *option, const char *value, const char *what) {
    fprintf(stderr, "%s: %s '%s': expected %s\n", prog, option, value, what);
    return 1;
}

void sf_args_signals(void (*on_stop)(int), void (*on_hup)(int)) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (on_hup) {
        sa.sa_handler = on_hup;
        sigaction(SIGHUP, &sa, NULL);
    }
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}
