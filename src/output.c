/* output.c: one prediction as a JSON object, written by hand into a caller's
 * buffer because it is on the daemon's hot path (one per published event). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sigflow/output.h"

int sf_output_json_string(char *buf, size_t size, const char *s) {
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
            if (n + 7 >= size)
                return -1;
            n += (size_t)snprintf(buf + n, size - n, "\\u%04x", *p);
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

/* "p0, p1, ...]": JSON has no NaN or infinity; an overflowing model prints null. */
static int put_probs(char *buf, size_t size, const float *probs, size_t count) {
    size_t n = 0;
    int w;
    for (size_t i = 0; i < count; i++) {
        if (isfinite(probs[i]))
            APPEND(snprintf(buf + n, size - n, i ? ", %.9g" : "%.9g", (double)probs[i]));
        else
            APPEND(snprintf(buf + n, size - n, i ? ", null" : "null"));
    }
    APPEND(snprintf(buf + n, size - n, "]"));
    return (int)n;
}

int sf_output_format(char *buf, size_t size, const char *id_field, const sf_event_id *id,
                     const sf_vars *vars, const float *probs, size_t label_index,
                     int32_t partition, int64_t offset) {
    size_t n = 0;
    int w;
    APPEND(snprintf(buf + n, size - n, "{"));
    if (id && id->json_len > 0 && id_field) {
        APPEND(sf_output_json_string(buf + n, size - n, id_field));
        APPEND(snprintf(buf + n, size - n, ": %.*s, ", (int)id->json_len, id->json));
    }
    APPEND(snprintf(buf + n, size - n, "\"label\": "));
    APPEND(sf_output_json_string(buf + n, size - n, vars->labels[label_index]));
    APPEND(snprintf(buf + n, size - n, ", \"label_index\": %zu, \"probabilities\": [", label_index));
    APPEND(put_probs(buf + n, size - n, probs, vars->n_labels));
    if (partition >= 0)
        APPEND(snprintf(buf + n, size - n, ", \"partition\": %d, \"offset\": %lld",
                        (int)partition, (long long)offset));
    APPEND(snprintf(buf + n, size - n, "}"));
    return (int)n;
}

int sf_output_add_members(char *buf, size_t size, size_t len, size_t n_members,
                          const char *const *names, const float *const *probs, size_t n_outputs) {
    if (len == 0 || buf[len - 1] != '}')
        return -1;
    size_t n = len - 1;
    int w;
    APPEND(snprintf(buf + n, size - n, ", \"members\": {"));
    for (size_t k = 0; k < n_members; k++) {
        if (k)
            APPEND(snprintf(buf + n, size - n, ", "));
        APPEND(sf_output_json_string(buf + n, size - n, names[k]));
        APPEND(snprintf(buf + n, size - n, ": ["));
        APPEND(put_probs(buf + n, size - n, probs[k], n_outputs));
    }
    APPEND(snprintf(buf + n, size - n, "}}"));
    return (int)n;
}
