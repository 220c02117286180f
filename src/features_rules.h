/* features_rules.h: the rules both event parsers apply, in one leaf
 * (features_rules.c) that calls nothing of theirs.
 *
 * The fast scanner (features_fast.c) and the jansson fallback
 * (features_jansson.c) must reach the same verdict on every input, so every
 * decision (defaults, the missing value, float range, id length) and every
 * message lives here, and both call it; the dispatcher (features.c) builds the
 * assembler and picks the parser. */
#ifndef SIGFLOW_FEATURES_RULES_H
#define SIGFLOW_FEATURES_RULES_H

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
    float *fills;       /* what replaces the missing value (the fill, else the default) */
    char *id_field;     /* NULL: no id */
    size_t id_len;
    int id_var;         /* variable that is also the id field, or -1 */
    sf_feature_key *table;
    size_t mask;        /* table size - 1 (a power of two) */
};

/* What a parser found for a variable: the one status both parsers use. */
typedef enum {
    SF_FIELD_ABSENT = 0, /* not in the event (yet) */
    SF_FIELD_OK,         /* a usable number, stored in the row */
    SF_FIELD_MISSING,    /* equal to the variables file's missing_value */
    SF_FIELD_WRONG_TYPE, /* not a number */
    SF_FIELD_NOT_FINITE  /* beyond the float range */
} sf_field_status;

uint32_t sf_features_hash(const char *s, size_t len);
const sf_feature_key *sf_features_lookup(const sf_assembler *a, const char *key, size_t len);

/* Classifies the value d of a variable and stores it in *out when usable:
 * SF_FIELD_OK, SF_FIELD_MISSING or SF_FIELD_NOT_FINITE. */
sf_field_status sf_features_number(const sf_assembler *a, double d, float *out);

/* Fills the row for variable i, which has no usable value (state[i] is
 * SF_FIELD_ABSENT or SF_FIELD_MISSING): its default, or for the missing value
 * its fill, else a missing_field rejection naming every variable from i on
 * that cannot be filled either (state[i..n) must be the parser's verdicts). */
sf_reject sf_features_absent(const sf_assembler *a, size_t i, const unsigned char *state,
                             float *row, char *errstr, size_t errstr_size);

/* After a successful parse: adds 1 to defaulted[i] for every optional
 * variable the event lacked (state[i] SF_FIELD_ABSENT). defaulted may be NULL. */
void sf_features_count_defaults(const sf_assembler *a, const unsigned char *state,
                                _Atomic uint64_t *defaulted);

sf_reject sf_features_not_number(const char *field, size_t field_len, const char *type,
                                 char *errstr, size_t errstr_size);
/* field may be NULL when the number is not the value of a top-level field. */
sf_reject sf_features_not_finite(const char *field, size_t field_len, const char *text,
                                 size_t text_len, char *errstr, size_t errstr_size);

/* Copies the id value (its JSON text and its key form) or rejects it as too long. */
sf_reject sf_features_set_id(const sf_assembler *a, sf_event_id *id, const char *json,
                             size_t json_len, const char *key, size_t key_len,
                             char *errstr, size_t errstr_size);

#endif
