/* test_vars.c: the variables file in both lwtnn shapes, and every way it can be
 * wrong, each error checked for naming the file and the entry. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sigflow/vars.h"
#include "support.h"

typedef struct tmp {
    char dir[512];
    char path[600];
} tmp;

static int setup(void **state) {
    tmp *t = calloc(1, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "%s/sf_test_vars_XXXXXX", sft_tmpdir());
    if (!mkdtemp(t->dir))
        return -1;
    snprintf(t->path, sizeof t->path, "%s/vars.json", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state) {
    tmp *t = *state;
    unlink(t->path);
    rmdir(t->dir);
    free(t);
    return 0;
}

static const char *put(tmp *t, const char *text) {
    FILE *f = fopen(t->path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return t->path;
}

/* Loading `text` fails with a message containing every one of the fragments. */
static void expect_error(tmp *t, const char *text, const char *frag1, const char *frag2) {
    sf_vars *v = (sf_vars *)1;
    char err[512] = "";
    assert_int_equal(sf_vars_load(&v, put(t, text), err, sizeof err), -1);
    assert_null(v);
    if (strncmp(err, t->path, strlen(t->path)) || !strstr(err, frag1) ||
        (frag2 && !strstr(err, frag2)))
        fail_msg("for %s\n got error: %s\n wanted: %s ... %s", text, err, frag1,
                 frag2 ? frag2 : "");
}

static void test_sequential(void **state) {
    (void)state;
    sf_vars *v;
    char err[512];
    const char *path = SF_SOURCE_DIR "/tests/fixtures/vars_higgs.json";
    if (sf_vars_load(&v, path, err, sizeof err))
        fail_msg("%s", err);
    assert_string_equal(v->path, path);
    assert_int_equal(v->n_vars, 30);
    assert_string_equal(v->vars[0].name, "DER_mass_MMC");
    assert_true(v->vars[0].has_default);
    assert_true(v->vars[0].offset == -121.467 && v->vars[0].scale == 0.0177952);
    assert_string_equal(v->vars[1].name, "DER_mass_transverse_met_lep");
    assert_false(v->vars[1].has_default);
    assert_string_equal(v->vars[29].name, "PRI_jet_all_pt");
    assert_true(v->has_missing_value && v->missing_value == -999.0);
    assert_int_equal(v->n_labels, 2);
    assert_string_equal(v->labels[1], "s");
    assert_int_equal(sf_vars_label_index(v, "s"), 1);
    assert_int_equal(sf_vars_label_index(v, "b"), 0);
    assert_int_equal(sf_vars_label_index(v, "x"), -1);
    sf_model m = {.path = "m.h5", .n_inputs = 30, .n_outputs = 2};
    assert_int_equal(sf_vars_bind(v, &m, err, sizeof err), 0);
    assert_int_equal(v->n_labels, 2);
    assert_string_equal(v->labels[0], "b");
    sf_vars_free(v);
}

static void test_graph(void **state) {
    (void)state;
    sf_vars *v;
    char err[512];
    if (sf_vars_load(&v, SF_SOURCE_DIR "/tests/fixtures/vars_graph.json", err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(v->n_vars, 3);
    assert_string_equal(v->vars[1].name, "x1");
    assert_true(v->vars[1].offset == -2.5 && v->vars[1].scale == 0.5);
    assert_true(v->vars[1].has_default && v->vars[1].default_value == 2.5);
    assert_false(v->vars[0].has_default);
    assert_false(v->has_missing_value);
    assert_int_equal(v->n_labels, 3);
    assert_string_equal(v->labels[2], "out_2");
    assert_int_equal(sf_vars_label_index(v, "out_1"), 1);
    sf_vars_free(v);
}

static void test_default_labels(void **state) {
    tmp *t = *state;
    sf_vars *v;
    char err[512];
    assert_int_equal(sf_vars_load(&v, put(t, "{\"inputs\": [{\"name\": \"a\", \"offset\": 1, "
                                              "\"scale\": 2, \"default\": null}], "
                                              "\"missing_value\": -1}"),
                                  err, sizeof err), 0);
    assert_int_equal(v->n_labels, 0);
    assert_false(v->vars[0].has_default);
    assert_true(v->has_missing_value && v->missing_value == -1.0);
    sf_model m = {.path = "m.h5", .n_inputs = 1, .n_outputs = 3};
    assert_int_equal(sf_vars_bind(v, &m, err, sizeof err), 0);
    assert_int_equal(v->n_labels, 3);
    assert_string_equal(v->labels[0], "0");
    assert_string_equal(v->labels[2], "2");
    assert_int_equal(sf_vars_label_index(v, "1"), 1);
    sf_vars_free(v);

    /* graph style without outputs */
    assert_int_equal(sf_vars_load(&v, put(t, "{\"inputs\": [{\"name\": \"n\", \"variables\": "
                                              "[{\"name\": \"a\", \"offset\": 0, \"scale\": 1}]}]}"),
                                  err, sizeof err), 0);
    assert_int_equal(v->n_labels, 0);
    sf_vars_free(v);
}

static void test_bind_mismatch(void **state) {
    (void)state;
    sf_vars *v;
    char err[512];
    assert_int_equal(sf_vars_load(&v, SF_SOURCE_DIR "/tests/fixtures/vars_higgs.json", err,
                                  sizeof err), 0);
    sf_model m = {.path = "m.h5", .n_inputs = 29, .n_outputs = 2};
    assert_int_equal(sf_vars_bind(v, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "vars_higgs.json"));
    assert_non_null(strstr(err, "30 input variables"));
    assert_non_null(strstr(err, "m.h5 takes 29 inputs"));
    m.n_inputs = 30;
    m.n_outputs = 3;
    assert_int_equal(sf_vars_bind(v, &m, err, sizeof err), -1);
    assert_non_null(strstr(err, "2 labels"));
    assert_non_null(strstr(err, "3 outputs"));
    sf_vars_free(v);
}

/* The shipped file's training block (models/training_stats.py), a file
 * without one falling back to offset and scale, and a block that is wrong. */
static void test_training(void **state) {
    tmp *t = *state;
    sf_vars *v;
    char err[512];
    if (sf_vars_load(&v, SF_SOURCE_DIR "/models/higgs_variables.json", err, sizeof err))
        fail_msg("%s", err);
    assert_true(v->has_training && v->has_score);
    assert_int_equal(v->training_rows, 18000);
    assert_int_equal(v->score_events, 2000);
    assert_string_equal(v->score_label, "s");
    assert_true(v->signal_rate > 0.25 && v->signal_rate < 0.4);
    assert_int_equal(v->score.n_edges, 19);
    for (size_t i = 0; i < v->n_vars; i++) {
        const sf_var_training *tr = &v->vars[i].training;
        assert_true(tr->given);
        assert_int_equal(tr->bins.n_edges, 19);
        /* The same rows gave offset and scale: the mean and std agree. */
        assert_true(fabs(tr->mean + v->vars[i].offset) < 1e-6 * (1 + fabs(tr->mean)));
        assert_true(fabs(tr->std * v->vars[i].scale - 1) < 1e-6);
    }
    assert_true(v->vars[4].training.missing_fraction > 0.7); /* DER_deltaeta_jet_jet */
    /* int8's calibration: one range per Dense layer, widths 30 500 1000 500 */
    assert_int_equal(v->n_calibration, 4);
    static const size_t widths[] = {30, 500, 1000, 500};
    for (size_t d = 0; d < 4; d++) {
        assert_int_equal(v->calibration_inputs[d], widths[d]);
        assert_true(v->calibration_range[d] > 0.5f && v->calibration_range[d] < 100.0f);
    }
    sf_vars_free(v);

    const char *plain = "{\"inputs\": [{\"name\": \"a\", \"offset\": -3, \"scale\": -0.5}]}";
    if (sf_vars_load(&v, put(t, plain), err, sizeof err))
        fail_msg("%s", err);
    assert_false(v->has_training || v->has_score || v->vars[0].training.given);
    assert_true(v->vars[0].training.mean == 3 && v->vars[0].training.std == 2);
    assert_int_equal(v->vars[0].training.bins.n_edges, 0);
    sf_vars_free(v);

    char buf[1024];
    const char *in = "{\"inputs\": [{\"name\": \"a\", \"offset\": 0, \"scale\": 1}], "
                     "\"training\": ";
    snprintf(buf, sizeof buf, "%s[]}", in);
    expect_error(t, buf, "training: must be an object", NULL);
    snprintf(buf, sizeof buf, "%s{\"inputs\": [{\"name\": \"b\", \"mean\": 0, \"std\": 1}]}}",
             in);
    expect_error(t, buf, "training.inputs[0]", "'b' is not one of the inputs");
    snprintf(buf, sizeof buf, "%s{\"inputs\": [{\"name\": \"a\", \"mean\": 0, \"std\": 0}]}}",
             in);
    expect_error(t, buf, "training.inputs[0] 'a'", "'std' must be positive");
    snprintf(buf, sizeof buf, "%s{\"inputs\": [{\"name\": \"a\", \"mean\": 0, \"std\": 1, "
             "\"quantiles\": [1, 0], \"fractions\": [0.3, 0.3, 0.4]}]}}", in);
    expect_error(t, buf, "quantiles[1] must be a finite number not below", NULL);
    snprintf(buf, sizeof buf, "%s{\"inputs\": [{\"name\": \"a\", \"mean\": 0, \"std\": 1, "
             "\"quantiles\": [0, 1], \"fractions\": [0.5, 0.5]}]}}", in);
    expect_error(t, buf, "'fractions' must be an array of 3 numbers", NULL);
    snprintf(buf, sizeof buf, "%s{\"inputs\": [{\"name\": \"a\", \"mean\": 0, \"std\": 1, "
             "\"quantiles\": [0, 1], \"fractions\": [0.5, 0.5, 0.5]}]}}", in);
    expect_error(t, buf, "'fractions' sum to 1.5, not 1", NULL);
    snprintf(buf, sizeof buf, "%s{\"inputs\": [{\"name\": \"a\", \"mean\": 0, \"std\": 1, "
             "\"missing_fraction\": 2}]}}", in);
    expect_error(t, buf, "'missing_fraction' (2) must be in [0, 1]", NULL);
    snprintf(buf, sizeof buf, "%s{\"score\": {\"quantiles\": [0.5], \"fractions\": [0.5, -1]}}}",
             in);
    expect_error(t, buf, "training.score: fractions[1] must be a number in [0, 1]", NULL);
    snprintf(buf, sizeof buf, "%s{\"calibration\": {\"dense_inputs\": []}}}", in);
    expect_error(t, buf, "training.calibration: must be an object with 'dense_inputs'", NULL);
    snprintf(buf, sizeof buf, "%s{\"calibration\": {\"dense_inputs\": [{\"inputs\": 1, "
             "\"range\": 2}, {\"inputs\": 3, \"range\": 0}]}}}", in);
    expect_error(t, buf, "training.calibration.dense_inputs[1]", "'range' positive");
    snprintf(buf, sizeof buf, "%s{\"calibration\": {\"dense_inputs\": [{\"range\": 2}]}}}", in);
    expect_error(t, buf, "training.calibration.dense_inputs[0]", "'inputs' must be given");
    /* An input the block leaves out keeps the fallback. */
    snprintf(buf, sizeof buf, "%s{\"inputs\": []}}", in);
    if (sf_vars_load(&v, put(t, buf), err, sizeof err))
        fail_msg("%s", err);
    assert_true(v->has_training && !v->vars[0].training.given && v->vars[0].training.std == 1);
    sf_vars_free(v);
}

static void test_errors(void **state) {
    tmp *t = *state;
    sf_vars *v = (sf_vars *)1;
    char err[512];
    assert_int_equal(sf_vars_load(&v, "/nonexistent/vars.json", err, sizeof err), -1);
    assert_null(v);
    assert_non_null(strstr(err, "/nonexistent/vars.json"));

    expect_error(t, "{\"inputs\": [", "line 1", NULL);
    expect_error(t, "[1, 2]", "top level", NULL);
    expect_error(t, "{}", "'inputs' is missing", NULL);
    expect_error(t, "{\"inputs\": []}", "'inputs' must be a non-empty array", NULL);
    expect_error(t, "{\"inputs\": {}}", "'inputs' must be a non-empty array", NULL);
    const char *ok = "{\"name\": \"a\", \"offset\": 0, \"scale\": 1}";
    char buf[512];
    snprintf(buf, sizeof buf, "{\"inputs\": [%s, {\"offset\": 0, \"scale\": 1}]}", ok);
    expect_error(t, buf, "inputs[1]: 'name' is missing", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s, {\"name\": 3, \"offset\": 0, \"scale\": 1}]}", ok);
    expect_error(t, buf, "inputs[1]: 'name' must be a non-empty string", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s, {\"name\": \"\", \"offset\": 0, \"scale\": 1}]}",
             ok);
    expect_error(t, buf, "inputs[1]: 'name' must be a non-empty string", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s, {\"name\": \"b\", \"scale\": 1}]}", ok);
    expect_error(t, buf, "inputs[1] 'b': 'offset' is missing", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s, {\"name\": \"b\", \"offset\": 1}]}", ok);
    expect_error(t, buf, "inputs[1] 'b': 'scale' is missing", NULL);
    expect_error(t, "{\"inputs\": [{\"name\": \"a\", \"offset\": 0, \"scale\": 1}, "
                    "{\"name\": \"b\", \"offset\": 0, \"scale\": 1}, "
                    "{\"name\": \"c\", \"offset\": 0, \"scale\": 1}, "
                    "{\"name\": \"d\", \"offset\": 0, \"scale\": \"2\"}]}",
                 "inputs[3] 'd': 'scale' must be a number", "got a string");
    expect_error(t, "{\"inputs\": [{\"name\": \"a\", \"offset\": true, \"scale\": 1}]}",
                 "inputs[0] 'a': 'offset' must be a number", "boolean");
    expect_error(t, "{\"inputs\": [{\"name\": \"a\", \"offset\": 0, \"scale\": 1, "
                    "\"default\": \"x\"}]}",
                 "inputs[0] 'a': 'default' must be a number", NULL);
    expect_error(t, "{\"inputs\": [{\"name\": \"a\", \"offset\": 0, \"scale\": 1e39}]}",
                 "inputs[0] 'a': 'scale'", "float range");
    expect_error(t, "{\"inputs\": [3]}", "inputs[0]: must be an object", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s, %s]}", ok, ok);
    expect_error(t, buf, "inputs[1]: duplicate variable 'a'", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s], \"missing_value\": \"-999\"}", ok);
    expect_error(t, buf, "'missing_value' must be a number", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s], \"class_labels\": \"s\"}", ok);
    expect_error(t, buf, "class_labels: must be an array", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s], \"class_labels\": [\"b\", 1]}", ok);
    expect_error(t, buf, "class_labels[1]: must be a non-empty string", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s], \"class_labels\": [\"b\", \"b\"]}", ok);
    expect_error(t, buf, "class_labels[1]: duplicate label 'b'", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s], \"inputs\": [%s]}", ok, ok);
    expect_error(t, buf, "duplicate", NULL);

    /* graph style */
    snprintf(buf, sizeof buf, "{\"inputs\": [{\"name\": \"n0\", \"variables\": [%s]}, "
                              "{\"name\": \"n1\", \"variables\": [%s]}]}", ok, ok);
    expect_error(t, buf, "2 input nodes", "exactly one");
    expect_error(t, "{\"inputs\": [{\"name\": \"n0\", \"variables\": {}}]}",
                 "inputs[0]: 'variables' must be an array", NULL);
    expect_error(t, "{\"inputs\": [{\"name\": \"n0\", \"variables\": []}]}",
                 "inputs[0].variables: no input variables", NULL);
    expect_error(t, "{\"inputs\": [{\"name\": \"n0\", \"variables\": [{\"name\": \"a\", "
                    "\"offset\": 0}]}]}",
                 "inputs[0].variables[0] 'a': 'scale' is missing", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [{\"name\": \"n0\", \"variables\": [%s]}], "
                              "\"outputs\": [{\"labels\": [\"x\"]}, {\"labels\": [\"y\"]}]}", ok);
    expect_error(t, buf, "outputs: 2 output nodes", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [{\"name\": \"n0\", \"variables\": [%s]}], "
                              "\"outputs\": [{\"labels\": [\"x\", 2]}]}", ok);
    expect_error(t, buf, "outputs[0].labels[1]: must be a non-empty string", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [{\"name\": \"n0\", \"variables\": [%s]}], "
                              "\"input_sequences\": [{\"name\": \"s\"}]}", ok);
    expect_error(t, buf, "input_sequences", "not supported");
}

/* Configuration that used to load and then misbehave quietly (issue 15). */
static void test_refused_quietly_wrong(void **state) {
    tmp *t = *state;
    const char *ok = "{\"name\": \"a\", \"offset\": 0, \"scale\": 1}";
    char buf[512];
    /* scale 0 makes the input a constant */
    snprintf(buf, sizeof buf, "{\"inputs\": [%s, {\"name\": \"DER_met\", \"offset\": 3, "
                              "\"scale\": 0}]}", ok);
    expect_error(t, buf, "inputs[1] 'DER_met': 'scale' is 0", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s, {\"name\": \"b\", \"offset\": 3, "
                              "\"scale\": -0.0}]}", ok);
    expect_error(t, buf, "inputs[1] 'b': 'scale' is 0", NULL);
    /* an offset the float network cannot hold, and one JSON cannot hold */
    snprintf(buf, sizeof buf, "{\"inputs\": [{\"name\": \"PRI_met\", \"offset\": -1e300, "
                              "\"scale\": 1}]}");
    expect_error(t, buf, "inputs[0] 'PRI_met': 'offset'", "float range");
    expect_error(t, "{\"inputs\": [{\"name\": \"a\", \"offset\": 1e400, \"scale\": 1}]}",
                 "line 1", "overflow");
    /* empty labels: the outputs would print as "0", "1" */
    snprintf(buf, sizeof buf, "{\"inputs\": [%s], \"class_labels\": []}", ok);
    expect_error(t, buf, "class_labels: empty", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [{\"name\": \"n0\", \"variables\": [%s]}], "
                              "\"outputs\": [{\"labels\": []}]}", ok);
    expect_error(t, buf, "outputs[0].labels: empty", NULL);
    snprintf(buf, sizeof buf, "{\"inputs\": [%s], \"class_labels\": [\"b\", \"\"]}", ok);
    expect_error(t, buf, "class_labels[1]: must be a non-empty string", "\"\"");
    snprintf(buf, sizeof buf, "{\"inputs\": [%s], \"class_labels\": [\"s\", \"b\", \"s\"]}", ok);
    expect_error(t, buf, "class_labels[2]: duplicate label 's'", NULL);

    /* a directory, and a file that cannot be read, say so and name themselves */
    sf_vars *v = (sf_vars *)1;
    char err[512];
    assert_int_equal(sf_vars_load(&v, t->dir, err, sizeof err), -1);
    assert_null(v);
    char want[1024];
    snprintf(want, sizeof want, "%s: cannot read: it is a directory", t->dir);
    assert_string_equal(err, want);
    put(t, ok);
    assert_int_equal(chmod(t->path, 0), 0);
    if (geteuid() != 0) { /* root reads anything */
        assert_int_equal(sf_vars_load(&v, t->path, err, sizeof err), -1);
        snprintf(want, sizeof want, "%s: cannot read: Permission denied", t->path);
        assert_string_equal(err, want);
    }
    assert_int_equal(chmod(t->path, 0644), 0);
    assert_int_equal(sf_vars_load(&v, "/nonexistent/vars.json", err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/vars.json: cannot read: No such file or directory");

    /* labels that do not match the model's outputs name both files */
    snprintf(buf, sizeof buf, "{\"inputs\": [%s], \"class_labels\": [\"b\", \"s\"]}", ok);
    assert_int_equal(sf_vars_load(&v, put(t, buf), err, sizeof err), 0);
    sf_model m = {.path = "three.h5", .n_inputs = 1, .n_outputs = 3};
    assert_int_equal(sf_vars_bind(v, &m, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: 2 labels (b, ...) but model three.h5 has 3 outputs", t->path);
    assert_string_equal(err, want);
    sf_vars_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequential),
        cmocka_unit_test(test_graph),
        cmocka_unit_test_setup_teardown(test_default_labels, setup, teardown),
        cmocka_unit_test(test_bind_mismatch),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_training, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_quietly_wrong, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
