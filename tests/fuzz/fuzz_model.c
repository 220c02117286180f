/* fuzz_model.c: the model loader (.h5), through the sandbox of
 * src/model_guard.c by default: a crash or hang of libhdf5 in the loader
 * program is contained (a load error naming the file); what counts as a
 * finding is a crash, leak or sanitizer report in this process, a load that
 * succeeds with an inconsistent model, or a refusal that does not name the
 * file. The loader is a separate program (libexec/sigflow/sigflow-loader of
 * the fuzz build), so libFuzzer's handler no longer saves the inputs that
 * crash it: with FUZZ_MODEL_SAVE_DIR set (tests/fuzz/run.sh sets it to the
 * artifacts), this harness saves them, and run.sh replays each in-process
 * and judges it by where it happened.
 *
 * Coverage from the loader does not reach libFuzzer, so FUZZ_MODEL_INPROCESS=1
 * calls the loader in this process instead, for coverage-guided runs under
 * -fork with -ignore_crashes (run.sh judges each crash the same way). */
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
static unsigned long n_loaded, n_refused, n_crashed, n_timed_out, n_sandbox;
static const char *save_dir;

static void print_outcomes(void) {
    fprintf(stderr, "fuzz_model outcomes: loaded %lu, refused %lu, loader crashed %lu, "
            "loader timed out %lu, loader violated its sandbox %lu\n", n_loaded, n_refused,
            n_crashed, n_timed_out, n_sandbox);
}

/* Keeps an input that crashed the loader (or made it try a forbidden call)
 * for run.sh to judge. */
static void save_input(const uint8_t *data, size_t size, const char *kind) {
    if (!save_dir)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/loader-%s-%ld-%lu", save_dir, kind, (long)getpid(),
             n_crashed + n_sandbox);
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "cannot write %s", path);
    FUZZ_CHECK(fwrite(data, 1, size, f) == size, "short write to %s", path);
    FUZZ_CHECK(fclose(f) == 0, "cannot close %s", path);
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
    save_dir = getenv("FUZZ_MODEL_SAVE_DIR");
    if (save_dir && !*save_dir)
        save_dir = NULL;
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
        switch (inprocess ? SF_MODEL_REFUSED_INVALID : sf_model_refusal_of(err)) {
        case SF_MODEL_REFUSED_CRASH: n_crashed++; save_input(data, size, "crash"); break;
        case SF_MODEL_REFUSED_SANDBOX: n_sandbox++; save_input(data, size, "sandbox"); break;
        case SF_MODEL_REFUSED_TIMEOUT: n_timed_out++; break;
        default: n_refused++; break;
        }
        FUZZ_CHECK(m == NULL, "refused but returned a model");
        FUZZ_CHECK(!strncmp(err, path, strlen(path)), "message does not name the file: %s", err);
    }
    return 0;
}
