/* blas.c: reports OpenBLAS's kernel choice and sets its thread count, so every
 * throughput figure sigflow prints can say what it ran on.
 *
 * OpenBLAS decides both at load time; all we can do portably afterwards is ask
 * (openblas_get_corename, openblas_get_config) and resize the thread pool
 * (openblas_set_num_threads). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "sigflow/blas.h"

/* OpenBLAS names of the x86 kernel sets built on AVX-512. */
static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};

static void copy_str(char *dst, size_t size, const char *src) {
    snprintf(dst, size, "%s", src ? src : "");
}

static int cpu_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
    /* GCC's checks include the OS enabling the AVX-512 register state. */
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

void sf_blas_info_get(sf_blas_info *out) {
    memset(out, 0, sizeof *out);
    copy_str(out->corename, sizeof out->corename, openblas_get_corename());
    copy_str(out->config, sizeof out->config, openblas_get_config());
    /* openblas_get_config() ends with a space after the last option. */
    size_t n = strlen(out->config);
    while (n > 0 && out->config[n - 1] == ' ')
        out->config[--n] = '\0';
    out->threads = openblas_get_num_threads();
    copy_str(out->coretype_env, sizeof out->coretype_env, getenv("OPENBLAS_CORETYPE"));
    out->cpu_avx512 = cpu_has_avx512();
    for (size_t i = 0; i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (!strcmp(out->corename, avx512_cores[i]))
            out->kernel_avx512 = 1;
}

#define MAX_INFERENCE_THREADS 8

int sf_blas_inference_threads(void) {
    static const char *const vars[] = {"OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return 0;
    }
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1)
        return 1;
    return cores > MAX_INFERENCE_THREADS ? MAX_INFERENCE_THREADS : (int)cores;
}

void sf_blas_set_threads(int n) {
    openblas_set_num_threads(n < 1 ? 1 : n);
}
