/* infer_impl.h: what infer.c (chunking, threads, dispatch) needs from a
 * backend (infer_blas.c, infer_onednn.c). A backend runs at most its max_batch
 * rows per call on the calling thread, pads them as it needs to, and never
 * allocates in run. */
#ifndef SIGFLOW_INFER_IMPL_H
#define SIGFLOW_INFER_IMPL_H

#include <stddef.h>

#include "sigflow/infer.h"

/* Every backend pads a call to a multiple of this many rows and the threads'
 * shares start on it, so a row meets the same kernel code in any batch. */
#define SF_INFER_ROW_BLOCK 16

typedef struct sf_infer_backend {
    sf_backend id;
    /* *impl for m, up to max_batch rows a call (a multiple of the row block),
     * in c's precision (c's backend is this one). */
    int (*open)(void **impl, const sf_model *m, size_t max_batch, const sf_infer_conf *c,
                char *errstr, size_t errstr_size);
    void (*close)(void *impl);
    void (*run)(void *impl, const float *x, size_t rows, float *y);
    void (*kernel)(const void *impl, char *buf, size_t size, int *generic);
    void (*library_threads)(void *impl, int n);
    int (*library_threads_get)(const void *impl);
} sf_infer_backend;

extern const sf_infer_backend sf_infer_openblas;
extern const sf_infer_backend sf_infer_onednn;

/* Bias then activation over rows x l->n_out values: the openblas backend's
 * epilogue, and the oneDNN one's for activations it cannot fuse. */
void sf_infer_bias_activate(const sf_layer *l, float *v, size_t rows, int add_bias);
/* The elementwise layers (SCALE, ACTIVATION) of both backends, fp32. */
void sf_infer_scale(const sf_layer *l, const float *in, float *out, size_t rows);

#endif
