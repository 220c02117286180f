/* log.c: timestamped stderr lines, written with one fputs so lines from the
 * pipeline and librdkafka's threads never interleave mid-line. JSON lines are
 * derived from the same message text (its key=value tail), so the two formats
 * cannot drift apart. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
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

int sf_log_format_parse(const char *s, sf_log_format *out) {
    if (!strcmp(s, "text"))
        *out = SF_LOG_TEXT;
    else if (!strcmp(s, "json"))
        *out = SF_LOG_JSON;
    else
        return -1;
    return 0;
}

/* ---- the key=value tail ---------------------------------------------------- */

/* Length of "key=" at s (a key is [a-z_][a-z0-9_.]*), or 0. */
static size_t key_len(const char *s) {
    if (!(islower((unsigned char)*s) || *s == '_'))
        return 0;
    size_t k = 1;
    while (islower((unsigned char)s[k]) || isdigit((unsigned char)s[k]) || s[k] == '_' || s[k] == '.')
        k++;
    return s[k] == '=' ? k + 1 : 0;
}

typedef struct {
    const char *key, *val;
    size_t key_n, val_n;
    int quoted; /* a quoted value is a string even when it looks like a number */
} field;

/* Parses one field at s into f; returns the end of the field (at a space or
 * the terminator) or NULL when s is not a field. A quoted value ends at the
 * quote that is followed by the end or by " key=". */
static const char *parse_field(const char *s, field *f) {
    size_t k = key_len(s);
    if (!k)
        return NULL;
    f->key = s;
    f->key_n = k - 1;
    const char *v = s + k;
    f->quoted = *v == '"';
    if (f->quoted) {
        for (const char *q = strchr(v + 1, '"'); q; q = strchr(q + 1, '"'))
            if (!q[1] || (q[1] == ' ' && key_len(q + 2))) {
                f->val = v + 1;
                f->val_n = (size_t)(q - v - 1);
                return q + 1;
            }
        return NULL;
    }
    f->val = v;
    f->val_n = strcspn(v, " ");
    return v + f->val_n;
}

/* Where the fields begin (the first word that is a field, when every word from
 * there on is one), or the end of msg. */
static const char *fields_start(const char *msg) {
    for (const char *w = msg; *w; w++) {
        if (w != msg && w[-1] != ' ')
            continue;
        const char *p = w;
        field f;
        while ((p = parse_field(p, &f)) && *p == ' ')
            p++;
        if (p && !*p)
            return w;
    }
    return msg + strlen(msg);
}

/* ---- JSON ------------------------------------------------------------------ */

typedef struct {
    char *buf;
    size_t n, len;
    int full;
} out;

static void put(out *o, const char *s, size_t n) {
    if (o->full || o->len + n + 2 >= o->n) { /* room for the closing brace */
        o->full = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void put_string(out *o, const char *s, size_t n) {
    put(o, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(o, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put(o, esc, 6);
        } else {
            put(o, s + i, 1);
        }
    }
    put(o, "\"", 1);
}

/* A value that is a JSON number as written (so 3, -1.5, 2e3; not 007 or inf). */
static int is_number(const char *s, size_t n) {
    char tmp[64];
    if (n == 0 || n >= sizeof tmp)
        return 0;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    const char *d = tmp[0] == '-' ? tmp + 1 : tmp;
    if (!isdigit((unsigned char)d[0]) || (d[0] == '0' && isdigit((unsigned char)d[1])))
        return 0;
    char *end;
    double v = strtod(tmp, &end);
    return !*end && isfinite(v) && !strpbrk(tmp, "xXpP");
}

void sf_log_json(char *buf, size_t n, const char *ts, sf_log_level level, const char *msg) {
    out o = {buf, n, 0, 0};
    buf[0] = '\0';
    const char *tail = fields_start(msg);
    size_t msg_n = (size_t)(tail - msg);
    while (msg_n && msg[msg_n - 1] == ' ')
        msg_n--;
    put(&o, "{\"ts\":", 6);
    put_string(&o, ts, strlen(ts));
    put(&o, ",\"level\":", 9);
    put_string(&o, level_names[level], strlen(level_names[level]));
    put(&o, ",\"msg\":", 7);
    put_string(&o, msg, msg_n);
    field f;
    size_t complete = o.full ? 0 : o.len;
    for (const char *p = tail; *p && (p = parse_field(p, &f));) {
        complete = o.full ? complete : o.len;
        put(&o, ",", 1);
        put_string(&o, f.key, f.key_n);
        put(&o, ":", 1);
        if (!f.quoted && is_number(f.val, f.val_n))
            put(&o, f.val, f.val_n);
        else
            put_string(&o, f.val, f.val_n);
        while (*p == ' ')
            p++;
    }
    if (o.full) { /* drop the member that did not fit, keep the object whole */
        if (!complete) {
            snprintf(buf, n - 1, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"(truncated)\"", ts,
                     level_names[level]);
            complete = strlen(buf);
        }
        o.len = complete;
    }
    buf[o.len] = '}';
    buf[o.len + 1] = '\0';
}

/* One line on stderr, with one fputs. prog: the text prefix of sf_log_cli. */
static void emit(sf_log_format format, sf_log_level level, const char *prog, const char *msg) {
    char ts[64], line[16384]; /* room for msg escaped */
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);
    if (format == SF_LOG_JSON) {
        sf_log_json(line, sizeof line - 1, ts, level, msg);
        if (prog) { /* ,"prog":"..." before the closing brace */
            char tail[256];
            out o = {tail, sizeof tail, 0, 0};
            put(&o, ",\"prog\":", 8);
            put_string(&o, prog, strlen(prog));
            size_t len = strlen(line);
            if (!o.full && len + o.len + 2 < sizeof line) {
                memcpy(line + len - 1, tail, o.len);
                strcpy(line + len - 1 + o.len, "}");
            }
        }
    } else if (prog) {
        snprintf(line, sizeof line - 1, "%s: %s", prog, msg);
    } else {
        snprintf(line, sizeof line - 1, "%s sigflow %-5s %s", ts, level_names[level], msg);
    }
    size_t len = strlen(line);
    line[len] = '\n';
    line[len + 1] = '\0';
    fputs(line, stderr);
}

void sf_log(sf_logger lg, sf_log_level level, const char *fmt, ...) {
    if (level > lg.level)
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(lg.format, level, NULL, msg);
}

void sf_log_cli(sf_log_format format, sf_log_level level, const char *prog, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    emit(format, level, prog, msg);
}
