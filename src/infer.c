/* infer.c: the forward pass, the hot path of every prediction.
 *
 * A Dense layer over a batch is one matrix product, so the whole batch goes
 * through a single cblas_sgemm per layer and OpenBLAS does the heavy lifting;
 * bias and activation are then applied in one pass over the product while it is
 * still in cache. Two preallocated buffers are swapped between layers (ping-pong)
 * so a run never allocates. The activations follow Keras exactly, in their
 * numerically stable forms, because a served model must reproduce training.
 *
 * Several cores share a batch through helper threads of our own, each running
 * single-threaded BLAS on its own rows (sf_infer_set_threads): OpenBLAS's own
 * threads spin for a while after every call, taking the cores that the Kafka
 * client threads need between batches. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <cblas.h>

#include "sigflow/blas.h"
#include "sigflow/infer.h"

/* A helper thread and the share of the current batch it runs. */
typedef struct helper {
    struct sf_infer *pool; /* the engine that hands out the shares */
    struct sf_infer *sub;  /* same model, buffers of its own */
    pthread_t tid;
    int started;
    unsigned long seen;    /* the last batch_no it ran */
    const float *x;
    size_t n;
    float *y;
} helper;

struct sf_infer {
    const sf_model *m;
    size_t max_batch;   /* a multiple of ROW_BLOCK */
    size_t width;       /* widest layer, in floats per row */
    float *buf[2];
    float *stage;       /* max_batch x n_inputs: a chunk padded to ROW_BLOCK rows */

    /* sf_infer_set_threads: the helpers and their hand-over. */
    helper *helpers;
    size_t n_helpers;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long batch_no; /* bumped when a batch is handed out */
    size_t busy;            /* helpers still working on it */
    int quit;
};

/* OpenBLAS's sgemm computes the last rows of a matrix that are not a multiple
 * of its kernel's row unroll with other code, which rounds differently in the
 * last bit. Padding every GEMM to a multiple of 16 rows removes that source of
 * difference; it is necessary but not sufficient: whether a row then gets the
 * same bits in any batch depends on the kernel also blocking its reduction the
 * same way for every row count (the AVX-512 kernels do; others may not, which
 * sigflow-bench reports as batch_independent and the tests check). It costs at
 * most 15 rows per batch. */
#define ROW_BLOCK 16

/* Smallest batch worth splitting: every share at least one ROW_BLOCK. */
#define SPLIT_MIN_ROWS (2 * ROW_BLOCK)

static void stop_helpers(sf_infer *e);

/* Keras' SELU constants (Klambauer et al. 2017). */
#define SELU_ALPHA 1.6732632423543772f
#define SELU_SCALE 1.0507009873554805f

sf_infer *sf_infer_new(const sf_model *m, size_t max_batch) {
    if (!m || max_batch == 0)
        return NULL;
    size_t width = m->n_inputs > m->n_outputs ? m->n_inputs : m->n_outputs;
    for (size_t i = 0; i < m->n_layers; i++) {
        if (m->layers[i].n_in > width)
            width = m->layers[i].n_in;
        if (m->layers[i].n_out > width)
            width = m->layers[i].n_out;
    }
    if (width == 0)
        width = 1;
    if (max_batch > (size_t)-1 / sizeof(float) / width - ROW_BLOCK)
        return NULL;
    max_batch = (max_batch + ROW_BLOCK - 1) / ROW_BLOCK * ROW_BLOCK;
    sf_infer *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->m = m;
    e->max_batch = max_batch;
    e->width = width;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->go, NULL);
    pthread_cond_init(&e->done, NULL);
    e->buf[0] = malloc(max_batch * width * sizeof(float));
    e->buf[1] = malloc(max_batch * width * sizeof(float));
    e->stage = malloc(max_batch * (m->n_inputs ? m->n_inputs : 1) * sizeof(float));
    if (!e->buf[0] || !e->buf[1] || !e->stage) {
        sf_infer_free(e);
        return NULL;
    }
    return e;
}

void sf_infer_free(sf_infer *e) {
    if (!e)
        return;
    stop_helpers(e);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->go);
    pthread_cond_destroy(&e->done);
    free(e->buf[0]);
    free(e->buf[1]);
    free(e->stage);
    free(e);
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
    }
}

/* The epilogue of a Dense layer: bias then activation. For the activations
 * that dominate real networks the two are fused into one pass; the rest add
 * the bias first and reuse sf_activation_apply on the rows still in cache. */
static void bias_activate(const sf_layer *l, float *v, size_t rows) {
    size_t cols = l->n_out;
    const float *b = l->bias;
    if (b && l->activation == SF_ACT_RELU) {
        for (size_t r = 0; r < rows; r++)
            relu_inplace(v + r * cols, b, cols);
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        float *row = v + r * cols;
        if (b)
            for (size_t j = 0; j < cols; j++)
                row[j] += b[j];
        sf_activation_apply(l->activation, l->alpha, row, 1, cols);
    }
}

/* Runs rows <= max_batch rows through the network; returns where the output is.
 * Elementwise layers work in place once the data is in an engine buffer (the
 * caller's input is never written). */
static const float *forward(sf_infer *e, const float *x, size_t rows) {
    const sf_model *m = e->m;
    const float *cur = x;
    float *curbuf = NULL;     /* cur, when it is one of our buffers */
    int next = 0;             /* the buffer a non-in-place layer writes into */
    for (size_t li = 0; li < m->n_layers; li++) {
        const sf_layer *l = &m->layers[li];
        float *out = curbuf ? curbuf : e->buf[next];
        switch (l->kind) {
        case SF_LAYER_IDENTITY:
            continue;
        case SF_LAYER_DENSE:
            out = e->buf[next];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)l->n_out,
                        (int)l->n_in, 1.0f, cur, (int)l->n_in, l->kernel, (int)l->n_out, 0.0f,
                        out, (int)l->n_out);
            bias_activate(l, out, rows);
            break;
        case SF_LAYER_SCALE:
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
            break;
        case SF_LAYER_ACTIVATION:
            if (!curbuf)
                memcpy(out, cur, rows * l->n_out * sizeof(float));
            sf_activation_apply(l->activation, l->alpha, out, rows, l->n_out);
            break;
        }
        if (out == e->buf[next])
            next ^= 1;
        cur = curbuf = out;
    }
    return cur;
}

/* The forward pass of n rows on the calling thread alone. */
static void run_here(sf_infer *e, const float *x, size_t n, float *y) {
    size_t n_in = e->m->n_inputs, n_out = e->m->n_outputs;
    while (n > 0) {
        size_t rows = n < e->max_batch ? n : e->max_batch;
        size_t padded = (rows + ROW_BLOCK - 1) / ROW_BLOCK * ROW_BLOCK;
        const float *in = x;
        if (padded != rows) {
            memcpy(e->stage, x, rows * n_in * sizeof(float));
            memset(e->stage + rows * n_in, 0, (padded - rows) * n_in * sizeof(float));
            in = e->stage;
        }
        const float *out = forward(e, in, padded);
        memcpy(y, out, rows * n_out * sizeof(float));
        x += rows * n_in;
        y += rows * n_out;
        n -= rows;
    }
}

/* ------------------------------------------------------------ helper threads */

static void *helper_main(void *arg) {
    helper *h = arg;
    sf_infer *e = h->pool;
#ifdef __linux__
    prctl(PR_SET_NAME, "sf-infer", 0, 0, 0);
#endif
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->quit && e->batch_no == h->seen)
            pthread_cond_wait(&e->go, &e->mu);
        if (e->quit)
            break;
        h->seen = e->batch_no;
        pthread_mutex_unlock(&e->mu);
        if (h->n)
            run_here(h->sub, h->x, h->n, h->y);
        pthread_mutex_lock(&e->mu);
        if (--e->busy == 0)
            pthread_cond_signal(&e->done);
    }
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
    /* Each share is at most max_batch / threads rows, rounded up to a block. */
    size_t share = (e->max_batch + n) / (n + 1);
    share = (share + ROW_BLOCK - 1) / ROW_BLOCK * ROW_BLOCK;
    if (!(e->helpers = calloc(n, sizeof *e->helpers)))
        return -1;
    e->n_helpers = n;
    for (size_t i = 0; i < n; i++) {
        helper *h = &e->helpers[i];
        h->pool = e;
        h->seen = e->batch_no;
        if (!(h->sub = sf_infer_new(e->m, share)) || pthread_create(&h->tid, NULL, helper_main, h)) {
            stop_helpers(e);
            return -1;
        }
        h->started = 1;
    }
    return 0;
}

void sf_infer_run(sf_infer *e, const float *x, size_t n, float *y) {
    if (e->n_helpers == 0 || n < SPLIT_MIN_ROWS) {
        run_here(e, x, n, y);
        return;
    }
    /* Shares start on a ROW_BLOCK boundary, so every row meets the same GEMM
     * code as on one thread and gets the same bits. */
    size_t n_in = e->m->n_inputs, n_out = e->m->n_outputs, parts = e->n_helpers + 1;
    size_t share = (n + parts - 1) / parts;
    share = (share + ROW_BLOCK - 1) / ROW_BLOCK * ROW_BLOCK;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < e->n_helpers; i++) {
        helper *h = &e->helpers[i];
        size_t start = (i + 1) * share;
        h->n = start < n ? (n - start < share ? n - start : share) : 0;
        h->x = x + start * n_in;
        h->y = y + start * n_out;
    }
    e->busy = e->n_helpers;
    e->batch_no++;
    pthread_cond_broadcast(&e->go);
    pthread_mutex_unlock(&e->mu);
    run_here(e, x, share < n ? share : n, y);
    pthread_mutex_lock(&e->mu);
    while (e->busy > 0)
        pthread_cond_wait(&e->done, &e->mu);
    pthread_mutex_unlock(&e->mu);
}

size_t sf_argmax(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

int sf_infer_use_default_threads(sf_infer *e) {
    int threads = sf_blas_inference_threads();
    if (threads <= 0)
        return 0;
    sf_blas_set_threads(1);
    return sf_infer_set_threads(e, threads) ? 1 : threads;
}
