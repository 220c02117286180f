/* test_model.c: the Keras loader against tests/fixtures/ (written by
 * make_fixtures.py). Valid layouts must load with the right shapes, weights
 * and outputs: a naive float64 forward pass over the loaded arrays is compared
 * with numpy's reference, so the loader is checked without the inference
 * engine. Damaged or unsupported models must be refused with a message naming
 * the file, and the layer and its class where there is one. The loader is
 * called in this process (sf_model_load_inprocess), so that a handle or an
 * allocation left behind shows here; test_model_guard.c covers the child
 * process that sf_model_load runs it in. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>
#include <jansson.h>

#include "sigflow/model.h"
#include "../src/sha256.h"
#include "support.h"

#define FIXTURES SF_SOURCE_DIR "/tests/fixtures/"

static char errstr[1024];

static const char *fixture(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s%s", FIXTURES, name);
    return buf;
}

/* Open HDF5 files and objects in them (groups, datasets, attributes): a load
 * must leave none behind, on success and on every error path. */
static ssize_t open_hdf5_objects(void) {
    return H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
}

static int try_load(sf_model **m, const char *model, const char *arch) {
    errstr[0] = '\0';
    ssize_t before = open_hdf5_objects();
    int rc = sf_model_load_inprocess(m, model, arch, NULL, errstr, sizeof errstr);
    if (open_hdf5_objects() != before)
        fail_msg("loading %s left %zd HDF5 objects open (%s)", model,
                 open_hdf5_objects() - before, rc ? errstr : "loaded");
    return rc;
}

static sf_model *load_ok(const char *model, const char *arch) {
    char mp[512], ap[512];
    sf_model *m = NULL;
    int rc = try_load(&m, fixture(mp, sizeof mp, model), arch ? fixture(ap, sizeof ap, arch) : NULL);
    if (rc != 0)
        fail_msg("loading %s failed: %s", model, errstr);
    assert_non_null(m);
    return m;
}

/* Loads paths as given and expects a refusal whose message holds every needle. */
static void expect_refusal_path(const char *model, const char *arch, const char *const *needles) {
    sf_model *m = (sf_model *)0x1;
    int rc = try_load(&m, model, arch);
    if (rc == 0) {
        sf_model_free(m);
        fail_msg("%s (arch %s) loaded but should be refused", model, arch ? arch : "none");
    }
    assert_int_equal(rc, -1);
    assert_null(m);
    for (size_t i = 0; needles[i]; i++)
        if (!strstr(errstr, needles[i]))
            fail_msg("message for %s lacks \"%s\": %s", model, needles[i], errstr);
}

/* ---- a naive float64 forward pass, independent of src/infer.c ---------------- */

static double act1(sf_activation a, double alpha, double x) {
    switch (a) {
    case SF_ACT_LINEAR: return x;
    case SF_ACT_RELU: return x > 0 ? x : 0;
    case SF_ACT_SIGMOID: return 1 / (1 + exp(-x));
    case SF_ACT_TANH: return tanh(x);
    case SF_ACT_ELU: return x > 0 ? x : alpha * expm1(x);
    case SF_ACT_SELU:
        return 1.0507009873554804934193349852946 *
               (x > 0 ? x : 1.6732632423543772848170429916717 * expm1(x));
    case SF_ACT_SOFTPLUS: return log1p(exp(x));
    case SF_ACT_SOFTSIGN: return x / (1 + fabs(x));
    case SF_ACT_HARD_SIGMOID: return fmin(1, fmax(0, 0.2 * x + 0.5));
    case SF_ACT_SWISH: return x / (1 + exp(-x));
    case SF_ACT_EXPONENTIAL: return exp(x);
    case SF_ACT_LEAKY_RELU: return x > 0 ? x : alpha * x;
    case SF_ACT_HARD_SIGMOID3: return fmin(6, fmax(0, x + 3)) / 6;
    case SF_ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2)));
    case SF_ACT_SOFTMAX:
    case SF_ACT_RELU_FULL: /* not in the hand-made fixtures: test_keras.c covers it */
        break;
    }
    fail_msg("act1: unexpected activation %d", (int)a);
    return 0;
}

static void activate(sf_activation a, double alpha, double *v, size_t n) {
    if (a != SF_ACT_SOFTMAX) {
        for (size_t i = 0; i < n; i++)
            v[i] = act1(a, alpha, v[i]);
        return;
    }
    double max = v[0], sum = 0;
    for (size_t i = 1; i < n; i++)
        max = fmax(max, v[i]);
    for (size_t i = 0; i < n; i++)
        sum += (v[i] = exp(v[i] - max));
    for (size_t i = 0; i < n; i++)
        v[i] /= sum;
}

/* y gets m->n_outputs values for the n_inputs values of x. */
static void forward(const sf_model *m, const double *x, double *y) {
    size_t width = m->n_inputs;
    for (size_t i = 0; i < m->n_layers; i++)
        width = m->layers[i].n_out > width ? m->layers[i].n_out : width;
    double *in = calloc(width, sizeof *in), *out = calloc(width, sizeof *out);
    assert_non_null(in);
    assert_non_null(out);
    memcpy(in, x, m->n_inputs * sizeof *in);
    for (size_t li = 0; li < m->n_layers; li++) {
        const sf_layer *l = &m->layers[li];
        switch (l->kind) {
        case SF_LAYER_IDENTITY:
            memcpy(out, in, l->n_out * sizeof *out);
            break;
        case SF_LAYER_DENSE:
            for (size_t j = 0; j < l->n_out; j++) {
                double s = l->bias ? l->bias[j] : 0;
                for (size_t k = 0; k < l->n_in; k++)
                    s += in[k] * l->kernel[k * l->n_out + j];
                out[j] = s;
            }
            activate(l->activation, l->alpha, out, l->n_out);
            break;
        case SF_LAYER_SCALE:
            for (size_t j = 0; j < l->n_out; j++)
                out[j] = in[j] * l->scale[j] + l->bias[j];
            break;
        case SF_LAYER_ACTIVATION:
            memcpy(out, in, l->n_out * sizeof *out);
            activate(l->activation, l->alpha, out, l->n_out);
            break;
        }
        double *t = in;
        in = out;
        out = t;
    }
    memcpy(y, in, m->n_outputs * sizeof *y);
    free(in);
    free(out);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_activation_names(void **state) {
    (void)state;
    for (int a = SF_ACT_LINEAR; a <= SF_ACT_RELU_FULL; a++) {
        sf_activation back;
        if (a == SF_ACT_HARD_SIGMOID3 || a == SF_ACT_RELU_FULL) /* the loader's variants */
            continue;
        assert_int_equal(sf_activation_parse(sf_activation_name((sf_activation)a), &back), 0);
        assert_int_equal(back, a);
    }
    sf_activation a;
    assert_int_equal(sf_activation_parse("silu", &a), 0);
    assert_int_equal(a, SF_ACT_SWISH);
    assert_string_equal(sf_activation_name(SF_ACT_HARD_SIGMOID), "hard_sigmoid");
    assert_int_equal(sf_activation_parse("gelu", &a), 0);
    assert_int_equal(a, SF_ACT_GELU);
    assert_int_equal(sf_activation_parse("hard_sigmoid", &a), 0);
    assert_int_equal(a, SF_ACT_HARD_SIGMOID); /* Keras 3's form is chosen by file version */
    assert_int_equal(sf_activation_parse("mish", &a), -1);
    assert_int_equal(sf_activation_parse("", &a), -1);
    assert_int_equal(sf_activation_parse("Relu", &a), -1);
}

static void test_sha256_vectors(void **state) {
    (void)state;
    static const struct { const char *msg; size_t repeat; const char *hex; } v[] = {
        {"", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        sf_sha256 h;
        char hex[65];
        sf_sha256_init(&h);
        for (size_t r = 0; r < v[i].repeat; r++)
            sf_sha256_update(&h, v[i].msg, strlen(v[i].msg));
        sf_sha256_final_hex(&h, hex);
        assert_string_equal(hex, v[i].hex);
    }
}

/* Every valid model against its numpy reference: reported facts and outputs. */
static void test_reference_outputs(void **state) {
    (void)state;
    static const char *const refs[] = {
        "model_mlp.ref.json", "model_mlp_vlen.ref.json", "weights_mlp.ref.json",
        "model_functional.ref.json", "weights_functional_k3.ref.json",
        "model_activations.ref.json", "model_f64.ref.json", "model_bn.ref.json",
    };
    for (size_t r = 0; r < sizeof refs / sizeof refs[0]; r++) {
        char path[512];
        json_error_t jerr;
        json_t *ref = json_load_file(fixture(path, sizeof path, refs[r]), 0, &jerr);
        if (!ref)
            fail_msg("%s: %s", refs[r], jerr.text);
        const char *arch = json_string_value(json_object_get(ref, "architecture"));
        sf_model *m = load_ok(json_string_value(json_object_get(ref, "model")), arch);

        assert_int_equal(m->n_inputs, json_integer_value(json_object_get(ref, "n_inputs")));
        /* A one-unit sigmoid output is served as [1 - p, p]. */
        size_t ref_outputs = (size_t)json_integer_value(json_object_get(ref, "n_outputs"));
        assert_int_equal(m->n_outputs, m->sigmoid_head ? 2 : ref_outputs);
        assert_int_equal(m->n_params, json_integer_value(json_object_get(ref, "n_params")));
        assert_string_equal(m->sha256, json_string_value(json_object_get(ref, "sha256")));
        json_t *layers = json_object_get(ref, "layers");
        assert_int_equal(m->n_layers, json_array_size(layers));
        size_t params = 0;
        for (size_t i = 0; i < m->n_layers; i++) {
            json_t *l = json_array_get(layers, i);
            assert_string_equal(m->layers[i].name, json_string_value(json_array_get(l, 0)));
            assert_string_equal(m->layers[i].keras_class, json_string_value(json_array_get(l, 1)));
            if (i > 0)
                assert_int_equal(m->layers[i].n_in, m->layers[i - 1].n_out);
            params += m->layers[i].n_params;
        }
        assert_int_equal(params, m->n_params);

        json_t *inputs = json_object_get(ref, "inputs"), *outputs = json_object_get(ref, "outputs");
        assert_true(json_array_size(inputs) >= 3);
        assert_int_equal(json_array_size(inputs), json_array_size(outputs));
        double *x = calloc(m->n_inputs, sizeof *x), *y = calloc(m->n_outputs, sizeof *y);
        assert_non_null(x);
        assert_non_null(y);
        for (size_t row = 0; row < json_array_size(inputs); row++) {
            json_t *xin = json_array_get(inputs, row), *yref = json_array_get(outputs, row);
            assert_int_equal(json_array_size(xin), m->n_inputs);
            assert_int_equal(json_array_size(yref), ref_outputs);
            for (size_t i = 0; i < m->n_inputs; i++)
                x[i] = json_number_value(json_array_get(xin, i));
            forward(m, x, y);
            for (size_t j = 0; j < m->n_outputs; j++) {
                double want = json_number_value(json_array_get(yref, m->sigmoid_head ? 0 : j));
                if (m->sigmoid_head && j == 0)
                    want = 1 - want;
                /* Within 1e-5, relative for outputs larger than 1. */
                if (!(fabs(y[j] - want) <= 1e-5 * fmax(1.0, fabs(want))))
                    fail_msg("%s row %zu output %zu: got %.9g, numpy %.9g", refs[r], row, j,
                             y[j], want);
            }
        }
        free(x);
        free(y);
        sf_model_free(m);
        json_decref(ref);
    }
}

static void test_mlp_structure(void **state) {
    (void)state;
    sf_model *m = load_ok("model_mlp.h5", NULL);
    static const sf_layer_kind kinds[] = {SF_LAYER_IDENTITY, SF_LAYER_DENSE, SF_LAYER_SCALE,
                                          SF_LAYER_IDENTITY, SF_LAYER_DENSE, SF_LAYER_ACTIVATION,
                                          SF_LAYER_DENSE};
    static const size_t outs[] = {30, 16, 16, 16, 8, 8, 2};
    static const size_t params[] = {0, 30 * 16 + 16, 4 * 16, 0, 16 * 8 + 8, 0, 8 * 2 + 2};
    assert_int_equal(m->n_layers, 7);
    assert_int_equal(m->n_inputs, 30);
    assert_int_equal(m->n_outputs, 2);
    assert_int_equal(m->n_params, 496 + 64 + 136 + 18);
    assert_true(strstr(m->path, "model_mlp.h5") != NULL);
    assert_int_equal(strlen(m->sha256), 64);
    for (size_t i = 0; i < m->n_layers; i++) {
        assert_int_equal(m->layers[i].kind, kinds[i]);
        assert_int_equal(m->layers[i].n_out, outs[i]);
        assert_int_equal(m->layers[i].n_params, params[i]);
    }
    assert_int_equal(m->layers[1].activation, SF_ACT_RELU);
    assert_int_equal(m->layers[4].activation, SF_ACT_LINEAR);
    assert_int_equal(m->layers[5].activation, SF_ACT_RELU);
    assert_int_equal(m->layers[6].activation, SF_ACT_SOFTMAX);
    assert_string_equal(m->layers[2].keras_class, "BatchNormalization");
    assert_non_null(m->layers[1].kernel);
    assert_non_null(m->layers[1].bias);
    assert_non_null(m->layers[2].scale);
    assert_null(m->layers[2].kernel);
    assert_null(m->layers[0].kernel);
    sf_model_free(m);
}

static int same_floats(const float *a, const float *b, size_t n) {
    return (!a && !b) || (a && b && !memcmp(a, b, n * sizeof *a));
}

static void assert_same_layer(const sf_layer *a, const sf_layer *b) {
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->n_in, b->n_in);
    assert_int_equal(a->n_out, b->n_out);
    assert_int_equal(a->activation, b->activation);
    assert_true(same_floats(a->kernel, b->kernel, a->n_in * a->n_out));
    assert_true(same_floats(a->bias, b->bias, a->n_out));
    assert_true(same_floats(a->scale, b->scale, a->n_out));
}

/* Fixed- and variable-length strings, whole model and weights + both JSON
 * shapes: all must give bit-identical layers. */
static void test_layouts_agree(void **state) {
    (void)state;
    sf_model *fixed = load_ok("model_mlp.h5", NULL);
    sf_model *vlen = load_ok("model_mlp_vlen.h5", NULL);
    sf_model *split = load_ok("weights_mlp.h5", "arch_mlp.json");
    sf_model *list = load_ok("weights_mlp.h5", "arch_mlp_list.json");
    /* A whole-model file also loads with a separate architecture, as in Keras. */
    sf_model *both = load_ok("model_mlp.h5", "arch_mlp.json");
    assert_int_equal(vlen->n_layers, fixed->n_layers);
    assert_int_equal(split->n_layers, fixed->n_layers);
    assert_int_equal(both->n_layers, fixed->n_layers);
    for (size_t i = 0; i < fixed->n_layers; i++) {
        assert_same_layer(&fixed->layers[i], &vlen->layers[i]);
        assert_same_layer(&fixed->layers[i], &split->layers[i]);
        assert_same_layer(&fixed->layers[i], &both->layers[i]);
    }
    /* The old list form has no InputLayer. */
    assert_int_equal(list->n_layers, fixed->n_layers - 1);
    assert_int_equal(list->n_inputs, 30);
    for (size_t i = 0; i < list->n_layers; i++)
        assert_same_layer(&fixed->layers[i + 1], &list->layers[i]);
    assert_int_equal(list->n_params, fixed->n_params);
    /* Different bytes, different digests; the architecture file counts. */
    assert_string_not_equal(fixed->sha256, vlen->sha256);
    assert_string_not_equal(split->sha256, list->sha256);
    assert_string_not_equal(fixed->sha256, both->sha256);
    sf_model_free(fixed);
    sf_model_free(vlen);
    sf_model_free(split);
    sf_model_free(list);
    sf_model_free(both);
}

static void test_bn_folding(void **state) {
    (void)state;
    /* model_bn.h5: gamma, beta, mean, var by hand, epsilon 0.01, no input shape. */
    static const double gamma[] = {2.0, 0.5, 1.0}, beta[] = {1.0, 0.0, -1.0};
    static const double mean[] = {0.5, -1.0, 2.0}, var[] = {3.0, 0.25, 0.99};
    sf_model *m = load_ok("model_bn.h5", NULL);
    assert_int_equal(m->n_inputs, 3);
    assert_int_equal(m->n_layers, 2);
    const sf_layer *bn = &m->layers[0];
    assert_int_equal(bn->kind, SF_LAYER_SCALE);
    assert_int_equal(bn->n_in, 3);
    assert_int_equal(bn->n_out, 3);
    assert_int_equal(bn->n_params, 12);
    for (int i = 0; i < 3; i++) {
        double s = gamma[i] / sqrt(var[i] + 0.01);
        assert_float_equal(bn->scale[i], s, 1e-6);
        assert_float_equal(bn->bias[i], beta[i] - mean[i] * s, 1e-6);
    }
    /* Spot values: scale[1] = 0.5 / sqrt(0.26), bias[1] = 0 + 1 * scale[1]. */
    assert_float_equal(bn->scale[1], 0.98058067569092, 1e-6);
    assert_float_equal(bn->bias[1], 0.98058067569092, 1e-6);
    assert_float_equal(m->layers[1].kernel[2], 3.0f, 0);
    assert_float_equal(m->layers[1].bias[0], 0.5f, 0);
    sf_model_free(m);
}

static void test_float64_weights(void **state) {
    (void)state;
    sf_model *m = load_ok("model_f64.h5", NULL);
    const sf_layer *d = &m->layers[1], *d1 = &m->layers[2];
    assert_int_equal(d->kind, SF_LAYER_DENSE);
    assert_int_equal(d->activation, SF_ACT_TANH);
    /* Row-major (inputs, units): kernel [[0.1, -0.2], [0.3, 0.4]]. */
    assert_true(d->kernel[0] == (float)0.1 && d->kernel[1] == (float)-0.2);
    assert_true(d->kernel[2] == (float)0.3 && d->kernel[3] == (float)0.4);
    assert_true(d->bias[0] == (float)0.05 && d->bias[1] == (float)-0.05);
    assert_true(d1->kernel[0] == 1.5f && d1->kernel[1] == -2.5f && d1->bias[0] == (float)0.1);
    assert_int_equal(m->n_params, 9);
    sf_model_free(m);
}

static void test_functional_chain(void **state) {
    (void)state;
    sf_model *m = load_ok("model_functional.h5", NULL);
    assert_int_equal(m->n_layers, 7);
    assert_int_equal(m->layers[2].kind, SF_LAYER_ACTIVATION);
    assert_int_equal(m->layers[2].activation, SF_ACT_LEAKY_RELU);
    assert_float_equal(m->layers[2].alpha, 0.1, 1e-7);
    assert_int_equal(m->layers[4].activation, SF_ACT_ELU);
    assert_float_equal(m->layers[4].alpha, 0.7, 1e-7);
    assert_int_equal(m->layers[5].kind, SF_LAYER_ACTIVATION);
    assert_int_equal(m->layers[5].activation, SF_ACT_RELU);
    /* Dense(1, sigmoid) last: a binary head, served as softmax over [0, z]. */
    assert_int_equal(m->layers[6].activation, SF_ACT_SOFTMAX);
    assert_int_equal(m->layers[6].n_out, 2);
    assert_int_equal(m->sigmoid_head, 1);
    assert_int_equal(m->n_outputs, 2);
    sf_model_free(m);
}

static void test_keras3_layout(void **state) {
    (void)state;
    sf_model *m = load_ok("weights_functional_k3.h5", "arch_functional_k3.json");
    assert_int_equal(m->n_inputs, 8);
    assert_int_equal(m->n_layers, 7);
    const sf_layer *d = &m->layers[1];
    assert_int_equal(d->activation, SF_ACT_RELU);   /* {"class_name": "function", ...} */
    assert_null(d->bias);                           /* use_bias false */
    assert_int_equal(d->n_params, 8 * 6);
    assert_int_equal(m->layers[2].kind, SF_LAYER_SCALE);
    assert_int_equal(m->layers[2].n_params, 3 * 6); /* center false: no beta */
    assert_int_equal(m->layers[3].activation, SF_ACT_LEAKY_RELU);
    assert_float_equal(m->layers[3].alpha, 0.2, 1e-7); /* negative_slope */
    assert_int_equal(m->layers[4].n_params, 3 * 6); /* scale false: no gamma */
    assert_int_equal(m->layers[5].activation, SF_ACT_ELU); /* {"class_name": "ELU"} */
    assert_float_equal(m->layers[5].alpha, 0.5, 1e-7);
    assert_int_equal(m->layers[6].activation, SF_ACT_SOFTMAX);
    sf_model_free(m);
}

static void test_every_dense_activation(void **state) {
    (void)state;
    sf_model *m = load_ok("model_activations.h5", NULL);
    assert_int_equal(m->n_layers, 14);
    for (size_t i = 1; i < m->n_layers; i++) {
        sf_activation want;
        const char *suffix = m->layers[i].name + strlen("dense_");
        assert_int_equal(sf_activation_parse(suffix, &want), 0);
        assert_int_equal(m->layers[i].kind, SF_LAYER_DENSE);
        assert_int_equal(m->layers[i].activation, want);
        if (want == SF_ACT_ELU)
            assert_float_equal(m->layers[i].alpha, 1.0, 0);
    }
    sf_model_free(m);
}

static void test_refused_fixtures(void **state) {
    (void)state;
    static const struct { const char *model, *arch; const char *needles[5]; } cases[] = {
        {"bad_conv1d.h5", NULL, {"bad_conv1d.h5: layer 'conv1d' (Conv1D): unsupported layer class"}},
        {"bad_branch.h5", NULL, {"bad_branch.h5", "layer 'add' (Add)", "2 inbound", "chain"}},
        {"bad_kernel_shape.h5", NULL, {"bad_kernel_shape.h5", "layer 'dense' (Dense)", "(30, 12)"}},
        {"bad_kernel_rows.h5", NULL, {"bad_kernel_rows.h5", "layer 'dense_1' (Dense)", "12 rows", "16"}},
        {"bad_bias_len.h5", NULL, {"bad_bias_len.h5", "layer 'dense' (Dense)", "bias", "(15,)"}},
        {"bad_bn_len.h5", NULL,
         {"bad_bn_len.h5", "layer 'batch_normalization' (BatchNormalization)", "moving_variance",
          "(15,)"}},
        {"bad_missing_weight.h5", NULL,
         {"bad_missing_weight.h5", "layer 'dense_1' (Dense)", "'dense_1/bias:0' not found"}},
        {"bad_missing_layer.h5", NULL, {"bad_missing_layer.h5", "layer 'dense_3' (Dense)", "layer_names"}},
        {"bad_truncated.h5", NULL, {"bad_truncated.h5", "truncated"}},
        {"bad_empty.h5", NULL, {"bad_empty.h5", "empty file"}},
        {"bad_text.h5", NULL, {"bad_text.h5", "not an HDF5 file"}},
        /* a damaged global heap: libhdf5 fails (and leaks, tests/lsan.supp) mid-read */
        {"bad_vlen_heap.h5", NULL, {"bad_vlen_heap.h5", "attribute 'layer_names' cannot be read"}},
        /* a damaged group header: libhdf5 leaks 56 bytes (tests/lsan.supp) */
        {"bad_group_header.h5", NULL,
         {"bad_group_header.h5", "layer 'batch_normalization' (BatchNormalization)",
          "weight group 'batch_normalization' is missing"}},
        {"weights_mlp.h5", "bad_arch.json", {"bad_arch.json", "invalid architecture JSON", "line 2"}},
        {"weights_mlp.h5", NULL, {"weights_mlp.h5", "model_config"}},
        {"weights_mlp.h5", "arch_functional_k3.json", {"weights_mlp.h5", "layer 'dense' (Dense)"}},
        {"no_such_model.h5", NULL, {"no_such_model.h5", "No such file"}},
        {"weights_mlp.h5", "no_such_arch.json", {"no_such_arch.json", "No such file"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char mp[512], ap[512];
        expect_refusal_path(fixture(mp, sizeof mp, cases[i].model),
                            cases[i].arch ? fixture(ap, sizeof ap, cases[i].arch) : NULL,
                            cases[i].needles);
    }
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* path: room for 512 bytes. */
static void write_temp(char *path, const void *data, size_t len) {
    snprintf(path, 512, "%s/sf_test_model_XXXXXX", sft_tmpdir());
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

/* Cut a valid file at many lengths: every cut is a clean error. */
static void test_truncations(void **state) {
    (void)state;
    char src[512], tmp[512];
    size_t len;
    char *bytes = slurp(fixture(src, sizeof src, "model_mlp.h5"), &len);
    const size_t cuts[] = {1, 7, 8, 100, 512, 2048, len / 3, len / 2, len - 100, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_temp(tmp, bytes, cuts[i]);
        const char *needles[] = {tmp, NULL};
        expect_refusal_path(tmp, NULL, needles);
        unlink(tmp);
    }
    free(bytes);
}

/* Writes an architecture (JSON written with ' for ") next to a weights fixture. */
static int load_inline(sf_model **m, const char *weights, const char *json_sq, char *arch_path) {
    char wp[512];
    char *json = strdup(json_sq);
    assert_non_null(json);
    for (char *p = json; *p; p++)
        if (*p == '\'')
            *p = '"';
    write_temp(arch_path, json, strlen(json));
    free(json);
    return try_load(m, fixture(wp, sizeof wp, weights), arch_path);
}

/* weights_tiny.h5 holds one Dense layer 'dense' (4 -> 2) behind InputLayer 'in'. */
#define TINY_IN "{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [null, 4]}}"
#define TINY_DENSE(act) "{'class_name': 'Dense', 'config': {'name': 'dense', 'units': 2, 'activation': " act "}}"
#define SEQ(...) "{'class_name': 'Sequential', 'config': {'name': 's', 'layers': [" __VA_ARGS__ "]}}"
#define FN_LAYER(cls, name, cfg, inbound) \
    "{'class_name': '" cls "', 'name': '" name "', 'config': {'name': '" name "'" cfg "}, " \
    "'inbound_nodes': " inbound "}"
#define FN(layers, ins, outs) \
    "{'class_name': 'Functional', 'config': {'layers': [" layers "], 'input_layers': " ins \
    ", 'output_layers': " outs "}}"
#define FN_IN FN_LAYER("InputLayer", "in", ", 'batch_input_shape': [null, 4]", "[]")
#define FN_DENSE(inbound) FN_LAYER("Dense", "dense", ", 'units': 2, 'activation': 'relu'", inbound)

static void test_inline_architectures(void **state) {
    (void)state;
    static const struct { const char *json; sf_activation act; float alpha; } loads[] = {
        {SEQ(TINY_IN ", " TINY_DENSE("'linear'")), SF_ACT_LINEAR, 0},
        {SEQ(TINY_DENSE("'relu'")), SF_ACT_RELU, 0}, /* width from the kernel */
        {SEQ(TINY_IN ", " TINY_DENSE("'leaky_relu'")), SF_ACT_LEAKY_RELU, 0.2f},
        {SEQ(TINY_IN ", " TINY_DENSE("{'class_name': 'LeakyReLU', 'config': {'negative_slope': 0.25}}")),
         SF_ACT_LEAKY_RELU, 0.25f},
        {SEQ(TINY_IN ", {'class_name': 'Flatten', 'config': {'name': 'f'}}, "
             "{'class_name': 'ReLU', 'config': {'name': 'r', 'max_value': null}}, " TINY_DENSE("'linear'")),
         SF_ACT_LINEAR, 0},
        {SEQ("{'class_name': 'InputLayer', 'config': {'name': 'in', 'input_shape': [4]}}, " TINY_DENSE("'tanh'")),
         SF_ACT_TANH, 0},
        {SEQ(TINY_IN ", " TINY_DENSE("'gelu'")), SF_ACT_GELU, 0},
        {"{'class_name': 'Sequential', 'config': {'layers': [" TINY_DENSE("'linear'") "], "
         "'build_input_shape': [null, 4]}}", SF_ACT_LINEAR, 0},
        {FN(FN_IN ", " FN_DENSE("[[['in', 0, 0, {}]]]"), "[['in', 0, 0]]", "[['dense', 0, 0]]"),
         SF_ACT_RELU, 0},
        {FN(FN_IN ", " FN_DENSE("[{'args': [{'class_name': '__keras_tensor__', 'config': "
                                "{'shape': [null, 4], 'keras_history': ['in', 0, 0]}}], 'kwargs': {}}]"),
            "['in', 0, 0]", "['dense', 0, 0]"),
         SF_ACT_RELU, 0},
    };
    /* Graph-model cases use a Keras 2 or Keras 3 chain around the refused detail. */
    static const struct { const char *json; const char *needles[4]; } refusals[] = {
        {SEQ(TINY_IN ", " TINY_DENSE("'mish'")), {"layer 'dense' (Dense)", "unsupported activation 'mish'"}},
        {SEQ(TINY_IN ", " TINY_DENSE("{'class_name': 'PReLU', 'config': {}}")),
         {"layer 'dense' (Dense)", "PReLU"}},
        {SEQ(TINY_IN ", " TINY_DENSE("42")), {"layer 'dense' (Dense)", "activation"}},
        {SEQ(TINY_IN ", {'class_name': 'ReLU', 'config': {'name': 'r', 'max_value': -1}}, " TINY_DENSE("'linear'")),
         {"layer 'r' (ReLU)", "max_value=-1"}},
        {SEQ(TINY_IN ", {'class_name': 'Lambda', 'config': {'name': 'lam'}}, " TINY_DENSE("'linear'")),
         {"layer 'lam' (Lambda): unsupported layer class"}},
        {SEQ("{'class_name': 'Flatten', 'config': {'name': 'f'}}, " TINY_DENSE("'linear'")),
         {"layer 'f' (Flatten)", "input shape"}},
        {SEQ("{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [null, 4, 2]}}, "
             TINY_DENSE("'linear'")),
         {"layer 'in' (InputLayer)", "1-D"}},
        {SEQ("{'class_name': 'InputLayer', 'config': {'name': 'in', 'batch_input_shape': [null, 5]}}, "
             TINY_DENSE("'linear'")),
         {"layer 'dense' (Dense)", "4 rows", "5 values"}},
        {SEQ(TINY_IN ", " TINY_DENSE("'linear'") ", " TINY_DENSE("'linear'")), {"'dense' appears twice"}},
        {SEQ(TINY_IN ", {'class_name': 'Dropout', 'config': {'name': 'dense'}}"),
         {"layer 'dense' (Dropout)", "stores 2 weights", "has none"}},
        {SEQ(TINY_IN ", {'class_name': 'Dropout', 'config': {'name': 'd'}}"),
         {"layer 'dense' has weights in the file but is not in the architecture"}},
        {SEQ(TINY_IN ", {'class_name': 'Dense', 'config': {'name': 'dense', 'units': 3}}"),
         {"layer 'dense' (Dense)", "kernel has shape (4, 2)"}},
        {SEQ(TINY_IN ", {'class_name': 'Dense', 'config': {'name': 'dense', 'units': 2, 'use_bias': false}}"),
         {"layer 'dense' (Dense)", "unexpected weight 'dense/bias:0'"}},
        {SEQ(TINY_IN ", {'class_name': 'Dense', 'config': {'name': 'dense', 'units': -2}}"),
         {"layer 'dense' (Dense)", "units"}},
        {SEQ(""), {"without layers"}},
        {"{'class_name': 'Foo', 'config': {}}", {"unsupported model class 'Foo'"}},
        {"[1, 2]", {"no class_name"}},
        {"{'class_name': 'Sequential', 'config': {'layers': [{'config': {'name': 'x'}}]}}", {"layer #1"}},
        {FN(FN_IN ", " FN_DENSE("[{'args': [[{'config': {'keras_history': ['in', 0, 0]}}, "
                                "{'config': {'keras_history': ['in', 0, 0]}}]], 'kwargs': {}}]"),
            "['in', 0, 0]", "['dense', 0, 0]"),
         {"layer 'dense' (Dense)", "2 inbound"}},
        {FN(FN_IN ", " FN_DENSE("[[['in', 0, 0, {}]], [['in', 0, 0, {}]]]"), "[['in', 0, 0]]",
            "[['dense', 0, 0]]"),
         {"layer 'dense' (Dense)", "shared layer"}},
        {FN(FN_IN ", " FN_DENSE("[[['in', 0, 0, {}]]]"), "[['in', 0, 0]]",
            "[['dense', 0, 0], ['in', 0, 0]]"),
         {"2 output_layers"}},
        {FN(FN_IN ", " FN_DENSE("[[['in', 0, 0, {}]]]") ", " FN_LAYER("Dropout", "side", "", "[[['in', 0, 0, {}]]]"),
            "[['in', 0, 0]]", "[['dense', 0, 0]]"),
         {"layer 'side' (Dropout)", "not on the path"}},
        {FN(FN_IN ", " FN_DENSE("[[['d2', 0, 0, {}]]]") ", " FN_LAYER("Dropout", "d2", "", "[[['dense', 0, 0, {}]]]"),
            "[['in', 0, 0]]", "[['dense', 0, 0]]"),
         {"cycle"}},
        {FN(FN_IN ", " FN_DENSE("[[['nowhere', 0, 0, {}]]]"), "[['in', 0, 0]]", "[['dense', 0, 0]]"),
         {"layer 'dense' (Dense)", "'nowhere' does not exist"}},
        {FN(FN_IN ", " FN_DENSE("[]"), "[['in', 0, 0]]", "[['dense', 0, 0]]"), {"not at input 'in'"}},
        {FN(FN_IN ", " FN_DENSE("[[['in', 0, 0, {}]]]"), "{'x': ['in', 0, 0]}", "[['dense', 0, 0]]"),
         {"input_layers"}},
    };
    for (size_t i = 0; i < sizeof loads / sizeof loads[0]; i++) {
        char arch[512];
        sf_model *m = NULL;
        if (load_inline(&m, "weights_tiny.h5", loads[i].json, arch) != 0)
            fail_msg("loads[%zu]: %s", i, errstr);
        const sf_layer *last = &m->layers[m->n_layers - 1];
        assert_int_equal(m->n_inputs, 4);
        assert_int_equal(m->n_outputs, 2);
        assert_int_equal(m->n_params, 10);
        assert_int_equal(last->activation, loads[i].act);
        assert_float_equal(last->alpha, loads[i].alpha, 1e-7);
        sf_model_free(m);
        unlink(arch);
    }
    for (size_t i = 0; i < sizeof refusals / sizeof refusals[0]; i++) {
        char arch[512];
        sf_model *m = NULL;
        if (load_inline(&m, "weights_tiny.h5", refusals[i].json, arch) == 0) {
            sf_model_free(m);
            fail_msg("refusals[%zu] loaded", i);
        }
        assert_null(m);
        for (size_t k = 0; refusals[i].needles[k]; k++)
            if (!strstr(errstr, refusals[i].needles[k]))
                fail_msg("refusals[%zu]: message lacks \"%s\": %s", i, refusals[i].needles[k],
                         errstr);
        /* Structural errors name the architecture file, layer errors the weights file. */
        if (!strstr(errstr, arch) && !strstr(errstr, "weights_tiny.h5"))
            fail_msg("refusals[%zu]: message names no file: %s", i, errstr);
        unlink(arch);
    }
}

/* Real architecture files with one setting changed by text substitution. */
static void test_edited_architectures(void **state) {
    (void)state;
    static const struct { const char *weights, *arch, *from, *to, *needle; } cases[] = {
        {"weights_mlp.h5", "arch_mlp.json", "\"axis\": -1", "\"axis\": 2",
         "layer 'batch_normalization' (BatchNormalization): only axis -1"},
        {"weights_mlp.h5", "arch_mlp.json", "\"center\": true", "\"center\": false",
         "unexpected weight 'batch_normalization/beta:0'"},
        {"weights_mlp.h5", "arch_mlp.json", "\"epsilon\": 0.001", "\"epsilon\": \"small\"",
         "config 'epsilon' must be a number"},
        {"weights_mlp.h5", "arch_mlp.json", "\"momentum\": 0.99", "\"renorm\": true",
         "renorm is not supported"},
        {"weights_mlp.h5", "arch_mlp.json", "\"units\": 16", "\"units\": 17",
         "layer 'dense' (Dense): kernel has shape (30, 16), expected (inputs, 17)"},
        {"weights_mlp.h5", "arch_mlp.json", "\"activation\": \"softmax\"",
         "\"activation\": \"hard_sigmoid\"", NULL}, /* Keras 2 */
        /* The same activation in a Keras 3 file means something else. */
        {"weights_functional_k3.h5", "arch_functional_k3.json", "\"activation\": \"softmax\"",
         "\"activation\": \"hard_sigmoid\"", NULL}, /* Keras 3: relu6(x + 3) / 6 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char ap[512], wp[512], tmp[512];
        size_t len;
        char *text = slurp(fixture(ap, sizeof ap, cases[i].arch), &len);
        char *at = strstr(text, cases[i].from);
        if (!at)
            fail_msg("case %zu: '%s' not in %s", i, cases[i].from, cases[i].arch);
        size_t pre = (size_t)(at - text), flen = strlen(cases[i].from), tlen = strlen(cases[i].to);
        char *edited = malloc(len - flen + tlen + 1);
        assert_non_null(edited);
        memcpy(edited, text, pre);
        memcpy(edited + pre, cases[i].to, tlen);
        memcpy(edited + pre + tlen, at + flen, len - pre - flen + 1);
        write_temp(tmp, edited, strlen(edited));
        sf_model *m = NULL;
        int rc = try_load(&m, fixture(wp, sizeof wp, cases[i].weights), tmp);
        if (!cases[i].needle) {
            if (rc != 0)
                fail_msg("case %zu should load: %s", i, errstr);
            assert_int_equal(m->layers[m->n_layers - 1].activation,
                             strstr(cases[i].arch, "k3") ? SF_ACT_HARD_SIGMOID3
                                                         : SF_ACT_HARD_SIGMOID);
            sf_model_free(m);
        } else {
            assert_int_equal(rc, -1);
            if (!strstr(errstr, cases[i].needle))
                fail_msg("case %zu: message lacks \"%s\": %s", i, cases[i].needle, errstr);
        }
        unlink(tmp);
        free(edited);
        free(text);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activation_names),
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_reference_outputs),
        cmocka_unit_test(test_mlp_structure),
        cmocka_unit_test(test_layouts_agree),
        cmocka_unit_test(test_bn_folding),
        cmocka_unit_test(test_float64_weights),
        cmocka_unit_test(test_functional_chain),
        cmocka_unit_test(test_keras3_layout),
        cmocka_unit_test(test_every_dense_activation),
        cmocka_unit_test(test_refused_fixtures),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_inline_architectures),
        cmocka_unit_test(test_edited_architectures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
