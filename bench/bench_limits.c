/* bench_limits.c: the compute limits sigflow-bench compares the pipeline to.
 *
 * The end-to-end rate alone says nothing about headroom. These loops run the
 * pipeline's own stages on the bundled sample already in memory, with no Kafka
 * at all: the batched forward pass (the machine's limit for this model) and
 * JSON parse + assemble (the other per-event cost of the pipeline thread). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/blas.h"
#include "sigflow/clock.h"
#include "sigflow/engine.h"
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
static double timed_rate(double seconds, void (*step)(job *, size_t), job *j, size_t period,
                         size_t per_call) {
    size_t calls = 0, i = 0;
    double t0 = sf_clock_s(), t;
    do {
        for (int k = 0; k < 16; k++) {
            step(j, i);
            calls++;
            i = (i + 1) % period;
        }
        t = sf_clock_s();
    } while (t - t0 < seconds);
    return (double)calls * (double)per_call / (t - t0);
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
    if (sf_engine_load(&e, &ec, errstr, n))
        goto out;
    const sf_model *model = sf_engine_model(e);
    size_t nin = model->n_inputs;
    out->parameters = model->n_params;
    snprintf(out->sha256, sizeof out->sha256, "%s", model->sha256);
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
    sf_blas_set_threads(1);
    /* The outputs of one thread, untimed (BLAS buffers, page faults), for the
     * check below. */
    size_t per_batch = c->batch_size * model->n_outputs;
    for (size_t b = 0; b < batches; b++)
        sf_engine_infer_rows(e, s.rows + b * c->batch_size * nin, c->batch_size, ref + b * per_batch);
    out->inference_1thread_eps = timed_rate(c->seconds, step_infer, &j, batches, c->batch_size);

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

    sf_blas_set_threads(c->all_threads);
    out->inference_blas_threads_eps = timed_rate(c->seconds, step_infer, &j, batches, c->batch_size);
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
