/* fuzz_util.h: what the libFuzzer harnesses share: a scratch file for the
 * loaders that take a path, and a loud failure that libFuzzer records. */
#ifndef SIGFLOW_FUZZ_UTIL_H
#define SIGFLOW_FUZZ_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A finding: print why and abort, so libFuzzer saves the input. */
#define FUZZ_CHECK(cond, ...)                                                  \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "fuzz check failed: %s: ", #cond);                 \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* This process's scratch file (one per process, so parallel jobs do not share
 * it; the suffix of the first call names it). */
static inline const char *fuzz_scratch_path(const char *suffix) {
    static char path[256];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/sigflow-fuzz-%ld%s", dir && *dir ? dir : "/tmp",
                 (long)getpid(), suffix);
    }
    return path;
}

/* Writes data to the scratch file and returns its path. */
static inline const char *fuzz_scratch(const char *suffix, const unsigned char *data,
                                       size_t size) {
    const char *path = fuzz_scratch_path(suffix);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "cannot write %s", path);
    FUZZ_CHECK(fwrite(data, 1, size, f) == size, "short write to %s", path);
    FUZZ_CHECK(fclose(f) == 0, "cannot close %s", path);
    return path;
}

#endif
