/* model.c: sf_model_load_inprocess, the Keras loader (model_guard.c runs it in a child).
 *
 * A model is trusted with physics decisions, so the loader refuses rather than
 * approximates: every layer class, activation and option it accepts is one the
 * engine computes exactly, and every weight is found by its name and checked
 * against the shapes the architecture implies. The work is split in three:
 * model_arch.c orders the layers from the JSON, model_h5.c reads HDF5, and this
 * file turns each (layer config, weights) pair into an sf_layer. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sigflow/model.h"
#include "model_arch.h"
#include "model_h5.h"
#include "model_keras.h"
#include "model_onnx.h"
#include "model_onnx_pb.h"
#include "sha256.h"

#define MAX_UNITS ((json_int_t)1 << 20)

static const char *const activation_names[] = {
    [SF_ACT_LINEAR] = "linear",         [SF_ACT_RELU] = "relu",
    [SF_ACT_SIGMOID] = "sigmoid",       [SF_ACT_TANH] = "tanh",
    [SF_ACT_SOFTMAX] = "softmax",       [SF_ACT_ELU] = "elu",
    [SF_ACT_SELU] = "selu",             [SF_ACT_SOFTPLUS] = "softplus",
    [SF_ACT_SOFTSIGN] = "softsign",     [SF_ACT_HARD_SIGMOID] = "hard_sigmoid",
    [SF_ACT_SWISH] = "swish",           [SF_ACT_EXPONENTIAL] = "exponential",
    [SF_ACT_LEAKY_RELU] = "leaky_relu", [SF_ACT_HARD_SIGMOID3] = "hard_sigmoid (Keras 3)",
    [SF_ACT_GELU] = "gelu",             [SF_ACT_RELU_FULL] = "relu (with options)",
};
#define N_ACTIVATIONS (sizeof activation_names / sizeof activation_names[0])

int sf_activation_parse(const char *name, sf_activation *out) {
    /* "hard_sigmoid" is the Keras 2 form here; the loader picks Keras 3's by version. */
    if (!strcmp(name, "silu")) { /* Keras 3's name for swish */
        *out = SF_ACT_SWISH;
        return 0;
    }
    for (size_t i = 0; i < N_ACTIVATIONS; i++) {
        if (!strcmp(name, activation_names[i])) {
            *out = (sf_activation)i;
            return 0;
        }
    }
    return -1;
}

const char *sf_activation_name(sf_activation a) {
    return (size_t)a < N_ACTIVATIONS ? activation_names[a] : "unknown";
}

/* Everything one load holds, so that every error path frees one thing. */
typedef struct loader {
    const char *path;        /* the model's name in messages (its path) */
    const unsigned char *data; /* the model file's bytes */
    size_t len;
    hid_t file;
    hid_t weights;           /* the group holding one group per layer */
    char **layer_names;      /* that group's layer_names attribute */
    size_t n_layer_names;
    sf_arch arch;
    int keras;               /* a .keras archive: weights by store path */
    sf_keras_archive archive;
    size_t n_vars_read;      /* .keras: variables claimed by the layers */
    char *errstr;
    size_t errstr_size;
} loader;

/* Formats "<file>: layer '<name>' (<class>): <why>", or "<file>: <why>". */
__attribute__((format(printf, 3, 4)))
static int fail(loader *ld, const sf_arch_layer *al, const char *fmt, ...) {
    char why[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (al && ld->keras && al->store_path) /* config.json names it, the weights path finds it */
        snprintf(ld->errstr, ld->errstr_size, "%s: layer '%s' (%s; config.json, model.weights.h5 "
                 "'%s'): %s", ld->path, al->name, al->keras_class, al->store_path, why);
    else if (al)
        snprintf(ld->errstr, ld->errstr_size, "%s: layer '%s' (%s): %s", ld->path, al->name,
                 al->keras_class, why);
    else
        snprintf(ld->errstr, ld->errstr_size, "%s: %s", ld->path, why);
    return -1;
}

/* ---- config values ---------------------------------------------------------- */

/* Absent or null means the Keras default; any other non-boolean is an error. */
static int config_bool(loader *ld, const sf_arch_layer *al, const char *key, int def, int *out) {
    json_t *v = json_object_get(al->config, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail(ld, al, "config '%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int config_number(loader *ld, const sf_arch_layer *al, const char *key, double def,
                         double *out) {
    json_t *v = json_object_get(al->config, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v))
        return fail(ld, al, "config '%s' must be a number", key);
    *out = json_number_value(v);
    return 0;
}

/* ---- weights ---------------------------------------------------------------- */

/* One expected weight of a layer, found by its role: the last part of its
 * stored name ("dense/kernel:0" and Keras 3's "dense/kernel" are "kernel"). */
typedef struct weight {
    const char *role;
    double *v;
    int rank;
    size_t dims[2];
} weight;

static int has_role(const char *stored, const char *role) {
    const char *base = strrchr(stored, '/');
    base = base ? base + 1 : stored;
    size_t len = strcspn(base, ":");
    return strlen(role) == len && !strncmp(base, role, len);
}

static int in_layer_names(const loader *ld, const char *name) {
    for (size_t i = 0; i < ld->n_layer_names; i++)
        if (!strcmp(ld->layer_names[i], name))
            return 1;
    return 0;
}

/* Opens a layer's weight group and reads its weight_names. A layer missing
 * from layer_names has no group: *g stays invalid and *n is 0. */
static int open_weight_group(loader *ld, const sf_arch_layer *al, hid_t *g, char ***names,
                             size_t *n) {
    char why[256];
    *g = H5I_INVALID_HID;
    *names = NULL;
    *n = 0;
    if (!in_layer_names(ld, al->name))
        return 0;
    *g = H5Gopen2(ld->weights, al->name, H5P_DEFAULT);
    if (*g < 0)
        return fail(ld, al, "weight group '%s' is missing", al->name);
    if (sf_h5_attr_strings(*g, "weight_names", names, n, why, sizeof why) < 0) {
        H5Gclose(*g);
        *g = H5I_INVALID_HID;
        return fail(ld, al, "%s", why);
    }
    return 0;
}

/* .keras: opens the layer's "<store path>/vars" group. Keras 2.15's zip writer
 * on Windows joined the path with backslashes, making "layers\dense" one
 * link name, so that spelling is tried too. *g stays invalid when neither
 * exists; *where gets the path that was tried first. */
static void open_vars_group(loader *ld, const sf_arch_layer *al, hid_t *g, char *where,
                            size_t size) {
    snprintf(where, size, "%s/vars", al->store_path);
    *g = H5Gopen2(ld->file, where, H5P_DEFAULT);
    if (*g >= 0)
        return;
    char windows[512];
    snprintf(windows, sizeof windows, "%s", al->store_path);
    for (char *c = windows; *c; c++)
        if (*c == '/')
            *c = '\\';
    size_t len = strlen(windows);
    snprintf(windows + len, sizeof windows - len, "/vars");
    *g = H5Gopen2(ld->file, windows, H5P_DEFAULT);
}

static size_t group_size(hid_t g) {
    H5G_info_t info;
    return H5Gget_info(g, &info) < 0 ? 0 : (size_t)info.nlinks;
}

/* .keras: the variables are "vars/0", "vars/1", ... in the order the layer
 * class creates them, so w[] must list them in that order. */
static int load_vars(loader *ld, const sf_arch_layer *al, weight *w, size_t nw, size_t *n_params) {
    char where[512], why[256], name[32];
    hid_t g;
    open_vars_group(ld, al, &g, where, sizeof where);
    if (g < 0)
        return fail(ld, al, "member 'model.weights.h5' has no group '%s'", where);
    size_t n = group_size(g);
    int rc = -1;
    if (n != nw) {
        char roles[128] = "";
        for (size_t j = 0; j < nw; j++)
            snprintf(roles + strlen(roles), sizeof roles - strlen(roles), "%s%s", j ? ", " : "",
                     w[j].role);
        fail(ld, al, "member 'model.weights.h5': '%s' holds %zu variables, expected %zu (%s)",
             where, n, nw, roles);
        goto done;
    }
    for (size_t j = 0; j < nw; j++) {
        snprintf(name, sizeof name, "%zu", j);
        if (sf_h5_read_doubles(g, name, &w[j].v, &w[j].rank, w[j].dims, why, sizeof why) < 0) {
            fail(ld, al, "member 'model.weights.h5': '%s' (%s): %s", where, w[j].role, why);
            goto done;
        }
        *n_params += w[j].dims[0] * w[j].dims[1];
    }
    ld->n_vars_read += nw;
    rc = 0;
done:
    H5Gclose(g);
    return rc;
}

/* Reads exactly the weights in w[0..nw) for one layer; any other stored
 * weight is an error, since it means the file does not match the config. */
static int load_weights(loader *ld, const sf_arch_layer *al, weight *w, size_t nw,
                        size_t *n_params) {
    hid_t g;
    char **names, why[256];
    size_t n;
    int rc = -1;
    if (ld->keras)
        return load_vars(ld, al, w, nw, n_params);
    if (open_weight_group(ld, al, &g, &names, &n) < 0)
        return -1;
    if (g < 0)
        return fail(ld, al, "the weights file has no weights for it (not in layer_names)");
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < nw && !has_role(names[i], w[j].role))
            j++;
        if (j == nw) {
            fail(ld, al, "unexpected weight '%s' for this configuration", names[i]);
            goto done;
        }
        if (w[j].v) {
            fail(ld, al, "two weights named '%s'", w[j].role);
            goto done;
        }
        if (sf_h5_read_doubles(g, names[i], &w[j].v, &w[j].rank, w[j].dims, why, sizeof why) < 0) {
            fail(ld, al, "%s", why);
            goto done;
        }
        *n_params += w[j].dims[0] * w[j].dims[1];
    }
    for (size_t j = 0; j < nw; j++) {
        if (!w[j].v) {
            fail(ld, al, "weight '%s' is missing from weight_names", w[j].role);
            goto done;
        }
    }
    rc = 0;
done:
    sf_h5_strings_free(names, n);
    H5Gclose(g);
    return rc;
}

/* Weightless layers: Keras stores an empty weight_names (often float-typed);
 * anything stored means the file and the architecture disagree. */
static int check_no_weights(loader *ld, const sf_arch_layer *al) {
    hid_t g;
    char **names;
    size_t n;
    if (ld->keras) {
        char where[512];
        open_vars_group(ld, al, &g, where, sizeof where);
        n = g >= 0 ? group_size(g) : 0;
        if (g >= 0)
            H5Gclose(g);
        if (n > 0)
            return fail(ld, al, "member 'model.weights.h5': '%s' holds %zu variables, but this "
                        "layer class has none", where, n);
        return 0;
    }
    if (open_weight_group(ld, al, &g, &names, &n) < 0)
        return -1;
    sf_h5_strings_free(names, n);
    if (g >= 0)
        H5Gclose(g);
    if (n > 0)
        return fail(ld, al, "the file stores %zu weights for it, but this layer class has none", n);
    return 0;
}

static void free_weights(weight *w, size_t nw) {
    for (size_t j = 0; j < nw; j++)
        free(w[j].v);
}

/* "(30, 16)" or "(16,)", Python's notation, as Keras users know shapes. */
static const char *shape_str(const weight *w, char *buf, size_t size) {
    if (w->rank == 1)
        snprintf(buf, size, "(%zu,)", w->dims[0]);
    else
        snprintf(buf, size, "(%zu, %zu)", w->dims[0], w->dims[1]);
    return buf;
}

/* A vector weight must have one value per unit. */
static int check_vector(loader *ld, const sf_arch_layer *al, const weight *w, size_t units) {
    char shape[64];
    if (w->rank != 1 || w->dims[0] != units)
        return fail(ld, al, "%s has shape %s, expected (%zu,)", w->role,
                    shape_str(w, shape, sizeof shape), units);
    return 0;
}

/* The engine computes in float; a value float cannot hold is an error, not inf. */
static int to_floats(loader *ld, const sf_arch_layer *al, const char *what, const double *v,
                     size_t n, float **out) {
    *out = malloc(n * sizeof **out);
    if (!*out)
        return fail(ld, al, "out of memory");
    for (size_t i = 0; i < n; i++) {
        if (fabs(v[i]) > FLT_MAX)
            return fail(ld, al, "%s value %g does not fit in float32", what, v[i]);
        (*out)[i] = (float)v[i];
    }
    return 0;
}

/* ---- activations ------------------------------------------------------------ */

static int parse_activation(loader *ld, const sf_arch_layer *al, json_t *v, sf_layer *l);

/* The activation layers, also found inside Dense configs of newer Keras. */
static int activation_layer(loader *ld, const sf_arch_layer *al, const char *cls, json_t *c,
                            sf_layer *l) {
    /* Options come from c, which is the layer's own config for an activation
     * layer but a nested object inside a Dense config; errors name the layer. */
    sf_arch_layer cfg = {al->name, al->keras_class, c, NULL, 0};
    double a = 0;
    if (!strcmp(cls, "Activation"))
        return parse_activation(ld, al, json_object_get(c, "activation"), l);
    if (!strcmp(cls, "LeakyReLU")) {
        /* Keras 3 renamed alpha to negative_slope; the default is 0.3 in both. */
        const char *key = json_object_get(c, "negative_slope") ? "negative_slope" : "alpha";
        if (config_number(ld, &cfg, key, 0.3, &a) < 0)
            return -1;
        l->activation = SF_ACT_LEAKY_RELU;
    } else if (!strcmp(cls, "ELU")) {
        if (config_number(ld, &cfg, "alpha", 1.0, &a) < 0)
            return -1;
        l->activation = SF_ACT_ELU;
    } else if (!strcmp(cls, "ReLU")) {
        /* Keras 2 and 3 compute the same function of the three options. */
        double max_value, slope, threshold;
        if (config_number(ld, &cfg, "max_value", INFINITY, &max_value) < 0 ||
            config_number(ld, &cfg, "negative_slope", 0, &slope) < 0 ||
            config_number(ld, &cfg, "threshold", 0, &threshold) < 0)
            return -1;
        if (max_value < 0 || fabs(slope) > FLT_MAX || fabs(threshold) > FLT_MAX)
            return fail(ld, al, "ReLU with max_value=%g, negative_slope=%g, threshold=%g is "
                        "not supported", max_value, slope, threshold);
        l->activation = SF_ACT_RELU;
        if (isfinite(max_value) || slope != 0 || threshold != 0) {
            l->activation = SF_ACT_RELU_FULL;
            l->max_value = (float)max_value;
            l->threshold = (float)threshold;
        }
        a = slope;
    } else {
        return fail(ld, al, "unsupported activation class '%s'", cls);
    }
    l->alpha = (float)a;
    return 0;
}

/* An activation is a name ("relu"), or in newer Keras an object: a serialized
 * function {"class_name": "function", "config": "relu"} or an activation layer. */
static int parse_activation(loader *ld, const sf_arch_layer *al, json_t *v, sf_layer *l) {
    if (!v || json_is_null(v)) {
        l->activation = SF_ACT_LINEAR;
        l->alpha = 0;
        return 0;
    }
    if (json_is_object(v)) {
        const char *cls = json_string_value(json_object_get(v, "class_name"));
        json_t *config = json_object_get(v, "config");
        if (!cls)
            return fail(ld, al, "activation object without class_name");
        if (strcmp(cls, "function") != 0 || !json_is_string(config))
            return activation_layer(ld, al, cls, config, l);
        v = config;
    }
    const char *name = json_string_value(v);
    if (!name)
        return fail(ld, al, "activation must be a name or an object");
    if (sf_activation_parse(name, &l->activation) < 0)
        return fail(ld, al, "unsupported activation '%s'", name);
    /* Keras 3 redefined hard_sigmoid; the file's version says which one it meant. */
    if (l->activation == SF_ACT_HARD_SIGMOID && ld->arch.keras3)
        l->activation = SF_ACT_HARD_SIGMOID3;
    /* The functional forms' defaults: elu(alpha=1), leaky_relu(negative_slope=0.2). */
    l->alpha = l->activation == SF_ACT_ELU ? 1.0f : l->activation == SF_ACT_LEAKY_RELU ? 0.2f : 0.0f;
    return 0;
}

/* ---- layer builders ------------------------------------------------------------
 * Each receives l->n_in as the previous layer's width (0 while unknown) and sets
 * n_in, n_out and its arrays. */

static int build_identity(loader *ld, const sf_arch_layer *al, sf_layer *l) {
    l->kind = SF_LAYER_IDENTITY;
    l->n_out = l->n_in;
    return check_no_weights(ld, al);
}

static int build_flatten(loader *ld, const sf_arch_layer *al, sf_layer *l) {
    /* Flatten is the identity only on 1-D input; without a declared input
     * shape we cannot know it is. (Multi-dimensional shapes are refused earlier.) */
    if (ld->arch.input_rank == 0)
        return fail(ld, al, "needs a declared 1-D input shape (batch_input_shape)");
    return build_identity(ld, al, l);
}

static int build_activation(loader *ld, const sf_arch_layer *al, sf_layer *l) {
    l->kind = SF_LAYER_ACTIVATION;
    l->n_out = l->n_in;
    if (check_no_weights(ld, al) < 0)
        return -1;
    return activation_layer(ld, al, al->keras_class, al->config, l);
}

static int build_dense(loader *ld, const sf_arch_layer *al, sf_layer *l) {
    json_t *units_json = json_object_get(al->config, "units");
    json_int_t units = json_integer_value(units_json);
    int use_bias;
    if (!json_is_integer(units_json) || units <= 0 || units > MAX_UNITS)
        return fail(ld, al, "config 'units' must be a positive integer");
    if (config_bool(ld, al, "use_bias", 1, &use_bias) < 0 ||
        parse_activation(ld, al, json_object_get(al->config, "activation"), l) < 0)
        return -1;
    weight w[2] = {{.role = "kernel"}, {.role = "bias"}};
    size_t nw = use_bias ? 2 : 1;
    int rc = -1;
    if (load_weights(ld, al, w, nw, &l->n_params) < 0)
        goto done;
    char shape[64];
    if (w[0].rank != 2 || w[0].dims[1] != (size_t)units) {
        fail(ld, al, "kernel has shape %s, expected (inputs, %lld) for %lld units",
             shape_str(&w[0], shape, sizeof shape), (long long)units, (long long)units);
        goto done;
    }
    if (l->n_in && w[0].dims[0] != l->n_in) {
        fail(ld, al, "kernel has %zu rows but the previous layer outputs %zu values",
             w[0].dims[0], l->n_in);
        goto done;
    }
    l->kind = SF_LAYER_DENSE;
    l->n_in = w[0].dims[0];
    l->n_out = (size_t)units;
    if (use_bias && check_vector(ld, al, &w[1], l->n_out) < 0)
        goto done;
    if (to_floats(ld, al, "kernel", w[0].v, l->n_in * l->n_out, &l->kernel) < 0 ||
        (use_bias && to_floats(ld, al, "bias", w[1].v, l->n_out, &l->bias) < 0))
        goto done;
    rc = 0;
done:
    free_weights(w, nw);
    return rc;
}

/* Inference-time BatchNormalization is affine, so it is folded into
 * y = x * scale + bias, in double: scale = gamma / sqrt(var + eps),
 * bias = beta - mean * scale. */
static int build_batchnorm(loader *ld, const sf_arch_layer *al, sf_layer *l) {
    json_t *axis = json_object_get(al->config, "axis");
    if (json_array_size(axis) == 1)
        axis = json_array_get(axis, 0);
    json_int_t ax = axis ? json_integer_value(axis) : -1;
    if ((axis && !json_is_integer(axis)) || (ax != -1 && ax != 1))
        return fail(ld, al, "only axis -1 (the features of a 1-D input) is supported");
    int center, scale, renorm;
    double eps;
    if (config_bool(ld, al, "center", 1, &center) < 0 ||
        config_bool(ld, al, "scale", 1, &scale) < 0 ||
        config_bool(ld, al, "renorm", 0, &renorm) < 0 ||
        config_number(ld, al, "epsilon", 1e-3, &eps) < 0)
        return -1;
    if (renorm)
        return fail(ld, al, "renorm is not supported");

    /* Keras' order: gamma, beta, moving_mean, moving_variance, minus the absent. */
    weight w[4] = {{0}};
    size_t nw = 0, gi = 0, bi = 0;
    if (scale)
        w[gi = nw++].role = "gamma";
    if (center)
        w[bi = nw++].role = "beta";
    size_t mi = nw++, vi = nw++;
    w[mi].role = "moving_mean";
    w[vi].role = "moving_variance";

    int rc = -1;
    if (load_weights(ld, al, w, nw, &l->n_params) < 0)
        goto done;
    size_t units = w[0].dims[0];
    for (size_t j = 0; j < nw; j++)
        if (check_vector(ld, al, &w[j], l->n_in ? l->n_in : units) < 0)
            goto done;
    l->kind = SF_LAYER_SCALE;
    l->n_in = l->n_out = units;
    l->scale = malloc(units * sizeof *l->scale);
    l->bias = malloc(units * sizeof *l->bias);
    if (!l->scale || !l->bias) {
        fail(ld, al, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < units; i++) {
        double var = w[vi].v[i] + eps;
        if (!(var > 0)) {
            fail(ld, al, "moving_variance + epsilon is not positive at index %zu", i);
            goto done;
        }
        double s = (scale ? w[gi].v[i] : 1.0) / sqrt(var);
        double b = (center ? w[bi].v[i] : 0.0) - w[mi].v[i] * s;
        if (fabs(s) > FLT_MAX || fabs(b) > FLT_MAX) {
            fail(ld, al, "folded scale or bias at index %zu does not fit in float32", i);
            goto done;
        }
        l->scale[i] = (float)s;
        l->bias[i] = (float)b;
    }
    rc = 0;
done:
    free_weights(w, nw);
    return rc;
}

static const struct {
    const char *keras_class;
    int (*build)(loader *, const sf_arch_layer *, sf_layer *);
} builders[] = {
    {"InputLayer", build_identity},
    {"Dropout", build_identity},
    {"Flatten", build_flatten},
    {"Dense", build_dense},
    {"BatchNormalization", build_batchnorm},
    {"Activation", build_activation},
    {"ReLU", build_activation},
    {"LeakyReLU", build_activation},
    {"ELU", build_activation},
};
#define N_BUILDERS (sizeof builders / sizeof builders[0])

static long find_builder(const char *keras_class) {
    for (size_t i = 0; i < N_BUILDERS; i++)
        if (!strcmp(builders[i].keras_class, keras_class))
            return (long)i;
    return -1;
}

/* ---- the load ---------------------------------------------------------------- */

/* A .keras archive holds the architecture and says which Keras wrote it. */
static int open_archive(loader *ld, const char *arch_path) {
    if (arch_path)
        return fail(ld, NULL, "a .keras archive holds its own architecture (config.json); "
                    "do not pass --architecture %s", arch_path);
    if (sf_keras_open(&ld->archive, ld->path, ld->data, ld->len, ld->errstr, ld->errstr_size) < 0)
        return -1;
    ld->keras = 1;
    ld->file = ld->archive.weights; /* closed with the archive */
    if (sf_arch_parse(&ld->arch, ld->archive.config, ld->archive.config_len, ld->path,
                      ld->errstr, ld->errstr_size) < 0)
        return -1;
    if (ld->archive.keras_version)
        ld->arch.keras3 = ld->archive.keras_version[0] == '3';
    return 0;
}

/* Counts the datasets Keras' zip writer put under layers/ (either spelling). */
static herr_t count_layer_vars(hid_t obj, const char *name, const H5O_info_t *info, void *data) {
    (void)obj;
    if (info->type == H5O_TYPE_DATASET && !strncmp(name, "layers", 6) &&
        (name[6] == '/' || name[6] == '\\'))
        ++*(size_t *)data;
    return 0;
}

/* Parses the architecture (model_config attribute, or the separate JSON file)
 * and finds the group of per-layer weight groups. */
static int open_model(loader *ld, const sf_model_bytes *arch) {
    char why[256], *text = NULL;
    size_t len = 0;
    int rc = -1;
    const char *arch_path = arch ? arch->name : NULL;
    if (sf_keras_is_zip(ld->data, ld->len))
        return open_archive(ld, arch_path);
    if (sf_h5_open_image(ld->data, ld->len, &ld->file, why, sizeof why) < 0)
        return fail(ld, NULL, "%s", why);
    if (arch) {
        if (!(text = malloc(arch->len + 1))) /* sf_arch_parse wants its own copy */
            return fail(ld, NULL, "out of memory");
        memcpy(text, arch->data, arch->len);
        text[arch->len] = '\0';
        len = arch->len;
    } else if (!sf_h5_has_attr(ld->file, "model_config")) {
        return fail(ld, NULL, "no model_config attribute: not a whole-model save "
                    "(pass the architecture JSON for a weights-only file)");
    } else if (sf_h5_attr_string(ld->file, "model_config", &text, why, sizeof why) < 0) {
        return fail(ld, NULL, "%s", why);
    } else {
        len = strlen(text);
    }
    if (sf_arch_parse(&ld->arch, text, len, arch_path ? arch_path : ld->path, ld->errstr,
                      ld->errstr_size) < 0)
        goto done;

    /* The file's own version stamp is better evidence than JSON heuristics. */
    char *version = NULL;
    if (sf_h5_has_attr(ld->file, "keras_version") &&
        sf_h5_attr_string(ld->file, "keras_version", &version, why, sizeof why) == 0)
        ld->arch.keras3 = version[0] == '3';
    free(version);

    /* Keras' own rule: a whole-model file keeps the weights in model_weights. */
    if (!sf_h5_has_attr(ld->file, "layer_names") && H5Lexists(ld->file, "model_weights", H5P_DEFAULT) > 0)
        ld->weights = H5Gopen2(ld->file, "model_weights", H5P_DEFAULT);
    else
        ld->weights = H5Gopen2(ld->file, "/", H5P_DEFAULT);
    if (ld->weights < 0) {
        fail(ld, NULL, "cannot open the weights group");
        goto done;
    }
    if (sf_h5_attr_strings(ld->weights, "layer_names", &ld->layer_names, &ld->n_layer_names, why,
                           sizeof why) < 0) {
        fail(ld, NULL, "%s", why);
        goto done;
    }
    rc = 0;
done:
    free(text);
    return rc;
}

/* Every weight in the file must belong to some layer of the architecture. */
static int check_unused_weights(loader *ld) {
    if (ld->keras) {
        size_t stored = 0;
        if (H5Ovisit2(ld->file, H5_INDEX_NAME, H5_ITER_NATIVE, count_layer_vars, &stored,
                      H5O_INFO_BASIC) < 0)
            return fail(ld, NULL, "member 'model.weights.h5' cannot be walked");
        if (stored != ld->n_vars_read)
            return fail(ld, NULL, "member 'model.weights.h5' stores %zu layer variables but the "
                        "architecture uses %zu: the weights do not belong to this config.json",
                        stored, ld->n_vars_read);
        return 0;
    }
    for (size_t i = 0; i < ld->n_layer_names; i++) {
        const char *name = ld->layer_names[i];
        size_t k = 0;
        while (k < ld->arch.n_layers && strcmp(ld->arch.layers[k].name, name) != 0)
            k++;
        if (k < ld->arch.n_layers)
            continue;
        hid_t g = H5Gopen2(ld->weights, name, H5P_DEFAULT);
        char **names = NULL, why[256];
        size_t n = 0;
        int bad = g >= 0 && sf_h5_attr_strings(g, "weight_names", &names, &n, why, sizeof why) == 0 && n > 0;
        sf_h5_strings_free(names, n);
        if (g >= 0)
            H5Gclose(g);
        if (bad)
            return fail(ld, NULL, "layer '%s' has weights in the file but is not in the "
                        "architecture", name);
    }
    return 0;
}

/* A last layer of one sigmoid unit is a binary classifier. sigmoid(z) is
 * softmax([0, z])[1], so the layer becomes two units, the first with zero
 * weights, under a softmax: the engine then yields [1 - p, p] with nothing
 * special in the hot path. Dropout etc. after it just widen to 2. */
static int sigmoid_head(loader *ld, sf_model *m) {
    size_t k = m->n_layers;
    while (k > 0 && m->layers[k - 1].kind == SF_LAYER_IDENTITY)
        k--;
    if (k == 0)
        return 0;
    sf_layer *l = &m->layers[k - 1];
    if (l->n_out != 1 || l->activation != SF_ACT_SIGMOID ||
        (l->kind != SF_LAYER_DENSE && l->kind != SF_LAYER_ACTIVATION))
        return 0;
    float *kernel = calloc(l->n_in * 2, sizeof *kernel);
    float *bias = l->bias ? calloc(2, sizeof *bias) : NULL;
    if (!kernel || (l->bias && !bias)) {
        free(kernel);
        free(bias);
        return fail(ld, NULL, "out of memory");
    }
    for (size_t i = 0; i < l->n_in; i++)
        kernel[i * 2 + 1] = l->kind == SF_LAYER_DENSE ? l->kernel[i] : 1.0f;
    if (bias)
        bias[1] = l->bias[0];
    free(l->kernel);
    free(l->bias);
    l->kernel = kernel;
    l->bias = bias;
    l->kind = SF_LAYER_DENSE;
    l->activation = SF_ACT_SOFTMAX;
    for (size_t i = k - 1; i < m->n_layers; i++)
        m->layers[i].n_out = 2;
    for (size_t i = k; i < m->n_layers; i++)
        m->layers[i].n_in = 2;
    m->n_outputs = 2;
    m->sigmoid_head = 1;
    return 0;
}

static int build_layers(loader *ld, sf_model *m) {
    const sf_arch *a = &ld->arch;
    /* Unsupported classes first: they explain a model better than any shape error. */
    for (size_t i = 0; i < a->n_layers; i++)
        if (find_builder(a->layers[i].keras_class) < 0)
            return fail(ld, &a->layers[i], "unsupported layer class");
    for (size_t i = 0; i < a->n_layers; i++)
        if (a->layers[i].nested && !ld->keras)
            return fail(ld, &a->layers[i], "belongs to a model nested in the model; nested "
                        "models are supported in .keras archives only");
    if (a->input_rank > 1)
        return fail(ld, &a->layers[a->input_layer], "input has %zu dimensions; only 1-D inputs "
                    "are supported", a->input_rank);

    m->layers = calloc(a->n_layers, sizeof *m->layers);
    if (!m->layers)
        return fail(ld, NULL, "out of memory");
    size_t width = a->input_width;
    for (size_t i = 0; i < a->n_layers; i++) {
        const sf_arch_layer *al = &a->layers[i];
        sf_layer *l = &m->layers[i];
        m->n_layers = i + 1;
        l->name = strdup(al->name);
        l->keras_class = strdup(al->keras_class);
        if (!l->name || !l->keras_class)
            return fail(ld, al, "out of memory");
        l->n_in = width;
        if (builders[find_builder(al->keras_class)].build(ld, al, l) < 0)
            return -1;
        width = l->n_out;
        m->n_params += l->n_params;
    }
    /* Without a declared input shape, layers before the first Dense or
     * BatchNormalization learn their width from it. */
    size_t first = 0;
    while (first < m->n_layers && m->layers[first].n_in == 0)
        first++;
    if (first == m->n_layers)
        return fail(ld, NULL, "cannot determine the input width (no input shape and no Dense or "
                    "BatchNormalization layer)");
    for (size_t i = 0; i < first; i++)
        m->layers[i].n_in = m->layers[i].n_out = m->layers[first].n_in;
    m->n_inputs = m->layers[0].n_in;
    m->n_outputs = m->layers[m->n_layers - 1].n_out;
    return sigmoid_head(ld, m);
}

/* Formats are told apart by their first bytes, never by the name: HDF5 and
 * zip have signatures, and a file with neither that starts like a protobuf
 * ModelProto is read as ONNX (anything else goes to HDF5, whose message says
 * what it is not). */
int sf_model_is_onnx(const unsigned char *data, size_t len) {
    static const unsigned char hdf5[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if ((len >= 8 && !memcmp(data, hdf5, 8)) || (len >= 2 && data[0] == 'P' && data[1] == 'K'))
        return 0;
    return sf_onnx_sniff(data, len < 8 ? len : 8);
}

static int load_onnx(loader *ld, sf_model *m, const sf_model_bytes *arch,
                     const sf_model_parse_opts *o, sf_sha256 *h) {
    if (arch)
        return fail(ld, NULL, "an ONNX model holds its own graph; do not pass --architecture %s",
                    arch->name);
    if (ld->len > SF_ONNX_MAX_BYTES)
        return fail(ld, NULL, "too large for an ONNX model");
    int rc = sf_onnx_build(m, ld->data, ld->len, ld->path, o ? o->onnx_output : NULL,
                           o ? o->fetch : NULL, o ? o->fetch_ctx : NULL, h, ld->errstr,
                           ld->errstr_size);
    return rc < 0 ? -1 : sigmoid_head(ld, m);
}

int sf_model_parse(sf_model **out, const sf_model_bytes *model, const sf_model_bytes *arch,
                   const sf_model_parse_opts *o, char *errstr, size_t errstr_size) {
    const char *path = model->name;
    loader ld = {.path = path, .data = model->data, .len = model->len,
                 .file = H5I_INVALID_HID, .weights = H5I_INVALID_HID,
                 .errstr = errstr, .errstr_size = errstr_size};
    sf_model *m = calloc(1, sizeof *m);
    sf_sha256 h;
    int rc = -1;
    *out = NULL;
    sf_sha256_init(&h);
    if (!m || !(m->path = strdup(path))) {
        snprintf(errstr, errstr_size, "%s: out of memory", path);
        goto done;
    }
    if (model->len == 0) {
        snprintf(errstr, errstr_size, "%s: empty file", path);
        goto done;
    }
    sf_sha256_update(&h, model->data, model->len);
    int onnx = sf_model_is_onnx(model->data, model->len);
    if (o && o->onnx_output && !onnx) {
        snprintf(errstr, errstr_size, "%s: --onnx-output %s: not an ONNX model", path,
                 o->onnx_output);
        goto done;
    }
    if (onnx) {
        if (load_onnx(&ld, m, arch, o, &h) < 0)
            goto done;
    } else {
        if (arch)
            sf_sha256_update(&h, arch->data, arch->len);
        if (open_model(&ld, arch) < 0 || build_layers(&ld, m) < 0 ||
            check_unused_weights(&ld) < 0)
            goto done;
    }
    sf_sha256_final_hex(&h, m->sha256);
    *out = m;
    m = NULL;
    rc = 0;
done:
    sf_model_free(m);
    sf_h5_strings_free(ld.layer_names, ld.n_layer_names);
    sf_arch_free(&ld.arch);
    if (ld.weights >= 0)
        H5Gclose(ld.weights);
    if (ld.keras)
        sf_keras_close(&ld.archive);
    else if (ld.file >= 0)
        H5Fclose(ld.file);
    return rc;
}

int sf_model_bytes_read(sf_model_bytes *b, int fd, const char *name, size_t max,
                        char *errstr, size_t errstr_size) {
    memset(b, 0, sizeof *b);
    struct stat st;
    size_t cap = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
                         (unsigned long long)st.st_size < max
                     ? (size_t)st.st_size + 1 /* + 1: EOF is seen without a realloc */
                     : 65536;
    size_t n = 0;
    unsigned char *buf = NULL;
    for (;;) {
        if (n == cap || !buf) {
            size_t want = buf ? cap * 2 : cap;
            unsigned char *bigger = n < max ? realloc(buf, want) : NULL;
            if (!bigger) {
                free(buf);
                snprintf(errstr, errstr_size, "%s: too large or out of memory", name);
                return -1;
            }
            buf = bigger;
            cap = want;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            free(buf);
            snprintf(errstr, errstr_size, "%s: read error: %s", name, strerror(errno));
            return -1;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    b->name = name;
    b->data = buf;
    b->len = n;
    return 0;
}

void sf_model_bytes_free(sf_model_bytes *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Opens and reads one file of a model for the in-process loader. */
static int read_file(sf_model_bytes *b, const char *path, size_t max, char *errstr,
                     size_t errstr_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        memset(b, 0, sizeof *b);
        snprintf(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int rc = sf_model_bytes_read(b, fd, path, max, errstr, errstr_size);
    close(fd);
    return rc;
}

int sf_model_load_inprocess(sf_model **out, const char *path, const char *arch_path,
                            const char *onnx_output, char *errstr, size_t errstr_size) {
    sf_model_parse_opts o = {.onnx_output = onnx_output};
    sf_model_bytes model, arch = {0};
    *out = NULL;
    if (read_file(&model, path, SF_MODEL_MAX_FILE, errstr, errstr_size) < 0)
        return -1;
    int rc = -1;
    if (!arch_path || read_file(&arch, arch_path, SF_MODEL_MAX_ARCH, errstr, errstr_size) == 0)
        rc = sf_model_parse(out, &model, arch_path ? &arch : NULL, &o, errstr, errstr_size);
    sf_model_bytes_free(&model);
    sf_model_bytes_free(&arch);
    return rc;
}

size_t sf_model_n_dense(const sf_model *m) {
    size_t n = 0;
    for (size_t i = 0; i < m->n_layers; i++)
        n += m->layers[i].kind == SF_LAYER_DENSE;
    return n;
}

void sf_model_free(sf_model *m) {
    if (!m)
        return;
    for (size_t i = 0; i < m->n_layers; i++) {
        sf_layer *l = &m->layers[i];
        free(l->name);
        free(l->keras_class);
        free(l->kernel);
        free(l->bias);
        free(l->scale);
    }
    free(m->layers);
    free(m->path);
    free(m);
}
