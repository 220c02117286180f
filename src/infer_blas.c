/* infer_blas.c: the OpenBLAS backend, fp32, the reference the others are
 * measured against.
 *
 * A Dense layer over a batch is one matrix product, so the whole batch goes
 * through a single cblas_sgemm per layer; bias and activation are then applied
 * in one pass over the product while it is still in cache. Two preallocated
 * buffers are swapped between layers (ping-pong) so a run never allocates. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "sigflow/blas.h"
#include "infer_impl.h"

typedef struct blas_impl {
    const sf_model *m;
    size_t max_batch;   /* a multiple of SF_INFER_ROW_BLOCK */
    float *buf[2];
    float *stage;       /* max_batch x n_inputs: a call padded to the row block */
} blas_impl;

static void blas_close(void *p) {
    blas_impl *b = p;
    if (!b)
        return;
    free(b->buf[0]);
    free(b->buf[1]);
    free(b->stage);
    free(b);
}

static size_t widest(const sf_model *m) {
    size_t width = m->n_inputs > m->n_outputs ? m->n_inputs : m->n_outputs;
    for (size_t i = 0; i < m->n_layers; i++) {
        if (m->layers[i].n_in > width)
            width = m->layers[i].n_in;
        if (m->layers[i].n_out > width)
            width = m->layers[i].n_out;
    }
    return width ? width : 1;
}

static int blas_open(void **out, const sf_model *m, size_t max_batch, const sf_infer_conf *c,
                     char *errstr, size_t n) {
    if (c->precision != SF_PRECISION_FP32) {
        snprintf(errstr, n, "the openblas backend runs fp32 only (%s needs --backend onednn)",
                 sf_precision_name(c->precision));
        return -1;
    }
    size_t width = widest(m);
    blas_impl *b = calloc(1, sizeof *b);
    if (!b)
        goto oom;
    b->m = m;
    b->max_batch = max_batch;
    b->buf[0] = malloc(max_batch * width * sizeof(float));
    b->buf[1] = malloc(max_batch * width * sizeof(float));
    b->stage = malloc(max_batch * (m->n_inputs ? m->n_inputs : 1) * sizeof(float));
    if (!b->buf[0] || !b->buf[1] || !b->stage)
        goto oom;
    *out = b;
    return 0;
oom:
    blas_close(b);
    snprintf(errstr, n, "out of memory");
    return -1;
}

/* Runs rows <= max_batch rows through the network; returns where the output is.
 * Elementwise layers work in place once the data is in an engine buffer (the
 * caller's input is never written). */
static const float *forward(blas_impl *e, const float *x, size_t rows) {
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
            sf_infer_bias_activate(l, out, rows, 1);
            break;
        case SF_LAYER_SCALE:
            sf_infer_scale(l, cur, out, rows);
            break;
        case SF_LAYER_ACTIVATION:
            if (!curbuf)
                memcpy(out, cur, rows * l->n_out * sizeof(float));
            sf_activation_apply_layer(l, out, rows, l->n_out);
            break;
        }
        if (out == e->buf[next])
            next ^= 1;
        cur = curbuf = out;
    }
    return cur;
}

/* OpenBLAS's sgemm computes the last rows of a matrix that are not a multiple
 * of its kernel's row unroll with other code, which rounds differently in the
 * last bit. Padding every GEMM to a multiple of 16 rows removes that source of
 * difference; it is necessary but not sufficient: whether a row then gets the
 * same bits in any batch depends on the kernel also blocking its reduction the
 * same way for every row count (the AVX-512 kernels do; others may not, which
 * sigflow-bench reports as batch_independent and the tests check). It costs at
 * most 15 rows per batch. */
static void blas_run(void *p, const float *x, size_t rows, float *y) {
    blas_impl *e = p;
    size_t n_in = e->m->n_inputs;
    size_t padded = (rows + SF_INFER_ROW_BLOCK - 1) / SF_INFER_ROW_BLOCK * SF_INFER_ROW_BLOCK;
    const float *in = x;
    if (padded != rows) {
        memcpy(e->stage, x, rows * n_in * sizeof(float));
        memset(e->stage + rows * n_in, 0, (padded - rows) * n_in * sizeof(float));
        in = e->stage;
    }
    const float *out = forward(e, in, padded);
    memcpy(y, out, rows * e->m->n_outputs * sizeof(float));
}

static void blas_kernel(const void *p, char *buf, size_t size, int *generic) {
    (void)p;
    sf_blas_info bi;
    sf_blas_info_get(&bi);
    if (bi.detected[0])
        snprintf(buf, size, "%s (OpenBLAS detected %s; OPENBLAS_CORETYPE set by sigflow)",
                 bi.corename, bi.detected);
    else
        snprintf(buf, size, "%s", bi.corename);
    *generic = bi.generic;
}

static void blas_library_threads(void *p, int n) {
    (void)p;
    if (n > 0) /* 0: as OpenBLAS was told by its environment */
        sf_blas_set_threads(n);
}

static int blas_library_threads_get(const void *p) {
    (void)p;
    sf_blas_info bi;
    sf_blas_info_get(&bi);
    return bi.threads;
}

const sf_infer_backend sf_infer_openblas = {
    .id = SF_BACKEND_OPENBLAS,
    .open = blas_open,
    .close = blas_close,
    .run = blas_run,
    .kernel = blas_kernel,
    .library_threads = blas_library_threads,
    .library_threads_get = blas_library_threads_get,
};
