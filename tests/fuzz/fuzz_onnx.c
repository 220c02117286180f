/* fuzz_onnx.c: ONNX files, through the whole in-process loader.
 *
 * An ONNX model is parsed by sigflow's own code (the protobuf reader of
 * model_onnx_pb.c and the graph mapping of model_onnx.c), not by a library
 * behind the loader's process boundary, so any crash, leak or undefined
 * behaviour here is sigflow's. The input is written as a file and loaded by
 * sf_model_load_inprocess, which tells the format by content: the seeds are
 * the ONNX fixtures, so nearly every input is read as ONNX. A finding is a
 * sanitizer report, a model whose widths do not chain, or a refusal that does
 * not name the file (fuzz_model_check.h); every model that loads is run once. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/infer.h"
#include "sigflow/model.h"
#include "fuzz_model_check.h"
#include "fuzz_util.h"

static unsigned long n_loaded, n_refused; /* printed at exit: run.sh shows it */

static void print_outcomes(void) {
    fprintf(stderr, "fuzz_onnx outcomes: loaded %lu, refused %lu\n", n_loaded, n_refused);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    atexit(print_outcomes);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_scratch(".onnx", data, size);
    char err[2048] = "";
    sf_model *m = NULL;
    if (sf_model_load_inprocess(&m, path, NULL, NULL, err, sizeof err) == 0) {
        n_loaded++;
        fuzz_model_check(m, path);
        /* Small models are run: a width the checks missed shows under ASan. */
        if (m->n_inputs <= 4096 && m->n_outputs <= 4096) {
            float *x = calloc(m->n_inputs, sizeof *x), *y = calloc(m->n_outputs, sizeof *y);
            sf_infer *e = sf_infer_new(m, 1);
            FUZZ_CHECK(x && y && e, "cannot run the loaded model");
            sf_infer_run(e, x, 1, y);
            sf_infer_free(e);
            free(x);
            free(y);
        }
        sf_model_free(m);
    } else {
        n_refused++;
        FUZZ_CHECK(m == NULL, "refused but returned a model");
        FUZZ_CHECK(!strncmp(err, path, strlen(path)), "message does not name the file: %s", err);
    }
    return 0;
}
