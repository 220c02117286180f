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

/* OpenBLAS names of the x86 kernel sets built on AVX-512, and on AVX2 + FMA. */
static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
static const char *const avx2_cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                         "SapphireRapids"};

#define DETECTED_ENV "SIGFLOW_OPENBLAS_DETECTED"

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

static int cpu_has_avx2_fma(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static int in_list(const char *name, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(name, list[i]))
            return 1;
    return 0;
}

const char *sf_blas_proper_core(void) {
#if defined(__x86_64__)
    if (cpu_has_avx512()) {
        __builtin_cpu_init();
        /* AVX512_BF16: CPUID 7.1 EAX bit 5 (GCC 12 has no name for it). */
        unsigned a, b, c, d;
        __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(1));
        return (a >> 5) & 1 ? "Cooperlake" : "SkylakeX";
    }
#endif
    return cpu_has_avx2_fma() ? "Haswell" : NULL;
}

int sf_blas_select_core(char *const argv[]) {
    const char *set = getenv("OPENBLAS_CORETYPE");
    if (set && *set)
        return 0; /* the user's choice, or ours already */
    sf_blas_info bi;
    sf_blas_info_get(&bi);
    const char *core = sf_blas_proper_core();
    if (!bi.generic || !core)
        return 0;
    if (setenv("OPENBLAS_CORETYPE", core, 1) || setenv(DETECTED_ENV, bi.corename, 1))
        return -1;
    execv("/proc/self/exe", argv);
    /* No /proc, or not allowed: carry on as detected, and say so everywhere. */
    unsetenv("OPENBLAS_CORETYPE");
    unsetenv(DETECTED_ENV);
    return -1;
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
    out->kernel_avx512 = in_list(out->corename, avx512_cores, sizeof avx512_cores / sizeof *avx512_cores);
    out->generic = cpu_has_avx2_fma() &&
                   !in_list(out->corename, avx2_cores, sizeof avx2_cores / sizeof *avx2_cores);
    copy_str(out->detected, sizeof out->detected, getenv(DETECTED_ENV));
    if (strcmp(out->coretype_env, out->corename) && out->detected[0])
        out->detected[0] = '\0'; /* not ours: the user's variable, or OpenBLAS ignored it */
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
