/* blas.h: which OpenBLAS kernel the forward pass runs on, and with how many
 * threads.
 *
 * OpenBLAS picks its kernel set (by CPU detection, or OPENBLAS_CORETYPE) and
 * sizes its thread pool when the library is loaded, before main(). Throughput
 * figures mean nothing without knowing that choice, so the daemon logs it at
 * start-up and the benchmark reports it. The kernel we leave to OpenBLAS
 * unless it falls back to generic code on a CPU that has AVX2 or AVX-512
 * (Debian's 0.3.21 takes Sapphire Rapids for a Prescott): then
 * sf_blas_select_core() re-executes the program with OPENBLAS_CORETYPE set to
 * the kernel set the CPU can run. The thread count we set, see
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
    int generic;           /* the CPU has AVX2 and FMA but the kernel set uses
                              neither (a generic fallback such as Prescott) */
    char detected[64];     /* what OpenBLAS detected by itself when
                              sf_blas_select_core() overrode it, else "" */
} sf_blas_info;

void sf_blas_info_get(sf_blas_info *out);

/* How many threads the daemon's forward pass should run on: 0 when the user
 * chose BLAS's threading (OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS or
 * OMP_NUM_THREADS is set), to be left alone; otherwise the online cores, at
 * most 8. The caller then sets BLAS to one thread and splits batches over its
 * own threads (sf_infer_set_threads): OpenBLAS's workers spin between calls,
 * burning CPU the Kafka client threads need (bench/README.md has the figures). */
int sf_blas_inference_threads(void);

/* The OPENBLAS_CORETYPE for this CPU's best kernel set in OpenBLAS 0.3.21
 * ("Cooperlake", "SkylakeX", "Haswell"), NULL when it has no AVX2 + FMA. */
const char *sf_blas_proper_core(void);

/* Call first thing in main(). OpenBLAS chose its kernel set before main ran
 * and cannot change it afterwards, so when that choice is generic on a CPU
 * with AVX2/AVX-512 and the user did not set OPENBLAS_CORETYPE, this sets
 * OPENBLAS_CORETYPE to sf_blas_proper_core() (and SIGFLOW_OPENBLAS_DETECTED
 * to what OpenBLAS had detected, for the logs) and execs /proc/self/exe with
 * the same arguments. The variable set in the new process stops a second
 * exec. Returns without exec'ing when nothing is to be done (0) or the exec
 * failed (-1: the program carries on with the generic kernel, which every
 * report then names). */
int sf_blas_select_core(char *const argv[]);

/* Sets the number of threads later BLAS calls may use (n >= 1). */
void sf_blas_set_threads(int n);

#endif
