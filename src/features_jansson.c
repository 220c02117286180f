/* features_jansson.c: the fallback parser for events the fast scanner declines.
 *
 * jansson is the judge of what is JSON (escapes, UTF-8, nesting depth, the line
 * and column of an error). Two things it cannot give back are recovered from the
 * text with a small token walker: the exact text of a value (the id is copied
 * verbatim, and a number's text is quoted in messages), and which field held a
 * number beyond the double range, which jansson reports only as a parse error.
 * The walker never recurses, so no input depth can exhaust the stack. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "features_impl.h"

typedef struct walk {
    /* in */
    const char *want_key;       /* report the last top-level member with this key */
    size_t want_key_len;
    int want_overflow;          /* stop at the first number beyond the double range */
    /* out */
    const char *val, *ov, *ov_key;
    size_t val_len, ov_len, ov_key_len;
} walk;

static int is_delim(unsigned char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == ',' || c == ':' ||
           c == '[' || c == ']' || c == '{' || c == '}' || c == '"';
}

/* Does the raw key token (with quotes) spell `name`? */
static int key_equals(const char *tok, size_t tok_len, const char *name, size_t name_len) {
    if (tok_len < 2)
        return 0;
    if (!memchr(tok, '\\', tok_len))
        return tok_len - 2 == name_len && !memcmp(tok + 1, name, name_len);
    json_t *s = json_loadb(tok, tok_len, JSON_DECODE_ANY, NULL);
    int eq = json_is_string(s) && json_string_length(s) == name_len &&
             !memcmp(json_string_value(s), name, name_len);
    json_decref(s);
    return eq;
}

static int number_overflows(const char *tok, size_t len) {
    char small[64];
    char *buf = len < sizeof small ? small : malloc(len + 1);
    if (!buf)
        return 0;
    memcpy(buf, tok, len);
    buf[len] = '\0';
    errno = 0;
    double d = strtod(buf, NULL);
    if (buf != small)
        free(buf);
    return isinf(d) && errno == ERANGE;
}

/* Walks tokens in document order, tracking only the nesting depth and, inside a
 * top-level object, the current member's key. Stops quietly at the end of the
 * buffer whatever the text is. */
static void walk_text(const char *text, size_t len, walk *w) {
    const char *p = text, *end = text + len;
    size_t depth = 0;
    int top_object = 0, expect_key = 0;
    const char *key = NULL, *member = NULL;
    size_t key_len = 0;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        const char *tok = p;
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == ':') {
            p++;
            continue;
        }
        if (c == '{' || c == '[') {
            if (depth == 0)
                top_object = c == '{';
            if (depth == 1 && top_object)
                member = p;
            depth++;
            expect_key = depth == 1 && top_object;
            p++;
            continue;
        }
        if (c == '}' || c == ']') {
            p++;
            if (depth > 0)
                depth--;
            if (depth == 1 && top_object && member && w->want_key && key &&
                key_equals(key, key_len, w->want_key, w->want_key_len)) {
                w->val = member;
                w->val_len = (size_t)(p - member);
            }
            continue;
        }
        if (c == ',') {
            expect_key = depth == 1 && top_object;
            p++;
            continue;
        }
        if (c == '"') {
            for (p++; p < end && *p != '"'; p++)
                if (*p == '\\' && p + 1 < end)
                    p++;
            if (p < end)
                p++;
            if (expect_key) {
                key = tok;
                key_len = (size_t)(p - tok);
                expect_key = 0;
                continue;
            }
        } else {
            while (p < end && !is_delim((unsigned char)*p))
                p++;
            if (p == tok)
                p++;                      /* a stray byte: step over it */
            if (w->want_overflow && (c == '-' || (c >= '0' && c <= '9')) &&
                number_overflows(tok, (size_t)(p - tok))) {
                w->ov = tok;
                w->ov_len = (size_t)(p - tok);
                if (depth >= 1 && top_object && key) {
                    w->ov_key = key + 1;
                    w->ov_key_len = key_len >= 2 ? key_len - 2 : 0;
                }
                return;
            }
        }
        if (depth == 1 && top_object && w->want_key && key &&
            key_equals(key, key_len, w->want_key, w->want_key_len)) {
            w->val = tok;
            w->val_len = (size_t)(p - tok);
        }
    }
}

static const char *type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER:
    case JSON_REAL: return "number";
    case JSON_TRUE:
    case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* The overflowing number's field as the message names it: unescaped, since the
 * fast path (which only sees plain keys) names fields by their value. */
static sf_reject reject_overflow(const walk *w, char *errstr, size_t errstr_size) {
    if (!w->ov_key)
        return sf_features_not_finite(NULL, 0, w->ov, w->ov_len, errstr, errstr_size);
    json_t *k = NULL;
    if (memchr(w->ov_key, '\\', w->ov_key_len))
        k = json_loadb(w->ov_key - 1, w->ov_key_len + 2, JSON_DECODE_ANY, NULL);
    sf_reject r;
    if (json_is_string(k))
        r = sf_features_not_finite(json_string_value(k), json_string_length(k), w->ov, w->ov_len,
                                   errstr, errstr_size);
    else
        r = sf_features_not_finite(w->ov_key, w->ov_key_len, w->ov, w->ov_len, errstr,
                                   errstr_size);
    json_decref(k);
    return r;
}

sf_reject sf_features_run_jansson(const sf_assembler *a, const char *json, size_t len, float *row,
                                  sf_event_id *id, _Atomic uint64_t *defaulted, char *errstr,
                                  size_t errstr_size) {
    json_error_t err;
    /* Every number as a double (what strtod gives the fast path); duplicate keys
     * keep the last value, as in the fast path. */
    json_t *root = json_loadb(json, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &err);
    if (!root) {
        if (json_error_code(&err) == json_error_numeric_overflow) {
            walk w = {.want_overflow = 1};
            walk_text(json, len, &w);
            if (w.ov)
                return reject_overflow(&w, errstr, errstr_size);
        }
        snprintf(errstr, errstr_size, "invalid JSON at line %d, column %d (byte %d): %s",
                 err.line, err.column, err.position, err.text);
        return SF_REJECT_NOT_JSON;
    }
    sf_reject r = SF_REJECT_NONE;
    if (!json_is_object(root)) {
        snprintf(errstr, errstr_size, "expected a JSON object, got %s", type_name(root));
        r = SF_REJECT_NOT_OBJECT;
        goto out;
    }
    if (a->id_field) {
        const json_t *v = json_object_getn(root, a->id_field, a->id_len);
        if (v) {
            walk w = {.want_key = a->id_field, .want_key_len = a->id_len};
            walk_text(json, len, &w);
            if (!w.val) {                 /* cannot happen on text jansson parsed */
                snprintf(errstr, errstr_size, "field '%s': cannot locate its text", a->id_field);
                r = SF_REJECT_NOT_JSON;
                goto out;
            }
            if (json_is_string(v))
                r = sf_features_set_id(a, id, w.val, w.val_len, json_string_value(v),
                                       json_string_length(v), errstr, errstr_size);
            else
                r = sf_features_set_id(a, id, w.val, w.val_len, w.val, w.val_len, errstr,
                                       errstr_size);
            if (r != SF_REJECT_NONE)
                goto out;
        }
    }
    /* Every variable's verdict first, as the fast path has them: a rejection
     * for a missing input names all the others missing too. */
    unsigned char state_small[256];
    unsigned char *state = a->n <= sizeof state_small ? state_small : calloc(a->n, 1);
    if (!state) {
        snprintf(errstr, errstr_size, "out of memory");
        r = SF_REJECT_TOO_LARGE;
        goto out;
    }
    for (size_t i = 0; i < a->n; i++) {
        const json_t *v = json_object_getn(root, a->vars->vars[i].name, a->name_len[i]);
        if (!v)
            state[i] = SF_FIELD_ABSENT;
        else if (!json_is_number(v))
            state[i] = SF_FIELD_WRONG_TYPE;
        else
            state[i] = (unsigned char)sf_features_number(a, json_number_value(v), &row[i]);
    }
    for (size_t i = 0; i < a->n && r == SF_REJECT_NONE; i++) {
        const char *name = a->vars->vars[i].name;
        if (state[i] == SF_FIELD_ABSENT || state[i] == SF_FIELD_MISSING) {
            r = sf_features_absent(a, i, state, row, errstr, errstr_size);
        } else if (state[i] == SF_FIELD_WRONG_TYPE) {
            r = sf_features_not_number(name, a->name_len[i],
                                       type_name(json_object_getn(root, name, a->name_len[i])),
                                       errstr, errstr_size);
        } else if (state[i] == SF_FIELD_NOT_FINITE) {
            walk w = {.want_key = name, .want_key_len = a->name_len[i]};
            walk_text(json, len, &w);
            r = sf_features_not_finite(name, a->name_len[i], w.val ? w.val : "?",
                                       w.val ? w.val_len : 1, errstr, errstr_size);
        }
    }
    if (r == SF_REJECT_NONE)
        sf_features_count_defaults(a, state, defaulted);
    if (state != state_small)
        free(state);
out:
    json_decref(root);
    return r;
}
