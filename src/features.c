/* features.c: the assembler and its dispatch: the fast scanner
 * (features_fast.c) first, the jansson fallback (features_jansson.c) for what
 * it cannot judge; both apply the shared rules of features_rules.c, which is
 * what makes them agree. Also normalization. A rejected event
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

sf_reject sf_features_missing(const sf_vars *vars, const unsigned char *lack, char *errstr,
                              size_t errstr_size) {
    size_t total = 0, first = vars->n_vars;
    int any_missing_value = 0;
    for (size_t k = 0; k < vars->n_vars; k++) {
        if (!lack[k])
            continue;
        total++;
        if (first == vars->n_vars)
            first = k;
        any_missing_value |= lack[k] == SF_LACK_MISSING_VALUE;
    }
    if (total == 0) { /* the caller's bug; still a refusal, never a silent score */
        snprintf(errstr, errstr_size, "a required field is missing");
        return SF_REJECT_MISSING_FIELD;
    }
    if (total == 1) {
        if (lack[first] == SF_LACK_MISSING_VALUE)
            snprintf(errstr, errstr_size, "field '%s' has the missing value %.15g and no default",
                     vars->vars[first].name, vars->missing_value);
        else
            snprintf(errstr, errstr_size, "field '%s' is missing and has no default",
                     vars->vars[first].name);
        return SF_REJECT_MISSING_FIELD;
    }
    /* Every required input the event lacks is named, as far as the message
     * has room (the names are the variables file's, not event text). */
    char tail[128];
    if (any_missing_value)
        snprintf(tail, sizeof tail, " are missing or have the missing value %.15g, and have no "
                 "default", vars->missing_value);
    else
        snprintf(tail, sizeof tail, " are missing and have no default");
    size_t used = 0, len = 0, tail_len = strlen(tail);
    int w = snprintf(errstr, errstr_size, "%zu required fields", total);
    len = w > 0 ? (size_t)w : 0;
    for (size_t k = first; k < vars->n_vars && len < errstr_size; k++) {
        if (!lack[k])
            continue;
        /* Room for this name, " and N more" and the tail. */
        if (len + strlen(vars->vars[k].name) + 4 + 24 + tail_len >= errstr_size)
            break;
        len += (size_t)snprintf(errstr + len, errstr_size - len, "%s'%s'", used ? ", " : " ",
                                vars->vars[k].name);
        used++;
    }
    if (used < total && len < errstr_size)
        len += (size_t)snprintf(errstr + len, errstr_size - len, " and %zu more", total - used);
    if (len < errstr_size)
        snprintf(errstr + len, errstr_size - len, "%s", tail);
    return SF_REJECT_MISSING_FIELD;
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
    a->fills = calloc(a->n ? a->n : 1, sizeof *a->fills);
    if (id_field) {
        a->id_field = strdup(id_field);
        a->id_len = strlen(id_field);
    }
    if (!a->table || !a->name_len || !a->defaults || !a->fills || (id_field && !a->id_field)) {
        sf_assembler_free(a);
        return NULL;
    }
    for (size_t i = 0; i < a->n; i++) {
        const sf_var *v = &vars->vars[i];
        a->name_len[i] = strlen(v->name);
        a->defaults[i] = (float)v->default_value;
        a->fills[i] = (float)(v->has_fill ? v->fill : v->default_value);
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
    free(a->fills);
    free(a->id_field);
    free(a);
}

/* Messages quote event text, which may be cut mid-character by the bound or by
 * snprintf, or come from jansson's "near '...'" context of a broken byte.
 * Consumers put them into JSON, so they are made valid UTF-8 here. */
void sf_features_clean_message(char *s) {
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
    return sf_assembler_run_counted(a, json, len, row, id, NULL, errstr, errstr_size);
}

sf_reject sf_assembler_run_counted(const sf_assembler *a, const char *json, size_t len,
                                   float *row, sf_event_id *id, _Atomic uint64_t *defaulted,
                                   char *errstr, size_t errstr_size) {
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
    int r = sf_features_run_fast(a, json, len, row, id, defaulted, errstr, errstr_size);
    if (r == SF_FEATURES_FALLBACK) {
        if (id) {
            id->json_len = id->key_len = 0;
            id->json[0] = id->key[0] = '\0';
        }
        r = sf_features_run_jansson(a, json, len, row, id, defaulted, errstr, errstr_size);
    }
    if (r != SF_REJECT_NONE)
        sf_features_clean_message(errstr);
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
