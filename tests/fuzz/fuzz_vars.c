/* fuzz_vars.c: the variables loader. Any file gets 0 or -1 with a message
 * naming the file; a file that loads is checked against a model (bind), and
 * what it holds obeys the contract the assembler relies on. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "sigflow/model.h"
#include "sigflow/vars.h"
#include "fuzz_util.h"

static sf_model *model; /* 30 inputs, 2 outputs */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char err[1024];
    FUZZ_CHECK(sf_model_load_inprocess(&model, SF_SOURCE_DIR "/tests/fixtures/model_mlp.h5", NULL, NULL,
                                       err, sizeof err) == 0, "%s", err);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[1024] = "";
    sf_vars *v = NULL;
    const char *path = fuzz_scratch(".json", data, size);
    if (sf_vars_load(&v, path, err, sizeof err) != 0) {
        FUZZ_CHECK(v == NULL, "refused but returned vars");
        FUZZ_CHECK(strstr(err, path) != NULL, "message names no file: %s", err);
        return 0;
    }
    FUZZ_CHECK(v && v->n_vars > 0, "loaded without variables");
    for (size_t i = 0; i < v->n_vars; i++) {
        FUZZ_CHECK(v->vars[i].name && v->vars[i].name[0], "variable %zu has no name", i);
        FUZZ_CHECK(isfinite(v->vars[i].offset) && isfinite(v->vars[i].scale) &&
                   v->vars[i].scale != 0, "variable %s: offset %g scale %g", v->vars[i].name,
                   v->vars[i].offset, v->vars[i].scale);
    }
    for (size_t i = 0; i < v->n_labels; i++)
        FUZZ_CHECK(v->labels[i] && v->labels[i][0], "label %zu is empty", i);
    err[0] = '\0';
    if (sf_vars_bind(v, model, err, sizeof err) == 0) {
        FUZZ_CHECK(v->n_vars == model->n_inputs && v->n_labels == model->n_outputs,
                   "bound %zu vars, %zu labels to a 30 -> 2 model", v->n_vars, v->n_labels);
        for (size_t i = 0; i < v->n_labels; i++)
            FUZZ_CHECK(sf_vars_label_index(v, v->labels[i]) == (int)i, "duplicate label %s",
                       v->labels[i]);
    } else {
        FUZZ_CHECK(err[0], "bind refused without a message");
    }
    sf_vars_free(v);
    return 0;
}
