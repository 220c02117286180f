/* features_impl.h: private glue between the two event parsers.
 *
 * features.c owns the assembler and the rules (defaults, missing value, message
 * wording); features_fast.c is the single-pass scanner for flat objects and
 * features_jansson.c the jansson fallback for everything else. Both must reach
 * the same verdict on every input, so they share the rule functions below, and
 * the tests call each path directly to compare them. */
#ifndef SIGFLOW_FEATURES_IMPL_H
#define SIGFLOW_FEATURES_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "sigflow/features.h"

/* One entry of the key table: a variable, the id field, or both. */
typedef struct sf_feature_key {
    const char *name;   /* NULL: empty slot */
    size_t len;
    uint32_t hash;
    int var;            /* variable index, or -1 */
    int is_id;
} sf_feature_key;

struct sf_assembler {
    const sf_vars *vars;
    size_t n;
    size_t *name_len;   /* strlen of each variable name */
    float *defaults;    /* the defaults as the float the network sees */
    char *id_field;     /* NULL: no id */
    size_t id_len;
    int id_var;         /* variable that is also the id field, or -1 */
    sf_feature_key *table;
    size_t mask;        /* table size - 1 (a power of two) */
};

/* What a number does to a variable. */
enum { SF_NUM_OK = 0, SF_NUM_MISSING, SF_NUM_NOT_FINITE };

/* The parsers' verdict on a document they cannot judge. */
#define SF_FEATURES_FALLBACK (-1)

uint32_t sf_features_hash(const char *s, size_t len);
const sf_feature_key *sf_features_lookup(const sf_assembler *a, const char *key, size_t len);

/* Classifies the value d of variable i and stores it in *out when usable. */
int sf_features_number(const sf_assembler *a, double d, float *out);

/* Fills the row for a variable without a usable value (absent, or equal to the
 * missing value): its default, or a missing_field rejection. */
sf_reject sf_features_absent(const sf_assembler *a, size_t i, int had_missing_value, float *row,
                             char *errstr, size_t errstr_size);

sf_reject sf_features_not_number(const char *field, size_t field_len, const char *type,
                                 char *errstr, size_t errstr_size);
/* field may be NULL when the number is not the value of a top-level field. */
sf_reject sf_features_not_finite(const char *field, size_t field_len, const char *text,
                                 size_t text_len, char *errstr, size_t errstr_size);

/* Copies the id value (its JSON text and its key form) or rejects it as too long. */
sf_reject sf_features_set_id(const sf_assembler *a, sf_event_id *id, const char *json,
                             size_t json_len, const char *key, size_t key_len,
                             char *errstr, size_t errstr_size);

/* Converts a JSON number already checked against the grammar and followed by
 * a delimiter, rounding exactly like strtod. -1 when beyond the double range. */
int sf_features_parse_number(const char *s, const char *end, double *out);

/* The two paths. The fast one returns SF_FEATURES_FALLBACK for anything it does
 * not handle; the jansson one always decides. */
int sf_features_run_fast(const sf_assembler *a, const char *json, size_t len, float *row,
                         sf_event_id *id, char *errstr, size_t errstr_size);
sf_reject sf_features_run_jansson(const sf_assembler *a, const char *json, size_t len, float *row,
                                  sf_event_id *id, char *errstr, size_t errstr_size);

#endif
