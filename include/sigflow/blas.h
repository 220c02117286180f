/* blas.h: which OpenBLAS kernel the forward pass runs on, and with how many
 * threads.
 *
 * OpenBLAS picks its kernel set (by CPU detection, or OPENBLAS_CORETYPE) and
 * sizes its thread pool when the library is loaded, before main(). Throughput
 * figures mean nothing without knowing that choice, so the daemon logs it at
 * start-up and the benchmark reports it. We leave the kernel to OpenBLAS (on
 * the Zen 4 build machine it picks an AVX-512 one, and forcing another gained
 * nothing: bench/README.md); the thread count we do set, see
 * sf_blas_inference_threads(). */
#ifndef SIGFLOW_BLAS_H
#define SIGFLOW_BLAS_H

typedef struct sf_blas_info {
    char corename[64];     /* openblas_get_corename(): "Cooperlake", "Haswell", ... */
    char config[256];      /* openblas_get_config(): version and build options */
    int threads;           /* threads a BLAS call may use now */
    char coretype_env[64]; /* OPENBLAS_CORETYPE as set by the user, "" when unset */
    int cpu_avx512;        /* the CPU and OS support AVX-512 F, CD, BW, DQ and VL */
    int kernel_avx512;     /* the kernel set in use is an AVX-512 one */
} sf_blas_info;

void sf_blas_info_get(sf_blas_info *out);

/* How many threads the daemon's forward pass should run on: 0 when the user
 * chose BLAS's threading (OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or
 * OMP_NUM_THREADS is set), to be left alone; otherwise the online cores, at
 * most 8. The caller then sets BLAS to one thread and splits batches over its
 * own threads (sf_infer_set_threads): OpenBLAS's workers spin between calls,
 * burning CPU the Kafka client threads need (bench/README.md has the figures). */
int sf_blas_inference_threads(void);

/* Sets the number of threads later BLAS calls may use (n >= 1). */
void sf_blas_set_threads(int n);

#endif
