/* truth.h: live quality from labels that arrive later.
 *
 * Physics truth (or an offline reconstruction) often reaches the stream long
 * after the event was scored. This module keeps each scored event's p(signal)
 * (the served model's and each member's) in a bounded store keyed by the
 * event id, joins the truth messages with it, and keeps the quality of the
 * joined events over a rolling window: accuracy, ROC AUC, log loss, expected
 * calibration error, and the signal efficiency and background rejection at
 * the working point.
 *
 * The store is bounded: at most `window_events` events (predictions waiting
 * for their truth, and truth that arrived before its prediction), each
 * dropped when older than window_s (> 0); the oldest goes first when full.
 * The quality window is the last window_events joined events.
 * Memory per event of the bound: an entry of SF_TRUTH_ENTRY_BYTES, 5 bytes
 * per model (p(signal) and its label) and 8 to 16 bytes of hash index (a
 * power-of-two table of at least 2 slots per event; sf_truth_bytes says
 * exactly): at the default 100,000, 63.5 bytes per event for a single model
 * and 78.5 for the shipped 3-member set (6.3 and 7.8 MB), plus about 80 KB
 * per model for the quality window (its histograms), allocated at start.
 * An id longer than SF_TRUTH_ID_MAX - 1 bytes is told apart by a 64-bit hash
 * of the whole id as well as its first bytes.
 *
 * AUC comes from per-class histograms of p(signal) in SF_TRUTH_AUC_BINS equal
 * bins: pairs in different bins are ordered exactly, pairs in one bin count
 * 1/2 (as ties), so |AUC - exact AUC| <= 1/2 * sum_k s_k b_k / (S B), which
 * is exported beside it (sf_truth_model_figures.auc_error_bound).
 *
 * Used from one thread (the pipeline's). Conventions: CONTRIBUTING.md. */
#ifndef SIGFLOW_TRUTH_H
#define SIGFLOW_TRUTH_H

#include <stddef.h>
#include <stdint.h>

#include "sigflow/metrics.h"

#define SF_TRUTH_ID_MAX 24
#define SF_TRUTH_AUC_BINS 1000
#define SF_TRUTH_ECE_BINS 10
#define SF_TRUTH_MAX_MODELS 16 /* the serving model and up to 15 members */
#define SF_TRUTH_ENTRY_BYTES 48

typedef struct sf_truth_conf {
    size_t window_events; /* store bound and quality window, events (default 100000) */
    double window_s;      /* > 0: also drop what is older than this */
    double threshold;     /* working point: p(signal) >= threshold selects; < 0: argmax */
} sf_truth_conf;

void sf_truth_conf_init(sf_truth_conf *c);

typedef enum {
    SF_TRUTH_JOINED = 0,
    SF_TRUTH_NO_PREDICTION, /* truth that left the store without meeting its prediction */
    SF_TRUTH_DUPLICATE,     /* truth for an event already joined, or given twice */
    SF_TRUTH_MALFORMED,     /* not JSON, no id, or a label that is not the model's */
    SF_TRUTH__COUNT
} sf_truth_outcome;

const char *sf_truth_outcome_name(sf_truth_outcome o); /* "no_prediction", ... */

typedef struct sf_truth sf_truth;

/* n_models: 1 + the set's members; names[k] labels model k on /metrics
 * ("serving", then the members' names; copied). NULL when out of memory. */
sf_truth *sf_truth_new(const sf_truth_conf *c, size_t n_models, const char *const *names);
void sf_truth_free(sf_truth *t);

/* A scored event: its id (the key text, len bytes), p(signal) of each model
 * and whether each labelled it signal (accuracy and the working point need
 * the model's own label rule). A second prediction for an id (a redelivery)
 * replaces the first. */
void sf_truth_predicted(sf_truth *t, const char *id, size_t len, const float *p_signal,
                        const unsigned char *labelled_signal, int64_t now_ms);

/* A truth message's verdict for the event id: is_signal 1 or 0. */
sf_truth_outcome sf_truth_observed(sf_truth *t, const char *id, size_t len, int is_signal,
                                   int64_t now_ms);

/* Counts a truth message that could not be read (SF_TRUTH_MALFORMED). */
void sf_truth_malformed(sf_truth *t);

/* Drops what window_s says is too old (call it now and then). */
void sf_truth_expire(sf_truth *t, int64_t now_ms);

typedef struct sf_truth_model_figures {
    uint64_t events;        /* joined events in the quality window */
    double accuracy, auc, auc_error_bound, log_loss, ece, signal_efficiency,
        background_rejection; /* NaN when undefined (no events, one class only) */
} sf_truth_model_figures;

/* Model k's figures over the quality window. */
sf_truth_model_figures sf_truth_figures(const sf_truth *t, size_t k);

size_t sf_truth_bytes(const sf_truth *t);           /* the store's memory, all of it */
size_t sf_truth_stored(const sf_truth *t);          /* events held in the store now */
uint64_t sf_truth_count(const sf_truth *t, sf_truth_outcome o); /* since start */
uint64_t sf_truth_expired_predictions(const sf_truth *t); /* dropped without truth */

/* Exports everything: sigflow_truth_joined_total, sigflow_truth_unmatched_total{reason},
 * sigflow_truth_expired_predictions_total, sigflow_truth_store_events, and
 * sigflow_live_{accuracy,auc,auc_error_bound,log_loss,ece,signal_efficiency,
 * background_rejection}{model}. 0, or -1 when the metrics refused some. */
int sf_truth_publish(const sf_truth *t, sf_metrics *m);

#endif
