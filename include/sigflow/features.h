/* features.h: turn one JSON event into the model's input row.
 *
 * Fields are looked up by variable name; extra fields are ignored. A missing
 * field takes the variable's default; without a default (a required input) the
 * event is rejected, naming every required input it lacks. A field equal to
 * missing_value takes the variable's fill, else its default, else is
 * rejected. Anything but a finite JSON number rejects the event. Every
 * rejection carries a reason that names the field. The common case (a flat
 * object) takes a hand-written single-pass scanner; anything unusual falls
 * back to jansson, so both paths give the same answer. */
#ifndef SIGFLOW_FEATURES_H
#define SIGFLOW_FEATURES_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include "sigflow/vars.h"

typedef enum {
    SF_NORM_STANDARD = 0, /* (x + offset) * scale */
    SF_NORM_L2,           /* standard, then divide the row by its L2 norm */
    SF_NORM_NONE
} sf_norm;

/* Why an event was refused; also the `reason` label of the rejection metric. */
typedef enum {
    SF_REJECT_NONE = 0,
    SF_REJECT_NOT_JSON,
    SF_REJECT_NOT_OBJECT,
    SF_REJECT_MISSING_FIELD,
    SF_REJECT_NOT_NUMBER,
    SF_REJECT_NOT_FINITE,   /* NaN, infinite, or outside float range */
    SF_REJECT_TOO_LARGE,    /* message over the size limit */
    SF_REJECT__COUNT
} sf_reject;

const char *sf_reject_name(sf_reject r); /* "not_json", "missing_field", ... */

int sf_norm_parse(const char *s, sf_norm *out); /* "standard" | "l2" | "none" */

/* The missing_field rejection for an event that lacks required inputs:
 * lack[i] (vars->n_vars entries) is 0 for an input that is there or filled,
 * else why it is not. The message names every such input, as far as errstr
 * has room ("field 'X' is missing and has no default", "3 required fields
 * 'X', 'Y', 'Z' are missing and have no default"). Returns
 * SF_REJECT_MISSING_FIELD. */
enum { SF_LACK_ABSENT = 1, SF_LACK_MISSING_VALUE = 2 };
sf_reject sf_features_missing(const sf_vars *vars, const unsigned char *lack, char *errstr,
                              size_t errstr_size);

#define SF_ID_MAX 128

/* The event's id field, as found. */
typedef struct sf_event_id {
    size_t json_len;          /* 0: absent */
    char json[SF_ID_MAX];     /* the value's JSON text, e.g. 100000 or "ab\"c" */
    size_t key_len;
    char key[SF_ID_MAX];      /* the value as a message key: a string unquoted, else its text */
} sf_event_id;

typedef struct sf_assembler sf_assembler;

/* `vars` must outlive the assembler; id_field may be NULL (no id). */
sf_assembler *sf_assembler_new(const sf_vars *vars, const char *id_field);
void sf_assembler_free(sf_assembler *a);

/* Fills row[vars->n_vars] with the raw (unnormalized) values of the event in
 * json[0..len) and *id (may be NULL). Returns SF_REJECT_NONE, or the reason with
 * a message in errstr, e.g. "field 'PRI_met': expected a number, got string". */
sf_reject sf_assembler_run(const sf_assembler *a, const char *json, size_t len,
                           float *row, sf_event_id *id, char *errstr, size_t errstr_size);

/* As sf_assembler_run; on success also adds 1 to defaulted[i] (vars->n_vars
 * counters, caller-owned, may be NULL) for every optional input the event
 * lacked, which took its default (atomically: the daemon assembles on
 * several threads at once). */
sf_reject sf_assembler_run_counted(const sf_assembler *a, const char *json, size_t len,
                                   float *row, sf_event_id *id, _Atomic uint64_t *defaulted,
                                   char *errstr, size_t errstr_size);

/* Normalizes n rows in place. */
void sf_features_normalize(const sf_vars *vars, sf_norm norm, float *rows, size_t n);

#endif
