/* infer.h: batched forward pass of a loaded model.
 *
 * One cblas_sgemm per Dense layer over the whole batch (row-major), then bias and
 * activation fused in one pass over the output. The engine owns its scratch
 * buffers so the hot path never allocates. */
#ifndef SIGFLOW_INFER_H
#define SIGFLOW_INFER_H

#include <stddef.h>
#include "sigflow/model.h"

typedef struct sf_infer sf_infer;

/* An engine for `m` (which must outlive it) running up to max_batch rows per
 * GEMM; larger batches are processed in chunks. NULL when out of memory. */
sf_infer *sf_infer_new(const sf_model *m, size_t max_batch);
void sf_infer_free(sf_infer *e);

/* x: n rows of m->n_inputs floats; y: n rows of m->n_outputs floats. */
void sf_infer_run(sf_infer *e, const float *x, size_t n, float *y);

/* Splits each batch of sf_infer_run between the calling thread and threads - 1
 * helper threads that sleep between batches, each share run with BLAS set to
 * one thread by the caller (sf_blas_set_threads(1)). Shares start on 16-row
 * boundaries, so with a BLAS kernel that gives a row the same bits whatever
 * batch it is in (the AVX-512 ones do; sigflow-bench checks) the results are
 * those of one thread, bit for bit. 1 stops the helpers. Call it between runs,
 * from the thread that runs them. 0, or -1 when a helper cannot be started
 * (the engine then runs on the calling thread alone). */
int sf_infer_set_threads(sf_infer *e, int threads);

/* sigflow's threading policy, shared by `run` and `predict` so both compute
 * the same bits: unless the user chose BLAS's threading (see
 * sf_blas_inference_threads), BLAS runs single-threaded and batches are split
 * over all cores with sf_infer_set_threads. Returns the threads the engine
 * uses, 0 when BLAS's own threading was left in charge. */
int sf_infer_use_default_threads(sf_infer *e);

/* Applies an activation in place to rows x cols values (softmax per row).
 * Softmax and sigmoid are computed in their numerically stable forms. */
void sf_activation_apply(sf_activation a, float alpha, float *v, size_t rows, size_t cols);

/* Index of the largest value (the first one on ties). */
size_t sf_argmax(const float *v, size_t n);

#endif
