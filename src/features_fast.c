/* features_fast.c: the single-pass scanner that handles almost every event.
 *
 * Building a jansson tree for each event costs an allocation per field; events
 * are flat objects of plain keys and numbers, so this scanner walks the text once,
 * maps each key to its variable (fields usually come in variable order, so the
 * next variable is tried before the hash table) and converts numbers in place.
 * It never recurses and never judges what it does not fully understand: escapes,
 * non-ASCII bytes, nested values, duplicate keys we care about and every syntax
 * error return SF_FEATURES_FALLBACK, and jansson decides (with its line and
 * column for the message). What it does accept, it treats exactly like jansson:
 * the strict JSON number grammar, correctly rounded conversion, the whole text
 * one object. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "features_impl.h"

#define FALLBACK SF_FEATURES_FALLBACK

static inline int is_ws(unsigned char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline int is_digit(unsigned char c) {
    return c >= '0' && c <= '9';
}

static inline const char *skip_ws(const char *p, const char *end) {
    while (p < end && is_ws((unsigned char)*p))
        p++;
    return p;
}

/* Powers of ten a double holds exactly. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Converts a validated JSON number that is followed by a delimiter. With at most
 * 15 significant digits and a power of ten up to 22, both operands are exact
 * doubles and one IEEE multiplication or division rounds correctly (Clinger's
 * fast path), giving the same double as strtod, which handles everything else.
 * Returns -1 when the number is beyond the double range. */
int sf_features_parse_number(const char *s, const char *end, double *out) {
    const char *p = s;
    int neg = 0;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    uint64_t m = 0;
    int digits = 0, exp10 = 0;
    for (; p < end && is_digit((unsigned char)*p); p++) {
        if (m || *p != '0') {
            m = m * 10 + (uint64_t)(*p - '0');
            if (++digits > 15)
                goto slow;
        }
    }
    if (p < end && *p == '.') {
        for (p++; p < end && is_digit((unsigned char)*p); p++) {
            if (m || *p != '0') {
                m = m * 10 + (uint64_t)(*p - '0');
                if (++digits > 15)
                    goto slow;
            }
            exp10--;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        int eneg = 0, e = 0;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        for (; p < end && is_digit((unsigned char)*p); p++) {
            if (e > 1000)
                goto slow;
            e = e * 10 + (*p - '0');
        }
        exp10 += eneg ? -e : e;
    }
    if (m == 0) {
        *out = neg ? -0.0 : 0.0;
        return 0;
    }
    if (exp10 < -22 || exp10 > 22)
        goto slow;
    double d = (double)m;
    d = exp10 < 0 ? d / pow10_exact[-exp10] : d * pow10_exact[exp10];
    *out = neg ? -d : d;
    return 0;
slow:
    /* The caller checked that a delimiter follows, so strtod stops there. */
    errno = 0;
    *out = strtod(s, NULL);
    return isinf(*out) ? -1 : 0;
}

/* Checks the JSON number grammar (no '+', no leading zeros, digits on both sides
 * of '.', a complete exponent). Returns the end, or NULL. *may_overflow is set
 * when the value could be beyond the double range. */
static const char *scan_number(const char *p, const char *end, int *may_overflow) {
    if (p < end && *p == '-')
        p++;
    const char *int_start = p;
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (p < end && is_digit((unsigned char)*p))
            p++;
    } else {
        return NULL;
    }
    *may_overflow = p - int_start > 308;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || !is_digit((unsigned char)*p))
            return NULL;
        while (p < end && is_digit((unsigned char)*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || !is_digit((unsigned char)*p))
            return NULL;
        while (p < end && is_digit((unsigned char)*p))
            p++;
        *may_overflow = 1;
    }
    return p;
}

/* A string without escapes, control characters or non-ASCII bytes: then its
 * text is its value and it is valid JSON by construction. Returns the position
 * of the closing quote, or NULL for anything else. */
static const char *scan_plain_string(const char *p, const char *end) {
    for (; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p;
        if (c == '\\' || c < 0x20 || c >= 0x80)
            return NULL;
    }
    return NULL;
}

int sf_features_run_fast(const sf_assembler *a, const char *json, size_t len, float *row,
                         sf_event_id *id, _Atomic uint64_t *defaulted, char *errstr, size_t errstr_size) {
    const char *p = json, *end = json + len;
    const size_t n = a->n;
    /* Per-call state keeps the assembler shareable between threads; only
     * networks wider than 256 inputs pay an allocation for it. */
    unsigned char state_small[256];
    unsigned char *state = n <= sizeof state_small ? state_small : calloc(n, 1);
    if (!state)
        return FALLBACK;
    if (state == state_small)
        memset(state, 0, n);
    int rc = FALLBACK;

    size_t bad = n;                       /* first variable with a bad value */
    const char *bad_text = NULL, *bad_type = NULL;
    size_t bad_text_len = 0;
    const char *ov_key = NULL, *ov_text = NULL;  /* first number beyond double range */
    size_t ov_key_len = 0, ov_text_len = 0;
    const char *id_val = NULL;
    size_t id_val_len = 0;
    size_t expect = 0;                    /* fields usually follow the variable order */

    p = skip_ws(p, end);
    if (p >= end || *p != '{')
        goto out;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
        goto closed;
    }
    for (;;) {
        if (p >= end || *p != '"')
            goto out;
        const char *key = p + 1;
        const char *q = scan_plain_string(key, end);
        if (!q)
            goto out;
        size_t key_len = (size_t)(q - key);
        p = skip_ws(q + 1, end);
        if (p >= end || *p != ':')
            goto out;
        p = skip_ws(p + 1, end);
        if (p >= end)
            goto out;

        int var = -1, is_id = 0;
        if (expect < n && a->name_len[expect] == key_len &&
            !memcmp(a->vars->vars[expect].name, key, key_len)) {
            var = (int)expect;
            is_id = var == a->id_var;
        } else {
            const sf_feature_key *k = sf_features_lookup(a, key, key_len);
            if (k) {
                var = k->var;
                is_id = k->is_id;
            }
        }

        const char *val = p;
        const char *type = NULL;          /* non-NULL: not a number */
        int may_overflow = 0;
        char c = *p;
        if (c == '"') {
            const char *close = scan_plain_string(p + 1, end);
            if (!close)
                goto out;
            p = close + 1;
            type = "string";
        } else if (c == '-' || is_digit((unsigned char)c)) {
            p = scan_number(p, end, &may_overflow);
            if (!p)
                goto out;
        } else if (c == 't' && end - p >= 4 && !memcmp(p, "true", 4)) {
            p += 4;
            type = "boolean";
        } else if (c == 'f' && end - p >= 5 && !memcmp(p, "false", 5)) {
            p += 5;
            type = "boolean";
        } else if (c == 'n' && end - p >= 4 && !memcmp(p, "null", 4)) {
            p += 4;
            type = "null";
        } else {
            goto out;                     /* nested value or not JSON */
        }
        size_t val_len = (size_t)(p - val);
        /* A delimiter must follow before any conversion reads the number. */
        if (p >= end || !(is_ws((unsigned char)*p) || *p == ',' || *p == '}'))
            goto out;

        if (var >= 0) {
            if (state[var] != SF_FIELD_ABSENT)
                goto out;                 /* duplicate: jansson keeps the last */
            expect = (size_t)var + 1;
            sf_field_status st = SF_FIELD_WRONG_TYPE;
            if (!type) {
                double d;
                if (sf_features_parse_number(val, end, &d) < 0) {
                    st = SF_FIELD_NOT_FINITE;
                    if (!ov_text) {
                        ov_key = key, ov_key_len = key_len;
                        ov_text = val, ov_text_len = val_len;
                    }
                } else {
                    st = sf_features_number(a, d, &row[var]);
                }
            }
            state[var] = (unsigned char)st;
            if ((st == SF_FIELD_WRONG_TYPE || st == SF_FIELD_NOT_FINITE) && (size_t)var < bad) {
                bad = (size_t)var;
                bad_type = type;
                bad_text = val;
                bad_text_len = val_len;
            }
        } else if (may_overflow && !ov_text) {
            double d;
            if (sf_features_parse_number(val, end, &d) < 0) {
                ov_key = key, ov_key_len = key_len;
                ov_text = val, ov_text_len = val_len;
            }
        }
        if (is_id) {
            if (id_val)
                goto out;
            id_val = val;
            id_val_len = val_len;
        }

        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == '}') {
            p++;
            break;
        }
        goto out;
    }
closed:
    if (skip_ws(p, end) != end)
        goto out;                         /* trailing garbage */

    if (ov_text) {
        rc = sf_features_not_finite(ov_key, ov_key_len, ov_text, ov_text_len, errstr, errstr_size);
        goto out;
    }
    if (id_val) {
        int quoted = id_val[0] == '"';
        rc = sf_features_set_id(a, id, id_val, id_val_len, id_val + quoted,
                                id_val_len - 2 * (size_t)quoted, errstr, errstr_size);
        if (rc != SF_REJECT_NONE)
            goto out;
    }
    rc = SF_REJECT_NONE;
    for (size_t i = 0; i < n; i++) {
        switch (state[i]) {
        case SF_FIELD_OK:
            continue;
        case SF_FIELD_ABSENT:
        case SF_FIELD_MISSING:
            rc = sf_features_absent(a, i, state, row, errstr, errstr_size);
            break;
        default:
            /* Only the first bad variable is remembered, and it comes first here. */
            if (bad_type)
                rc = sf_features_not_number(a->vars->vars[i].name, a->name_len[i], bad_type,
                                            errstr, errstr_size);
            else
                rc = sf_features_not_finite(a->vars->vars[i].name, a->name_len[i], bad_text,
                                            bad_text_len, errstr, errstr_size);
            break;
        }
        if (rc != SF_REJECT_NONE)
            break;
    }
    if (rc == SF_REJECT_NONE)
        sf_features_count_defaults(a, state, defaulted);
out:
    if (state != state_small)
        free(state);
    return rc;
}
