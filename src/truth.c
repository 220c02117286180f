/* truth.c: the prediction store, the join with delayed truth, and the rolling
 * quality of the joined events (truth.h says what and why).
 *
 * The store is a ring of fixed entries in arrival order, so the oldest is
 * always the next to go (full, or too old), with a chained hash index over
 * it; nothing is allocated after start, whatever the traffic. Joined entries
 * stay until they age out, so a repeated truth message is told from a late
 * one. Quality is kept like drift (drift.c): SLICES slices of the window, the
 * oldest dropped whole, figures computed only when asked for. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/truth.h"

#define SLICES 10
#define LOG_LOSS_FLOOR 1e-7 /* p of the true class is clipped here: ln(0) is no figure */

enum { FREE = 0, PREDICTED, TRUTH_WAITING, JOINED };

typedef struct entry {
    uint64_t hash;
    int64_t t_ms;
    int32_t next; /* hash chain; -1 ends it */
    uint8_t state, is_signal, id_len;
    char id[SF_TRUTH_ID_MAX];
} entry;

typedef struct quality { /* one model's, one slice's */
    uint64_t n, correct, sig, sig_selected, bkg, bkg_rejected;
    double log_loss;
    uint32_t hist[2][SF_TRUTH_AUC_BINS]; /* [is_signal][bin of p(signal)] */
    uint64_t ece_n[SF_TRUTH_ECE_BINS], ece_pos[SF_TRUTH_ECE_BINS];
    double ece_p[SF_TRUTH_ECE_BINS];
} quality;

struct sf_truth {
    sf_truth_conf conf;
    size_t n_models;
    char **names;
    size_t cap, count, oldest; /* the ring: count entries from oldest on */
    entry *e;
    float *p;                  /* cap x n_models */
    unsigned char *labelled;   /* cap x n_models */
    int32_t *buckets;
    size_t n_buckets;          /* a power of two */
    quality *q;                /* SLICES x n_models */
    size_t cur;
    uint64_t slice_events, in_slice;
    uint64_t outcomes[SF_TRUTH__COUNT], expired;
};

_Static_assert(sizeof(entry) == SF_TRUTH_ENTRY_BYTES, "truth.h states the entry's size");

void sf_truth_conf_init(sf_truth_conf *c) {
    c->window_events = 100000;
    c->window_s = 0;
    c->threshold = -1;
}

const char *sf_truth_outcome_name(sf_truth_outcome o) {
    static const char *const names[SF_TRUTH__COUNT] = {"joined", "no_prediction", "duplicate",
                                                       "malformed"};
    return o < SF_TRUTH__COUNT ? names[o] : "unknown";
}

void sf_truth_free(sf_truth *t) {
    if (!t)
        return;
    for (size_t k = 0; t->names && k < t->n_models; k++)
        free(t->names[k]);
    free(t->names);
    free(t->e);
    free(t->p);
    free(t->labelled);
    free(t->buckets);
    free(t->q);
    free(t);
}

sf_truth *sf_truth_new(const sf_truth_conf *c, size_t n_models, const char *const *names) {
    if (!n_models || n_models > SF_TRUTH_MAX_MODELS || !c->window_events ||
        c->window_events > (1u << 30))
        return NULL;
    sf_truth *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->conf = *c;
    t->n_models = n_models;
    t->cap = c->window_events;
    t->n_buckets = 1;
    while (t->n_buckets < 2 * t->cap)
        t->n_buckets <<= 1;
    t->slice_events = (c->window_events + SLICES - 1) / SLICES;
    int oom = !(t->names = calloc(n_models, sizeof *t->names)) ||
              !(t->e = calloc(t->cap, sizeof *t->e)) ||
              !(t->p = calloc(t->cap * n_models, sizeof *t->p)) ||
              !(t->labelled = calloc(t->cap * n_models, 1)) ||
              !(t->buckets = malloc(t->n_buckets * sizeof *t->buckets)) ||
              !(t->q = calloc(SLICES * n_models, sizeof *t->q));
    for (size_t k = 0; !oom && k < n_models; k++)
        oom = !(t->names[k] = strdup(names[k]));
    if (oom) {
        sf_truth_free(t);
        return NULL;
    }
    memset(t->buckets, 0xff, t->n_buckets * sizeof *t->buckets); /* every chain empty (-1) */
    return t;
}

static uint64_t hash_id(const char *id, size_t len) { /* FNV-1a */
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ULL;
    return h;
}

static size_t stored_len(size_t len) { return len < SF_TRUTH_ID_MAX ? len : SF_TRUTH_ID_MAX; }

static int32_t find(const sf_truth *t, uint64_t h, const char *id, size_t len) {
    size_t l = stored_len(len);
    for (int32_t i = t->buckets[h & (t->n_buckets - 1)]; i >= 0; i = t->e[i].next)
        if (t->e[i].hash == h && t->e[i].id_len == l && !memcmp(t->e[i].id, id, l))
            return i;
    return -1;
}

/* Removes the oldest entry, counting what it leaves unjoined. */
static void evict_oldest(sf_truth *t) {
    entry *x = &t->e[t->oldest];
    int32_t *link = &t->buckets[x->hash & (t->n_buckets - 1)];
    while (*link != (int32_t)t->oldest)
        link = &t->e[*link].next;
    *link = x->next;
    if (x->state == PREDICTED)
        t->expired++;
    else if (x->state == TRUTH_WAITING)
        t->outcomes[SF_TRUTH_NO_PREDICTION]++;
    x->state = FREE;
    t->oldest = (t->oldest + 1) % t->cap;
    t->count--;
}

void sf_truth_expire(sf_truth *t, int64_t now_ms) {
    if (t->conf.window_s <= 0)
        return;
    int64_t limit = (int64_t)(t->conf.window_s * 1000);
    while (t->count && now_ms - t->e[t->oldest].t_ms > limit)
        evict_oldest(t);
}

static int32_t insert(sf_truth *t, uint64_t h, const char *id, size_t len, int64_t now_ms) {
    if (t->count == t->cap)
        evict_oldest(t);
    size_t i = (t->oldest + t->count) % t->cap;
    t->count++;
    entry *x = &t->e[i];
    x->hash = h;
    x->t_ms = now_ms;
    x->id_len = (uint8_t)stored_len(len);
    memcpy(x->id, id, x->id_len);
    size_t b = h & (t->n_buckets - 1);
    x->next = t->buckets[b];
    t->buckets[b] = (int32_t)i;
    return (int32_t)i;
}

static void add_quality(sf_truth *t, size_t i, int is_signal) {
    if (t->in_slice == t->slice_events) {
        t->cur = (t->cur + 1) % SLICES;
        memset(&t->q[t->cur * t->n_models], 0, t->n_models * sizeof *t->q);
        t->in_slice = 0;
    }
    t->in_slice++;
    for (size_t k = 0; k < t->n_models; k++) {
        quality *q = &t->q[t->cur * t->n_models + k];
        double p = t->p[i * t->n_models + k];
        int labelled = t->labelled[i * t->n_models + k];
        int selected = t->conf.threshold >= 0 ? p >= t->conf.threshold : labelled;
        q->n++;
        q->correct += labelled == is_signal;
        double pt = is_signal ? p : 1 - p;
        q->log_loss -= log(pt > LOG_LOSS_FLOOR ? pt : LOG_LOSS_FLOOR);
        if (is_signal) {
            q->sig++;
            q->sig_selected += (uint64_t)selected;
        } else {
            q->bkg++;
            q->bkg_rejected += (uint64_t)!selected;
        }
        int bin = (int)(p * SF_TRUTH_AUC_BINS);
        bin = bin < 0 ? 0 : bin >= SF_TRUTH_AUC_BINS ? SF_TRUTH_AUC_BINS - 1 : bin;
        q->hist[is_signal][bin]++;
        int eb = (int)(p * SF_TRUTH_ECE_BINS);
        eb = eb < 0 ? 0 : eb >= SF_TRUTH_ECE_BINS ? SF_TRUTH_ECE_BINS - 1 : eb;
        q->ece_n[eb]++;
        q->ece_pos[eb] += (uint64_t)is_signal;
        q->ece_p[eb] += p;
    }
}

void sf_truth_predicted(sf_truth *t, const char *id, size_t len, const float *p_signal,
                        const unsigned char *labelled_signal, int64_t now_ms) {
    uint64_t h = hash_id(id, len);
    int32_t i = find(t, h, id, len);
    if (i < 0) {
        i = insert(t, h, id, len, now_ms);
        t->e[i].state = PREDICTED;
    }
    memcpy(&t->p[(size_t)i * t->n_models], p_signal, t->n_models * sizeof *p_signal);
    memcpy(&t->labelled[(size_t)i * t->n_models], labelled_signal, t->n_models);
    if (t->e[i].state == TRUTH_WAITING) { /* the truth came first */
        t->e[i].state = JOINED;
        t->outcomes[SF_TRUTH_JOINED]++;
        add_quality(t, (size_t)i, t->e[i].is_signal);
    }
}

sf_truth_outcome sf_truth_observed(sf_truth *t, const char *id, size_t len, int is_signal,
                                   int64_t now_ms) {
    uint64_t h = hash_id(id, len);
    int32_t i = find(t, h, id, len);
    if (i < 0) { /* early truth waits for its prediction, within the same bound */
        i = insert(t, h, id, len, now_ms);
        t->e[i].state = TRUTH_WAITING;
        t->e[i].is_signal = (uint8_t)!!is_signal;
        return SF_TRUTH_NO_PREDICTION; /* so far: counted only if it leaves unjoined */
    }
    if (t->e[i].state != PREDICTED) {
        t->outcomes[SF_TRUTH_DUPLICATE]++;
        return SF_TRUTH_DUPLICATE;
    }
    t->e[i].state = JOINED;
    t->e[i].is_signal = (uint8_t)!!is_signal;
    t->outcomes[SF_TRUTH_JOINED]++;
    add_quality(t, (size_t)i, !!is_signal);
    return SF_TRUTH_JOINED;
}

void sf_truth_malformed(sf_truth *t) { t->outcomes[SF_TRUTH_MALFORMED]++; }

sf_truth_model_figures sf_truth_figures(const sf_truth *t, size_t k) {
    sf_truth_model_figures f = {0};
    quality sum;
    memset(&sum, 0, sizeof sum);
    for (size_t s = 0; s < SLICES; s++) {
        const quality *q = &t->q[s * t->n_models + k];
        sum.n += q->n;
        sum.correct += q->correct;
        sum.sig += q->sig;
        sum.sig_selected += q->sig_selected;
        sum.bkg += q->bkg;
        sum.bkg_rejected += q->bkg_rejected;
        sum.log_loss += q->log_loss;
        for (int c = 0; c < 2; c++)
            for (int b = 0; b < SF_TRUTH_AUC_BINS; b++)
                sum.hist[c][b] += q->hist[c][b];
        for (int b = 0; b < SF_TRUTH_ECE_BINS; b++) {
            sum.ece_n[b] += q->ece_n[b];
            sum.ece_pos[b] += q->ece_pos[b];
            sum.ece_p[b] += q->ece_p[b];
        }
    }
    f.events = sum.n;
    double n = (double)sum.n;
    f.accuracy = sum.n ? (double)sum.correct / n : NAN;
    f.log_loss = sum.n ? sum.log_loss / n : NAN;
    f.signal_efficiency = sum.sig ? (double)sum.sig_selected / (double)sum.sig : NAN;
    f.background_rejection = sum.bkg ? (double)sum.bkg_rejected / (double)sum.bkg : NAN;
    f.ece = sum.n ? 0 : NAN;
    for (int b = 0; sum.n && b < SF_TRUTH_ECE_BINS; b++)
        if (sum.ece_n[b])
            f.ece += fabs(sum.ece_p[b] - (double)sum.ece_pos[b]) / n;
    f.auc = f.auc_error_bound = NAN;
    if (sum.sig && sum.bkg) {
        /* Signal above background: background in bin b against signal above b,
         * plus half the signal in b. */
        double above = 0, pairs = 0, ties = 0;
        for (int b = SF_TRUTH_AUC_BINS - 1; b >= 0; b--) {
            double sb = sum.hist[1][b], bb = sum.hist[0][b];
            pairs += bb * (above + 0.5 * sb);
            ties += sb * bb;
            above += sb;
        }
        double total = (double)sum.sig * (double)sum.bkg;
        f.auc = pairs / total;
        f.auc_error_bound = 0.5 * ties / total;
    }
    return f;
}

size_t sf_truth_stored(const sf_truth *t) { return t->count; }

size_t sf_truth_bytes(const sf_truth *t) {
    return t->cap * (sizeof *t->e + t->n_models * (sizeof *t->p + 1)) +
           t->n_buckets * sizeof *t->buckets + SLICES * t->n_models * sizeof *t->q;
}
uint64_t sf_truth_count(const sf_truth *t, sf_truth_outcome o) { return t->outcomes[o]; }
uint64_t sf_truth_expired_predictions(const sf_truth *t) { return t->expired; }

int sf_truth_publish(const sf_truth *t, sf_metrics *m) {
    int rc = 0;
    double joined = (double)t->outcomes[SF_TRUTH_JOINED], expired = (double)t->expired;
    double stored = (double)t->count;
    const char *reasons[] = {"no_prediction", "duplicate", "malformed"};
    double unmatched[] = {(double)t->outcomes[SF_TRUTH_NO_PREDICTION],
                          (double)t->outcomes[SF_TRUTH_DUPLICATE],
                          (double)t->outcomes[SF_TRUTH_MALFORMED]};
    rc |= sf_metrics_set_counters(m, "sigflow_truth_joined_total", "Truth messages joined with "
                                  "their event's prediction.", NULL, 1, NULL, &joined);
    rc |= sf_metrics_set_counters(m, "sigflow_truth_unmatched_total", "Truth messages not "
                                  "joined, by reason.", "reason", 3, reasons, unmatched);
    rc |= sf_metrics_set_counters(m, "sigflow_truth_expired_predictions_total", "Predictions "
                                  "dropped from the truth store before their truth arrived.",
                                  NULL, 1, NULL, &expired);
    rc |= sf_metrics_set_gauges(m, "sigflow_truth_store_events", "Events held in the truth "
                                "store (predictions and early truth).", NULL, 1, NULL, &stored);
    static const struct {
        const char *name, *help;
        size_t offset;
    } fams[] = {
        {"sigflow_live_accuracy", "Accuracy over the joined events of the truth window.",
         offsetof(sf_truth_model_figures, accuracy)},
        {"sigflow_live_auc", "ROC AUC over the joined events of the truth window (from "
         "1000-bin histograms; see sigflow_live_auc_error_bound).",
         offsetof(sf_truth_model_figures, auc)},
        {"sigflow_live_auc_error_bound", "Largest possible difference between "
         "sigflow_live_auc and the exact AUC of the same events.",
         offsetof(sf_truth_model_figures, auc_error_bound)},
        {"sigflow_live_log_loss", "Mean cross-entropy of p(signal) against the truth.",
         offsetof(sf_truth_model_figures, log_loss)},
        {"sigflow_live_ece", "Expected calibration error of p(signal), 10 equal bins.",
         offsetof(sf_truth_model_figures, ece)},
        {"sigflow_live_signal_efficiency", "Share of true signal selected at the working point.",
         offsetof(sf_truth_model_figures, signal_efficiency)},
        {"sigflow_live_background_rejection", "Share of true background not selected at the "
         "working point.", offsetof(sf_truth_model_figures, background_rejection)},
    };
    sf_truth_model_figures f[SF_TRUTH_MAX_MODELS];
    for (size_t k = 0; k < t->n_models; k++)
        f[k] = sf_truth_figures(t, k);
    for (size_t j = 0; j < sizeof fams / sizeof fams[0]; j++) {
        double v[SF_TRUTH_MAX_MODELS];
        for (size_t k = 0; k < t->n_models; k++)
            memcpy(&v[k], (const char *)&f[k] + fams[j].offset, sizeof(double));
        rc |= sf_metrics_set_gauges(m, fams[j].name, fams[j].help, "model", t->n_models,
                                    (const char *const *)t->names, v);
    }
    return rc ? -1 : 0;
}
