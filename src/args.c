/* args.c: strict option parsing, option errors, configuration from the
 * environment and signal set-up shared by sigflow, sigflow-replay and
 * sigflow-bench (args.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <getopt.h>

#include "sigflow/args.h"
#include "sigflow/modelset.h"

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

#define ENV_PREFIX "SIGFLOW_"
#define ENV_KAFKA_PREFIX "SIGFLOW_KAFKA_"

/* SIGFLOW_<NAME> of a long option name ("batch-size" -> SIGFLOW_BATCH_SIZE). */
static void env_name(const char *option, char *out, size_t n) {
    size_t k = (size_t)snprintf(out, n, "%s", ENV_PREFIX);
    for (; *option && k + 1 < n; option++)
        out[k++] = *option == '-' ? '_' : (char)toupper((unsigned char)*option);
    out[k] = '\0';
}

sf_cli sf_args_cli(const char *prog, int argc, char *const argv[]) {
    sf_cli cli = {prog, SF_LOG_TEXT};
    const char *f = getenv(ENV_PREFIX "LOG_FORMAT");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--"))
            break;
        if (!strcmp(argv[i], "--log-format") && i + 1 < argc)
            f = argv[++i];
        else if (!strncmp(argv[i], "--log-format=", 13))
            f = argv[i] + 13;
    }
    if (f)
        sf_log_format_parse(f, &cli.format); /* unchanged when bad */
    return cli;
}

/* One usage error line; in JSON the hint travels in it as "try". */
static void usage_line(const sf_cli *cli, const char *msg) {
    if (cli->format == SF_LOG_JSON)
        sf_log_cli(SF_LOG_JSON, SF_LOG_ERROR, cli->prog, "%s try=\"%s --help\"", msg, cli->prog);
    else
        sf_log_cli(SF_LOG_TEXT, SF_LOG_ERROR, cli->prog, "%s", msg);
}

int sf_args_usage(const sf_cli *cli, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    usage_line(cli, msg);
    return 1;
}

int sf_args_try(const sf_cli *cli) {
    if (cli->format == SF_LOG_TEXT) {
        char line[256];
        snprintf(line, sizeof line, "Try '%s --help'.\n", cli->prog);
        fputs(line, stderr);
    }
    return 2;
}

int sf_args_bad(const sf_cli *cli, const char *option, const char *value, const char *what) {
    char var[128];
    const char *env = NULL;
    if (!strncmp(option, "--", 2)) {
        env_name(option + 2, var, sizeof var);
        env = getenv(var);
    }
    /* The same pointer as the environment's: the value came from there. */
    if (env && env == value)
        return sf_args_usage(cli, "%s (%s) '%s': %s wants %s", var, option, value, option, what);
    return sf_args_usage(cli, "%s '%s': %s wants %s", option, value, option, what);
}

static int skipped(const char *name, const char *const *skip) {
    for (; skip && *skip; skip++)
        if (!strcmp(name, *skip))
            return 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "SIGFLOW_KAFKA_SASL_PASSWORD=x" -> "sasl.password=x" into out. */
static void kafka_property(const char *var, char *out) {
    const char *p = var + strlen(ENV_KAFKA_PREFIX);
    size_t k = 0;
    for (; *p && *p != '='; p++) {
        if (p[0] == '_' && p[1] == '_' && p[2] == '_') {
            out[k++] = '-';
            p += 2;
        } else if (p[0] == '_' && p[1] == '_') {
            out[k++] = '_';
            p++;
        } else {
            out[k++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
        }
    }
    strcpy(out + k, p); /* "=value" */
}

char **sf_args_with_env(const struct option *opts, const char *const *skip, char kafka_opt, int argc,
                        char **argv, int *argc_out, char *errstr, size_t errstr_size) {
    extern char **environ;
    size_t n_opts = 0, n_kafka = 0, kafka_bytes = 0;
    for (const struct option *o = opts; o->name; o++)
        n_opts++;
    for (char **e = environ; e && *e; e++)
        if (!strncmp(*e, ENV_KAFKA_PREFIX, strlen(ENV_KAFKA_PREFIX)) && strchr(*e, '=')) {
            n_kafka++;
            kafka_bytes += strlen(*e) + 1;
        }
    /* One block: the vector (argv[0], two slots per option and per property,
     * the rest of argv, NULL), "--name" strings, then the properties. */
    size_t slots = 1 + 2 * n_opts + 2 * n_kafka + (size_t)argc + 1;
    size_t name_bytes = 0;
    for (const struct option *o = opts; o->name; o++)
        name_bytes += strlen(o->name) + 3;
    char **v = malloc(slots * sizeof *v + name_bytes + kafka_bytes + 3 * n_kafka);
    if (!v) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    char *store = (char *)(v + slots);
    int n = 0;
    v[n++] = argv[0];
    for (const struct option *o = opts; o->name; o++) {
        if (skipped(o->name, skip))
            continue;
        char var[128];
        env_name(o->name, var, sizeof var);
        const char *val = getenv(var);
        if (!val)
            continue;
        if (o->has_arg == no_argument) {
            if (!*val || !strcmp(val, "0") || !strcmp(val, "false") || !strcmp(val, "no"))
                continue;
            if (strcmp(val, "1") && strcmp(val, "true") && strcmp(val, "yes")) {
                snprintf(errstr, errstr_size, "%s '%s': expected 1, true, yes, 0, false, no or empty",
                         var, val);
                free(v);
                return NULL;
            }
        }
        v[n++] = store;
        store += sprintf(store, "--%s", o->name) + 1;
        if (o->has_arg != no_argument)
            v[n++] = (char *)val;
    }
    char **kafka = (char **)&v[n + n_kafka]; /* sorted in place in the second half of their slots */
    size_t k = 0;
    for (char **e = environ; e && *e; e++)
        if (!strncmp(*e, ENV_KAFKA_PREFIX, strlen(ENV_KAFKA_PREFIX)) && strchr(*e, '=')) {
            kafka[k++] = store;
            kafka_property(*e, store);
            store += strlen(store) + 1;
        }
    qsort(kafka, k, sizeof *kafka, cmp_str);
    char flag[3] = {'-', kafka_opt, '\0'};
    for (size_t i = 0; i < k; i++) {
        v[n++] = store;
        store += sprintf(store, "%s", flag) + 1;
        v[n++] = kafka[i];
    }
    for (int i = 1; i < argc; i++)
        v[n++] = argv[i];
    v[n] = NULL;
    *argc_out = n;
    return v;
}

int sf_args_getopt_error(const sf_cli *cli, int opt, char *const argv[]) {
    if (opt == ':')
        return sf_args_usage(cli, "option '%s' needs a value", argv[optind - 1]);
    if (optopt)
        return sf_args_usage(cli, "unknown option '-%c'", optopt);
    return sf_args_usage(cli, "unknown option '%s'", argv[optind - 1]);
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

int sf_args_backend(const sf_cli *cli, const char *value, sf_infer_conf *c) {
    if (sf_backend_parse(value, &c->backend))
        return sf_args_bad(cli, "--backend", value, "auto, openblas or onednn");
    return 0;
}

int sf_args_precision(const sf_cli *cli, const char *value, sf_infer_conf *c) {
    if (sf_precision_parse(value, &c->precision))
        return sf_args_bad(cli, "--precision", value, "fp32, bf16 or int8");
    return 0;
}

int sf_args_log_format(const sf_cli *cli, const char *value, sf_log_format *f) {
    if (sf_log_format_parse(value, f))
        return sf_args_bad(cli, "--log-format", value, "text or json");
    return 0;
}

int sf_args_drift(const sf_cli *cli, int opt, const char *arg, sf_drift_conf *c, int *bad) {
    long v;
    double d;
    switch (opt) {
    case SF_ARGS_O_DRIFT_EVENTS:
        if (sf_args_long(arg, 0, 1L << 32, &v))
            *bad = sf_args_bad(cli, "--drift-window-events", arg, "an integer in 0..4294967296");
        else
            c->window_events = (size_t)v;
        break;
    case SF_ARGS_O_DRIFT_SECONDS:
        if (sf_args_double(arg, 0, 86400 * 30, &d))
            *bad = sf_args_bad(cli, "--drift-window-s", arg, "seconds in 0..2592000");
        else
            c->window_s = d;
        break;
    case SF_ARGS_O_DRIFT_WARN:
        if (sf_args_double(arg, 0, 1e6, &d))
            *bad = sf_args_bad(cli, "--drift-warn-psi", arg, "a number in 0..1000000");
        else
            c->warn_psi = d;
        break;
    default: return 0;
    }
    return 1;
}

int sf_args_engine(const sf_cli *cli, int opt, const char *arg, sf_engine_conf *c, int *bad) {
    long v;
    switch (opt) {
    case 'm': c->model_path = arg; break;
    case SF_ARGS_O_VARS: c->vars_path = arg; break;
    case SF_ARGS_O_ARCH: c->arch_path = arg; break;
    case SF_ARGS_O_ONNX_OUTPUT: c->onnx_output = arg; break;
    case SF_ARGS_O_ID: c->id_field = *arg ? arg : NULL; break;
    case SF_ARGS_O_NORM:
        if (sf_norm_parse(arg, &c->norm))
            *bad = sf_args_bad(cli, "--normalize", arg, "standard, l2 or none");
        break;
    case SF_ARGS_O_BATCH:
        if (sf_args_long(arg, 1, 1 << 20, &v))
            *bad = sf_args_bad(cli, "--batch-size", arg, "an integer in 1..1048576");
        else
            c->batch_size = (size_t)v;
        break;
    case SF_ARGS_O_BACKEND: *bad |= sf_args_backend(cli, arg, &c->infer); break;
    case SF_ARGS_O_PRECISION: *bad |= sf_args_precision(cli, arg, &c->infer); break;
    case SF_ARGS_O_UNSAFE_LOADER: c->loader.unsafe = 1; break;
    default: return 0;
    }
    return 1;
}

int sf_args_engine_check(const sf_cli *cli, const sf_engine_conf *c, int argc, char *const argv[]) {
    if (optind < argc)
        return sf_args_usage(cli, "unexpected argument '%s'", argv[optind]);
    if (!c->model_path || (!c->vars_path && !sf_modelset_is_set(c->model_path)))
        return sf_args_usage(cli, "--model and --variables are required (--variables unless the model is a set)");
    return 0;
}
