/* log.h: one line per event of note on stderr, with a UTC timestamp and a level.
 *
 * The threshold travels with the caller (no global log level), so the daemon,
 * the demo and the tests can each choose their own. */
#ifndef SIGFLOW_LOG_H
#define SIGFLOW_LOG_H

typedef enum { SF_LOG_ERROR = 0, SF_LOG_WARN, SF_LOG_INFO, SF_LOG_DEBUG } sf_log_level;

/* Parses "error" | "warn" | "info" | "debug". 0 or -1. */
int sf_log_level_parse(const char *s, sf_log_level *out);

/* Writes the line when level <= threshold. */
void sf_log(sf_log_level threshold, sf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
