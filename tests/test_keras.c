/* test_keras.c: sigflow against real Keras. tests/fixtures/keras/ holds models
 * saved by Keras 3, by tf-keras 2.21 and by Keras 2.15 in both the .keras zip and the
 * .h5 format, with Keras's own model.predict outputs for fixed inputs
 * (make_keras_fixtures.py). Every file must load and the inference engine
 * must reproduce Keras within 1e-5; the refusals of .keras archives must name
 * the file and the member. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>
#include <jansson.h>

#include "sigflow/engine.h"
#include "sigflow/infer.h"
#include "sigflow/model.h"
#include "sigflow/vars.h"

#define DIR SF_SOURCE_DIR "/tests/fixtures/keras/"
#define TOLERANCE 1e-5

static char errstr[1024];

static int load(sf_model **m, const char *file) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", DIR, file);
    errstr[0] = '\0';
    ssize_t before = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    int rc = sf_model_load(m, path, NULL, NULL, errstr, sizeof errstr);
    if (H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) != before)
        fail_msg("loading %s left HDF5 objects open", file);
    return rc;
}

/* Runs `model` on ref's inputs and returns the largest |sigflow - Keras|. A
 * sigmoid head's Keras output is p; sigflow's is [1 - p, p]. */
static double compare(const char *model, const char *ref_name, int sigmoid) {
    char path[512];
    snprintf(path, sizeof path, "%s%s", DIR, ref_name);
    json_error_t jerr;
    json_t *ref = json_load_file(path, 0, &jerr);
    if (!ref)
        fail_msg("%s: %s", ref_name, jerr.text);
    sf_model *m = NULL;
    if (load(&m, model) != 0)
        fail_msg("%s: %s", model, errstr);
    assert_int_equal(m->sigmoid_head, sigmoid);
    json_t *inputs = json_object_get(ref, "inputs"), *outputs = json_object_get(ref, "outputs");
    size_t n = json_array_size(inputs);
    assert_true(n > 0);
    assert_int_equal(json_array_size(json_array_get(inputs, 0)), m->n_inputs);
    assert_int_equal(json_array_size(json_array_get(outputs, 0)), sigmoid ? 1 : m->n_outputs);
    float *x = calloc(n * m->n_inputs, sizeof *x), *y = calloc(n * m->n_outputs, sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < m->n_inputs; j++)
            x[r * m->n_inputs + j] =
                (float)json_number_value(json_array_get(json_array_get(inputs, r), j));
    sf_infer *e = sf_infer_new(m, 7); /* chunks of 7: several GEMM calls */
    assert_non_null(e);
    sf_infer_run(e, x, n, y);
    double worst = 0;
    for (size_t r = 0; r < n; r++) {
        json_t *row = json_array_get(outputs, r);
        const float *got = y + r * m->n_outputs;
        for (size_t j = 0; j < m->n_outputs; j++) {
            double p = json_number_value(json_array_get(row, 0));
            double want = sigmoid ? (j ? p : 1.0 - p) : json_number_value(json_array_get(row, j));
            double d = fabs(got[j] - want);
            if (d > TOLERANCE)
                fail_msg("%s row %zu output %zu: sigflow %.9g, Keras %.9g", model, r, j,
                         (double)got[j], want);
            worst = d > worst ? d : worst;
        }
    }
    printf("# %-26s max |sigflow - Keras| = %.3g over %zu rows\n", model, worst, n);
    sf_infer_free(e);
    sf_model_free(m);
    free(x);
    free(y);
    json_decref(ref);
    return worst;
}

static void both_formats(const char *base, int sigmoid, int h5_too) {
    char model[128], ref[128];
    snprintf(ref, sizeof ref, "%s.ref.json", base);
    snprintf(model, sizeof model, "%s.keras", base);
    compare(model, ref, sigmoid);
    if (!h5_too)
        return;
    snprintf(model, sizeof model, "%s.h5", base);
    compare(model, ref, sigmoid);
}

static void test_keras3_models(void **state) {
    (void)state;
    both_formats("k3_mlp", 0, 1);
    both_formats("k3_activations", 0, 1);
    both_formats("k3_sigmoid", 1, 1);
    both_formats("k3_sigmoid_act", 1, 1);
    both_formats("k3_nested", 1, 0);
}

static void test_keras2_models(void **state) {
    (void)state;
    both_formats("k2_mlp", 0, 1);
    both_formats("k2_activations", 0, 1);
    both_formats("k2_sigmoid", 1, 1);
    both_formats("k2_sigmoid_act", 1, 1);
    both_formats("k2_nested", 1, 0);
}

static void test_keras215_models(void **state) {
    (void)state;
    both_formats("k215_mlp", 0, 1);
    both_formats("k215_activations", 0, 1);
    both_formats("k215_sigmoid", 1, 1);
    both_formats("k215_sigmoid_act", 1, 1);
    both_formats("k215_nested", 1, 0);
    /* Keras 2.15's Windows spelling: layers\dense/vars/0. */
    compare("k215_nested_win.keras", "k215_nested.ref.json", 1);
}

/* Keras 3 and Keras 2 compute hard_sigmoid differently; the file's version
 * decides (both activations fixtures pass only if it does). */
static void test_hard_sigmoid_by_version(void **state) {
    (void)state;
    sf_model *m3 = NULL, *m2 = NULL;
    assert_int_equal(load(&m3, "k3_activations.keras"), 0);
    assert_int_equal(load(&m2, "k2_activations.keras"), 0);
    int found3 = 0, found2 = 0;
    for (size_t i = 0; i < m3->n_layers; i++)
        found3 += m3->layers[i].activation == SF_ACT_HARD_SIGMOID3 &&
                  m3->layers[i].kind != SF_LAYER_IDENTITY;
    for (size_t i = 0; i < m2->n_layers; i++)
        found2 += m2->layers[i].activation == SF_ACT_HARD_SIGMOID &&
                  m2->layers[i].kind != SF_LAYER_IDENTITY;
    assert_int_equal(found3, 2); /* a Dense activation and an Activation layer */
    assert_int_equal(found2, 2);
    sf_model_free(m3);
    sf_model_free(m2);
}

/* Nested models in .h5 keep their weights in another layout: refused clearly. */
static void test_nested_h5_refused(void **state) {
    (void)state;
    sf_model *m = NULL;
    assert_int_equal(load(&m, "k3_nested.h5"), -1);
    assert_null(m);
    assert_non_null(strstr(errstr, "k3_nested.h5"));
    assert_non_null(strstr(errstr, "nested models are supported in .keras archives only"));
}

static void expect_refusal(const char *file, const char *needle1, const char *needle2) {
    sf_model *m = (sf_model *)0x1;
    if (load(&m, file) == 0)
        fail_msg("%s loaded but must be refused", file);
    assert_null(m);
    if (!strstr(errstr, file) || !strstr(errstr, needle1) || (needle2 && !strstr(errstr, needle2)))
        fail_msg("%s: message lacks the file, \"%s\" or \"%s\": %s", file, needle1,
                 needle2 ? needle2 : "", errstr);
}

static void test_refusals(void **state) {
    (void)state;
    expect_refusal("bad_member_size.keras", "member 'model.weights.h5'", "over the limit of 1 GiB");
    expect_refusal("bad_total_size.keras", "more than 4 GiB", "member 'assets/pad");
    expect_refusal("bad_not_zip.keras", "not a readable zip archive", NULL);
    expect_refusal("bad_no_config.keras", "member 'config.json' is missing", NULL);
    expect_refusal("bad_no_metadata.keras", "member 'metadata.json' is missing", NULL);
    expect_refusal("bad_no_model.keras", "member 'model.weights.h5' is missing", NULL);
    expect_refusal("bad_weights_text.keras", "member 'model.weights.h5' is not a readable HDF5",
                   NULL);
    expect_refusal("bad_conv.keras", "(Conv1D; config.json", "unsupported layer class");
    expect_refusal("bad_shape.keras", "model.weights.h5 'layers/dense'", "kernel has shape (6, 8)");
    /* A .keras archive carries its own architecture. */
    char path[512], arch[512];
    snprintf(path, sizeof path, "%sk3_mlp.keras", DIR);
    snprintf(arch, sizeof arch, "%sk3_mlp.ref.json", DIR);
    sf_model *m = NULL;
    assert_int_equal(sf_model_load(&m, path, arch, NULL, errstr, sizeof errstr), -1);
    assert_non_null(strstr(errstr, "holds its own architecture"));
}

/* p >= 0.5 is the positive class, ties included (the argmax rule would pick
 * 0), and --threshold applies to p: the engine's selection, as run and
 * predict use it. */
static void test_sigmoid_selection(void **state) {
    (void)state;
    sf_engine_conf c;
    sf_engine_conf_init(&c);
    c.model_path = DIR "k3_sigmoid.keras";
    c.vars_path = SF_SOURCE_DIR "/tests/fixtures/vars_higgs.json"; /* labels b, s */
    c.threads = 1;
    sf_engine *e = NULL;
    if (sf_engine_load(&e, &c, errstr, sizeof errstr) != 0)
        fail_msg("%s", errstr);
    assert_int_equal(sf_engine_n_outputs(e), 2);
    assert_int_equal(sf_engine_signal_index(e), 1);
    const float tie[2] = {0.5f, 0.5f}, below[2] = {0.5000001f, 0.4999999f},
                high[2] = {0.1f, 0.9f}, low[2] = {0.7f, 0.3f};
    assert_int_equal(sf_engine_label_of(e, tie), 1);
    assert_int_equal(sf_engine_label_of(e, below), 0);
    assert_int_equal(sf_engine_label_of(e, high), 1);
    assert_true(sf_engine_is_selected(e, tie, sf_engine_label_of(e, tie)));
    assert_false(sf_engine_is_selected(e, low, sf_engine_label_of(e, low)));
    sf_engine_free(e);

    c.threshold = 0.3; /* on p */
    assert_int_equal(sf_engine_load(&e, &c, errstr, sizeof errstr), 0);
    assert_true(sf_engine_is_selected(e, low, sf_engine_label_of(e, low)));
    const float under[2] = {0.71f, 0.29f};
    assert_false(sf_engine_is_selected(e, under, sf_engine_label_of(e, under)));
    sf_engine_free(e);
}

/* One output that is not a sigmoid is not a classifier; a sigmoid head needs
 * two labels. */
static void test_single_output_refused_for_classification(void **state) {
    (void)state;
    sf_model *m = NULL;
    sf_vars *v = NULL;
    char vpath[512];
    snprintf(vpath, sizeof vpath, "%s/tests/fixtures/vars_graph.json", SF_SOURCE_DIR);
    assert_int_equal(load(&m, "k3_linear1.keras"), 0);
    assert_int_equal(m->n_outputs, 1);
    assert_int_equal(m->sigmoid_head, 0);
    assert_int_equal(sf_vars_load(&v, vpath, errstr, sizeof errstr), 0);
    assert_int_equal(sf_vars_bind(v, m, errstr, sizeof errstr), -1);
    assert_non_null(strstr(errstr, "one output"));
    assert_non_null(strstr(errstr, "not a sigmoid"));
    sf_vars_free(v);
    sf_model_free(m);
}

/* models/higgs_mlp.keras is the shipped model saved by Keras 3: the same
 * layers and the same float32 weights as models/higgs_mlp.h5, bit for bit, so
 * the parity test against higgs_reference.csv covers it too. */
static void test_shipped_keras_matches_h5(void **state) {
    (void)state;
    sf_model *k = NULL, *h = NULL;
    assert_int_equal(sf_model_load(&k, SF_SOURCE_DIR "/models/higgs_mlp.keras", NULL, NULL, errstr,
                                   sizeof errstr), 0);
    assert_int_equal(sf_model_load(&h, SF_SOURCE_DIR "/models/higgs_mlp.h5", NULL, NULL, errstr,
                                   sizeof errstr), 0);
    assert_int_equal(k->n_params, 1018002);
    assert_int_equal(k->n_params, h->n_params);
    assert_int_equal(k->n_inputs, h->n_inputs);
    assert_int_equal(k->n_outputs, h->n_outputs);
    size_t dense_k = 0, dense_h = 0;
    for (size_t i = 0; i < k->n_layers; i++)
        dense_k += k->layers[i].kind == SF_LAYER_DENSE;
    for (size_t i = 0; i < h->n_layers; i++)
        dense_h += h->layers[i].kind == SF_LAYER_DENSE;
    assert_int_equal(dense_k, 4);
    assert_int_equal(dense_k, dense_h);
    for (size_t i = 0, j = 0; i < k->n_layers; i++) {
        const sf_layer *a = &k->layers[i];
        if (a->kind != SF_LAYER_DENSE)
            continue;
        while (h->layers[j].kind != SF_LAYER_DENSE)
            j++;
        const sf_layer *b = &h->layers[j++];
        assert_int_equal(a->n_in, b->n_in);
        assert_int_equal(a->n_out, b->n_out);
        assert_int_equal(a->activation, b->activation);
        assert_memory_equal(a->kernel, b->kernel, a->n_in * a->n_out * sizeof(float));
        assert_memory_equal(a->bias, b->bias, a->n_out * sizeof(float));
    }
    sf_model_free(k);
    sf_model_free(h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keras3_models),
        cmocka_unit_test(test_keras2_models),
        cmocka_unit_test(test_keras215_models),
        cmocka_unit_test(test_hard_sigmoid_by_version),
        cmocka_unit_test(test_nested_h5_refused),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sigmoid_selection),
        cmocka_unit_test(test_single_output_refused_for_classification),
        cmocka_unit_test(test_shipped_keras_matches_h5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
