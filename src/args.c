/* args.c: strict option parsing, option errors and signal set-up shared by
 * sigflow, sigflow-replay and sigflow-bench (args.h). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>

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
    fprintf(stderr, "%s: %s '%s': %s wants %s\n", prog, option, value, option, what);
    return 1;
}

int sf_args_getopt_error(const char *prog, int opt, char *const argv[]) {
    if (opt == ':')
        fprintf(stderr, "%s: option '%s' needs a value (see --help)\n", prog, argv[optind - 1]);
    else if (optopt)
        fprintf(stderr, "%s: unknown option '-%c' (see --help)\n", prog, optopt);
    else
        fprintf(stderr, "%s: unknown option '%s' (see --help)\n", prog, argv[optind - 1]);
    return 1;
}

/* What the handlers set: the process's only global mutable state. */
static sf_stop_flag *stop_flag;
static atomic_int *reload_flag;

static void on_stop(int sig) {
    (void)sig;
    atomic_store(stop_flag, 1);
}

static void on_hup(int sig) {
    (void)sig;
    atomic_store(reload_flag, 1);
}

void sf_args_signals(sf_stop_flag *stop, atomic_int *reload) {
    stop_flag = stop;
    reload_flag = reload;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_flags = 0;
    if (reload) {
        sa.sa_handler = on_hup;
        sigaction(SIGHUP, &sa, NULL);
    }
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

static void stop_set(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
}

void sf_args_hold_stop_signals(void) {
    sigset_t set;
    stop_set(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

void sf_args_wait_stop(sf_stop_flag *stop) {
    /* sigsuspend unblocks and waits in one step: a signal that arrives
     * between the check and the wait is not lost. */
    sigset_t wait_mask;
    pthread_sigmask(SIG_BLOCK, NULL, &wait_mask);
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);
    while (!atomic_load(stop))
        sigsuspend(&wait_mask);
}

int sf_args_backend(const char *prog, const char *value, sf_infer_conf *c) {
    if (sf_backend_parse(value, &c->backend))
        return sf_args_bad(prog, "--backend", value, "auto, openblas or onednn");
    return 0;
}

int sf_args_precision(const char *prog, const char *value, sf_infer_conf *c) {
    if (sf_precision_parse(value, &c->precision))
        return sf_args_bad(prog, "--precision", value, "fp32 or bf16");
    return 0;
}
