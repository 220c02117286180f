/* output.h: the JSON object that describes one prediction, shared by
 * `sigflow predict` (stdout) and `sigflow run` (the output topic), so offline and
 * online results can be compared byte for byte. */
#ifndef SIGFLOW_OUTPUT_H
#define SIGFLOW_OUTPUT_H

#include <stddef.h>
#include <stdint.h>
#include "sigflow/features.h"
#include "sigflow/vars.h"

/* Appends s as a JSON string literal (quotes included). Returns the number of
 * bytes written, or -1 when it does not fit. */
int sf_output_json_string(char *buf, size_t size, const char *s);

/* Writes {"<id_field>": <id>, "label": "...", "label_index": i,
 * "probabilities": [...], "partition": p, "offset": o} into buf (NUL-terminated).
 * The id is omitted when absent, partition/offset when partition < 0.
 * Probabilities print as snprintf's %.9g of (double)p, which round-trips a
 * float, or null when not finite (JSON has neither NaN nor infinity). Returns
 * the length, or -1 when buf is too small. */
int sf_output_format(char *buf, size_t size, const char *id_field, const sf_event_id *id,
                     const sf_vars *vars, const float *probs, size_t label_index,
                     int32_t partition, int64_t offset);

/* Appends "members": {"<name>": [probabilities], ...} to the object of length
 * len in buf (as written by sf_output_format), one array of n_outputs per
 * member. Returns the new length, or -1 when buf is too small. */
int sf_output_add_members(char *buf, size_t size, size_t len, size_t n_members,
                          const char *const *names, const float *const *probs, size_t n_outputs);

#endif
