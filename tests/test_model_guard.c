/* test_model_guard.c: sf_model_load parses the model file in a child process,
 * so the one-byte reproducers of issue 15 (libhdf5 segfaults or spins on them)
 * become load errors naming the file and what happened, and a model that loads
 * comes back from the child bit for bit as the in-process loader builds it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sigflow/model.h"
#include "support.h"

#define FIXTURE(name) SF_SOURCE_DIR "/tests/fixtures/" name

static char err[2048], err2[2048];

/* Loads a gzip fixture through the guard; returns rc, message in err. */
static int load_gz(const char *gz, int timeout_ms, sf_model **m, char **path) {
    *path = sft_gunzip_temp(gz, ".h5");
    err[0] = '\0';
    return sf_model_load_guarded(m, *path, NULL, NULL, timeout_ms, err, sizeof err);
}

static void expect_prefix(const char *path, const char *what) {
    char want[1024];
    snprintf(want, sizeof want, "%s: %s", path, what);
    printf("  %s\n", err);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("expected \"%s...\", got \"%s\"", want, err);
}

static void test_crash_reproducers_refused(void **state) {
    (void)state;
    static const char *const crashers[] = {
        FIXTURE("corrupt_segv_2130_10.h5.gz"),
        FIXTURE("corrupt_segv_2130_80.h5.gz"),
        FIXTURE("corrupt_segv_2133_7f.h5.gz"),
    };
    for (size_t i = 0; i < sizeof crashers / sizeof crashers[0]; i++) {
        sf_model *m = (sf_model *)0x1;
        char *path;
        assert_int_equal(load_gz(crashers[i], 10000, &m, &path), -1);
        assert_null(m);
        /* 11 in a plain build; a sanitizer may catch the bad memcpy first and abort. */
        expect_prefix(path, "the HDF5 library crashed reading it (signal ");
        unlink(path);
        free(path);
    }
}

static void test_hang_reproducer_times_out(void **state) {
    (void)state;
    sf_model *m = (sf_model *)0x1;
    char *path;
    int64_t t0 = sft_now_ms();
    assert_int_equal(load_gz(FIXTURE("corrupt_hang_6240_7f.h5.gz"), 1500, &m, &path), -1);
    int64_t took = sft_now_ms() - t0;
    assert_null(m);
    expect_prefix(path, "reading it took longer than 1.5 s");
    assert_true(took >= 1500);
    assert_true(took < 30000); /* killed, not waited for */
    unlink(path);
    free(path);
}

/* The same file without the changed byte loads: the byte is the whole story. */
static void test_base_of_reproducers_loads(void **state) {
    (void)state;
    sf_model *m = NULL;
    char *path;
    if (load_gz(FIXTURE("corrupt_base.h5.gz"), 60000, &m, &path) != 0)
        fail_msg("%s", err);
    assert_int_equal(m->n_inputs, 30);
    assert_int_equal(m->n_outputs, 2);
    assert_int_equal(m->n_params, 1018002);
    assert_string_equal(m->path, path);
    sf_model_free(m);
    unlink(path);
    free(path);
}

static void same_floats(const float *a, const float *b, size_t n) {
    assert_true((a == NULL) == (b == NULL));
    if (a)
        assert_memory_equal(a, b, n * sizeof *a);
}

static void test_child_model_equals_inprocess(void **state) {
    (void)state;
    static const struct { const char *model, *arch; } cases[] = {
        {FIXTURE("model_mlp.h5"), NULL},
        {FIXTURE("model_mlp_vlen.h5"), NULL},
        {FIXTURE("weights_mlp.h5"), FIXTURE("arch_mlp.json")},
        {FIXTURE("model_functional.h5"), NULL},
        {FIXTURE("weights_functional_k3.h5"), FIXTURE("arch_functional_k3.json")},
        {FIXTURE("model_activations.h5"), NULL},
        {FIXTURE("model_bn.h5"), NULL},
        {FIXTURE("model_f64.h5"), NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sf_model *a = NULL, *b = NULL;
        if (sf_model_load(&a, cases[i].model, cases[i].arch, NULL, err, sizeof err) != 0)
            fail_msg("%s: %s", cases[i].model, err);
        if (sf_model_load_inprocess(&b, cases[i].model, cases[i].arch, NULL, err, sizeof err) != 0)
            fail_msg("%s: %s", cases[i].model, err);
        assert_string_equal(a->path, b->path);
        assert_string_equal(a->sha256, b->sha256);
        assert_int_equal(a->n_inputs, b->n_inputs);
        assert_int_equal(a->n_outputs, b->n_outputs);
        assert_int_equal(a->n_params, b->n_params);
        assert_int_equal(a->n_layers, b->n_layers);
        for (size_t k = 0; k < a->n_layers; k++) {
            const sf_layer *x = &a->layers[k], *y = &b->layers[k];
            assert_string_equal(x->name, y->name);
            assert_string_equal(x->keras_class, y->keras_class);
            assert_int_equal(x->kind, y->kind);
            assert_int_equal(x->n_in, y->n_in);
            assert_int_equal(x->n_out, y->n_out);
            assert_int_equal(x->activation, y->activation);
            assert_memory_equal(&x->alpha, &y->alpha, sizeof x->alpha);
            assert_int_equal(x->n_params, y->n_params);
            same_floats(x->kernel, y->kernel, x->n_in * x->n_out);
            same_floats(x->bias, y->bias, x->n_out);
            same_floats(x->scale, y->scale, x->n_out);
        }
        sf_model_free(a);
        sf_model_free(b);
    }
}

/* The loader's own refusals come back word for word. */
static void test_refusals_pass_through(void **state) {
    (void)state;
    static const char *const bad[] = {
        FIXTURE("bad_conv1d.h5"), FIXTURE("bad_missing_layer.h5"), FIXTURE("bad_truncated.h5"),
        FIXTURE("bad_empty.h5"), FIXTURE("bad_text.h5"), FIXTURE("no_such_model.h5"),
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sf_model *a = (sf_model *)0x1, *b = (sf_model *)0x1;
        assert_int_equal(sf_model_load(&a, bad[i], NULL, NULL, err, sizeof err), -1);
        assert_int_equal(sf_model_load_inprocess(&b, bad[i], NULL, NULL, err2, sizeof err2), -1);
        assert_null(a);
        assert_null(b);
        assert_string_equal(err, err2);
    }
}

static void test_timeout_from_environment(void **state) {
    (void)state;
    sf_model *m = (sf_model *)0x1;
    char *path = sft_gunzip_temp(FIXTURE("corrupt_hang_6240_7f.h5.gz"), ".h5");
    assert_int_equal(setenv("SIGFLOW_MODEL_LOAD_TIMEOUT", "0.5", 1), 0);
    assert_int_equal(sf_model_load(&m, path, NULL, NULL, err, sizeof err), -1);
    expect_prefix(path, "reading it took longer than 0.5 s");
    assert_int_equal(setenv("SIGFLOW_MODEL_LOAD_TIMEOUT", "ten", 1), 0);
    assert_int_equal(sf_model_load(&m, FIXTURE("model_mlp.h5"), NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "SIGFLOW_MODEL_LOAD_TIMEOUT='ten'"));
    assert_int_equal(unsetenv("SIGFLOW_MODEL_LOAD_TIMEOUT"), 0);
    unlink(path);
    free(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_reproducers_refused),
        cmocka_unit_test(test_hang_reproducer_times_out),
        cmocka_unit_test(test_base_of_reproducers_loads),
        cmocka_unit_test(test_child_model_equals_inprocess),
        cmocka_unit_test(test_refusals_pass_through),
        cmocka_unit_test(test_timeout_from_environment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
