/* metrics.c: the daemon's Prometheus metrics.
 *
 * The data path updates these on every batch, so updates are single relaxed
 * atomics (a CAS loop for a double sum) and never wait for a scrape. Doubles
 * live as their bit patterns in 64-bit atomics because C11 has no portable
 * lock-free atomic double. Histogram buckets are stored per bucket and made
 * cumulative while rendering, and _count is the sum of the buckets as read, so
 * a scrape is always self-consistent (+Inf == _count) even under traffic.
 *
 * The model description is a string that a reload may replace during a scrape;
 * it is the only state behind a mutex, taken once per scrape and per reload. */
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/metrics.h"
#include "sigflow/version.h"

#define SF_HIST_MAX_BOUNDS 24

typedef struct sf_hist_def {
    const char *name;
    const char *help;
    size_t n_bounds;
    double bounds[SF_HIST_MAX_BOUNDS]; /* ascending upper bounds; +Inf is implicit */
} sf_hist_def;

/* Batches are sized in powers of two up to the largest batch the CLI accepts;
 * latencies span a fast sgemm (tens of µs) to a broker stall (tens of s). */
static const sf_hist_def hist_defs[SF_H__COUNT] = {
    [SF_H_BATCH_SIZE] = {"sigflow_batch_size", "Events per inference batch.", 13,
                         {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}},
    [SF_H_INFERENCE] = {"sigflow_inference_seconds",
                        "Wall time of one forward pass (up to 128 events of a batch) through the model, from its "
                        "start to its end (the next chunk is parsed meanwhile).", 16,
                        {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                         0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}},
    [SF_H_SHADOW_ABS_DP] = {"sigflow_shadow_abs_dp",
                            "|p(signal) of the shadow model - that of the serving model|, per "
                            "event (--shadow-model).", 12,
                            {1e-7, 1e-6, 1e-5, 1e-4, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1}},
    [SF_H_END_TO_END] = {"sigflow_end_to_end_seconds",
                         "Time from an event's Kafka timestamp to its result being produced.", 15,
                         {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                          2.5, 5, 10, 30}},
};

static const struct {
    const char *name;
    const char *help;
} counter_defs[SF_C__COUNT] = {
    [SF_C_CONSUMED] = {"sigflow_events_consumed_total", "Events read from the input topic."},
    [SF_C_PREDICTED] = {"sigflow_events_predicted_total", "Events scored by the model."},
    [SF_C_SIGNALS] = {"sigflow_signals_published_total",
                      "Signal events acknowledged by the broker of the output topic."},
    [SF_C_DEAD_LETTERS] = {"sigflow_dead_letters_total",
                           "Rejected events acknowledged by the broker of the dead-letter topic."},
    [SF_C_BATCHES] = {"sigflow_batches_total", "Batches run through the model."},
    [SF_C_RELOADS] = {"sigflow_model_reloads_total", "Model reloads (SIGHUP) that went live."},
    [SF_C_RELOAD_FAILURES] = {"sigflow_model_reload_failures_total",
                              "Model reloads refused; the previous model kept serving."},
};

static const struct {
    const char *name;
    const char *help;
} gauge_defs[SF_G__COUNT] = {
    [SF_G_CONSUMER_LAG] = {"sigflow_consumer_lag",
                           "Messages between the consumer position and the end of its partitions."},
    [SF_G_ASSIGNED_PARTITIONS] = {"sigflow_assigned_partitions",
                                  "Input partitions assigned to this consumer."},
};

typedef struct sf_hist {
    atomic_uint_least64_t buckets[SF_HIST_MAX_BOUNDS + 1]; /* last one: above every bound */
    atomic_uint_least64_t sum_bits;
} sf_hist;

struct sf_metrics {
    atomic_uint_least64_t counters[SF_C__COUNT];
    atomic_uint_least64_t rejected[SF_REJECT__COUNT];
    atomic_uint_least64_t refusals[SF_MODEL_REFUSED__COUNT];
    atomic_uint_least64_t gauge_bits[SF_G__COUNT];
    sf_hist hists[SF_H__COUNT];

    pthread_mutex_t model_lock;
    char *model_sha256; /* NULL: no model described */
    size_t model_inputs;
    size_t model_outputs;
    char *infer_labels; /* sigflow_inference_info's labels, rendered; NULL: none */
    size_t n_members;   /* a model set's members, under model_lock */
    char **member_names;
    char **member_sha256;
    double *member_weights;
    /* sigflow_defaulted_inputs_total{input}, under model_lock. The names are
     * the variables files' (every model served since start), at most
     * SF_METRICS_MAX_INPUTS, the rest under "(other)": cardinality stays bounded
     * whatever the files say. */
    size_t n_defaulted;
    char *defaulted_names[SF_METRICS_MAX_INPUTS + 1];
    uint64_t defaulted[SF_METRICS_MAX_INPUTS + 1];
    /* sf_metrics_set_gauges' families, under model_lock. */
    size_t n_families;
    struct gauge_family {
        const char *name, *help, *label, *type;
        size_t n;
        char **label_values; /* n; NULL when label is NULL */
        double *values;
    } families[SF_METRICS_MAX_FAMILIES];
};

static void free_family_series(size_t n, char **label_values, double *values) {
    for (size_t i = 0; label_values && i < n; i++)
        free(label_values[i]);
    free(label_values);
    free(values);
}

static void free_members(size_t n, char **names, char **sha, double *weights);

static uint64_t double_bits(double v) {
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double bits_double(uint64_t b) {
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

sf_metrics *sf_metrics_new(void) {
    sf_metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    for (size_t i = 0; i < SF_C__COUNT; i++) atomic_init(&m->counters[i], 0);
    for (size_t i = 0; i < SF_REJECT__COUNT; i++) atomic_init(&m->rejected[i], 0);
    for (size_t i = 0; i < SF_MODEL_REFUSED__COUNT; i++) atomic_init(&m->refusals[i], 0);
    for (size_t i = 0; i < SF_G__COUNT; i++) atomic_init(&m->gauge_bits[i], double_bits(0.0));
    for (size_t h = 0; h < SF_H__COUNT; h++) {
        for (size_t i = 0; i <= SF_HIST_MAX_BOUNDS; i++) atomic_init(&m->hists[h].buckets[i], 0);
        atomic_init(&m->hists[h].sum_bits, double_bits(0.0));
    }
    if (pthread_mutex_init(&m->model_lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

void sf_metrics_free(sf_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->model_lock);
    free(m->model_sha256);
    free(m->infer_labels);
    free_members(m->n_members, m->member_names, m->member_sha256, m->member_weights);
    for (size_t i = 0; i < m->n_defaulted; i++)
        free(m->defaulted_names[i]);
    for (size_t i = 0; i < m->n_families; i++)
        free_family_series(m->families[i].n, m->families[i].label_values,
                           m->families[i].values);
    free(m);
}

static struct gauge_family *find_family(const sf_metrics *m, const char *name) {
    for (size_t i = 0; i < m->n_families; i++)
        if (!strcmp(m->families[i].name, name))
            return (struct gauge_family *)&m->families[i];
    return NULL;
}

static int same_series(const struct gauge_family *f, const char *label, size_t n,
                       const char *const *label_values) {
    if (f->n != n || (f->label == NULL) != (label == NULL))
        return 0;
    for (size_t i = 0; label && i < n; i++)
        if (strcmp(f->label_values[i], label_values[i]))
            return 0;
    return 1;
}

static int set_family(sf_metrics *m, const char *type, const char *name, const char *help,
                      const char *label, size_t n, const char *const *label_values,
                      const double *values) {
    if (n > SF_METRICS_MAX_INPUTS || (!label && n != 1))
        return -1;
    pthread_mutex_lock(&m->model_lock);
    struct gauge_family *f = find_family(m, name);
    if (f && same_series(f, label, n, label_values)) { /* the usual case: new values only */
        memcpy(f->values, values, n * sizeof *values);
        pthread_mutex_unlock(&m->model_lock);
        return 0;
    }
    pthread_mutex_unlock(&m->model_lock);
    /* Copies made outside the lock, so a scrape never waits on malloc. */
    char **lv = label ? calloc(n ? n : 1, sizeof *lv) : NULL;
    double *v = malloc((n ? n : 1) * sizeof *v);
    int oom = !v || (label && !lv);
    for (size_t i = 0; !oom && label && i < n; i++)
        oom = !(lv[i] = strdup(label_values[i]));
    if (oom) {
        free_family_series(n, lv, v);
        return -1;
    }
    memcpy(v, values, n * sizeof *v);
    pthread_mutex_lock(&m->model_lock);
    f = find_family(m, name);
    if (!f && m->n_families < SF_METRICS_MAX_FAMILIES) {
        f = &m->families[m->n_families++];
        f->n = 0;
        f->label_values = NULL;
        f->values = NULL;
    }
    if (!f) {
        pthread_mutex_unlock(&m->model_lock);
        free_family_series(n, lv, v);
        return -1;
    }
    size_t old_n = f->n;
    char **old_lv = f->label_values;
    double *old_v = f->values;
    f->name = name;
    f->help = help;
    f->type = type;
    f->label = label;
    f->n = n;
    f->label_values = lv;
    f->values = v;
    pthread_mutex_unlock(&m->model_lock);
    free_family_series(old_n, old_lv, old_v);
    return 0;
}

int sf_metrics_set_gauges(sf_metrics *m, const char *name, const char *help, const char *label,
                          size_t n, const char *const *label_values, const double *values) {
    return set_family(m, "gauge", name, help, label, n, label_values, values);
}

int sf_metrics_set_counters(sf_metrics *m, const char *name, const char *help, const char *label,
                            size_t n, const char *const *label_values, const double *values) {
    return set_family(m, "counter", name, help, label, n, label_values, values);
}

double sf_metrics_gauge(const sf_metrics *m, const char *name, const char *label_value) {
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->model_lock;
    double v = NAN;
    pthread_mutex_lock(lock);
    const struct gauge_family *f = find_family(m, name);
    for (size_t i = 0; f && i < f->n; i++)
        if (!label_value ? !f->label : f->label && !strcmp(f->label_values[i], label_value))
            v = f->values[i];
    pthread_mutex_unlock(lock);
    return v;
}

/* The slot of input (created when there is room), the "(other)" one when the
 * table is full or out of memory. Under model_lock. */
static size_t defaulted_slot(sf_metrics *m, const char *input) {
    for (size_t i = 0; i < m->n_defaulted; i++)
        if (m->defaulted_names[i] && !strcmp(m->defaulted_names[i], input))
            return i;
    if (m->n_defaulted < SF_METRICS_MAX_INPUTS &&
        (m->defaulted_names[m->n_defaulted] = strdup(input)))
        return m->n_defaulted++;
    return SF_METRICS_MAX_INPUTS;
}

void sf_metrics_add_defaulted(sf_metrics *m, const char *input, uint64_t n) {
    pthread_mutex_lock(&m->model_lock);
    m->defaulted[defaulted_slot(m, input)] += n;
    pthread_mutex_unlock(&m->model_lock);
}

uint64_t sf_metrics_defaulted(const sf_metrics *m, const char *input) {
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->model_lock;
    uint64_t n = 0;
    pthread_mutex_lock(lock);
    for (size_t i = 0; i < m->n_defaulted; i++)
        if (!strcmp(m->defaulted_names[i], input))
            n = m->defaulted[i];
    pthread_mutex_unlock(lock);
    return n;
}


void sf_metrics_add(sf_metrics *m, sf_counter c, uint64_t n) {
    if ((unsigned)c >= SF_C__COUNT) return;
    atomic_fetch_add_explicit(&m->counters[c], n, memory_order_relaxed);
}

uint64_t sf_metrics_get(const sf_metrics *m, sf_counter c) {
    if ((unsigned)c >= SF_C__COUNT) return 0;
    return atomic_load_explicit(&m->counters[c], memory_order_relaxed);
}

void sf_metrics_model_refused(sf_metrics *m, sf_model_refusal cause) {
    if ((unsigned)cause < SF_MODEL_REFUSED__COUNT)
        atomic_fetch_add_explicit(&m->refusals[cause], 1, memory_order_relaxed);
}

uint64_t sf_metrics_model_refusals(const sf_metrics *m, sf_model_refusal cause) {
    return (unsigned)cause < SF_MODEL_REFUSED__COUNT
               ? atomic_load_explicit(&m->refusals[cause], memory_order_relaxed)
               : 0;
}

void sf_metrics_reject(sf_metrics *m, sf_reject reason) {
    /* NONE is not a rejection; counting it would invent an unlisted label. */
    if (reason <= SF_REJECT_NONE || reason >= SF_REJECT__COUNT) return;
    atomic_fetch_add_explicit(&m->rejected[reason], 1, memory_order_relaxed);
}

uint64_t sf_metrics_rejected(const sf_metrics *m, sf_reject reason) {
    if (reason <= SF_REJECT_NONE || reason >= SF_REJECT__COUNT) return 0;
    return atomic_load_explicit(&m->rejected[reason], memory_order_relaxed);
}

uint64_t sf_metrics_rejected_total(const sf_metrics *m) {
    uint64_t n = 0;
    for (int r = SF_REJECT_NONE + 1; r < SF_REJECT__COUNT; r++)
        n += sf_metrics_rejected(m, (sf_reject)r);
    return n;
}

void sf_metrics_set(sf_metrics *m, sf_gauge g, double v) {
    if ((unsigned)g >= SF_G__COUNT) return;
    atomic_store_explicit(&m->gauge_bits[g], double_bits(v), memory_order_relaxed);
}

void sf_metrics_observe(sf_metrics *m, sf_histogram h, double v) {
    /* A NaN would poison _sum for the rest of the process's life. */
    if ((unsigned)h >= SF_H__COUNT || isnan(v)) return;
    const sf_hist_def *def = &hist_defs[h];
    sf_hist *hist = &m->hists[h];
    size_t i = 0;
    while (i < def->n_bounds && v > def->bounds[i]) i++;
    atomic_fetch_add_explicit(&hist->buckets[i], 1, memory_order_relaxed);

    uint64_t old = atomic_load_explicit(&hist->sum_bits, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&hist->sum_bits, &old,
                                                  double_bits(bits_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed)) {
    }
}

static void free_members(size_t n, char **names, char **sha, double *weights) {
    for (size_t i = 0; i < n; i++) {
        free(names ? names[i] : NULL);
        free(sha ? sha[i] : NULL);
    }
    free(names);
    free(sha);
    free(weights);
}

void sf_metrics_set_members(sf_metrics *m, size_t n, const char *const *names,
                            const char *const *sha256, const double *weights) {
    char **nm = n ? calloc(n, sizeof *nm) : NULL, **sh = n ? calloc(n, sizeof *sh) : NULL;
    double *w = n ? malloc(n * sizeof *w) : NULL;
    int ok = !n || (nm && sh && w);
    for (size_t i = 0; ok && i < n; i++) {
        nm[i] = strdup(names[i]);
        sh[i] = strdup(sha256[i]);
        w[i] = weights[i];
        ok = nm[i] && sh[i];
    }
    if (!ok) {
        free_members(n, nm, sh, w);
        n = 0, nm = sh = NULL, w = NULL;
    }
    pthread_mutex_lock(&m->model_lock);
    size_t old_n = m->n_members;
    char **old_nm = m->member_names, **old_sh = m->member_sha256;
    double *old_w = m->member_weights;
    m->n_members = n;
    m->member_names = nm;
    m->member_sha256 = sh;
    m->member_weights = w;
    pthread_mutex_unlock(&m->model_lock);
    free_members(old_n, old_nm, old_sh, old_w);
}

void sf_metrics_set_model(sf_metrics *m, const char *sha256, size_t inputs, size_t outputs) {
    /* Copy outside the lock; on OOM the info disappears rather than lying
     * about which model is loaded. */
    char *copy = sha256 ? strdup(sha256) : NULL;
    pthread_mutex_lock(&m->model_lock);
    char *old = m->model_sha256;
    m->model_sha256 = copy;
    m->model_inputs = inputs;
    m->model_outputs = outputs;
    pthread_mutex_unlock(&m->model_lock);
    free(old);
}

/* ---- rendering ---------------------------------------------------------- */

typedef struct sf_out {
    char *buf;
    size_t len;
    size_t cap;
    int oom;
} sf_out;

static int out_reserve(sf_out *o, size_t extra) {
    if (o->oom) return -1;
    if (o->len + extra + 1 <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + extra + 1) cap *= 2;
    char *nb = realloc(o->buf, cap);
    if (!nb) {
        o->oom = 1;
        return -1;
    }
    o->buf = nb;
    o->cap = cap;
    return 0;
}

static void out_printf(sf_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(sf_out *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || out_reserve(o, (size_t)n) != 0) {
        o->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    o->len += (size_t)n;
}

/* Label values escape backslash, double quote and newline (format 0.0.4). */
static void out_label_value(sf_out *o, const char *s) {
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\') esc = "\\\\";
        else if (*s == '"') esc = "\\\"";
        else if (*s == '\n') esc = "\\n";
        size_t n = esc ? 2 : 1;
        if (out_reserve(o, n) != 0) return;
        memcpy(o->buf + o->len, esc ? esc : s, n);
        o->len += n;
        o->buf[o->len] = '\0';
    }
}

/* The shortest text that reads back as the same double, so bucket bounds come
 * out as "2.5e-05" and "4096" rather than 17-digit noise; Prometheus spells
 * the specials +Inf, -Inf and NaN. */
static void format_double(char *dst, size_t size, double v) {
    if (isnan(v)) {
        snprintf(dst, size, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(dst, size, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(dst, size, "%.*g", prec, v);
        if (strtod(dst, NULL) == v) return;
    }
}

static void out_family(sf_out *o, const char *name, const char *help, const char *type) {
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_histogram(sf_out *o, const sf_hist_def *def, const sf_hist *hist) {
    char num[64];
    uint64_t cumulative = 0;
    out_family(o, def->name, def->help, "histogram");
    for (size_t i = 0; i <= def->n_bounds; i++) {
        cumulative += atomic_load_explicit(&hist->buckets[i], memory_order_relaxed);
        if (i < def->n_bounds) format_double(num, sizeof num, def->bounds[i]);
        else snprintf(num, sizeof num, "+Inf");
        out_printf(o, "%s_bucket{le=\"%s\"} %" PRIu64 "\n", def->name, num, cumulative);
    }
    format_double(num, sizeof num,
                  bits_double(atomic_load_explicit(&hist->sum_bits, memory_order_relaxed)));
    out_printf(o, "%s_sum %s\n%s_count %" PRIu64 "\n", def->name, num, def->name, cumulative);
}

static void render_defaulted(sf_out *o, const sf_metrics *m) {
    out_family(o, "sigflow_defaulted_inputs_total",
               "Events scored without an optional input, which took its default, by input.",
               "counter");
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->model_lock;
    pthread_mutex_lock(lock);
    for (size_t i = 0; i <= SF_METRICS_MAX_INPUTS; i++) {
        if (i == m->n_defaulted)
            i = SF_METRICS_MAX_INPUTS;
        if (i == SF_METRICS_MAX_INPUTS && !m->defaulted[i])
            break;
        out_printf(o, "sigflow_defaulted_inputs_total{input=\"");
        out_label_value(o, i < SF_METRICS_MAX_INPUTS ? m->defaulted_names[i] : "(other)");
        out_printf(o, "\"} %" PRIu64 "\n", m->defaulted[i]);
    }
    pthread_mutex_unlock(lock);
}

static void render_families(sf_out *o, const sf_metrics *m) {
    char num[64];
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->model_lock;
    pthread_mutex_lock(lock);
    for (size_t k = 0; k < m->n_families; k++) {
        const struct gauge_family *f = &m->families[k];
        out_family(o, f->name, f->help, f->type);
        for (size_t i = 0; i < f->n; i++) {
            if (isnan(f->values[i]))
                continue;
            if (f->values[i] == floor(f->values[i]) && fabs(f->values[i]) < 9007199254740992.0)
                snprintf(num, sizeof num, "%.0f", f->values[i]); /* counts read as counts */
            else
                format_double(num, sizeof num, f->values[i]);
            if (!f->label) {
                out_printf(o, "%s %s\n", f->name, num);
                continue;
            }
            out_printf(o, "%s{%s=\"", f->name, f->label);
            out_label_value(o, f->label_values[i]);
            out_printf(o, "\"} %s\n", num);
        }
    }
    pthread_mutex_unlock(lock);
}

static void render_model_info(sf_out *o, const sf_metrics *m) {
    out_family(o, "sigflow_model_info",
               "The loaded model: SHA-256 of its file and its input and output widths.", "gauge");
    /* The lock lives in a heap object the caller could not have made const;
     * scraping is logically a read. */
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->model_lock;
    pthread_mutex_lock(lock);
    if (m->model_sha256) {
        out_printf(o, "sigflow_model_info{sha256=\"");
        out_label_value(o, m->model_sha256);
        out_printf(o, "\",inputs=\"%zu\",outputs=\"%zu\"} 1\n", m->model_inputs,
                   m->model_outputs);
    }
    for (size_t i = 0; i < m->n_members; i++) {
        out_printf(o, "sigflow_model_info{member=\"");
        out_label_value(o, m->member_names[i]);
        out_printf(o, "\",sha256=\"");
        out_label_value(o, m->member_sha256[i]);
        out_printf(o, "\",weight=\"%.6g\"} 1\n", m->member_weights[i]);
    }
    pthread_mutex_unlock(lock);
}

void sf_metrics_set_inference(sf_metrics *m, const char *backend, const char *precision,
                              const char *kernel, int threads, int library_threads) {
    /* Rendered once here, escaped, so a scrape only copies it; on OOM the
     * series disappears rather than lying. */
    sf_out o = {0};
    out_printf(&o, "backend=\"");
    out_label_value(&o, backend);
    out_printf(&o, "\",precision=\"");
    out_label_value(&o, precision);
    out_printf(&o, "\",kernel=\"");
    out_label_value(&o, kernel);
    out_printf(&o, "\",threads=\"%d\",library_threads=\"%d\"", threads, library_threads);
    if (o.oom) {
        free(o.buf);
        o.buf = NULL;
    }
    pthread_mutex_lock(&m->model_lock);
    char *old = m->infer_labels;
    m->infer_labels = o.buf;
    pthread_mutex_unlock(&m->model_lock);
    free(old);
}

void sf_metrics_get_inference(const sf_metrics *m, char *buf, size_t size) {
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->model_lock;
    pthread_mutex_lock(lock);
    snprintf(buf, size, "%s", m->infer_labels ? m->infer_labels : "");
    pthread_mutex_unlock(lock);
}

static void render_inference_info(sf_out *o, const sf_metrics *m) {
    out_family(o, "sigflow_inference_info",
               "What the forward pass runs on: backend, precision, kernel (OpenBLAS core or "
               "oneDNN implementation), threads.", "gauge");
    pthread_mutex_t *lock = (pthread_mutex_t *)&m->model_lock;
    pthread_mutex_lock(lock);
    if (m->infer_labels)
        out_printf(o, "sigflow_inference_info{%s} 1\n", m->infer_labels);
    pthread_mutex_unlock(lock);
}

/* What this process is, for telling hosts apart (version.h). */
static void render_build_info(sf_out *o) {
    sf_version v;
    sf_version_get(&v);
    const char *labels[][2] = {{"version", v.version}, {"git", v.git}, {"librdkafka", v.librdkafka},
                               {"onednn", v.onednn}, {"openblas", v.openblas}, {"hdf5", v.hdf5}};
    out_family(o, "sigflow_build_info",
               "sigflow's version (git describe when built from git) and its libraries' versions.", "gauge");
    out_printf(o, "sigflow_build_info{");
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++) {
        out_printf(o, "%s%s=\"", i ? "," : "", labels[i][0]);
        out_label_value(o, labels[i][1]);
        out_printf(o, "\"");
    }
    out_printf(o, "} 1\n");
}

char *sf_metrics_render(const sf_metrics *m) {
    sf_out o = {0};
    char num[64];

    for (size_t c = 0; c < SF_C__COUNT; c++) {
        out_family(&o, counter_defs[c].name, counter_defs[c].help, "counter");
        out_printf(&o, "%s %" PRIu64 "\n", counter_defs[c].name,
                   atomic_load_explicit(&m->counters[c], memory_order_relaxed));
    }

    out_family(&o, "sigflow_events_rejected_total", "Events refused before inference, by reason.",
               "counter");
    for (int r = SF_REJECT_NONE + 1; r < SF_REJECT__COUNT; r++) {
        out_printf(&o, "sigflow_events_rejected_total{reason=\"");
        const char *name = sf_reject_name((sf_reject)r);
        out_label_value(&o, name ? name : "unknown");
        out_printf(&o, "\"} %" PRIu64 "\n",
                   atomic_load_explicit(&m->rejected[r], memory_order_relaxed));
    }

    out_family(&o, "sigflow_model_refusals_total",
               "Model loads refused, by cause: crash, timeout, sandbox (a forbidden system call "
               "in the loader), invalid.", "counter");
    for (int r = 0; r < SF_MODEL_REFUSED__COUNT; r++)
        out_printf(&o, "sigflow_model_refusals_total{cause=\"%s\"} %" PRIu64 "\n",
                   sf_model_refusal_name((sf_model_refusal)r),
                   atomic_load_explicit(&m->refusals[r], memory_order_relaxed));

    for (size_t g = 0; g < SF_G__COUNT; g++) {
        out_family(&o, gauge_defs[g].name, gauge_defs[g].help, "gauge");
        format_double(num, sizeof num,
                      bits_double(atomic_load_explicit(&m->gauge_bits[g], memory_order_relaxed)));
        out_printf(&o, "%s %s\n", gauge_defs[g].name, num);
    }

    render_defaulted(&o, m);
    render_model_info(&o, m);
    render_inference_info(&o, m);
    render_build_info(&o);
    render_families(&o, m);

    for (size_t h = 0; h < SF_H__COUNT; h++) render_histogram(&o, &hist_defs[h], &m->hists[h]);

    if (o.oom) {
        free(o.buf);
        return NULL;
    }
    return o.buf;
}
