/* features_impl.h: the two event parsers as the dispatcher (features.c) and
 * the tests see them. Both apply features_rules.h and call nothing else of
 * the features module, so data flows one way: dispatcher -> parser -> rules.
 * The tests call each path directly to compare them. */
#ifndef SIGFLOW_FEATURES_IMPL_H
#define SIGFLOW_FEATURES_IMPL_H

#include "features_rules.h"

/* The parsers' verdict on a document they cannot judge. */
#define SF_FEATURES_FALLBACK (-1)

/* Converts a JSON number already checked against the grammar and followed by
 * a delimiter, rounding exactly like strtod. -1 when beyond the double range. */
int sf_features_parse_number(const char *s, const char *end, double *out);

/* Makes a rejection message valid UTF-8 in place (a '?' per broken byte), as
 * sf_assembler_run returns it: the raw messages of the two paths may quote
 * broken bytes differently, the cleaned ones must agree. */
void sf_features_clean_message(char *s);

/* The two paths. The fast one returns SF_FEATURES_FALLBACK for anything it does
 * not handle; the jansson one always decides. defaulted: as
 * sf_assembler_run_counted (may be NULL). */
int sf_features_run_fast(const sf_assembler *a, const char *json, size_t len, float *row,
                         sf_event_id *id, _Atomic uint64_t *defaulted, char *errstr, size_t errstr_size);
sf_reject sf_features_run_jansson(const sf_assembler *a, const char *json, size_t len, float *row,
                                  sf_event_id *id, _Atomic uint64_t *defaulted, char *errstr,
                                  size_t errstr_size);

#endif
