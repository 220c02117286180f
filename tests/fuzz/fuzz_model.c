/* fuzz_model.c: the model loader (.h5), through the isolation of
 * src/model_guard.c by default: a crash or hang of libhdf5 in the child is
 * contained (a load error naming the file); what counts as a finding is a
 * crash, leak or sanitizer report in this process, a load that succeeds with
 * an inconsistent model, or a refusal that does not name the file.
 *
 * Coverage from the child does not reach libFuzzer, so FUZZ_MODEL_INPROCESS=1
 * calls the loader in this process instead, for coverage-guided runs under
 * -fork with -ignore_crashes (tests/fuzz/run.sh then replays each crash
 * through the isolation and classifies it by where it happened). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/model.h"
#include "fuzz_model_check.h"
#include "fuzz_util.h"

static int inprocess;
/* What the isolation saw, printed at exit (run.sh shows it): loads, refusals
 * by the loader itself, and the two that libhdf5 would have turned into a
 * dead or frozen daemon. */
static unsigned long n_loaded, n_refused, n_crashed, n_timed_out;

static void print_outcomes(void) {
    fprintf(stderr, "fuzz_model outcomes: loaded %lu, refused %lu, loader crashed %lu, "
            "loader timed out %lu\n", n_loaded, n_refused, n_crashed, n_timed_out);
}
static int timeout_ms = 2000; /* a hang is contained either way; a short limit keeps the pace */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *e = getenv("FUZZ_MODEL_INPROCESS");
    inprocess = e && !strcmp(e, "1");
    const char *t = getenv("FUZZ_MODEL_TIMEOUT_MS");
    if (t && atoi(t) > 0)
        timeout_ms = atoi(t);
    atexit(print_outcomes);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[2048] = "";
    sf_model *m = NULL;
    const char *path = fuzz_scratch(".h5", data, size);
    int rc = inprocess ? sf_model_load_inprocess(&m, path, NULL, NULL, err, sizeof err)
                       : sf_model_load_guarded(&m, path, NULL, NULL, timeout_ms, err, sizeof err);
    if (rc == 0) {
        n_loaded++;
        fuzz_model_check(m, path);
        sf_model_free(m);
    } else {
        if (strstr(err, ": the HDF5 library crashed reading it (signal "))
            n_crashed++;
        else if (strstr(err, ": reading it took longer than "))
            n_timed_out++;
        else
            n_refused++;
        FUZZ_CHECK(m == NULL, "refused but returned a model");
        FUZZ_CHECK(!strncmp(err, path, strlen(path)), "message does not name the file: %s", err);
    }
    return 0;
}
