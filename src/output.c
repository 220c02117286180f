/* output.c: one prediction as a JSON object, written by hand into a caller's
 * buffer because it is on the daemon's hot path (one per published event).
 * snprintf's format parsing and multi-precision float code cost several
 * thousand instructions an object, so text and integers are copied directly
 * and probabilities take an exact integer path (fmt_9g) where one exists. */
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

#ifdef __SIZEOF_INT128__
/* %.9g of (double)f into out, for 2^-70 <= |f| < 2^20 (8.5e-22 to 1.05e6:
 * every probability but vanishing ones) and for zeros; -1 elsewhere. In that
 * range f scaled to nine integer digits is m * 10^k / 2^shift with m < 2^24
 * and k <= 31, which fits in 128 bits, so quotient and remainder are exact;
 * rounding them half to even is what glibc does with the exact binary value in
 * the default rounding mode (sigflow never changes it).
 * bench/output/exhaustive_9g.c checks every float of the range against
 * snprintf. */
static int fmt_9g(char *out, float f) {
    static const uint64_t pow10[20] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000,
                                       100000000, 1000000000, 10000000000u, 100000000000u,
                                       1000000000000u, 10000000000000u, 100000000000000u,
                                       1000000000000000u, 10000000000000000u,
                                       100000000000000000u, 1000000000000000000u,
                                       10000000000000000000u};
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    char *p = out;
    if (bits >> 31)
        *p++ = '-';
    int be = (int)(bits >> 23 & 0xff);
    if ((bits & 0x7fffffff) == 0) {
        *p++ = '0';
        return (int)(p - out);
    }
    if (be < 127 - 70 || be >= 127 + 20)
        return -1;
    uint64_t m = (bits & 0x7fffff) | 1u << 23;
    int shift = 150 - be; /* |f| = m / 2^shift, shift in [4, 93] */
    /* x: the decimal exponent of |f|; the estimate from the binary one is at
     * most one off, and the nine-digit quotient q says which way. */
    int x = (be - 127) * 30103 / 100000;
    unsigned __int128 v;
    uint64_t q;
    for (;;) {
        int k = 8 - x, k1 = k < 12 ? k : 12; /* m * 10^12 < 2^64 */
        v = (unsigned __int128)(m * pow10[k1]) * pow10[k - k1];
        q = (uint64_t)(v >> shift);
        if (q < 100000000)
            x--;
        else if (q >= 1000000000)
            x++;
        else
            break;
    }
    unsigned __int128 rem = v & (((unsigned __int128)1 << shift) - 1);
    unsigned __int128 half = (unsigned __int128)1 << (shift - 1);
    if (rem > half || (rem == half && (q & 1)))
        q++;
    if (q == 1000000000) { /* 9.9999999996e-5 rounds to 1e-4: the style may change */
        q = 100000000;
        x++;
    }
    char d[9];
    for (int i = 8; i >= 0; i--, q /= 10)
        d[i] = (char)('0' + q % 10);
    int nd = 9; /* %g drops trailing zeros of the fraction, and a bare point */
    while (nd > 1 && d[nd - 1] == '0')
        nd--;
    if (x >= -4 && x < 9) { /* %f style with 8 - x decimals */
        if (x >= 0) {
            memcpy(p, d, (size_t)x + 1);
            p += x + 1;
            if (nd > x + 1) {
                *p++ = '.';
                memcpy(p, d + x + 1, (size_t)(nd - x - 1));
                p += nd - x - 1;
            }
        } else {
            memcpy(p, "0.000", (size_t)(1 - x));
            p += 1 - x;
            memcpy(p, d, (size_t)nd);
            p += nd;
        }
    } else { /* %e style: d.dddddddde-XX, x in [-22, -5] here */
        *p++ = d[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, d + 1, (size_t)nd - 1);
            p += nd - 1;
        }
        *p++ = 'e';
        *p++ = '-';
        *p++ = (char)('0' + -x / 10);
        *p++ = (char)('0' + -x % 10);
    }
    return (int)(p - out);
}
#else
static int fmt_9g(char *out, float f) {
    (void)out, (void)f;
    return -1;
}
#endif

/* %.9g of (double)f, which round-trips a float. */
static int put_9g(char *buf, size_t size, float f) {
    char tmp[32];
    int len = fmt_9g(tmp, f);
    if (len < 0)
        return snprintf(buf, size, "%.9g", (double)f);
    return put(buf, size, tmp, (size_t)len);
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
