/* metrics.h: the daemon's counters, gauges and histograms, rendered in the
 * Prometheus text exposition format 0.0.4.
 *
 * Updates are lock-free atomics so the data path never waits for a scrape; a
 * scrape reads each value once (a histogram's buckets may be a few events apart
 * from its _count while traffic flows, as with any Prometheus client). */
#ifndef SIGFLOW_METRICS_H
#define SIGFLOW_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include "sigflow/features.h"
#include "sigflow/model.h"

typedef enum {
    SF_C_CONSUMED = 0,   /* sigflow_events_consumed_total */
    SF_C_PREDICTED,      /* sigflow_events_predicted_total */
    SF_C_SIGNALS,        /* sigflow_signals_published_total (acknowledged) */
    SF_C_DEAD_LETTERS,   /* sigflow_dead_letters_total (acknowledged) */
    SF_C_BATCHES,        /* sigflow_batches_total */
    SF_C_RELOADS,        /* sigflow_model_reloads_total (accepted) */
    SF_C_RELOAD_FAILURES, /* sigflow_model_reload_failures_total (old model kept) */
    SF_C__COUNT
} sf_counter;

typedef enum {
    SF_G_CONSUMER_LAG = 0,    /* sigflow_consumer_lag */
    SF_G_ASSIGNED_PARTITIONS, /* sigflow_assigned_partitions */
    SF_G__COUNT
} sf_gauge;

typedef enum {
    SF_H_BATCH_SIZE = 0,  /* sigflow_batch_size (events) */
    SF_H_INFERENCE,       /* sigflow_inference_seconds */
    SF_H_END_TO_END,      /* sigflow_end_to_end_seconds */
    SF_H_SHADOW_ABS_DP,   /* sigflow_shadow_abs_dp: |p_shadow - p_serving| of p(signal) */
    SF_H__COUNT
} sf_histogram;

typedef struct sf_metrics sf_metrics;

sf_metrics *sf_metrics_new(void);
void sf_metrics_free(sf_metrics *m);

void sf_metrics_add(sf_metrics *m, sf_counter c, uint64_t n);
uint64_t sf_metrics_get(const sf_metrics *m, sf_counter c);
void sf_metrics_reject(sf_metrics *m, sf_reject reason); /* sigflow_events_rejected_total{reason} */
uint64_t sf_metrics_rejected(const sf_metrics *m, sf_reject reason);
uint64_t sf_metrics_rejected_total(const sf_metrics *m); /* over every reason */
/* sigflow_model_refusals_total{cause}: a model load refused, by why (model.h). */
void sf_metrics_model_refused(sf_metrics *m, sf_model_refusal cause);
uint64_t sf_metrics_model_refusals(const sf_metrics *m, sf_model_refusal cause);
void sf_metrics_set(sf_metrics *m, sf_gauge g, double v);

/* sigflow_defaulted_inputs_total{input}: n more events scored without the
 * optional input `input`. At most SF_METRICS_MAX_INPUTS names get a series of
 * their own; the rest add to input="(other)". Takes a lock: call it once per
 * input and batch, not per event. */
#define SF_METRICS_MAX_INPUTS 256
void sf_metrics_add_defaulted(sf_metrics *m, const char *input, uint64_t n);
uint64_t sf_metrics_defaulted(const sf_metrics *m, const char *input);
void sf_metrics_observe(sf_metrics *m, sf_histogram h, double v);

/* sigflow_model_info{sha256=...,inputs=...,outputs=...} 1; safe to call while
 * scrapes run (the model can be reloaded). */
void sf_metrics_set_model(sf_metrics *m, const char *sha256, size_t inputs, size_t outputs);

/* sigflow_inference_info{backend=...,precision=...,kernel=...,threads=...,
 * library_threads=...} 1,
 * what sf_infer_info says of the engine in use; safe while scrapes run. */
void sf_metrics_set_inference(sf_metrics *m, const char *backend, const char *precision,
                              const char *kernel, int threads, int library_threads);

/* Copies sigflow_inference_info's labels into buf ("" when not set yet). */
void sf_metrics_get_inference(const sf_metrics *m, char *buf, size_t size);
/* One more sigflow_model_info series per member of a model set,
 * {member=NAME,sha256=...,weight=W} (weights normalized); n 0 clears them (a
 * single model). Replaces the previous members atomically for scrapes; on
 * out of memory the member series disappear rather than lie. */
void sf_metrics_set_members(sf_metrics *m, size_t n, const char *const *names,
                            const char *const *sha256, const double *weights);

/* A gauge family whose series the caller replaces whole, one per value of one
 * label (label NULL: one series without labels, n 1): drift and live quality
 * (drift.h). name, help and label are borrowed (string literals); the label
 * values are copied. A NaN value leaves its series out: nothing to say yet.
 * Cardinality stays bounded: at most SF_METRICS_MAX_FAMILIES families of at
 * most SF_METRICS_MAX_INPUTS series. Takes a lock: call it about once a
 * second, not per batch. 0, or -1 (no room, out of memory: the family keeps
 * its previous series). */
#define SF_METRICS_MAX_FAMILIES 32
int sf_metrics_set_gauges(sf_metrics *m, const char *name, const char *help, const char *label,
                          size_t n, const char *const *label_values, const double *values);
/* The same for a family of counters whose totals the caller keeps (truth.h). */
int sf_metrics_set_counters(sf_metrics *m, const char *name, const char *help, const char *label,
                            size_t n, const char *const *label_values, const double *values);
/* Series label_value (NULL: the unlabelled one) of gauge family name; NaN when
 * there is none. */
double sf_metrics_gauge(const sf_metrics *m, const char *name, const char *label_value);

/* The whole exposition as a malloc'd NUL-terminated string (NULL when out of memory). */
char *sf_metrics_render(const sf_metrics *m);

#endif
