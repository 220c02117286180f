/* features_rules.c: the decisions and messages both event parsers share
 * (features_rules.h says why they live in a leaf). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features_rules.h"

/* Doubles at or above this round to infinity as floats (FLT_MAX plus half an
 * ulp: the tie rounds to even, which is the infinity). */
#define SF_FLOAT_LIMIT 0x1.ffffffp+127

uint32_t sf_features_hash(const char *s, size_t len) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

const sf_feature_key *sf_features_lookup(const sf_assembler *a, const char *key, size_t len) {
    uint32_t h = sf_features_hash(key, len);
    for (size_t i = h & a->mask;; i = (i + 1) & a->mask) {
        const sf_feature_key *k = &a->table[i];
        if (!k->name)
            return NULL;
        if (k->hash == h && k->len == len && !memcmp(k->name, key, len))
            return k;
    }
}

sf_field_status sf_features_number(const sf_assembler *a, double d, float *out) {
    if (a->vars->has_missing_value && d == a->vars->missing_value)
        return SF_FIELD_MISSING;
    if (!(fabs(d) < SF_FLOAT_LIMIT))
        return SF_FIELD_NOT_FINITE;
    *out = (float)d;
    return SF_FIELD_OK;
}

static int fillable(const sf_assembler *a, size_t i, unsigned char st) {
    const sf_var *v = &a->vars->vars[i];
    return v->has_default || (st == SF_FIELD_MISSING && v->has_fill);
}

sf_reject sf_features_absent(const sf_assembler *a, size_t i, const unsigned char *state,
                             float *row, char *errstr, size_t errstr_size) {
    const sf_var *v = &a->vars->vars[i];
    if (fillable(a, i, state[i])) {
        row[i] = state[i] == SF_FIELD_MISSING ? a->fills[i] : a->defaults[i];
        return SF_REJECT_NONE;
    }
    unsigned char lack_small[256] = {0};
    unsigned char *lack = a->n <= sizeof lack_small ? lack_small : calloc(a->n, 1);
    if (!lack) {
        snprintf(errstr, errstr_size, "field '%s' is missing and has no default", v->name);
        return SF_REJECT_MISSING_FIELD;
    }
    for (size_t k = 0; k < a->n; k++) {
        int lacking = k >= i && (state[k] == SF_FIELD_ABSENT || state[k] == SF_FIELD_MISSING) &&
                      !fillable(a, k, state[k]);
        lack[k] = !lacking ? 0 : state[k] == SF_FIELD_MISSING ? SF_LACK_MISSING_VALUE
                                                                : SF_LACK_ABSENT;
    }
    sf_reject r = sf_features_missing(a->vars, lack, errstr, errstr_size);
    if (lack != lack_small)
        free(lack);
    return r;
}

void sf_features_count_defaults(const sf_assembler *a, const unsigned char *state,
                                _Atomic uint64_t *defaulted) {
    if (!defaulted)
        return;
    for (size_t i = 0; i < a->n; i++)
        if (state[i] == SF_FIELD_ABSENT)
            atomic_fetch_add_explicit(&defaulted[i], 1, memory_order_relaxed);
}

/* Event text quoted in a message is bounded so a hostile event cannot push the
 * useful part out of a fixed-size error buffer. */
#define QUOTE_MAX 64

static int quoted_len(size_t len) {
    return (int)(len > QUOTE_MAX ? QUOTE_MAX : len);
}

sf_reject sf_features_not_number(const char *field, size_t field_len, const char *type,
                                 char *errstr, size_t errstr_size) {
    snprintf(errstr, errstr_size, "field '%.*s%s': expected a number, got %s",
             quoted_len(field_len), field, field_len > QUOTE_MAX ? "..." : "", type);
    return SF_REJECT_NOT_NUMBER;
}

sf_reject sf_features_not_finite(const char *field, size_t field_len, const char *text,
                                 size_t text_len, char *errstr, size_t errstr_size) {
    const char *more = text_len > QUOTE_MAX ? "..." : "";
    if (field)
        snprintf(errstr, errstr_size, "field '%.*s%s': value %.*s%s is not a finite float",
                 quoted_len(field_len), field, field_len > QUOTE_MAX ? "..." : "",
                 quoted_len(text_len), text, more);
    else
        snprintf(errstr, errstr_size, "value %.*s%s is not a finite float", quoted_len(text_len),
                 text, more);
    return SF_REJECT_NOT_FINITE;
}

sf_reject sf_features_set_id(const sf_assembler *a, sf_event_id *id, const char *json,
                             size_t json_len, const char *key, size_t key_len,
                             char *errstr, size_t errstr_size) {
    if (json_len > SF_ID_MAX - 1 || key_len > SF_ID_MAX - 1) {
        snprintf(errstr, errstr_size, "field '%s': id longer than %d bytes", a->id_field,
                 SF_ID_MAX - 1);
        return SF_REJECT_TOO_LARGE;
    }
    if (!id)
        return SF_REJECT_NONE;
    memcpy(id->json, json, json_len);
    id->json[json_len] = '\0';
    id->json_len = json_len;
    memcpy(id->key, key, key_len);
    id->key[key_len] = '\0';
    id->key_len = key_len;
    return SF_REJECT_NONE;
}

