/* model_arch.h: turns a Keras architecture JSON (model.to_json(), or the
 * model_config attribute of a whole-model save) into the ordered list of layers
 * the loader builds, whatever the Keras version wrote. */
#ifndef SIGFLOW_MODEL_ARCH_H
#define SIGFLOW_MODEL_ARCH_H

#include <stddef.h>
#include <jansson.h>

typedef struct sf_arch_layer {
    const char *name;        /* borrowed from the JSON tree */
    const char *keras_class;
    json_t *config;          /* the layer's "config" object */
    /* Where a .keras archive keeps its weights: "layers/dense_1", or for a
     * layer of a nested model "layers/sequential/layers/dense". Keras 3's
     * saving code names a layer by its class in snake_case, numbered per
     * class within its model's layer list (not by its configured name). */
    char *store_path;
    int nested;              /* 1 when it came from a model inside the model */
} sf_arch_layer;

typedef struct sf_arch {
    json_t *root;
    sf_arch_layer *layers;   /* in execution order, input side first */
    size_t n_layers;
    /* From batch_input_shape / batch_shape / input_shape / build_input_shape,
     * batch dimension excluded. input_rank 0: the JSON gives no shape. */
    size_t input_rank;
    size_t input_width;      /* last dimension, 0 when unknown (null) */
    size_t input_layer;      /* index of the layer that declared the shape */
    int keras3;              /* written by Keras 3 (affects hard_sigmoid) */
} sf_arch;

/* Parses `len` bytes of JSON. `origin` (a file name) starts every message.
 * Accepts Sequential (list or {"layers": ...}) and Model/Functional graphs
 * that are one chain from the single input to the single output. A layer that
 * is itself a Sequential or Functional model is replaced by its own chain. */
int sf_arch_parse(sf_arch *a, const char *text, size_t len, const char *origin,
                  char *errstr, size_t errstr_size);
void sf_arch_free(sf_arch *a);

#endif
