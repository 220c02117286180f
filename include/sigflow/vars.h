/* vars.h: the input variables file (lwtnn convention): ordered input names with
 * offset/scale/default, optional missing_value, and the output labels.
 *
 * lwtnn's rule decides what an event must carry: an input without a `default`
 * is required (an event lacking it is refused), one with a default is
 * optional. An input equal to missing_value is present but undefined: it
 * takes the input's `fill`, else its default, else the event is refused.
 *
 * Both shapes found in the wild are accepted: {"inputs": [{name, offset, scale,
 * default}], "class_labels": [...]} and the graph style {"inputs": [{"variables":
 * [...]}], "outputs": [{"labels": [...]}]}. */
#ifndef SIGFLOW_VARS_H
#define SIGFLOW_VARS_H

#include <stddef.h>
#include "sigflow/model.h"

typedef struct sf_var {
    char *name;
    double offset, scale;
    double default_value;   /* replaces the input when the event lacks it */
    int has_default;        /* 0: the input is required */
    double fill;            /* replaces the missing value (has_fill) */
    int has_fill;
} sf_var;

typedef struct sf_vars {
    char *path;
    size_t n_vars;
    sf_var *vars;
    size_t n_labels;        /* 0 until sf_vars_bind when the file names none */
    char **labels;
    int has_missing_value;
    double missing_value;   /* an input equal to it counts as missing */
} sf_vars;

/* Returns 0 and *out, or -1 with a message naming the file and the entry. */
int sf_vars_load(sf_vars **out, const char *path, char *errstr, size_t errstr_size);

/* Checks the variables against the model (input and output widths) and names
 * the outputs "0", "1", ... when the file gave no labels. 0 or -1. */
int sf_vars_bind(sf_vars *v, const sf_model *m, char *errstr, size_t errstr_size);

/* Index of the label called `name`, or -1. */
int sf_vars_label_index(const sf_vars *v, const char *name);

void sf_vars_free(sf_vars *v);

#endif
