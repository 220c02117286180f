/* log.h: one line per event of note on stderr, with a UTC timestamp and a level,
 * as text for people or as one JSON object per line for log shippers.
 *
 * A message is a short phrase followed by its structured fields as key=value
 * pairs (logfmt: a value holding spaces is double-quoted), for example
 *   "rejected event topic=events partition=3 offset=17 reason=not_json error=\"...\""
 * Text output prints it as is; JSON output turns it into
 *   {"ts":"...","level":"warn","msg":"rejected event","topic":"events","partition":3,...}
 * with numbers as numbers, so both formats carry the same fields by
 * construction. A message whose tail is not all key=value pairs is all msg.
 *
 * The logger travels with the caller (no global log level or format), so the
 * daemon, the demo and the tests can each choose their own. */
#ifndef SIGFLOW_LOG_H
#define SIGFLOW_LOG_H

typedef enum { SF_LOG_ERROR = 0, SF_LOG_WARN, SF_LOG_INFO, SF_LOG_DEBUG } sf_log_level;
typedef enum { SF_LOG_TEXT = 0, SF_LOG_JSON } sf_log_format;

typedef struct {
    sf_log_level level; /* lines above it are dropped */
    sf_log_format format;
} sf_logger;

/* Parses "error" | "warn" | "info" | "debug". 0 or -1. */
int sf_log_level_parse(const char *s, sf_log_level *out);

/* Parses "text" | "json". 0 or -1. */
int sf_log_format_parse(const char *s, sf_log_format *out);

/* Writes the line when level <= lg.level, with one write so lines from several
 * threads never interleave. */
void sf_log(sf_logger lg, sf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A one-shot command's message about itself (a model it cannot load, a write
 * error): "PROG: MSG" in text, as command-line tools print it; in JSON the
 * object of sf_log with "prog" added. Always written. */
void sf_log_cli(sf_log_format format, sf_log_level level, const char *prog, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The JSON object of one message, without the newline, into out (truncated to
 * fit, always a complete object). Exposed for the tests. */
void sf_log_json(char *out, size_t n, const char *ts, sf_log_level level, const char *msg);

#endif
