/* args.h: what every command line of sigflow's binaries shares: strict number
 * parsing (a typo in a flag is an error, never a silent zero), one way to say
 * what is wrong with an option, and one signal set-up with one stop flag.
 *
 * Error dialect (GNU's): a usage error is one line naming the problem,
 * "PROG: OPTION 'VALUE': OPTION wants WHAT" for a bad value, "PROG: unknown
 * option '--x'" and "PROG: option '--x' needs a value" for getopt's errors
 * (with opterr = 0 and a leading ':' in the short options), then, once,
 * "Try 'PROG --help'." (sf_args_try); exit status 2. With --log-format json
 * each is one error object with "prog" and "try" instead, and no second line.
 * Every line goes through the logger (sf_log_cli). */
#ifndef SIGFLOW_ARGS_H
#define SIGFLOW_ARGS_H

#include <stdatomic.h>
#include <stddef.h>

#include "sigflow/drift.h"
#include "sigflow/engine.h"
#include "sigflow/infer.h"
#include "sigflow/log.h"

/* Who speaks on stderr, and how: a command's name ("sigflow run") and its log
 * format, known before the options are parsed so that complaints about them
 * come out in the chosen format too. */
typedef struct {
    const char *prog;
    sf_log_format format;
} sf_cli;

/* prog with the format of the last "--log-format F" or "--log-format=F" in
 * argv[1..argc), else of SIGFLOW_LOG_FORMAT, else text. A bad value counts as
 * text: the option parser reports it. */
sf_cli sf_args_cli(const char *prog, int argc, char *const argv[]);

/* A usage error about anything but one option's value (a missing option, an
 * extra argument), printf-style: "PROG: MESSAGE". Returns 1. */
int sf_args_usage(const sf_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Ends the usage errors just printed: "Try 'PROG --help'." in text. Returns 2,
 * the exit status of a usage error. */
int sf_args_try(const sf_cli *cli);

/* The whole string as an integer in [min, max]. 0 or -1. */
int sf_args_long(const char *s, long min, long max, long *out);

/* The whole string as a finite number in [min, max]. 0 or -1. */
int sf_args_double(const char *s, double min, double max, double *out);

/* Prints "PROG: OPTION 'VALUE': OPTION wants WHAT" on stderr and returns 1;
 * "PROG: VARIABLE (OPTION) 'VALUE': ..." when VALUE came from the environment
 * (sf_args_with_env). */
int sf_args_bad(const sf_cli *cli, const char *option, const char *value, const char *what);

/* Reports getopt_long's ':' (missing value) or '?' (unknown option) for the
 * option just read and returns 1. */
int sf_args_getopt_error(const sf_cli *cli, int opt, char *const argv[]);

/* Configuration from the environment, the way Kafka tools and their container
 * images take it. Returns a malloc'd argument vector (one free()) for
 * getopt_long: argv[0]; then, for each long option of opts not named in skip
 * (NULL-terminated), the option taken from the variable SIGFLOW_<NAME> (the
 * name in capitals, '-' as '_'); then, for each variable SIGFLOW_KAFKA_<NAME>,
 * "-<kafka_opt> name=value" with NAME lower-cased, "___" as '-', "__" as '_'
 * and '_' as '.'; then argv[1..argc). Options given later win with getopt, so a
 * flag overrides its variable. A switch (no_argument) is on for 1, true or yes
 * and off for 0, false, no or empty. NULL, with the variable named in errstr,
 * on a bad switch value or when out of memory. */
struct option;
char **sf_args_with_env(const struct option *opts, const char *const *skip, char kafka_opt, int argc,
                        char **argv, int *argc_out, char *errstr, size_t errstr_size);

/* The stop flag every long-running command uses: SIGINT/SIGTERM set it. */
typedef atomic_int sf_stop_flag;

/* SIGINT and SIGTERM set *stop (the second one kills: a process stuck in its
 * drain can still be interrupted), SIGHUP sets *reload (left alone when
 * NULL); SIGPIPE is ignored so a closed socket is an error, not a death. The
 * flags must live as long as the process: they are the process's one piece of
 * global state. */
void sf_args_signals(sf_stop_flag *stop, atomic_int *reload);

/* For a command whose main thread only waits for a stop: blocks SIGINT and
 * SIGTERM in the calling thread, so threads started later inherit the mask
 * and the signals can only land in sf_args_wait_stop. Call before any thread
 * starts, after sf_args_signals. */
void sf_args_hold_stop_signals(void);

/* Sleeps until *stop is set (by a signal delivered while waiting). */
void sf_args_wait_stop(sf_stop_flag *stop);

/* The options that choose and shape the engine, the same in run, demo,
 * predict, evaluate and inspect: -m/--model and these codes,
 * for a command's getopt_long table (each lists the ones it takes). */
enum {
    SF_ARGS_O_ARCH = 0x1000, /* --architecture */
    SF_ARGS_O_VARS,          /* --variables (no short form: -v means verbose or version elsewhere) */
    SF_ARGS_O_ID,            /* --id-field */
    SF_ARGS_O_NORM,          /* --normalize */
    SF_ARGS_O_BATCH,         /* --batch-size */
    SF_ARGS_O_BACKEND,       /* --backend */
    SF_ARGS_O_PRECISION,     /* --precision */
    SF_ARGS_O_UNSAFE_LOADER, /* --unsafe-model-loader */
    SF_ARGS_O_ONNX_OUTPUT,   /* --onnx-output */
};

/* Applies opt (getopt_long's return) to c when it is one of those: returns 1,
 * with *bad set after printing the error for a bad value; 0 when it is not. */
int sf_args_engine(const sf_cli *cli, int opt, const char *arg, sf_engine_conf *c, int *bad);

/* After the options of a command that scores events: a usage error for an
 * argument left over, or for a model without the variables it needs (a model
 * set names its own). 1 after printing it, else 0. */
int sf_args_engine_check(const sf_cli *cli, const sf_engine_conf *c, int argc, char *const argv[]);

/* The drift monitor's options (drift.h), the same in run, demo and
 * sigflow-bench: codes for their getopt_long tables, and the usage lines. */
enum {
    SF_ARGS_O_DRIFT_EVENTS = 0x1100, /* --drift-window-events */
    SF_ARGS_O_DRIFT_SECONDS,         /* --drift-window-s */
    SF_ARGS_O_DRIFT_WARN,            /* --drift-warn-psi */
};
#define SF_ARGS_DRIFT_OPTIONS                                                      \
    {"drift-window-events", required_argument, NULL, SF_ARGS_O_DRIFT_EVENTS},      \
    {"drift-window-s", required_argument, NULL, SF_ARGS_O_DRIFT_SECONDS},          \
    {"drift-warn-psi", required_argument, NULL, SF_ARGS_O_DRIFT_WARN}
#define SF_ARGS_DRIFT_USAGE                                                                   \
    "  --drift-window-events N  input and score drift over the last N scored events\n"       \
    "                         (default 50000; 0 and no --drift-window-s: drift off)\n"       \
    "  --drift-window-s S     drift over the last S seconds instead\n"                       \
    "  --drift-warn-psi X     log a drift line when a PSI exceeds X (default 0.2)\n"

/* Applies opt to c when it is one of the drift options: 1 (with *bad set
 * after printing the error for a bad value), else 0. */
int sf_args_drift(const sf_cli *cli, int opt, const char *arg, sf_drift_conf *c, int *bad);

/* --backend and --precision, shared by the above and sigflow-bench: parse
 * into c, or print the error and return 1. */
int sf_args_backend(const sf_cli *cli, const char *value, sf_infer_conf *c);
int sf_args_precision(const sf_cli *cli, const char *value, sf_infer_conf *c);

/* --log-format, shared by every command that logs: parse into f, or print the
 * error and return 1. */
int sf_args_log_format(const sf_cli *cli, const char *value, sf_log_format *f);

#define SF_ARGS_LOADER_USAGE                                                             \
    "  --unsafe-model-loader  parse the model even where its sandbox (seccomp) cannot be\n" \
    "                         installed (refused otherwise); a warning at every load\n"

#define SF_ARGS_INFER_USAGE                                                              \
    "  --backend B            forward pass on auto (default: onednn where it has a JIT\n" \
    "                         kernel for this CPU, else openblas), openblas or onednn\n"   \
    "  --precision P          fp32 (default), bf16 (onednn; emulated and slow on a CPU\n" \
    "                         without AVX512_BF16/AMX, which the start-up line says) or\n" \
    "                         int8 (onednn on a CPU with AVX512_VNNI or AMX-INT8; needs\n" \
    "                         the variables file's training.calibration; refused else)\n"

#endif
