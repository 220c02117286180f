/* infer.h: batched forward pass of a loaded model.
 *
 * One matrix product per Dense layer over the whole batch, on one of two
 * backends (OpenBLAS or oneDNN), in fp32, bf16 or int8. The engine owns its scratch
 * buffers and primitives so the hot path never allocates. */
#ifndef SIGFLOW_INFER_H
#define SIGFLOW_INFER_H

#include <stddef.h>
#include "sigflow/model.h"

typedef struct sf_infer sf_infer;

/* Which library runs the Dense layers. OPENBLAS: cblas_sgemm plus our own bias
 * and activation pass, fp32 only, the reference. ONEDNN: one oneDNN matmul
 * primitive per Dense layer with bias and activation fused, weights reordered
 * once into the layout the kernel wants. AUTO: ONEDNN when it has a JIT kernel
 * for this CPU, else OPENBLAS (a rule, not a timing, so `run` and `predict`
 * always pick the same and compute the same bits; bench/README.md has the
 * figures behind it). */
typedef enum { SF_BACKEND_AUTO = 0, SF_BACKEND_OPENBLAS, SF_BACKEND_ONEDNN } sf_backend;

/* FP32 everywhere, or BF16: weights and hidden activations rounded to bf16,
 * products accumulated in fp32, the last layer's output and every
 * non-fused activation in fp32 (oneDNN only). Or INT8 (oneDNN on a CPU with
 * VNNI or AMX-INT8 only): the hidden Dense layers (every one but the first
 * and the last) take u8 inputs (s8 where the input can be negative) scaled by
 * the model's static calibration, and s8 weights scaled per output column,
 * accumulate in s32, and hand the next hidden layer its u8 input directly;
 * the first and the last Dense layers stay fp32. */
typedef enum { SF_PRECISION_FP32 = 0, SF_PRECISION_BF16, SF_PRECISION_INT8 } sf_precision;

typedef struct sf_infer_conf {
    sf_backend backend;
    sf_precision precision;
    /* INT8's calibration (borrowed, as sf_vars has it): for each Dense layer
     * of the model in order, its width (checked against the layer) and the
     * range of its input: [0, range] mapped onto the u8 codes (an input that
     * can be negative: [-range, range] onto s8), saturated beyond. n_int8 0:
     * none, and INT8 is refused. */
    size_t n_int8;
    const size_t *int8_inputs;
    const float *int8_range;
} sf_infer_conf; /* all zero: auto, fp32 */

/* What an engine runs on, for the start-up line, `inspect`, the metrics and
 * the bench. */
typedef struct sf_infer_info {
    sf_backend backend;     /* never AUTO: what AUTO chose */
    sf_precision precision;
    char kernel[192];       /* OpenBLAS: openblas_get_corename(); oneDNN: the
                               implementation strings of the Dense layers */
    int threads;            /* threads a batch is split over (ours) */
    int library_threads;    /* threads the library may use in each of those */
    int generic;            /* the kernel is generic code on a CPU that has
                               better: never silent, the start-up line warns */
    int bf16_native;        /* the CPU has AVX512_BF16 or AMX (bf16 is emulated
                               otherwise, much slower) */
    int int8_native;        /* the CPU has AVX512_VNNI or AMX-INT8 (int8 is
                               refused otherwise) */
} sf_infer_info;

const char *sf_backend_name(sf_backend b);
const char *sf_precision_name(sf_precision p);
int sf_backend_parse(const char *s, sf_backend *out);      /* 0 or -1 */
int sf_precision_parse(const char *s, sf_precision *out);  /* 0 or -1 */

/* Whether this build and CPU can run `b` (ONEDNN: the library loads and has a
 * JIT kernel here). */
int sf_infer_backend_available(sf_backend b);

/* The CPU has AVX512_BF16 or AMX-BF16 (bf16 runs natively). */
int sf_infer_cpu_bf16(void);

/* The CPU has AVX512_VNNI or AMX-INT8 (int8 can run). */
int sf_infer_cpu_int8(void);

/* An engine for `m` (which must outlive it) running up to max_batch rows per
 * call of the backend; larger batches are processed in chunks. 0, or -1 with
 * errstr (BF16 or INT8 on OPENBLAS, INT8 without calibration or on a CPU
 * without VNNI/AMX, oneDNN missing, out of memory). */
int sf_infer_open(sf_infer **out, const sf_model *m, size_t max_batch, const sf_infer_conf *c,
                  char *errstr, size_t errstr_size);

/* sf_infer_open with OPENBLAS and FP32, the reference. NULL on error. */
sf_infer *sf_infer_new(const sf_model *m, size_t max_batch);
void sf_infer_free(sf_infer *e);

void sf_infer_info_get(const sf_infer *e, sf_infer_info *out);

/* "backend onednn, precision bf16, kernel brg:avx512_core_amx_bf16, 2 threads
 * x 1 library thread" (int8: the fp32 first and last layers' kernel, then the
 * int8 one: "brg:avx512_core+brg:avx512_core_vnni")
 * (plus a warning when the kernel is generic or bf16 emulated). */
void sf_infer_describe(const sf_infer *e, char *buf, size_t size);

/* x: n rows of m->n_inputs floats; y: n rows of m->n_outputs floats. */
void sf_infer_run(sf_infer *e, const float *x, size_t n, float *y);

/* The forward pass in two halves, so the calling thread can do other work
 * while the helper threads compute (the daemon parses the next chunk and
 * publishes the previous one's outputs meanwhile). sf_infer_start hands the n
 * rows of x to the helpers and returns at once; sf_infer_finish has the
 * calling thread take the rows no helper has taken yet, then waits for the
 * rest: it returns with y written, the same bits as sf_infer_run(e, x, n, y).
 * Between the two, x and y (those n rows) belong to the engine: the caller
 * may write other rows of the same buffers, but must make no other call on
 * e than the ones below (sf_infer_more, sf_infer_wait, the tasks). Without
 * helpers (one thread), sf_infer_finish does all the work. */
void sf_infer_start(sf_infer *e, const float *x, size_t n, float *y);
void sf_infer_finish(sf_infer *e);

/* A pass that grows while it runs (the daemon's chunks, rows of one batch
 * buffer): sf_infer_more hands the helpers the pass's rows up to n (more
 * than before; the caller wrote them into x first), and sf_infer_wait
 * returns once rows [0, upto) are done, the later ones perhaps still
 * running. While it waits, the caller takes rows, later ones too once those
 * it waits for are all taken, else task units (below). sf_infer_finish
 * waits for all of them. A grown pass's units start where the rows handed
 * out ended, not on 16-row boundaries, so its bits are sf_infer_run's where
 * the kernel gives a row the same bits whatever batch it is in (as for
 * sf_infer_set_threads; test_infer's test_grow_and_tasks checks it here). */
void sf_infer_more(sf_infer *e, size_t n);
void sf_infer_wait(sf_infer *e, size_t upto);

/* Other work the same threads share (the daemon's parsing and rendering):
 * units 0..n-1 of fn(arg, unit), each run once, by a helper that has no rows
 * of a forward pass left to take, or by the caller: in sf_infer_tasks_finish,
 * and in sf_infer_wait and sf_infer_finish while a helper finishes the rows
 * waited for. So fn must be safe to run for different units at once, and
 * must not call e. One set of tasks at a time: sf_infer_tasks_finish takes
 * the units left and returns once every unit has run (their writes
 * visible). Without helpers, all run there on the calling thread. */
typedef void sf_infer_task(void *arg, size_t unit);
void sf_infer_tasks_start(sf_infer *e, sf_infer_task *fn, void *arg, size_t n);
void sf_infer_tasks_finish(sf_infer *e);

/* Splits each batch of sf_infer_run between the calling thread and threads - 1
 * helper threads that sleep between batches, each share run with the backend
 * library on one thread (see sf_infer_set_library_threads). Shares start on 16-row
 * boundaries, so with a BLAS kernel that gives a row the same bits whatever
 * batch it is in (the AVX-512 ones do; sigflow-bench checks) the results are
 * those of one thread, bit for bit. 1 stops the helpers. Call it between runs,
 * from the thread that runs them. 0, or -1 when a helper cannot be started
 * (the engine then runs on the calling thread alone). */
int sf_infer_set_threads(sf_infer *e, int threads);

/* Threads the backend library may use inside one call from each of our
 * threads: OpenBLAS's pool (process-wide), oneDNN's OpenMP team (per calling
 * thread). 1 is sigflow's policy (their pools spin between calls, and an
 * engine starts with it); 0 leaves the library to its environment
 * (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, else all cores). */
void sf_infer_set_library_threads(sf_infer *e, int n);

/* sigflow's threading policy, shared by `run` and `predict` so both compute
 * the same bits: unless the user chose BLAS's threading (see
 * sf_blas_inference_threads), BLAS runs single-threaded and batches are split
 * over all cores with sf_infer_set_threads. Returns the threads the engine
 * uses, 0 when BLAS's own threading was left in charge. */
int sf_infer_use_default_threads(sf_infer *e);

/* Applies an activation in place to rows x cols values (softmax per row).
 * Softmax and sigmoid are computed in their numerically stable forms. */
void sf_activation_apply(sf_activation a, float alpha, float *v, size_t rows, size_t cols);

/* A layer's activation, options included (ReLU's max_value and threshold):
 * what every backend applies for a layer. sf_activation_apply cannot do
 * SF_ACT_RELU_FULL (its options are not in its arguments). */
void sf_activation_apply_layer(const sf_layer *l, float *v, size_t rows, size_t cols);

/* Index of the largest value (the first one on ties). */
size_t sf_argmax(const float *v, size_t n);

#endif
