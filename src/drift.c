/* drift.c: input and score drift over a sliding window (drift.h says what).
 *
 * A shift in an input's distribution is the first sign that the detector has
 * changed under the model (pile-up, a calibration, a dead module), before the
 * selection visibly drifts; the training block gives the reference for free.
 *
 * The hot path only counts: per slice and input, the present events, the
 * missing ones, the sums of z = (x - mean) / std and z^2 (standardized first,
 * so the sums do not cancel for inputs in the hundreds of GeV), and the bin
 * counts. Everything else happens when the figures are asked for. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/drift.h"

#define PSI_FLOOR 1e-4 /* an empty bin counts as this share: ln(0) is no figure */

typedef struct slice {
    uint64_t events;
    int64_t start_ms;
    uint64_t *present, *missing; /* per input */
    double *sum, *sum2;          /* of z, z^2 over the present values */
    uint32_t *bins;              /* per input, SF_VARS_MAX_EDGES + 1 each */
    uint32_t score_bins[SF_VARS_MAX_EDGES + 1];
    uint64_t signals, scored;
} slice;

struct sf_drift {
    sf_drift_conf conf;
    const sf_vars *v;
    size_t n_in, n_outputs;
    int score_index;
    const sf_vars_bins *score_bins; /* NULL: no score PSI */
    float *missing_a, *missing_b;   /* per input: the fill and the default (NaN: none) */
    slice s[SF_DRIFT_SLICES];
    size_t cur;
    uint64_t slice_events;          /* events per slice (window in events) */
    int64_t slice_ms;               /* span of a slice (window in seconds) */
    sf_drift_input *fig_inputs;
    sf_drift_figures fig;
    const char **names;             /* for sf_metrics_set_gauges */
    double *values;
};

void sf_drift_conf_init(sf_drift_conf *c) {
    c->window_events = 50000;
    c->window_s = 0;
    c->warn_psi = 0.2;
}

int sf_drift_enabled(const sf_drift_conf *c) { return c->window_events > 0 || c->window_s > 0; }

static void slice_clear(sf_drift *d, slice *s, int64_t now_ms) {
    size_t n = d->n_in;
    s->events = s->signals = s->scored = 0;
    s->start_ms = now_ms;
    memset(s->present, 0, n * sizeof *s->present);
    memset(s->missing, 0, n * sizeof *s->missing);
    memset(s->sum, 0, n * sizeof *s->sum);
    memset(s->sum2, 0, n * sizeof *s->sum2);
    memset(s->bins, 0, n * (SF_VARS_MAX_EDGES + 1) * sizeof *s->bins);
    memset(s->score_bins, 0, sizeof s->score_bins);
}

void sf_drift_free(sf_drift *d) {
    if (!d)
        return;
    for (size_t k = 0; k < SF_DRIFT_SLICES; k++) {
        free(d->s[k].present);
        free(d->s[k].missing);
        free(d->s[k].sum);
        free(d->s[k].sum2);
        free(d->s[k].bins);
    }
    free(d->missing_a);
    free(d->missing_b);
    free(d->fig_inputs);
    free(d->names);
    free(d->values);
    free(d);
}

sf_drift *sf_drift_new(const sf_drift_conf *c, const sf_vars *v, size_t n_outputs,
                       int score_index, const sf_vars_bins *score_bins) {
    sf_drift *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->conf = *c;
    d->v = v;
    size_t n = d->n_in = v->n_vars, n1 = n ? n : 1;
    d->n_outputs = n_outputs;
    d->score_index = score_index >= 0 && (size_t)score_index < n_outputs ? score_index : -1;
    d->score_bins = d->score_index >= 0 && score_bins && score_bins->n_edges ? score_bins : NULL;
    int oom = !(d->missing_a = malloc(n1 * sizeof *d->missing_a)) ||
              !(d->missing_b = malloc(n1 * sizeof *d->missing_b)) ||
              !(d->fig_inputs = calloc(n1, sizeof *d->fig_inputs)) ||
              !(d->names = calloc(n1, sizeof *d->names)) ||
              !(d->values = calloc(n1, sizeof *d->values));
    for (size_t k = 0; !oom && k < SF_DRIFT_SLICES; k++) {
        slice *s = &d->s[k];
        oom = !(s->present = malloc(n1 * sizeof *s->present)) ||
              !(s->missing = malloc(n1 * sizeof *s->missing)) ||
              !(s->sum = malloc(n1 * sizeof *s->sum)) ||
              !(s->sum2 = malloc(n1 * sizeof *s->sum2)) ||
              !(s->bins = malloc(n1 * (SF_VARS_MAX_EDGES + 1) * sizeof *s->bins));
        if (!oom)
            slice_clear(d, s, 0);
    }
    if (oom) {
        sf_drift_free(d);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const sf_var *var = &v->vars[i];
        d->missing_a[i] = var->has_fill ? (float)var->fill : NAN;
        d->missing_b[i] = var->has_default ? (float)var->default_value : NAN;
        d->names[i] = var->name;
    }
    if (c->window_s > 0) {
        d->slice_ms = (int64_t)(c->window_s * 1000 / SF_DRIFT_SLICES);
        if (d->slice_ms < 1)
            d->slice_ms = 1;
    } else {
        d->slice_events = (c->window_events + SF_DRIFT_SLICES - 1) / SF_DRIFT_SLICES;
        if (d->slice_events < 1)
            d->slice_events = 1;
    }
    d->fig.inputs = d->fig_inputs;
    d->fig.n_inputs = n;
    return d;
}

/* The bin of x: how many edges are <= x (vars.h). A binary search without
 * branches on the data (the compiler makes the step a conditional move): the
 * values are random, so a branchy search mispredicts at every step, which
 * was most of the monitor's cost. */
static size_t bin_of(const sf_vars_bins *b, double x) {
    const double *e = b->edges;
    size_t n = b->n_edges;
    if (!n)
        return 0;
    while (n > 1) { /* e: the last edge <= x so far, or the first one */
        size_t half = n / 2;
        e = e[half] <= x ? e + half : e;
        n -= half;
    }
    return (size_t)(e - b->edges) + (*e <= x);
}

/* Moves to the next slice, dropping the oldest, as time or counts say. */
static void advance(sf_drift *d, int64_t now_ms) {
    if (d->slice_ms) {
        slice *s = &d->s[d->cur];
        if (now_ms - s->start_ms < d->slice_ms)
            return;
        /* A long quiet spell empties the whole window, one slice per span. */
        int64_t spans = (now_ms - s->start_ms) / d->slice_ms;
        for (int64_t k = 0; k < spans && k < SF_DRIFT_SLICES; k++) {
            d->cur = (d->cur + 1) % SF_DRIFT_SLICES;
            slice_clear(d, &d->s[d->cur], now_ms);
        }
        return;
    }
    if (d->s[d->cur].events >= d->slice_events) {
        d->cur = (d->cur + 1) % SF_DRIFT_SLICES;
        slice_clear(d, &d->s[d->cur], now_ms);
    }
}

static void add_rows(sf_drift *d, slice *s, const float *rows, size_t n) {
    for (size_t i = 0; i < d->n_in; i++) {
        const sf_var_training *t = &d->v->vars[i].training;
        const sf_vars_bins *b = &t->bins;
        uint32_t *bins = s->bins + i * (SF_VARS_MAX_EDGES + 1);
        float ma = d->missing_a[i], mb = d->missing_b[i];
        double mean = t->mean, inv = 1 / t->std, sum = 0, sum2 = 0;
        uint64_t missing = 0;
        for (size_t r = 0; r < n; r++) {
            float x = rows[r * d->n_in + i];
            if (x == ma || x == mb) { /* NaN never compares equal */
                missing++;
                continue;
            }
            double z = (x - mean) * inv;
            sum += z;
            sum2 += z * z;
            if (b->n_edges)
                bins[bin_of(b, x)]++;
        }
        s->missing[i] += missing;
        s->present[i] += n - missing;
        s->sum[i] += sum;
        s->sum2[i] += sum2;
    }
}

static void add_scores(sf_drift *d, slice *s, const float *probs, size_t n) {
    size_t no = d->n_outputs;
    for (size_t r = 0; r < n; r++) {
        const float *p = probs + r * no;
        float ps = p[d->score_index];
        int top = 1; /* the argmax, the first on ties, as sf_argmax */
        for (size_t o = 0; o < no && top; o++)
            if ((int)o != d->score_index && (p[o] > ps || (p[o] == ps && (int)o < d->score_index)))
                top = 0;
        s->signals += (uint64_t)top;
        if (d->score_bins)
            s->score_bins[bin_of(d->score_bins, ps)]++;
    }
    s->scored += n;
}

void sf_drift_add_rows(sf_drift *d, const float *rows, size_t n, int64_t now_ms) {
    while (n) {
        advance(d, now_ms);
        slice *s = &d->s[d->cur];
        /* In events, a batch may straddle slices: split it where the slice fills. */
        size_t take = n;
        if (!d->slice_ms && d->slice_events - s->events < take)
            take = (size_t)(d->slice_events - s->events);
        add_rows(d, s, rows, take);
        s->events += take;
        rows += take * d->n_in;
        n -= take;
    }
}

void sf_drift_add_scores(sf_drift *d, const float *probs, size_t n) {
    if (d->score_index >= 0)
        add_scores(d, &d->s[d->cur], probs, n);
}

/* PSI = sum over bins of (a - e) ln(a / e), with a, e the live and training
 * shares; a bin empty on both sides (repeated edges) adds nothing. */
static double psi(const sf_vars_bins *b, const uint64_t *counts, uint64_t total) {
    if (!b || !b->n_edges || !total)
        return NAN;
    double sum = 0;
    for (size_t k = 0; k <= b->n_edges; k++) {
        double a = (double)counts[k] / (double)total, e = b->fractions[k];
        if (a == 0 && e == 0)
            continue;
        a = a < PSI_FLOOR ? PSI_FLOOR : a;
        e = e < PSI_FLOOR ? PSI_FLOOR : e;
        sum += (a - e) * log(a / e);
    }
    return sum;
}

const sf_drift_figures *sf_drift_compute(sf_drift *d, int64_t now_ms) {
    if (d->slice_ms)
        advance(d, now_ms); /* a quiet window ages even without events */
    uint64_t events = 0, signals = 0, scored = 0, score_counts[SF_VARS_MAX_EDGES + 1] = {0};
    for (size_t k = 0; k < SF_DRIFT_SLICES; k++) {
        events += d->s[k].events;
        signals += d->s[k].signals;
        scored += d->s[k].scored;
        for (size_t b = 0; b <= SF_VARS_MAX_EDGES; b++)
            score_counts[b] += d->s[k].score_bins[b];
    }
    for (size_t i = 0; i < d->n_in; i++) {
        uint64_t present = 0, missing = 0, counts[SF_VARS_MAX_EDGES + 1] = {0};
        double sum = 0, sum2 = 0;
        for (size_t k = 0; k < SF_DRIFT_SLICES; k++) {
            const slice *s = &d->s[k];
            present += s->present[i];
            missing += s->missing[i];
            sum += s->sum[i];
            sum2 += s->sum2[i];
            const uint32_t *bins = s->bins + i * (SF_VARS_MAX_EDGES + 1);
            for (size_t b = 0; b <= SF_VARS_MAX_EDGES; b++)
                counts[b] += bins[b];
        }
        sf_drift_input *f = &d->fig_inputs[i];
        f->missing_ratio = present + missing ? (double)missing / (double)(present + missing) : NAN;
        f->mean_shift = f->std_ratio = f->psi = NAN;
        if (present) {
            double mean = sum / (double)present, var = sum2 / (double)present - mean * mean;
            f->mean_shift = mean;
            f->std_ratio = sqrt(var > 0 ? var : 0);
            f->psi = psi(&d->v->vars[i].training.bins, counts, present);
        }
    }
    d->fig.events = events;
    d->fig.signal_rate = scored ? (double)signals / (double)scored : NAN;
    d->fig.score_psi = psi(d->score_bins, score_counts, scored);
    return &d->fig;
}

int sf_drift_publish(sf_drift *d, sf_metrics *m, int64_t now_ms) {
    const sf_drift_figures *f = sf_drift_compute(d, now_ms);
    static const struct {
        const char *name, *help;
        size_t offset;
    } fams[] = {
        {"sigflow_input_psi", "Population stability index of the input against its training "
         "quantile bins, over the drift window.", offsetof(sf_drift_input, psi)},
        {"sigflow_input_mean_shift", "Shift of the input's mean from training's, in training "
         "standard deviations, over the drift window.", offsetof(sf_drift_input, mean_shift)},
        {"sigflow_input_std_ratio", "The input's standard deviation over training's, over the "
         "drift window.", offsetof(sf_drift_input, std_ratio)},
        {"sigflow_input_missing_ratio", "Fraction of events whose input was missing or took its "
         "default, over the drift window.", offsetof(sf_drift_input, missing_ratio)},
    };
    int rc = 0;
    for (size_t k = 0; k < sizeof fams / sizeof fams[0]; k++) {
        for (size_t i = 0; i < d->n_in; i++)
            memcpy(&d->values[i], (const char *)&f->inputs[i] + fams[k].offset, sizeof(double));
        rc |= sf_metrics_set_gauges(m, fams[k].name, fams[k].help, "input", d->n_in, d->names,
                                    d->values);
    }
    double events = (double)f->events;
    rc |= sf_metrics_set_gauges(m, "sigflow_score_psi", "Population stability index of "
                                "p(signal) against its held-out distribution, over the drift "
                                "window.", NULL, 1, NULL, &f->score_psi);
    rc |= sf_metrics_set_gauges(m, "sigflow_signal_rate", "Fraction of the events of the drift "
                                "window labelled signal.", NULL, 1, NULL, &f->signal_rate);
    rc |= sf_metrics_set_gauges(m, "sigflow_drift_window_events", "Events in the drift window.",
                                NULL, 1, NULL, &events);
    return rc ? -1 : 0;
}

int sf_drift_summary(sf_drift *d, int64_t now_ms, char *buf, size_t size) {
    const sf_drift_figures *f = sf_drift_compute(d, now_ms);
    double warn = d->conf.warn_psi;
    size_t len = 0, named = 0;
    int over = f->score_psi > warn;
    int w = snprintf(buf, size, "window_events=%llu warn_psi=%g", (unsigned long long)f->events,
                     warn);
    len = w < 0 ? 0 : (size_t)w;
    /* The worst first: pick the largest remaining each time (at most 8 of them). */
    double last = INFINITY;
    for (; named < 8; named++) {
        size_t best = d->n_in;
        for (size_t i = 0; i < d->n_in; i++)
            if (f->inputs[i].psi > warn && f->inputs[i].psi < last &&
                (best == d->n_in || f->inputs[i].psi > f->inputs[best].psi))
                best = i;
        if (best == d->n_in)
            break;
        last = f->inputs[best].psi;
        if (len < size) {
            w = snprintf(buf + len, size - len, " psi_%s=%.3f", d->names[best], last);
            len += w < 0 ? 0 : (size_t)w;
        }
    }
    if (len < size)
        snprintf(buf + len, size - len, " score_psi=%.3f signal_rate=%.4f", f->score_psi,
                 f->signal_rate);
    return over || named;
}
