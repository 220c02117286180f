/* fuzz_model_check.h: what every model a loader hands over must satisfy,
 * whatever the file claimed (fuzz_model, fuzz_arch): the engine would run a
 * model that breaks these out of bounds. */
#ifndef SIGFLOW_FUZZ_MODEL_CHECK_H
#define SIGFLOW_FUZZ_MODEL_CHECK_H

#include <string.h>

#include "sigflow/model.h"
#include "fuzz_util.h"

static inline void fuzz_model_check(const sf_model *m, const char *path) {
    FUZZ_CHECK(m && !strcmp(m->path, path), "path");
    FUZZ_CHECK(m->n_layers > 0 && m->n_inputs > 0 && m->n_outputs > 0, "empty model");
    size_t width = m->n_inputs;
    for (size_t i = 0; i < m->n_layers; i++) {
        const sf_layer *l = &m->layers[i];
        FUZZ_CHECK(l->n_in == width, "layer %zu: n_in %zu after width %zu", i, l->n_in, width);
        if (l->kind == SF_LAYER_DENSE)
            FUZZ_CHECK(l->kernel != NULL, "dense layer %zu without kernel", i);
        else
            FUZZ_CHECK(l->n_out == l->n_in, "layer %zu changes width", i);
        if (l->kind == SF_LAYER_SCALE)
            FUZZ_CHECK(l->scale && l->bias, "scale layer %zu without arrays", i);
        width = l->n_out;
    }
    FUZZ_CHECK(width == m->n_outputs, "outputs");
}

#endif
