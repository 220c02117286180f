/* args.h: what every command line of sigflow's binaries shares: strict number
 * parsing (a typo in a flag is an error, never a silent zero) and the signal
 * set-up of a long-running command. */
#ifndef SIGFLOW_ARGS_H
#define SIGFLOW_ARGS_H

/* The whole string as an integer in [min, max]. 0 or -1. */
int sf_args_long(const char *s, long min, long max, long *out);

/* The whole string as a finite number in [min, max]. 0 or -1. */
int sf_args_double(const char *s, double min, double max, double *out);

/* Prints "PROG: OPTION 'VALUE': expected WHAT" on stderr and returns 1. */
int sf_args_bad(const char *prog, const char *option, const char *value, const char *what);

/* SIGINT and SIGTERM call on_stop, SIGHUP on_hup (left alone when NULL);
 * SIGPIPE is ignored so a closed socket is an error, not a death. */
void sf_args_signals(void (*on_stop)(int), void (*on_hup)(int));

#endif
