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
 * [...]}], "outputs": [{"labels": [...]}]}.
 *
 * An optional top-level `training` block says what the training data looked
 * like, for drift monitoring (drift.h; written by models/training_stats.py):
 *   "training": {"rows": N, "split": "...",
 *     "inputs": [{"name", "mean", "std", "quantiles": [edges], "fractions":
 *                 [share per bin], "missing_fraction"}, ...],
 *     "score": {"label": "s", "events": N, "quantiles": [...], "fractions":
 *               [...], "signal_rate": r},
 *     "calibration": {"split": "...", "rows": N, "statistic": "...",
 *                     "dense_inputs": [{"layer", "inputs": n_in, "range": r}, ...]}}
 * Bin k holds the values with exactly k edges <= value, so there is one more
 * fraction than edges; edges ascend (repeats allowed, for discrete inputs).
 * Every name must be one of the inputs; an input the block leaves out, or a
 * file without the block, gets what standard normalization's offset and scale
 * mean (mean -offset, std 1/|scale|), no bins and missing fraction 0.
 *
 * `calibration` is what `--precision int8` needs (infer.h): one entry per
 * Dense layer of the model, in order, with the layer's width and the range of
 * its input on the training data (positive). A file without it still loads;
 * int8 is then refused, saying so. */
#ifndef SIGFLOW_VARS_H
#define SIGFLOW_VARS_H

#include <stddef.h>
#include "sigflow/model.h"

#define SF_VARS_MAX_EDGES 63 /* quantile edges per distribution, at most */

/* A distribution as training saw it: quantile edges and the share per bin. */
typedef struct sf_vars_bins {
    size_t n_edges;        /* 0: no bins given */
    double edges[SF_VARS_MAX_EDGES];
    double fractions[SF_VARS_MAX_EDGES + 1];
} sf_vars_bins;

typedef struct sf_var_training {
    int given;             /* 0: implied by offset and scale, no bins (the fallback) */
    double mean, std;      /* of the defined (not missing) values */
    double missing_fraction; /* of rows where the input was missing or defaulted */
    sf_vars_bins bins;
} sf_var_training;

typedef struct sf_var {
    char *name;
    double offset, scale;
    double default_value;   /* replaces the input when the event lacks it */
    int has_default;        /* 0: the input is required */
    double fill;            /* replaces the missing value (has_fill) */
    int has_fill;
    sf_var_training training;
} sf_var;

typedef struct sf_vars {
    char *path;
    size_t n_vars;
    sf_var *vars;
    size_t n_labels;        /* 0 until sf_vars_bind when the file names none */
    char **labels;
    int has_missing_value;
    double missing_value;   /* an input equal to it counts as missing */
    int has_training;       /* the file has a `training` block */
    long long training_rows; /* -1 when not stated */
    int has_score;          /* the block has `score` */
    char *score_label;      /* NULL: the signal label */
    long long score_events; /* -1 when not stated */
    double signal_rate;     /* -1 when not stated */
    sf_vars_bins score;     /* p(signal) on the held-out split */
    size_t n_calibration;   /* training.calibration.dense_inputs, 0: none */
    size_t *calibration_inputs; /* each Dense layer's width */
    float *calibration_range;   /* each Dense layer's input range */
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
