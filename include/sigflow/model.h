/* model.h: load an MLP (Keras HDF5 whole model, weights HDF5 + architecture
 * JSON, Keras 3 .keras archive, or ONNX graph; the format is told by the
 * file's content) into plain float arrays, refusing anything we cannot run
 * exactly.
 *
 * Like lwtnn, the loader is strict: an unsupported layer, a shape mismatch, a
 * missing dataset or a damaged file is a load error whose message names the file,
 * the layer, its Keras class and why. Nothing is guessed. */
#ifndef SIGFLOW_MODEL_H
#define SIGFLOW_MODEL_H

#include <stddef.h>

typedef enum {
    SF_ACT_LINEAR = 0,
    SF_ACT_RELU,
    SF_ACT_SIGMOID,
    SF_ACT_TANH,
    SF_ACT_SOFTMAX,
    SF_ACT_ELU,          /* alpha */
    SF_ACT_SELU,
    SF_ACT_SOFTPLUS,
    SF_ACT_SOFTSIGN,
    SF_ACT_HARD_SIGMOID, /* Keras 2: clip(0.2 x + 0.5, 0, 1) */
    SF_ACT_SWISH,        /* also "silu": x * sigmoid(x) */
    SF_ACT_EXPONENTIAL,
    SF_ACT_LEAKY_RELU,   /* alpha (LeakyReLU layer) */
    SF_ACT_HARD_SIGMOID3, /* Keras 3's hard_sigmoid: relu6(x + 3) / 6 */
    SF_ACT_GELU,         /* exact: x * (1 + erf(x / sqrt 2)) / 2 (approximate=False) */
    SF_ACT_RELU_FULL     /* ReLU with options: alpha = negative_slope, max_value, threshold */
} sf_activation;

typedef enum {
    SF_LAYER_IDENTITY = 0, /* InputLayer, Dropout, Flatten: kept so inspect shows them */
    SF_LAYER_DENSE,        /* y = act(x @ kernel + bias) */
    SF_LAYER_SCALE,        /* y = x * scale + bias, elementwise (BatchNormalization) */
    SF_LAYER_ACTIVATION    /* y = act(x) (Activation, ReLU, LeakyReLU, ELU layers) */
} sf_layer_kind;

typedef struct sf_layer {
    char *name;            /* Keras layer name */
    char *keras_class;     /* "Dense", "BatchNormalization", ... */
    sf_layer_kind kind;
    size_t n_in, n_out;
    float *kernel;         /* DENSE: n_in x n_out, row-major (Keras layout) */
    float *bias;           /* DENSE (NULL when use_bias is false), SCALE: n_out */
    float *scale;          /* SCALE: n_out */
    sf_activation activation; /* DENSE and ACTIVATION */
    float alpha;           /* ELU / LeakyReLU, ReLU's negative_slope */
    float max_value;       /* ReLU: upper clip, INFINITY for none */
    float threshold;       /* ReLU: values at or below it are 0 (before the slope) */
    size_t n_params;       /* weights stored in the file for this layer */
} sf_layer;

typedef struct sf_model {
    char *path;            /* the weights file as given */
    size_t n_inputs, n_outputs;
    size_t n_layers;
    sf_layer *layers;
    size_t n_params;       /* sum over layers, as Keras counts them */
    /* 1: a binary classifier whose last layer is one unit through a sigmoid.
     * That layer is stored as softmax over [0, z], which is exactly
     * [1 - p, p] with p = sigmoid(z), so n_outputs is 2 and everything
     * downstream sees two class probabilities, negative first. */
    int sigmoid_head;
    char sha256[65];       /* hex digest of the weights file (and architecture file if any) */
} sf_model;

/* Loads `path`. For HDF5: with arch_path NULL the file must be a whole-model
 * save (root attribute model_config); otherwise it is a weights file and
 * arch_path the model.to_json() text. For ONNX (model_onnx.h), arch_path must
 * be NULL, and onnx_output names the graph output to serve (NULL: the only
 * float output, or the one named like probabilities); onnx_output with any
 * other format is an error. Returns 0 and *out, or -1 with a message in errstr.
 *
 * A model file is untrusted input and libhdf5 can crash or spin on a damaged
 * one, so the file is parsed in a short-lived child process (fork) that hands
 * the model back over a pipe; the parent checks what it receives. A child that
 * dies ("the HDF5 library crashed reading it (signal 11)") or takes longer than
 * the time limit (killed; "reading it took longer than 10 s") is a load error
 * like any other. The limit is SF_MODEL_LOAD_TIMEOUT_MS, or the environment's
 * SIGFLOW_MODEL_LOAD_TIMEOUT in seconds (for slow disks, and for tests). */
#define SF_MODEL_LOAD_TIMEOUT_MS 10000
int sf_model_load(sf_model **out, const char *path, const char *arch_path,
                  const char *onnx_output, char *errstr, size_t errstr_size);

/* sf_model_load with an explicit time limit in milliseconds. */
int sf_model_load_guarded(sf_model **out, const char *path, const char *arch_path,
                          const char *onnx_output, int timeout_ms, char *errstr, size_t errstr_size);

/* The loader itself, in this process, with no protection from the HDF5
 * library: for the isolation's child, and for tests and fuzzers that look
 * inside it (leaks on refusal paths). Daemon code calls sf_model_load. */
int sf_model_load_inprocess(sf_model **out, const char *path, const char *arch_path,
                            const char *onnx_output, char *errstr, size_t errstr_size);

void sf_model_free(sf_model *m);

/* Parses a Keras activation name ("relu", "silu", ...). Returns 0 or -1. */
int sf_activation_parse(const char *name, sf_activation *out);
const char *sf_activation_name(sf_activation a);

#endif
