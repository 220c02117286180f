/* args.h: what every command line of sigflow's binaries shares: strict number
 * parsing (a typo in a flag is an error, never a silent zero), one way to say
 * what is wrong with an option, and one signal set-up with one stop flag.
 *
 * Error dialect, one line on stderr: "PROG: OPTION 'VALUE': OPTION wants WHAT"
 * for a bad value, "PROG: unknown option '--x' (see --help)" and "PROG: option
 * '--x' needs a value (see --help)" for getopt's errors (with opterr = 0 and
 * a leading ':' in the short options). */
#ifndef SIGFLOW_ARGS_H
#define SIGFLOW_ARGS_H

#include <stdatomic.h>
#include <stddef.h>

#include "sigflow/engine.h"
#include "sigflow/infer.h"
#include "sigflow/log.h"

/* The whole string as an integer in [min, max]. 0 or -1. */
int sf_args_long(const char *s, long min, long max, long *out);

/* The whole string as a finite number in [min, max]. 0 or -1. */
int sf_args_double(const char *s, double min, double max, double *out);

/* Prints "PROG: OPTION 'VALUE': OPTION wants WHAT" on stderr and returns 1;
 * "PROG: VARIABLE (OPTION) 'VALUE': ..." when VALUE came from the environment
 * (sf_args_with_env). */
int sf_args_bad(const char *prog, const char *option, const char *value, const char *what);

/* Reports getopt_long's ':' (missing value) or '?' (unknown option) for the
 * option just read and returns 1. */
int sf_args_getopt_error(const char *prog, int opt, char *const argv[]);

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

/* Whether a librdkafka property's value is a secret to mask when printed: its
 * name holds password, secret, token, key, credential, jaas or
 * oauthbearer.config. */
int sf_args_secret(const char *property);

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
 * predict, evaluate and inspect: -m/--model, -v/--variables and these codes,
 * for a command's getopt_long table (each lists the ones it takes). */
enum {
    SF_ARGS_O_ARCH = 0x1000, /* --architecture */
    SF_ARGS_O_ID,            /* --id-field */
    SF_ARGS_O_NORM,          /* --normalize */
    SF_ARGS_O_BATCH,         /* --batch-size */
    SF_ARGS_O_BACKEND,       /* --backend */
    SF_ARGS_O_PRECISION,     /* --precision */
    SF_ARGS_O_ONNX_OUTPUT,   /* --onnx-output */
};

/* Applies opt (getopt_long's return) to c when it is one of those: returns 1,
 * with *bad set after printing the error for a bad value; 0 when it is not. */
int sf_args_engine(const char *prog, int opt, const char *arg, sf_engine_conf *c, int *bad);

/* --backend and --precision, shared by the above and sigflow-bench: parse
 * into c, or print the error and return 1. */
int sf_args_backend(const char *prog, const char *value, sf_infer_conf *c);
int sf_args_precision(const char *prog, const char *value, sf_infer_conf *c);

/* --log-format, shared by every command that logs: parse into f, or print the
 * error and return 1. */
int sf_args_log_format(const char *prog, const char *value, sf_log_format *f);

#define SF_ARGS_INFER_USAGE                                                              \
    "  --backend B            forward pass on auto (default: onednn where it has a JIT\n" \
    "                         kernel for this CPU, else openblas), openblas or onednn\n"   \
    "  --precision P          fp32 (default) or bf16 (onednn; emulated and slow on a CPU\n" \
    "                         without AVX512_BF16/AMX, which the start-up line says)\n"

#endif
