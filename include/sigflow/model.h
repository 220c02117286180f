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

#include <stdatomic.h>
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
 * A model file is untrusted input and libhdf5 can crash, spin or be steered
 * by a crafted one, so the file is parsed in a sandbox: a freshly exec'd
 * program (sigflow-loader, in libexec/sigflow/ beside the binaries) with an
 * empty environment, no descriptors but a read-only one on the file (opened
 * here) and the pipe that carries the model back, under a seccomp filter that
 * lets it read, allocate and answer, and nothing else (no open, no socket, no
 * exec), and resource limits. The parent checks every count and size it
 * receives. A refusal says what happened, starting with the path:
 *   "the HDF5 library crashed reading it (signal 11)"            (crash)
 *   "reading it took longer than 10 s"                           (timeout)
 *   "model loader violated its sandbox (syscall openat) while reading it" (sandbox)
 *   anything else: the file is not a model we can run            (invalid)
 * The time limit is SF_MODEL_LOAD_TIMEOUT_MS, or the environment's
 * SIGFLOW_MODEL_LOAD_TIMEOUT in seconds (for slow disks, and for tests). */
#define SF_MODEL_LOAD_TIMEOUT_MS 10000
int sf_model_load(sf_model **out, const char *path, const char *arch_path,
                  const char *onnx_output, char *errstr, size_t errstr_size);

/* The loader's sandbox, as sf_engine_conf carries it (all zero: defaults). */
typedef struct sf_model_loader_conf {
    int timeout_ms;            /* 0: SF_MODEL_LOAD_TIMEOUT_MS or SIGFLOW_MODEL_LOAD_TIMEOUT */
    /* The loader's address-space limit in bytes; 0: SF_MODEL_LOADER_MEMORY or
     * the environment's SIGFLOW_MODEL_LOADER_MEMORY in MiB. */
    unsigned long long memory;
    /* --unsafe-model-loader: where the seccomp filter cannot be installed,
     * parse anyway, unconfined (each such load says so at warn on stderr in
     * log_format); otherwise such a load is refused. */
    int unsafe;
    int log_format;            /* sf_log_format of that warning */
    /* When *stop becomes non-zero (a SIGTERM), a load under way is ended
     * within 100 ms and refused ("stopped"). NULL: loads run to the end. */
    const atomic_int *stop;
    /* The loader program; NULL: the installed one. For tests only (a loader
     * built with probes); nothing on a command line sets it. */
    const char *program;
} sf_model_loader_conf;
#define SF_MODEL_LOADER_MEMORY (4ULL << 30)

/* sf_model_load with the sandbox configured by conf (NULL: defaults). */
int sf_model_load_conf(sf_model **out, const char *path, const char *arch_path,
                       const char *onnx_output, const sf_model_loader_conf *conf, char *errstr,
                       size_t errstr_size);

/* sf_model_load with an explicit time limit in milliseconds. */
int sf_model_load_guarded(sf_model **out, const char *path, const char *arch_path,
                          const char *onnx_output, int timeout_ms, char *errstr,
                          size_t errstr_size);

/* Why a load was refused, from sf_model_load's message (for /metrics). */
typedef enum {
    SF_MODEL_REFUSED_INVALID = 0, /* the file is not a model we can run */
    SF_MODEL_REFUSED_CRASH,       /* the parser died (a signal, or a damaged reply) */
    SF_MODEL_REFUSED_TIMEOUT,     /* killed at the time limit */
    SF_MODEL_REFUSED_SANDBOX,     /* a forbidden system call, or no sandbox to run in */
    SF_MODEL_REFUSED__COUNT
} sf_model_refusal;
sf_model_refusal sf_model_refusal_of(const char *errstr);
const char *sf_model_refusal_name(sf_model_refusal r); /* "invalid", "crash", ... */

/* The loader itself, in this process, with no protection from the HDF5
 * library: for the sandbox's program, and for tests and fuzzers that look
 * inside it (leaks on refusal paths). Daemon code calls sf_model_load. */
int sf_model_load_inprocess(sf_model **out, const char *path, const char *arch_path,
                            const char *onnx_output, char *errstr, size_t errstr_size);

/* A model file's bytes. The format readers parse bytes and never open a path,
 * so that the sandboxed loader can hand them what it read from the descriptor
 * it was given; a new format (ONNX) is one more reader behind sf_model_parse.
 * (ONNX external data, the one case of a model referring to other files,
 * comes to the sandboxed loader from the parent: see sf_onnx_fetch.) */
typedef struct sf_model_bytes {
    const char *name;      /* the path, for messages (borrowed) */
    unsigned char *data;
    size_t len;
} sf_model_bytes;
#define SF_MODEL_MAX_FILE ((size_t)4 << 30)
#define SF_MODEL_MAX_ARCH ((size_t)64 << 20) /* an architecture JSON */

/* Reads fd to its end into b (name is borrowed). Refuses more than max
 * bytes. 0, or -1 with errstr naming the file. */
int sf_model_bytes_read(sf_model_bytes *b, int fd, const char *name, size_t max, char *errstr,
                        size_t errstr_size);
void sf_model_bytes_free(sf_model_bytes *b);

/* Where an ONNX model's external data comes from when it is not read from
 * the model's folder: the sandboxed loader opens nothing, so it asks the
 * parent, which checks the location and sends the bytes (model_guard.c).
 * Fills *out (malloc'd, nbytes) and returns 0, or -1 with a reason in why. */
typedef int (*sf_onnx_fetch)(void *ctx, const char *location, long long offset, size_t nbytes,
                             unsigned char **out, char *why, size_t why_size);

typedef struct sf_model_parse_opts {
    const char *onnx_output;   /* as sf_model_load's; NULL: the default */
    sf_onnx_fetch fetch;       /* NULL: external data is read from the model's folder */
    void *fetch_ctx;
} sf_model_parse_opts;

/* Parses a model from its bytes: a .keras zip, an HDF5 file (arch: the
 * architecture JSON of a weights-only file, or NULL) or an ONNX graph, told
 * apart by content. o NULL: defaults. As sf_model_load, in this process. */
int sf_model_parse(sf_model **out, const sf_model_bytes *model, const sf_model_bytes *arch,
                   const sf_model_parse_opts *o, char *errstr, size_t errstr_size);

/* Whether these bytes are read as an ONNX model (no HDF5 or zip signature,
 * and the start of a protobuf ModelProto). */
int sf_model_is_onnx(const unsigned char *data, size_t len);

void sf_model_free(sf_model *m);

/* How many of its layers are Dense (int8 quantizes all but the first and the
 * last of them). */
size_t sf_model_n_dense(const sf_model *m);

/* Parses a Keras activation name ("relu", "silu", ...). Returns 0 or -1. */
int sf_activation_parse(const char *name, sf_activation *out);
const char *sf_activation_name(sf_activation a);

#endif
