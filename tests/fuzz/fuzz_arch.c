/* fuzz_arch.c: the model's architecture JSON, with real weights behind it.
 *
 * fuzz_model mutates whole files, so nearly every input dies in libhdf5 or in
 * a zip checksum long before sigflow reads the architecture. This harness
 * keeps the container intact and mutates only the JSON that describes the
 * network: the first byte picks a base, the rest is
 *   - the --architecture file of a weights-only .h5 (bases 0 and 1), or
 *   - config.json of a .keras archive, rewritten around the base's own
 *     metadata.json and model.weights.h5 (the other bases).
 * That reaches sf_arch_parse and every layer builder of model.c, which decide
 * what a layer config may claim against the weights it names.
 *
 * The load runs in this process, so libFuzzer sees its coverage: the weights
 * are intact, and libhdf5 crashing on them would be a finding of its own. A
 * finding is a sanitizer report, a model whose widths do not chain, or a
 * refusal that does not name the file (fuzz_model_check.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zip.h>

#include "sigflow/model.h"
#include "fuzz_model_check.h"
#include "fuzz_util.h"

typedef struct base {
    const char *file;      /* under tests/fixtures */
    int weights_only;      /* an .h5 loaded with the input as --architecture */
    char *metadata, *h5;   /* an archive's members but config.json */
    zip_uint64_t metadata_len, h5_len;
} base;

static base bases[] = {
    {.file = "weights_mlp.h5", .weights_only = 1},
    {.file = "weights_functional_k3.h5", .weights_only = 1},
    {.file = "keras/k3_mlp.keras"},
    {.file = "keras/k3_nested.keras"},
    {.file = "keras/k3_activations.keras"},
    {.file = "keras/k2_mlp.keras"},
    {.file = "keras/k215_mlp.keras"},
    {.file = "keras/k215_nested.keras"},
};
#define N_BASES (sizeof bases / sizeof bases[0])

static unsigned long n_loaded, n_refused; /* printed at exit: run.sh shows it */

static void print_outcomes(void) {
    fprintf(stderr, "fuzz_arch outcomes: loaded %lu, refused %lu\n", n_loaded, n_refused);
}

static char *member(zip_t *z, const char *name, zip_uint64_t *len) {
    zip_stat_t st;
    FUZZ_CHECK(zip_stat(z, name, 0, &st) == 0 && (st.valid & ZIP_STAT_SIZE), "%s", name);
    char *buf = malloc(st.size ? st.size : 1);
    zip_file_t *f = zip_fopen(z, name, 0);
    FUZZ_CHECK(buf && f && zip_fread(f, buf, st.size) == (zip_int64_t)st.size, "%s", name);
    zip_fclose(f);
    *len = st.size;
    return buf;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    for (size_t i = 0; i < N_BASES; i++) {
        if (bases[i].weights_only)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/fixtures/%s", SF_SOURCE_DIR, bases[i].file);
        int err;
        zip_t *z = zip_open(path, ZIP_RDONLY, &err);
        FUZZ_CHECK(z, "cannot open %s (libzip error %d)", path, err);
        bases[i].metadata = member(z, "metadata.json", &bases[i].metadata_len);
        bases[i].h5 = member(z, "model.weights.h5", &bases[i].h5_len);
        zip_discard(z);
    }
    atexit(print_outcomes);
    return 0;
}

/* The archive Keras would have written with this config.json: stored members,
 * as Keras stores them. */
static const char *archive(const base *b, const uint8_t *config, size_t len) {
    const char *path = fuzz_scratch_path(".keras");
    int err;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &err);
    FUZZ_CHECK(z, "cannot create %s (libzip error %d)", path, err);
    struct {
        const char *name;
        const void *data;
        zip_uint64_t len;
    } m[] = {{"metadata.json", b->metadata, b->metadata_len},
             {"config.json", config, len},
             {"model.weights.h5", b->h5, b->h5_len}};
    for (size_t i = 0; i < 3; i++) {
        zip_source_t *s = zip_source_buffer(z, m[i].data, m[i].len, 0);
        zip_int64_t k = s ? zip_file_add(z, m[i].name, s, ZIP_FL_OVERWRITE) : -1;
        if (k < 0)
            zip_source_free(s);
        FUZZ_CHECK(k >= 0 && zip_set_file_compression(z, (zip_uint64_t)k, ZIP_CM_STORE, 0) == 0,
                   "adding %s: %s", m[i].name, zip_strerror(z));
    }
    FUZZ_CHECK(zip_close(z) == 0, "writing %s: %s", path, zip_strerror(z));
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    const base *b = &bases[data[0] % N_BASES];
    char err[2048] = "", weights[4096];
    const char *path, *arch = NULL;
    if (b->weights_only) {
        snprintf(weights, sizeof weights, "%s/tests/fixtures/%s", SF_SOURCE_DIR, b->file);
        path = weights;
        arch = fuzz_scratch(".json", data + 1, size - 1);
    } else {
        path = archive(b, data + 1, size - 1);
    }
    sf_model *m = NULL;
    if (sf_model_load_inprocess(&m, path, arch, NULL, err, sizeof err) == 0) {
        n_loaded++;
        fuzz_model_check(m, path);
        sf_model_free(m);
    } else {
        n_refused++;
        FUZZ_CHECK(m == NULL, "refused but returned a model");
        /* A bad architecture file is named; anything else names the model. */
        FUZZ_CHECK(!strncmp(err, path, strlen(path)) || (arch && !strncmp(err, arch, strlen(arch))),
                   "message names neither the model nor its architecture: %s", err);
    }
    return 0;
}
