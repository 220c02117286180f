/* infer.c: the forward pass, the hot path of every prediction: the choice of
 * backend (infer_blas.c, infer_onednn.c), chunking, the threads that share a
 * batch, and the activations both backends use.
 *
 * The activations follow Keras exactly, in their numerically stable forms,
 * because a served model must reproduce training.
 *
 * Several cores share a batch through helper threads of our own, each running
 * its backend single-threaded on its own rows (sf_infer_set_threads):
 * OpenBLAS's threads, and oneDNN's OpenMP team, spin for a while after every
 * call, taking the cores that the Kafka client threads need between batches.
 * The threads take the batch UNIT_ROWS at a time, as they come: the Kafka
 * threads share the cores, so a helper may wake late, and a caller that had
 * handed it a fixed half would wait for it; this way the caller does the
 * late helper's share itself. sf_infer_start and sf_infer_finish are the two
 * halves of that hand-over, so the caller can do other work in between (the
 * daemon's pipeline thread parses and publishes while the helpers compute)
 * and still take the units left when it comes back, rather than wait.
 *
 * The same threads take other work too (sf_infer_tasks_start): the daemon
 * hands them the parsing of its next chunk and the rendering of its last
 * one, which a helper takes whenever no rows are left, and the caller takes
 * while it would otherwise wait for a helper's last rows. Without that, the
 * helpers would idle while the caller parses and renders, which with int8's
 * fast forward pass is most of the time. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "sigflow/blas.h"
#include "sigflow/infer.h"
#include "infer_impl.h"

/* A helper thread. */
typedef struct helper {
    struct sf_infer *pool; /* the engine that hands out the rows */
    struct sf_infer *sub;  /* same model, buffers of its own */
    pthread_t tid;
    int started;
} helper;

struct sf_infer {
    const sf_model *m;
    const sf_infer_backend *be;
    void *impl;
    sf_infer_conf conf; /* as opened (its calibration borrowed), backend resolved */
    size_t max_batch;   /* a multiple of SF_INFER_ROW_BLOCK */

    /* sf_infer_set_threads: the helpers and their hand-over. */
    helper *helpers;
    size_t n_helpers;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    const float *x;         /* the pass being shared (under mu) */
    float *y;
    size_t n, next;         /* its rows so far, the first not yet taken */
    size_t *busy;           /* per thread (the helpers, then the caller): the
                               first row of the unit it runs, SIZE_MAX: none */
    sf_infer_task *task;    /* the tasks being shared (under mu) */
    void *task_arg;
    size_t tasks, task_next, tasks_done;
    int quit;
    int library_threads;    /* last sf_infer_set_library_threads, 0: untouched */
};

#define ROW_BLOCK SF_INFER_ROW_BLOCK

/* The rows a thread takes at a time. The forward pass costs the same per
 * row from 32 rows up (bench/README.md); every unit starts on a ROW_BLOCK
 * boundary, so every row meets the same GEMM code as on one thread and gets
 * the same bits. */
#define UNIT_ROWS (2 * ROW_BLOCK)

/* When this few rows are left, threads take ROW_BLOCK rows at a time: the
 * last unit of a pass keeps the other threads waiting for it. */
#define TAIL_ROWS (2 * UNIT_ROWS)

static void stop_helpers(sf_infer *e);

/* Keras' SELU constants (Klambauer et al. 2017). */
#define SELU_ALPHA 1.6732632423543772f
#define SELU_SCALE 1.0507009873554805f

const char *sf_backend_name(sf_backend b) {
    switch (b) {
    case SF_BACKEND_AUTO: return "auto";
    case SF_BACKEND_OPENBLAS: return "openblas";
    case SF_BACKEND_ONEDNN: return "onednn";
    }
    return "?";
}

const char *sf_precision_name(sf_precision p) {
    return p == SF_PRECISION_BF16 ? "bf16" : p == SF_PRECISION_INT8 ? "int8" : "fp32";
}

int sf_backend_parse(const char *s, sf_backend *out) {
    for (sf_backend b = SF_BACKEND_AUTO; b <= SF_BACKEND_ONEDNN; b++)
        if (!strcmp(s, sf_backend_name(b))) {
            *out = b;
            return 0;
        }
    return -1;
}

int sf_precision_parse(const char *s, sf_precision *out) {
    for (sf_precision p = SF_PRECISION_FP32; p <= SF_PRECISION_INT8; p++)
        if (!strcmp(s, sf_precision_name(p))) {
            *out = p;
            return 0;
        }
    return -1;
}

/* CPUID leaf 7, subleaf `sub`, into r (EAX, EBX, ECX, EDX); 0 when the CPU
 * has no leaf 7 (GCC 12's __builtin_cpu_supports knows none of the bits used
 * here). */
static int cpuid7(unsigned sub, unsigned r[4]) {
#if defined(__x86_64__)
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(0));
    if (r[0] < 7)
        return 0;
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(7), "c"(sub));
    return 1;
#else
    (void)sub;
    (void)r;
    return 0;
#endif
}

int sf_infer_cpu_bf16(void) {
    /* subleaf 1 EAX bit 5 is AVX512_BF16, subleaf 0 EDX bit 22 AMX-BF16 */
    unsigned r0[4], r1[4];
    return cpuid7(0, r0) && cpuid7(1, r1) && (((r0[3] >> 22) & 1) || ((r1[0] >> 5) & 1));
}

int sf_infer_cpu_int8(void) {
    /* subleaf 0: ECX bit 11 is AVX512_VNNI, EDX bit 25 AMX-INT8 */
    unsigned r[4];
    return cpuid7(0, r) && (((r[2] >> 11) & 1) || ((r[3] >> 25) & 1));
}

/* AUTO's rule. oneDNN's JIT fp32 kernels beat or match OpenBLAS's best on the
 * AVX-512 machines measured (bench/README.md), and never fall back to generic
 * code where the CPU has AVX2: so oneDNN whenever it has a JIT kernel here. */
static sf_backend resolve(sf_backend b) {
    if (b != SF_BACKEND_AUTO)
        return b;
    return sf_infer_backend_available(SF_BACKEND_ONEDNN) ? SF_BACKEND_ONEDNN : SF_BACKEND_OPENBLAS;
}

static const sf_infer_backend *backend_of(sf_backend b) {
    return b == SF_BACKEND_ONEDNN ? &sf_infer_onednn : &sf_infer_openblas;
}

int sf_infer_open(sf_infer **out, const sf_model *m, size_t max_batch, const sf_infer_conf *c,
                  char *errstr, size_t n) {
    *out = NULL;
    if (!m || max_batch == 0) {
        snprintf(errstr, n, "no model, or a batch of 0 rows");
        return -1;
    }
    if (max_batch > ((size_t)1 << 24)) {
        snprintf(errstr, n, "batch of %zu rows is too large", max_batch);
        return -1;
    }
    sf_infer_conf def = {0};
    if (!c)
        c = &def;
    max_batch = (max_batch + ROW_BLOCK - 1) / ROW_BLOCK * ROW_BLOCK;
    sf_infer *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    e->m = m;
    e->max_batch = max_batch;
    e->conf = *c;
    e->conf.backend = resolve(c->backend);
    e->be = backend_of(e->conf.backend);
    e->library_threads = 1; /* the backends start so (OpenBLAS: once there are helpers) */
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->go, NULL);
    pthread_cond_init(&e->done, NULL);
    if (!(e->busy = malloc(sizeof *e->busy))) {
        snprintf(errstr, n, "out of memory");
        sf_infer_free(e);
        return -1;
    }
    e->busy[0] = SIZE_MAX;
    if (e->be->open(&e->impl, m, max_batch, &e->conf, errstr, n)) {
        sf_infer_free(e);
        return -1;
    }
    *out = e;
    return 0;
}

sf_infer *sf_infer_new(const sf_model *m, size_t max_batch) {
    sf_infer_conf c = {.backend = SF_BACKEND_OPENBLAS, .precision = SF_PRECISION_FP32};
    sf_infer *e;
    char err[256];
    return sf_infer_open(&e, m, max_batch, &c, err, sizeof err) ? NULL : e;
}

void sf_infer_free(sf_infer *e) {
    if (!e)
        return;
    stop_helpers(e);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->go);
    pthread_cond_destroy(&e->done);
    if (e->impl)
        e->be->close(e->impl);
    free(e->busy);
    free(e);
}

void sf_infer_info_get(const sf_infer *e, sf_infer_info *out) {
    memset(out, 0, sizeof *out);
    out->backend = e->be->id;
    out->precision = e->conf.precision;
    e->be->kernel(e->impl, out->kernel, sizeof out->kernel, &out->generic);
    out->threads = (int)e->n_helpers + 1;
    out->library_threads = e->be->library_threads_get(e->impl);
    out->bf16_native = sf_infer_cpu_bf16();
    out->int8_native = sf_infer_cpu_int8();
}

void sf_infer_describe(const sf_infer *e, char *buf, size_t size) {
    sf_infer_info in;
    sf_infer_info_get(e, &in);
    snprintf(buf, size, "backend %s, precision %s, kernel %s, %d thread%s x %d library thread%s%s%s",
             sf_backend_name(in.backend), sf_precision_name(in.precision), in.kernel, in.threads,
             in.threads == 1 ? "" : "s", in.library_threads, in.library_threads == 1 ? "" : "s",
             in.generic ? " (WARNING: generic kernel on a CPU that has AVX2/AVX-512)" : "",
             in.precision == SF_PRECISION_BF16 && !in.bf16_native
                 ? " (bf16 EMULATED: this CPU has neither AVX512_BF16 nor AMX, expect it slower than fp32)"
                 : "");
}

static inline float sigmoidf(float x) {
    /* exp of a large positive argument overflows; use the form that only ever
     * exponentiates non-positive numbers. */
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float z = expf(x);
    return z / (1.0f + z);
}

static void softmax_rows(float *v, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; r++) {
        float *row = v + r * cols;
        float mx = row[0];
        for (size_t j = 1; j < cols; j++)
            if (row[j] > mx)
                mx = row[j];
        float sum = 0.0f;
        for (size_t j = 0; j < cols; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (size_t j = 0; j < cols; j++)
            row[j] *= inv;
    }
}

/* max(v + b, 0) over n values (b may be NULL). In fixed blocks of 8 so that
 * GCC vectorizes it without branches at -O2: as a plain loop it compiles to a
 * compare and a jump per value, which mispredicts on about half of a hidden
 * layer's values and cost a third of the whole forward pass (bench/README.md).
 * NaN still gives 0, exactly as `y > 0 ? y : 0`. */
static void relu_inplace(float *restrict v, const float *restrict b, size_t n) {
    size_t j = 0;
    if (b) {
        for (; j + 8 <= n; j += 8)
            for (size_t k = 0; k < 8; k++) {
                float y = v[j + k] + b[j + k];
                v[j + k] = y > 0.0f ? y : 0.0f;
            }
        for (; j < n; j++) {
            float y = v[j] + b[j];
            v[j] = y > 0.0f ? y : 0.0f;
        }
        return;
    }
    for (; j + 8 <= n; j += 8)
        for (size_t k = 0; k < 8; k++)
            v[j + k] = v[j + k] > 0.0f ? v[j + k] : 0.0f;
    for (; j < n; j++)
        v[j] = v[j] > 0.0f ? v[j] : 0.0f;
}

/* One branch per activation outside the loop, so each inner loop is simple
 * enough for the compiler to vectorize the cheap ones. */
void sf_activation_apply(sf_activation a, float alpha, float *v, size_t rows, size_t cols) {
    size_t n = rows * cols;
    switch (a) {
    case SF_ACT_LINEAR:
        break;
    case SF_ACT_RELU:
        relu_inplace(v, NULL, n);
        break;
    case SF_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            v[i] = sigmoidf(v[i]);
        break;
    case SF_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            v[i] = tanhf(v[i]);
        break;
    case SF_ACT_SOFTMAX:
        if (cols)
            softmax_rows(v, rows, cols);
        break;
    case SF_ACT_ELU:
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] > 0.0f ? v[i] : alpha * expm1f(v[i]);
        break;
    case SF_ACT_SELU:
        for (size_t i = 0; i < n; i++)
            v[i] = SELU_SCALE * (v[i] > 0.0f ? v[i] : SELU_ALPHA * expm1f(v[i]));
        break;
    case SF_ACT_SOFTPLUS:
        for (size_t i = 0; i < n; i++)
            v[i] = log1pf(expf(-fabsf(v[i]))) + (v[i] > 0.0f ? v[i] : 0.0f);
        break;
    case SF_ACT_SOFTSIGN:
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] / (1.0f + fabsf(v[i]));
        break;
    case SF_ACT_HARD_SIGMOID:
        for (size_t i = 0; i < n; i++) {
            float y = 0.2f * v[i] + 0.5f;
            v[i] = y < 0.0f ? 0.0f : (y > 1.0f ? 1.0f : y);
        }
        break;
    case SF_ACT_SWISH:
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] * sigmoidf(v[i]);
        break;
    case SF_ACT_EXPONENTIAL:
        for (size_t i = 0; i < n; i++)
            v[i] = expf(v[i]);
        break;
    case SF_ACT_LEAKY_RELU:
        for (size_t i = 0; i < n; i++)
            v[i] = v[i] >= 0.0f ? v[i] : alpha * v[i];
        break;
    case SF_ACT_HARD_SIGMOID3:
        for (size_t i = 0; i < n; i++) {
            float y = v[i] + 3.0f;
            v[i] = (y < 0.0f ? 0.0f : (y > 6.0f ? 6.0f : y)) / 6.0f;
        }
        break;
    case SF_ACT_GELU:
        for (size_t i = 0; i < n; i++)
            v[i] = 0.5f * v[i] * (1.0f + erff(v[i] * (float)M_SQRT1_2));
        break;
    case SF_ACT_RELU_FULL: /* needs the layer's options: sf_activation_apply_layer */
        break;
    }
}

/* ReLU with Keras' options, in the order Keras computes them: values at or
 * below the threshold are zeroed, the rest clipped to max_value, then the
 * negative slope applies to how far below the threshold a value is. */
static void relu_full(const sf_layer *l, float *v, size_t n) {
    float t = l->threshold, mx = l->max_value, slope = l->alpha;
    for (size_t i = 0; i < n; i++) {
        float x = v[i];
        float y = t != 0.0f ? (x > t ? x : 0.0f) : (x > 0.0f ? x : 0.0f);
        if (y > mx)
            y = mx;
        if (y < 0.0f && mx < INFINITY)
            y = 0.0f;
        if (slope != 0.0f) {
            float below = t - x;
            y -= slope * (below > 0.0f ? below : 0.0f);
        }
        v[i] = y;
    }
}

void sf_activation_apply_layer(const sf_layer *l, float *v, size_t rows, size_t cols) {
    if (l->activation == SF_ACT_RELU_FULL)
        relu_full(l, v, rows * cols);
    else
        sf_activation_apply(l->activation, l->alpha, v, rows, cols);
}

/* The epilogue of a Dense layer: bias then activation. For the activations
 * that dominate real networks the two are fused into one pass; the rest add
 * the bias first and reuse sf_activation_apply on the rows still in cache. */
void sf_infer_bias_activate(const sf_layer *l, float *v, size_t rows, int add_bias) {
    size_t cols = l->n_out;
    const float *b = add_bias ? l->bias : NULL;
    if (l->activation == SF_ACT_RELU) {
        for (size_t r = 0; r < rows; r++)
            relu_inplace(v + r * cols, b, cols);
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        float *row = v + r * cols;
        if (b)
            for (size_t j = 0; j < cols; j++)
                row[j] += b[j];
        sf_activation_apply_layer(l, row, 1, cols);
    }
}

void sf_infer_scale(const sf_layer *l, const float *cur, float *out, size_t rows) {
    for (size_t r = 0; r < rows; r++) {
        const float *in = cur + r * l->n_in;
        float *o = out + r * l->n_out;
        if (l->bias)
            for (size_t j = 0; j < l->n_out; j++)
                o[j] = in[j] * l->scale[j] + l->bias[j];
        else
            for (size_t j = 0; j < l->n_out; j++)
                o[j] = in[j] * l->scale[j];
    }
}

/* The forward pass of n rows on the calling thread alone. */
static void run_here(sf_infer *e, const float *x, size_t n, float *y) {
    size_t n_in = e->m->n_inputs, n_out = e->m->n_outputs;
    while (n > 0) {
        size_t rows = n < e->max_batch ? n : e->max_batch;
        e->be->run(e->impl, x, rows, y);
        x += rows * n_in;
        y += rows * n_out;
        n -= rows;
    }
}

/* ------------------------------------------------------------ helper threads */

/* Runs the next unit of the pass's rows on `by` (the caller's engine or
 * helper `slot`'s): UNIT_ROWS, ROW_BLOCK near the end of the rows handed out
 * so far, all at once without helpers. 0 when none is left to take. Called,
 * and returns, with e->mu held. */
static int take_rows(sf_infer *e, sf_infer *by, size_t slot) {
    if (e->next >= e->n)
        return 0;
    size_t from = e->next, left = e->n - from;
    size_t unit = !e->n_helpers ? left : left <= TAIL_ROWS ? ROW_BLOCK : UNIT_ROWS;
    size_t rows = left < unit ? left : unit;
    const float *x = e->x + from * e->m->n_inputs;
    float *y = e->y + from * e->m->n_outputs;
    e->next += rows;
    e->busy[slot] = from;
    pthread_mutex_unlock(&e->mu);
    run_here(by, x, rows, y);
    pthread_mutex_lock(&e->mu);
    e->busy[slot] = SIZE_MAX;
    pthread_cond_signal(&e->done);
    return 1;
}

/* The pass's rows before this one are all done: units are taken in order,
 * so only the ones running can hold back the rows taken. */
static size_t done_below(const sf_infer *e) {
    size_t r = e->next;
    for (size_t t = 0; t <= e->n_helpers; t++)
        if (e->busy[t] < r)
            r = e->busy[t];
    return r;
}

/* The same for the next task unit. */
static int take_task(sf_infer *e) {
    if (e->task_next >= e->tasks)
        return 0;
    size_t unit = e->task_next++;
    pthread_mutex_unlock(&e->mu);
    e->task(e->task_arg, unit);
    pthread_mutex_lock(&e->mu);
    if (++e->tasks_done == e->tasks)
        pthread_cond_signal(&e->done);
    return 1;
}

static void *helper_main(void *arg) {
    helper *h = arg;
    sf_infer *e = h->pool;
#ifdef __linux__
    prctl(PR_SET_NAME, "sf-infer", 0, 0, 0);
#endif
    pthread_mutex_lock(&e->mu);
    while (!e->quit)
        if (!take_rows(e, h->sub, (size_t)(h - e->helpers)) && !take_task(e))
            pthread_cond_wait(&e->go, &e->mu);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

static void stop_helpers(sf_infer *e) {
    if (!e->helpers)
        return;
    pthread_mutex_lock(&e->mu);
    e->quit = 1;
    pthread_cond_broadcast(&e->go);
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < e->n_helpers; i++) {
        if (e->helpers[i].started)
            pthread_join(e->helpers[i].tid, NULL);
        sf_infer_free(e->helpers[i].sub);
    }
    free(e->helpers);
    e->helpers = NULL;
    e->n_helpers = 0;
    e->quit = 0;
}

int sf_infer_set_threads(sf_infer *e, int threads) {
    stop_helpers(e);
    if (threads <= 1)
        return 0;
    size_t n = (size_t)threads - 1;
    size_t *busy = realloc(e->busy, (n + 1) * sizeof *busy);
    if (!busy)
        return -1;
    e->busy = busy;
    for (size_t t = 0; t <= n; t++)
        busy[t] = SIZE_MAX;
    if (!(e->helpers = calloc(n, sizeof *e->helpers)))
        return -1;
    e->n_helpers = n;
    for (size_t i = 0; i < n; i++) {
        helper *h = &e->helpers[i];
        h->pool = e;
        char err[256];
        if (sf_infer_open(&h->sub, e->m, UNIT_ROWS, &e->conf, err, sizeof err) ||
            pthread_create(&h->tid, NULL, helper_main, h)) {
            stop_helpers(e);
            return -1;
        }
        h->started = 1;
        sf_infer_set_library_threads(h->sub, e->library_threads);
    }
    return 0;
}

void sf_infer_start(sf_infer *e, const float *x, size_t n, float *y) {
    pthread_mutex_lock(&e->mu);
    e->x = x;
    e->y = y;
    e->n = n;
    e->next = 0;
    if (e->n_helpers && n)
        pthread_cond_broadcast(&e->go);
    pthread_mutex_unlock(&e->mu);
}

void sf_infer_more(sf_infer *e, size_t n) {
    pthread_mutex_lock(&e->mu);
    e->n = n;
    if (e->n_helpers)
        pthread_cond_broadcast(&e->go);
    pthread_mutex_unlock(&e->mu);
}

/* The helpers' writes to y happen before they mark their unit done under
 * e->mu, so they are visible here once done_below passes them. Meanwhile
 * this thread takes rows (the next chunk's too, once the rows it waits for
 * are all taken), else task units, rather than wait. */
static void wait_locked(sf_infer *e, size_t upto) {
    while (done_below(e) < upto)
        if (!take_rows(e, e, e->n_helpers) && !take_task(e))
            pthread_cond_wait(&e->done, &e->mu);
}

void sf_infer_wait(sf_infer *e, size_t upto) {
    pthread_mutex_lock(&e->mu);
    wait_locked(e, upto);
    pthread_mutex_unlock(&e->mu);
}

void sf_infer_finish(sf_infer *e) {
    pthread_mutex_lock(&e->mu);
    wait_locked(e, e->n);
    pthread_mutex_unlock(&e->mu);
}

void sf_infer_tasks_start(sf_infer *e, sf_infer_task *fn, void *arg, size_t n) {
    pthread_mutex_lock(&e->mu);
    e->task = fn;
    e->task_arg = arg;
    e->tasks = n;
    e->task_next = e->tasks_done = 0;
    if (e->n_helpers && n)
        pthread_cond_broadcast(&e->go);
    pthread_mutex_unlock(&e->mu);
}

/* As sf_infer_finish: each unit's writes precede its count under e->mu. */
void sf_infer_tasks_finish(sf_infer *e) {
    pthread_mutex_lock(&e->mu);
    while (e->tasks_done < e->tasks)
        if (!take_task(e))
            pthread_cond_wait(&e->done, &e->mu);
    e->tasks = e->task_next = e->tasks_done = 0;
    pthread_mutex_unlock(&e->mu);
}

void sf_infer_run(sf_infer *e, const float *x, size_t n, float *y) {
    if (e->n_helpers == 0 || n <= UNIT_ROWS) {
        run_here(e, x, n, y);
        return;
    }
    sf_infer_start(e, x, n, y);
    sf_infer_finish(e);
}

size_t sf_argmax(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

void sf_infer_set_library_threads(sf_infer *e, int n) {
    e->library_threads = n < 0 ? 0 : n;
    e->be->library_threads(e->impl, e->library_threads);
    for (size_t i = 0; i < e->n_helpers; i++)
        e->be->library_threads(e->helpers[i].sub->impl, e->library_threads);
}

int sf_infer_use_default_threads(sf_infer *e) {
    int threads = sf_blas_inference_threads();
    if (threads <= 0) {
        sf_infer_set_library_threads(e, 0); /* the user's OPENBLAS/OMP_NUM_THREADS */
        return 0;
    }
    sf_infer_set_library_threads(e, 1);
    return sf_infer_set_threads(e, threads) ? 1 : threads;
}
