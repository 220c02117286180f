/* drift.h: is live traffic still what the model was trained on?
 *
 * Over a sliding window of scored events, per input of the variables file:
 * the shift of the mean in training standard deviations, the ratio of the
 * standard deviations, the population stability index (PSI) against the
 * training quantile bins, and the fraction of events missing it; for p(signal):
 * the PSI against the held-out distribution and the signal rate. The training
 * side is the variables file's `training` block (vars.h); without one, the
 * mean and std implied by offset and scale, and no PSI.
 *
 * Cheap enough for the hot path: a batch adds one pass over its raw rows (a
 * binary search over at most SF_VARS_MAX_EDGES edges per value) into the
 * current slice of the window; the figures are computed from the slices only
 * when asked for (sf_drift_publish, sf_drift_summary).
 *
 * The window is SF_DRIFT_SLICES slices, each 1/SF_DRIFT_SLICES of it in events
 * (window_events) or in time (window_s); the oldest slice is dropped whole, so
 * the figures cover between (SLICES-1)/SLICES of the window and all of it.
 *
 * A missing input is one equal to its fill or default after assembly (the
 * row the network sees before normalization; a real measurement equal to the
 * float fill counts too, which the shipped fills, training means to 17
 * digits, make negligible); the other statistics are over the present values
 * only, as training's were.
 *
 * Used from one thread (the pipeline's). Conventions: CONTRIBUTING.md. */
#ifndef SIGFLOW_DRIFT_H
#define SIGFLOW_DRIFT_H

#include <stddef.h>
#include <stdint.h>

#include "sigflow/metrics.h"
#include "sigflow/vars.h"

#define SF_DRIFT_SLICES 10

typedef struct sf_drift_conf {
    size_t window_events; /* window in events (default 50,000); 0 with window_s 0: off */
    double window_s;      /* > 0: window in seconds instead */
    double warn_psi;      /* the summary names PSIs above it (default 0.2) */
} sf_drift_conf;

void sf_drift_conf_init(sf_drift_conf *c);

/* 1 when the configuration asks for drift monitoring at all. */
int sf_drift_enabled(const sf_drift_conf *c);

typedef struct sf_drift sf_drift;

/* Monitors the inputs of v (borrowed: it must outlive the monitor), whose
 * rows have v->n_vars columns. score_index is the column of p(signal) among
 * n_outputs; score_bins (borrowed, may be NULL) its held-out distribution.
 * NULL when out of memory. */
sf_drift *sf_drift_new(const sf_drift_conf *c, const sf_vars *v, size_t n_outputs,
                       int score_index, const sf_vars_bins *score_bins);
void sf_drift_free(sf_drift *d);

/* Adds n events' raw rows (n x v->n_vars, before normalization). now_ms: a
 * monotonic clock, for a window in seconds. */
void sf_drift_add_rows(sf_drift *d, const float *rows, size_t n, int64_t now_ms);

/* Adds the same events' probabilities (n x n_outputs), once scored: they go
 * to the slice the rows ended in (a slice boundary inside a batch moves the
 * batch's scores by at most one batch). */
void sf_drift_add_scores(sf_drift *d, const float *probs, size_t n);

/* The figures of the window; NaN where there is nothing to compute them from
 * (no events yet, no bins, a constant input). */
typedef struct sf_drift_input {
    double psi, mean_shift, std_ratio, missing_ratio;
} sf_drift_input;

typedef struct sf_drift_figures {
    uint64_t events;      /* in the window */
    size_t n_inputs;
    sf_drift_input *inputs; /* n_inputs, owned by the monitor, valid until the next call */
    double score_psi, signal_rate;
} sf_drift_figures;

const sf_drift_figures *sf_drift_compute(sf_drift *d, int64_t now_ms);

/* Exports the figures to m (sigflow_input_psi{input}, sigflow_input_mean_shift,
 * sigflow_input_std_ratio, sigflow_input_missing_ratio, sigflow_score_psi,
 * sigflow_signal_rate, sigflow_drift_window_events). 0, or -1 when the
 * metrics could not take them (out of memory). */
int sf_drift_publish(sf_drift *d, sf_metrics *m, int64_t now_ms);

/* A log line's key=value fields naming every PSI above warn_psi (the worst
 * first, at most 8 inputs) with the score's PSI and the signal rate; 1 when
 * there was one to name (buf holds the fields), else 0. */
int sf_drift_summary(sf_drift *d, int64_t now_ms, char *buf, size_t size);

#endif
