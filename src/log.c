/* log.c: timestamped stderr lines, written with one fputs so lines from the
 * pipeline and librdkafka's threads never interleave mid-line. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sigflow/log.h"

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int sf_log_level_parse(const char *s, sf_log_level *out) {
    for (int i = 0; i <= SF_LOG_DEBUG; i++)
        if (!strcmp(s, level_names[i])) {
            *out = (sf_log_level)i;
            return 0;
        }
    return -1;
}

void sf_log(sf_log_level threshold, sf_log_level level, const char *fmt, ...) {
    if (level > threshold)
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ sigflow %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs(line, stderr);
}
