/* features.c: the rules that turn an event into a feature row, shared by the fast
 * scanner (features_fast.c) and the jansson fallback (features_jansson.c).
 *
 * Keeping every decision (defaults, the missing value, float range, id length)
 * and every message here is what makes the two parsers agree. A rejected event
 * reports the first problem in this order: not_json, a number beyond the double
 * range anywhere in the text (jansson cannot represent it, so it is an error of
 * the whole document), not_object, the id, then the variables in file order.
 * Duplicate keys are allowed and the last one wins, as in jansson, Python and
 * JavaScript. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features_impl.h"

/* Doubles at or above this round to infinity as floats (FLT_MAX plus half an
 * ulp: the tie rounds to even, which is the infinity). */
#define SF_FLOAT_LIMIT 0x1.ffffffp+127

const char *sf_reject_name(sf_reject r) {
    switch (r) {
    case SF_REJECT_NONE: return "none";
    case SF_REJECT_NOT_JSON: return "not_json";
    case SF_REJECT_NOT_OBJECT: return "not_object";
    case SF_REJECT_MISSING_FIELD: return "missing_field";
    case SF_REJECT_NOT_NUMBER: return "not_number";
    case SF_REJECT_NOT_FINITE: return "not_finite";
    case SF_REJECT_TOO_LARGE: return "too_large";
    case SF_REJECT__COUNT: break;
    }
    return "unknown";
}

int sf_norm_parse(const char *s, sf_norm *out) {
    if (!strcmp(s, "standard"))
        *out = SF_NORM_STANDARD;
    else if (!strcmp(s, "l2"))
        *out = SF_NORM_L2;
    else if (!strcmp(s, "none"))
        *out = SF_NORM_NONE;
    else
        return -1;
    return 0;
}

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

static sf_feature_key *table_slot(sf_assembler *a, const char *name, size_t len) {
    uint32_t h = sf_features_hash(name, len);
    for (size_t i = h & a->mask;; i = (i + 1) & a->mask) {
        sf_feature_key *k = &a->table[i];
        if (!k->name || (k->len == len && !memcmp(k->name, name, len))) {
            if (!k->name) {
                k->name = name;
                k->len = len;
                k->hash = h;
                k->var = -1;
            }
            return k;
        }
    }
}

sf_assembler *sf_assembler_new(const sf_vars *vars, const char *id_field) {
    sf_assembler *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->vars = vars;
    a->n = vars->n_vars;
    a->id_var = -1;
    size_t cap = 8;
    while (cap < 2 * (a->n + 1))
        cap *= 2;
    a->mask = cap - 1;
    a->table = calloc(cap, sizeof *a->table);
    a->name_len = calloc(a->n ? a->n : 1, sizeof *a->name_len);
    a->defaults = calloc(a->n ? a->n : 1, sizeof *a->defaults);
    if (id_field) {
        a->id_field = strdup(id_field);
        a->id_len = strlen(id_field);
    }
    if (!a->table || !a->name_len || !a->defaults || (id_field && !a->id_field)) {
        sf_assembler_free(a);
        return NULL;
    }
    for (size_t i = 0; i < a->n; i++) {
        const sf_var *v = &vars->vars[i];
        a->name_len[i] = strlen(v->name);
        a->defaults[i] = (float)v->default_value;
        table_slot(a, v->name, a->name_len[i])->var = (int)i;
    }
    if (a->id_field) {
        sf_feature_key *k = table_slot(a, a->id_field, a->id_len);
        k->is_id = 1;
        a->id_var = k->var;
    }
    return a;
}

void sf_assembler_free(sf_assembler *a) {
    if (!a)
        return;
    free(a->table);
    free(a->name_len);
    free(a->defaults);
    free(a->id_field);
    free(a);
}

int sf_features_number(const sf_assembler *a, double d, float *out) {
    if (a->vars->has_missing_value && d == a->vars->missing_value)
        return SF_NUM_MISSING;
    if (!(fabs(d) < SF_FLOAT_LIMIT))
        return SF_NUM_NOT_FINITE;
    *out = (float)d;
    return SF_NUM_OK;
}

sf_reject sf_features_absent(const sf_assembler *a, size_t i, int had_missing_value, float *row,
                             char *errstr, size_t errstr_size) {
    const sf_var *v = &a->vars->vars[i];
    if (v->has_default) {
        row[i] = a->defaults[i];
        return SF_REJECT_NONE;
    }
    if (had_missing_value)
        snprintf(errstr, errstr_size, "field '%s' has the missing value %.15g and no default",
                 v->name, a->vars->missing_value);
    else
        snprintf(errstr, errstr_size, "field '%s' is missing and has no default", v->name);
    return SF_REJECT_MISSING_FIELD;
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

/* Messages quote event text, which may be cut mid-character by the bound or by
 * snprintf, or come from jansson's "near '...'" context of a broken byte.
 * Consumers put them into JSON, so they are made valid UTF-8 here. */
static void sanitize_utf8(char *s) {
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        size_t n;
        uint32_t min;
        if (*p < 0x80) {
            p++;
            continue;
        } else if ((*p & 0xe0) == 0xc0) {
            n = 2, min = 0x80;
        } else if ((*p & 0xf0) == 0xe0) {
            n = 3, min = 0x800;
        } else if ((*p & 0xf8) == 0xf0) {
            n = 4, min = 0x10000;
        } else {
            *p++ = '?';
            continue;
        }
        uint32_t cp = *p & (0xff >> (n + 1));
        size_t k = 1;
        for (; k < n && (p[k] & 0xc0) == 0x80; k++)
            cp = (cp << 6) | (p[k] & 0x3f);
        if (k < n || cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

sf_reject sf_assembler_run(const sf_assembler *a, const char *json, size_t len,
                           float *row, sf_event_id *id, char *errstr, size_t errstr_size) {
    char scratch[8];
    if (!errstr || errstr_size == 0) {
        errstr = scratch;
        errstr_size = sizeof scratch;
    }
    errstr[0] = '\0';
    if (!json)
        json = "";
    if (id) {
        id->json_len = id->key_len = 0;
        id->json[0] = id->key[0] = '\0';
    }
    int r = sf_features_run_fast(a, json, len, row, id, errstr, errstr_size);
    if (r == SF_FEATURES_FALLBACK) {
        if (id) {
            id->json_len = id->key_len = 0;
            id->json[0] = id->key[0] = '\0';
        }
        r = sf_features_run_jansson(a, json, len, row, id, errstr, errstr_size);
    }
    if (r != SF_REJECT_NONE)
        sanitize_utf8(errstr);
    return (sf_reject)r;
}

void sf_features_normalize(const sf_vars *vars, sf_norm norm, float *rows, size_t n) {
    if (norm == SF_NORM_NONE)
        return;
    size_t w = vars->n_vars;
    for (size_t r = 0; r < n; r++) {
        float *row = rows + r * w;
        for (size_t i = 0; i < w; i++)
            row[i] = (row[i] + (float)vars->vars[i].offset) * (float)vars->vars[i].scale;
        if (norm != SF_NORM_L2)
            continue;
        double ss = 0.0;
        for (size_t i = 0; i < w; i++)
            ss += (double)row[i] * row[i];
        if (ss > 0.0) {
            double norm2 = sqrt(ss);
            for (size_t i = 0; i < w; i++)
                row[i] = (float)(row[i] / norm2);
        }
    }
}
