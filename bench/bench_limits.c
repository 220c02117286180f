/* bench_limits.c: the compute limits sigflow-bench compares the pipeline to.
 *
 * The end-to-end rate alone says nothing about headroom. These loops run the
 * pipeline's own stages on the bundled sample already in memory, with no Kafka
 * at all: the batched forward pass (the machine's limit for this model) and
 * JSON parse + assemble (the other per-event cost of the pipeline thread). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "sigflow/blas.h"
#include "sigflow/clock.h"
#include "sigflow/engine.h"
#include "sigflow/replay.h"
#include "bench.h"

#define SAMPLE_EVENTS 4096

/* The first SAMPLE_EVENTS events, as the JSON the feed sends, and their rows. */
typedef struct sample {
    size_t n;
    const char **json;
    size_t *len;
    float *rows; /* n x n_inputs, raw, then normalized */
} sample;

static void sample_free(sample *s) {
    free(s->json);
    free(s->len);
    free(s->rows);
}

static int sample_take(sample *s, const bench_events *ev, size_t n_inputs) {
    memset(s, 0, sizeof *s);
    size_t n = bench_events_count(ev) < SAMPLE_EVENTS ? bench_events_count(ev) : SAMPLE_EVENTS;
    s->json = calloc(n, sizeof *s->json);
    s->len = calloc(n, sizeof *s->len);
    s->rows = malloc(n * n_inputs * sizeof *s->rows);
    if (!s->json || !s->len || !s->rows)
        return -1;
    for (size_t i = 0; i < n; i++)
        s->json[i] = bench_events_value(ev, i, &s->len[i]);
    s->n = n;
    return 0;
}

void bench_heldout_free(bench_heldout *h) {
    for (size_t i = 0; i < h->n; i++)
        free(h->json[i]);
    free(h->json);
    free(h->len);
    free(h->signal);
    memset(h, 0, sizeof *h);
}

/* The truth of the held-out rows, in file order: the replay reader renders
 * numbers only (it refuses Label), so the CSV is read once more for it. */
static int heldout_truth(const char *path, unsigned long long **ids, unsigned char **sig, size_t *n,
                         char *errstr, size_t en) {
    gzFile f = gzopen(path, "rb");
    char line[8192];
    int label_col = -1, rc = 0;
    size_t cap = 0;
    *n = 0;
    if (!f || !gzgets(f, line, sizeof line)) {
        snprintf(errstr, en, "%s: cannot read the header", path);
        if (f)
            gzclose(f);
        return -1;
    }
    int col = 0;
    for (char *tok = strtok(line, ",\r\n"); tok; tok = strtok(NULL, ",\r\n"), col++)
        if (!strcmp(tok, "Label"))
            label_col = col;
    if (label_col < 0) {
        snprintf(errstr, en, "%s: no Label column", path);
        gzclose(f);
        return -1;
    }
    while (rc == 0 && gzgets(f, line, sizeof line)) {
        unsigned long long id = strtoull(line, NULL, 10);
        if (id % 10 != 9)
            continue;
        const char *p = line;
        for (int k = 0; k < label_col && p; k++)
            if ((p = strchr(p, ',')))
                p++;
        if (!p)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 1024;
            unsigned long long *i2 = realloc(*ids, cap * sizeof *i2);
            if (i2)
                *ids = i2;
            unsigned char *s2 = i2 ? realloc(*sig, cap) : NULL;
            if (s2)
                *sig = s2;
            if (!s2) {
                snprintf(errstr, en, "out of memory");
                rc = -1;
                break;
            }
        }
        (*ids)[*n] = id;
        (*sig)[*n] = *p == 's';
        (*n)++;
    }
    gzclose(f);
    return rc;
}

int bench_heldout_load(bench_heldout *h, const char *path, char *errstr, size_t n) {
    memset(h, 0, sizeof *h);
    unsigned long long *ids = NULL;
    size_t n_truth = 0;
    if (heldout_truth(path, &ids, &h->signal, &n_truth, errstr, n)) {
        free(ids);
        bench_heldout_free(h);
        return -1;
    }
    sf_replay *r;
    if (sf_replay_open(&r, path, NULL, NULL, errstr, n)) {
        free(ids);
        bench_heldout_free(h);
        return -1;
    }
    int rc = 0;
    h->json = calloc(n_truth ? n_truth : 1, sizeof *h->json);
    h->len = calloc(n_truth ? n_truth : 1, sizeof *h->len);
    if (!h->json || !h->len) {
        snprintf(errstr, n, "out of memory");
        rc = -1;
    }
    while (rc == 0 && h->n < n_truth) {
        sf_replay_msg m;
        int got = sf_replay_next(r, &m, errstr, n);
        if (got == SF_REPLAY_EOF)
            break;
        if (got == SF_REPLAY_BAD)
            continue;
        if (got != SF_REPLAY_ROW) {
            rc = -1;
            break;
        }
        unsigned long long id = m.key ? strtoull(m.key, NULL, 10) : 0;
        if (id % 10 != 9)
            continue;
        if (id != ids[h->n]) {
            snprintf(errstr, n, "%s: held-out EventId %llu where %llu was expected", path, id,
                     ids[h->n]);
            rc = -1;
            break;
        }
        if (!(h->json[h->n] = strndup(m.value, m.value_len))) {
            snprintf(errstr, n, "out of memory");
            rc = -1;
            break;
        }
        h->len[h->n] = m.value_len;
        h->n++;
    }
    sf_replay_close(r);
    free(ids);
    if (rc == 0 && h->n != n_truth) {
        snprintf(errstr, n, "%s: %zu held-out rows rendered of %zu", path, h->n, n_truth);
        rc = -1;
    }
    if (rc)
        bench_heldout_free(h);
    return rc;
}

/* ROC AUC of scores p against truth y (Mann-Whitney, ties count half). */
static int by_score(const void *a, const void *b) {
    const double *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

static double roc_auc(const float *p, const unsigned char *y, size_t n) {
    double *v = malloc(n * 2 * sizeof *v);
    if (!v || n == 0) {
        free(v);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        v[2 * i] = p[i];
        v[2 * i + 1] = y[i];
    }
    qsort(v, n, 2 * sizeof *v, by_score);
    double rank_sum = 0, pos = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[2 * j] == v[2 * i])
            j++;
        double avg = (double)(i + 1 + j) / 2.0;
        for (size_t k = i; k < j; k++)
            if (v[2 * k + 1] > 0.5) {
                rank_sum += avg;
                pos++;
            }
        i = j;
    }
    free(v);
    double neg = (double)n - pos;
    return pos > 0 && neg > 0 ? (rank_sum - pos * (pos + 1) / 2) / (pos * neg) : 0;
}

/* Label agreement with openblas/fp32, the largest probability difference and
 * the AUC of engine e over the held-out events. */
static int quality(const bench_limits_conf *c, sf_engine *e, bench_limits *out, char *errstr,
                   size_t n) {
    const bench_heldout *h = c->heldout;
    const sf_model *model = sf_engine_model(e);
    size_t nin = model->n_inputs, nout = model->n_outputs;
    int sig = sf_vars_label_index(sf_engine_vars(e), "s");
    float *x = malloc(h->n * nin * sizeof *x), *y = malloc(h->n * nout * sizeof *y);
    float *ref = malloc(h->n * nout * sizeof *ref), *ps = malloc(h->n * sizeof *ps);
    sf_infer *base = sf_infer_new(model, c->batch_size);
    int rc = -1;
    if (!x || !y || !ref || !ps || !base || sig < 0) {
        snprintf(errstr, n, sig < 0 ? "no label 's' for the AUC" : "out of memory");
        goto out;
    }
    char why[512];
    sf_event_id id;
    for (size_t i = 0; i < h->n; i++)
        if (sf_engine_assemble(e, h->json[i], h->len[i], x + i * nin, &id, why, sizeof why)) {
            snprintf(errstr, n, "held-out event %zu rejected: %s", i, why);
            goto out;
        }
    sf_engine_normalize_rows(e, x, h->n);
    sf_engine_infer_rows(e, x, h->n, y);
    sf_infer_run(base, x, h->n, ref);
    size_t agree = 0;
    out->max_dp_vs_reference = 0;
    for (size_t i = 0; i < h->n; i++) {
        agree += sf_argmax(y + i * nout, nout) == sf_argmax(ref + i * nout, nout);
        for (size_t k = 0; k < nout; k++) {
            double d = (double)y[i * nout + k] - (double)ref[i * nout + k];
            d = d < 0 ? -d : d;
            if (d > out->max_dp_vs_reference)
                out->max_dp_vs_reference = d;
        }
        ps[i] = y[i * nout + (size_t)sig];
    }
    out->label_agreement = h->n ? (double)agree / (double)h->n : 0;
    out->auc = roc_auc(ps, h->signal, h->n);
    for (size_t i = 0; i < h->n; i++)
        ps[i] = ref[i * nout + (size_t)sig];
    out->auc_reference = roc_auc(ps, h->signal, h->n);
    rc = 0;
out:
    sf_infer_free(base);
    free(x);
    free(y);
    free(ref);
    free(ps);
    return rc;
}

/* The stage being timed, called with i = 0, 1, ... cycling through a period. */
typedef struct job {
    sample *s;
    sf_engine *e;
    size_t nin, batch;
    float *buf;   /* parse: one row; normalize: one batch of scratch */
    float *probs;
} job;

static void step_parse(job *j, size_t i) {
    char why[256];
    sf_event_id id;
    sf_engine_assemble(j->e, j->s->json[i], j->s->len[i], j->buf, &id, why, sizeof why);
}

/* Normalizing in place again and again would drift the values: a fresh copy
 * each time (the copy is a small part of the cost, and is counted). */
static void step_normalize(job *j, size_t i) {
    memcpy(j->buf, j->s->rows + i * j->batch * j->nin, j->batch * j->nin * sizeof *j->buf);
    sf_engine_normalize_rows(j->e, j->buf, j->batch);
}

static void step_infer(job *j, size_t i) {
    sf_engine_infer_rows(j->e, j->s->rows + i * j->batch * j->nin, j->batch, j->probs);
}

/* Runs step over i = 0..period-1 again and again for `seconds`; returns the
 * events per second, `per_call` events a call. */
static double timed_rate_on(double (*clock)(void), double seconds, void (*step)(job *, size_t),
                            job *j, size_t period, size_t per_call) {
    size_t calls = 0, i = 0;
    double t0 = clock(), t;
    do {
        for (int k = 0; k < 16; k++) {
            step(j, i);
            calls++;
            i = (i + 1) % period;
        }
        t = clock();
    } while (t - t0 < seconds);
    return (double)calls * (double)per_call / (t - t0);
}

static double timed_rate(double seconds, void (*step)(job *, size_t), job *j, size_t period,
                         size_t per_call) {
    return timed_rate_on(sf_clock_s, seconds, step, j, period, per_call);
}

/* CPU microseconds of this thread per event (other processes weigh little). */
static double timed_cpu(double seconds, void (*step)(job *, size_t), job *j, size_t period,
                        size_t per_call) {
    return 1e6 / timed_rate_on(bench_thread_cpu_s, seconds, step, j, period, per_call);
}

/* The set against its members loaded alone (bench_limits's comment in bench.h). */
static int members_alone(const bench_limits_conf *c, sf_engine *set, job *js, size_t batches,
                         bench_limits *out, char *errstr, size_t n) {
    size_t nm = sf_engine_n_members(set);
    sf_engine **alone = calloc(nm, sizeof *alone);
    job *jobs = calloc(nm, sizeof *jobs);
    sample *samples = calloc(nm, sizeof *samples);
    double *best = calloc(nm, sizeof *best);
    float *probs = malloc(c->batch_size * sf_engine_n_outputs(set) * sizeof *probs);
    int rc = -1;
    if (!alone || !jobs || !samples || !best || !probs) {
        snprintf(errstr, n, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < nm; k++) {
        sf_engine_member_info mi;
        sf_engine_member(set, k, &mi);
        sf_engine_conf ec;
        sf_engine_conf_init(&ec);
        ec.model_path = mi.path;
        ec.vars_path = mi.vars_path;
        ec.emit = SF_EMIT_ALL;
        ec.batch_size = c->batch_size;
        ec.threads = 1;
        ec.infer = c->infer;
        if (sf_engine_load(&alone[k], &ec, errstr, n))
            goto out;
        size_t nin = sf_engine_n_inputs(alone[k]);
        if (sample_take(&samples[k], c->events, nin)) {
            snprintf(errstr, n, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < samples[k].n; i++) {
            char why[256];
            sf_event_id id;
            sf_engine_assemble(alone[k], samples[k].json[i], samples[k].len[i],
                               samples[k].rows + i * nin, &id, why, sizeof why);
        }
        sf_engine_normalize_rows(alone[k], samples[k].rows, samples[k].n);
        jobs[k] = (job){.s = &samples[k], .e = alone[k], .nin = nin, .batch = c->batch_size,
                        .probs = probs};
    }
    out->set_cpu_us_per_event = 0;
    for (int round = 0; round < 3; round++) {
        double t = timed_cpu(c->seconds, step_infer, js, batches, c->batch_size);
        if (round == 0 || t < out->set_cpu_us_per_event)
            out->set_cpu_us_per_event = t;
        for (size_t k = 0; k < nm; k++) {
            t = timed_cpu(c->seconds / (double)nm, step_infer, &jobs[k], batches, c->batch_size);
            if (round == 0 || t < best[k])
                best[k] = t;
        }
    }
    out->members = nm;
    out->members_cpu_us_per_event = 0;
    for (size_t k = 0; k < nm; k++)
        out->members_cpu_us_per_event += best[k];
    rc = 0;
out:
    for (size_t k = 0; alone && k < nm; k++) {
        sf_engine_free(alone[k]);
        if (samples)
            sample_free(&samples[k]);
    }
    free(alone);
    free(jobs);
    free(samples);
    free(best);
    free(probs);
    return rc;
}

int bench_limits_run(const bench_limits_conf *c, bench_limits *out, char *errstr, size_t n) {
    memset(out, 0, sizeof *out);
    sf_engine *e = NULL;
    sample s = {0};
    float *probs = NULL, *ref = NULL, *buf = NULL;
    int rc = -1;
    /* The stages timed one at a time; the forward pass starts on one thread
     * and the threads are set below, as each figure needs. */
    sf_engine_conf ec;
    sf_engine_conf_init(&ec);
    ec.model_path = c->model_path;
    ec.vars_path = c->vars_path;
    ec.emit = SF_EMIT_ALL;
    ec.batch_size = c->batch_size;
    ec.threads = 1;
    ec.infer = c->infer;
    if (sf_engine_load(&e, &ec, errstr, n))
        goto out;
    sf_engine_inference(e, &out->info);
    const sf_model *model = sf_engine_model(e);
    size_t nin = sf_engine_n_inputs(e); /* a set's rows are its union of variables */
    out->parameters = 0;
    for (size_t k = 0; k < sf_engine_n_members(e); k++) {
        sf_engine_member_info mi;
        sf_engine_member(e, k, &mi);
        out->parameters += mi.model->n_params;
    }
    snprintf(out->sha256, sizeof out->sha256, "%s",
             sf_engine_set(e) ? sf_engine_set(e)->sha256 : model->sha256);
    if (sample_take(&s, c->events, nin)) {
        snprintf(errstr, n, "out of memory");
        goto out;
    }
    out->events = s.n;
    probs = malloc(c->batch_size * model->n_outputs * sizeof *probs);
    ref = malloc(SAMPLE_EVENTS * model->n_outputs * sizeof *ref);
    buf = malloc(c->batch_size * nin * sizeof *buf);
    if (!probs || !ref || !buf) {
        snprintf(errstr, n, "out of memory");
        goto out;
    }

    /* Every sample event must assemble, or the loops would time rejections. */
    char why[512];
    sf_event_id id;
    for (size_t i = 0; i < s.n; i++) {
        if (sf_engine_assemble(e, s.json[i], s.len[i], s.rows + i * nin, &id, why, sizeof why)) {
            snprintf(errstr, n, "sample event %zu rejected: %s", i + 1, why);
            goto out;
        }
    }
    size_t batches = s.n / c->batch_size;
    if (batches == 0) {
        snprintf(errstr, n, "batch size %zu is larger than the %zu sample events", c->batch_size, s.n);
        goto out;
    }
    job j = {.s = &s, .e = e, .nin = nin, .batch = c->batch_size,
             .buf = buf, .probs = probs};
    out->parse_eps = timed_rate(c->seconds, step_parse, &j, s.n, 1);
    out->normalize_eps = timed_rate(c->seconds, step_normalize, &j, batches, c->batch_size);
    sf_engine_normalize_rows(e, s.rows, s.n);

    sf_blas_info before;
    sf_blas_info_get(&before);
    sf_engine_set_library_threads(e, 1);
    /* The outputs of one thread, untimed (BLAS buffers, page faults), for the
     * check below. */
    size_t per_batch = c->batch_size * model->n_outputs;
    for (size_t b = 0; b < batches; b++)
        sf_engine_infer_rows(e, s.rows + b * c->batch_size * nin, c->batch_size, ref + b * per_batch);
    out->inference_1thread_eps = timed_rate(c->seconds, step_infer, &j, batches, c->batch_size);
    if (sf_engine_set(e) && members_alone(c, e, &j, batches, out, errstr, n))
        goto restore;

    /* Does a row get the same bits in half a batch? Without that, no split can
     * match one thread, nor can the daemon match `sigflow predict`. */
    size_t half = (c->batch_size / 2 + 15) / 16 * 16;
    out->batch_independent = 1;
    if (half < c->batch_size) {
        sf_engine_infer_rows(e, s.rows, half, probs);
        sf_engine_infer_rows(e, s.rows + half * nin, c->batch_size - half, probs + half * model->n_outputs);
        out->batch_independent = !memcmp(probs, ref, per_batch * sizeof *probs);
    }

    /* The daemon's way: the batch split over our threads, which must not
     * change a bit of any output when rows are batch-independent. */
    if (sf_engine_set_threads(e, c->all_threads)) {
        snprintf(errstr, n, "cannot start %d inference threads", c->all_threads);
        goto restore;
    }
    out->split_identical = 1;
    for (size_t b = 0; b < batches; b++) {
        sf_engine_infer_rows(e, s.rows + b * c->batch_size * nin, c->batch_size, probs);
        if (memcmp(probs, ref + b * per_batch, per_batch * sizeof *probs))
            out->split_identical = 0;
    }
    out->inference_eps = timed_rate(c->seconds, step_infer, &j, batches, c->batch_size);
    sf_engine_set_threads(e, 1);

    /* The library's own threading (OpenBLAS's pool, oneDNN's OpenMP team). */
    sf_engine_set_library_threads(e, c->all_threads);
    out->inference_blas_threads_eps = timed_rate(c->seconds, step_infer, &j, batches, c->batch_size);
    sf_engine_set_library_threads(e, 1);

    /* The bare oneDNN loop, same precision (fp32 for the openblas backend),
     * timed in turns with the engine on one thread, best of each, both per
     * second of the calling thread's CPU time (everything runs on it here):
     * on a shared machine wall-clock figures taken at different times mostly
     * measure the neighbours. */
    bench_bare *bare = bench_bare_new(model, c->infer.precision, c->batch_size, out->bare_impl,
                                      sizeof out->bare_impl);
    out->bare_onednn_eps = -1;
    if (bare) {
        for (int turn = 0; turn < 5; turn++) {
            double ours = timed_rate_on(bench_thread_cpu_s, c->seconds / 5, step_infer, &j,
                                        batches, c->batch_size);
            double theirs = bench_bare_rate(bare, c->seconds / 5);
            if (ours > out->inference_1thread_best_eps)
                out->inference_1thread_best_eps = ours;
            if (theirs > out->bare_onednn_eps)
                out->bare_onednn_eps = theirs;
        }
        bench_bare_free(bare);
    }
    if (c->heldout && quality(c, e, out, errstr, n))
        goto restore;
    rc = 0;
restore:
    sf_blas_set_threads(before.threads);
out:
    sample_free(&s);
    free(probs);
    free(ref);
    free(buf);
    sf_engine_free(e);
    return rc;
}
