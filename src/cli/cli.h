/* cli.h: what every subcommand's option parsing and signal set-up shares. */
#ifndef SIGFLOW_CLI_H
#define SIGFLOW_CLI_H

/* Whole-string integer in [min, max]. 0 or -1. */
int sf_cli_parse_long(const char *s, long min, long max, long *out);

/* Whole-string finite number. 0 or -1. */
int sf_cli_parse_double(const char *s, double *out);

/* Prints "sigflow CMD: OPTION 'VALUE': expected WHAT" and returns 1. */
int sf_cli_bad(const char *cmd, const char *option, const char *value, const char *what);

/* SIGINT and SIGTERM call on_stop, SIGHUP on_hup (ignored when NULL); SIGPIPE is
 * ignored so a closed socket is an error, not a death. */
void sf_cli_signals(void (*on_stop)(int), void (*on_hup)(int));

#endif
