/* output.c: one prediction as a JSON object, written by hand into a caller's
 * buffer because it is on the daemon's hot path (one per published event).
 * snprintf's format parsing costs thousands of instructions an object, so
 * text and integers are copied directly. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sigflow/output.h"

/* Copies len bytes of s to buf and NUL-terminates, as snprintf would; -1 when
 * that does not fit. */
static int put(char *buf, size_t size, const char *s, size_t len) {
    if (len >= size)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return (int)len;
}

int sf_output_json_string(char *buf, size_t size, const char *s) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
#define PUT(c)                   \
    do {                         \
        if (n + 1 >= size)       \
            return -1;           \
        buf[n++] = (char)(c);    \
    } while (0)
    PUT('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            PUT('\\');
            PUT(*p);
        } else if (*p < 0x20) {
            const char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            for (size_t i = 0; i < sizeof esc; i++)
                PUT(esc[i]);
        } else {
            PUT(*p);
        }
    }
    PUT('"');
#undef PUT
    buf[n] = '\0';
    return (int)n;
}

/* Appends the result of expr (a snprintf-like count) at buf + n, or returns
 * -1 from the calling function when it does not fit. */
#define APPEND(expr)                              \
    do {                                          \
        if (n >= size)                            \
            return -1;                            \
        w = (expr);                               \
        if (w < 0 || (size_t)w >= size - n)       \
            return -1;                            \
        n += (size_t)w;                           \
    } while (0)
#define APPEND_TEXT(lit) APPEND(put(buf + n, size - n, lit, sizeof lit - 1))

/* u in decimal, after a '-' when minus: %zu, %d and %lld without a format. */
static int put_dec(char *buf, size_t size, uint64_t u, int minus) {
    char tmp[24], *end = tmp + sizeof tmp, *p = end;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (minus)
        *--p = '-';
    return put(buf, size, p, (size_t)(end - p));
}

static int put_int(char *buf, size_t size, int64_t v) {
    return put_dec(buf, size, v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0);
}

/* %.9g of (double)f, which round-trips a float. */
static int put_9g(char *buf, size_t size, float f) {
    return snprintf(buf, size, "%.9g", (double)f);
}

/* "p0, p1, ...]": JSON has no NaN or infinity; an overflowing model prints null. */
static int put_probs(char *buf, size_t size, const float *probs, size_t count) {
    size_t n = 0;
    int w;
    for (size_t i = 0; i < count; i++) {
        if (i)
            APPEND_TEXT(", ");
        if (isfinite(probs[i]))
            APPEND(put_9g(buf + n, size - n, probs[i]));
        else
            APPEND_TEXT("null");
    }
    APPEND_TEXT("]");
    return (int)n;
}

int sf_output_format(char *buf, size_t size, const char *id_field, const sf_event_id *id,
                     const sf_vars *vars, const float *probs, size_t label_index,
                     int32_t partition, int64_t offset) {
    size_t n = 0;
    int w;
    APPEND_TEXT("{");
    if (id && id->json_len > 0 && id_field) {
        APPEND(sf_output_json_string(buf + n, size - n, id_field));
        APPEND_TEXT(": ");
        /* strnlen: the id's text ends at a NUL, as %.*s ended it */
        APPEND(put(buf + n, size - n, id->json, strnlen(id->json, id->json_len)));
        APPEND_TEXT(", ");
    }
    APPEND_TEXT("\"label\": ");
    APPEND(sf_output_json_string(buf + n, size - n, vars->labels[label_index]));
    APPEND_TEXT(", \"label_index\": ");
    APPEND(put_dec(buf + n, size - n, label_index, 0));
    APPEND_TEXT(", \"probabilities\": [");
    APPEND(put_probs(buf + n, size - n, probs, vars->n_labels));
    if (partition >= 0) {
        APPEND_TEXT(", \"partition\": ");
        APPEND(put_int(buf + n, size - n, partition));
        APPEND_TEXT(", \"offset\": ");
        APPEND(put_int(buf + n, size - n, offset));
    }
    APPEND_TEXT("}");
    return (int)n;
}

int sf_output_add_members(char *buf, size_t size, size_t len, size_t n_members,
                          const char *const *names, const float *const *probs, size_t n_outputs) {
    if (len == 0 || buf[len - 1] != '}')
        return -1;
    size_t n = len - 1;
    int w;
    APPEND_TEXT(", \"members\": {");
    for (size_t k = 0; k < n_members; k++) {
        if (k)
            APPEND_TEXT(", ");
        APPEND(sf_output_json_string(buf + n, size - n, names[k]));
        APPEND_TEXT(": [");
        APPEND(put_probs(buf + n, size - n, probs[k], n_outputs));
    }
    APPEND_TEXT("}}");
    return (int)n;
}
