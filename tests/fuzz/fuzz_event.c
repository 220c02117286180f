/* fuzz_event.c: the event parser. The fast scanner and the jansson path must
 * reach the same verdict, the same message once cleaned to valid UTF-8, the
 * same row bits and the same id on every input the fast one decides; and
 * sf_assembler_run (what the daemon calls) must agree with jansson. */
#include <stdint.h>
#include <string.h>

#include "sigflow/features.h"
#include "sigflow/vars.h"
#include "../../src/features_impl.h"
#include "fuzz_util.h"

static sf_vars *vars;
static sf_assembler *assembler;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char err[1024];
    /* The bundled variables: 30 names, 11 with defaults, a missing value. */
    FUZZ_CHECK(sf_vars_load(&vars, SF_SOURCE_DIR "/tests/fixtures/vars_higgs.json", err,
                            sizeof err) == 0, "%s", err);
    assembler = sf_assembler_new(vars, "EventId");
    FUZZ_CHECK(assembler != NULL, "sf_assembler_new");
    return 0;
}

typedef struct result {
    int r;
    float row[64];
    sf_event_id id;
    char err[512];
} result;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static result f, j, w;
    const char *json = (const char *)data;
    size_t n = vars->n_vars;
    memset(&f, 0, sizeof f);
    memset(&j, 0, sizeof j);
    memset(&w, 0, sizeof w);
    f.r = sf_features_run_fast(assembler, json, size, f.row, &f.id, NULL, f.err, sizeof f.err);
    j.r = sf_features_run_jansson(assembler, json, size, j.row, &j.id, NULL, j.err, sizeof j.err);
    w.r = sf_assembler_run(assembler, json, size, w.row, &w.id, w.err, sizeof w.err);
    sf_features_clean_message(f.err);
    sf_features_clean_message(j.err);
    FUZZ_CHECK(j.r >= 0 && j.r < SF_REJECT__COUNT, "jansson verdict %d", j.r);
    FUZZ_CHECK(w.r == j.r && !strcmp(w.err, j.err), "sf_assembler_run %d '%s', jansson %d '%s'",
               w.r, w.err, j.r, j.err);
    FUZZ_CHECK(j.r == SF_REJECT_NONE || j.err[0], "rejection %d without a message", j.r);
    if (j.r == SF_REJECT_NONE)
        FUZZ_CHECK(!memcmp(w.row, j.row, n * sizeof(float)), "sf_assembler_run row differs");
    if (f.r == SF_FEATURES_FALLBACK)
        return 0;
    FUZZ_CHECK(f.r == j.r && !strcmp(f.err, j.err), "fast %d '%s', jansson %d '%s'", f.r, f.err,
               j.r, j.err);
    if (f.r == SF_REJECT_NONE)
        FUZZ_CHECK(!memcmp(f.row, j.row, n * sizeof(float)), "rows differ");
    FUZZ_CHECK(f.id.json_len == j.id.json_len && !strcmp(f.id.json, j.id.json) &&
               f.id.key_len == j.id.key_len && !strcmp(f.id.key, j.id.key),
               "ids differ: [%s|%s] vs [%s|%s]", f.id.json, f.id.key, j.id.json, j.id.key);
    return 0;
}
