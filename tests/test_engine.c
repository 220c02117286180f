/* test_engine.c: the engine (engine.c) against the stages it puts together.
 *
 * Whatever command runs it, the engine must give each event what the
 * assembler, normalization and forward pass give it when called by hand, and
 * select by the rule the daemon documents (argmax on the signal label, a
 * threshold, or everything). Also what loading refuses and what a reload
 * yields. No broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigflow/engine.h"
#include "sigflow/infer.h"
#include "support.h"

#define N 100

static void conf_for(sf_engine_conf *c, size_t batch) {
    sf_engine_conf_init(c);
    c->model_path = SF_TEST_MODEL;
    c->vars_path = SF_TEST_VARS;
    c->batch_size = batch;
}

/* The engine's rows, probabilities, labels and ids are those of the stages
 * run by hand, bit for bit (threads = 1 on both sides). */
static void matches_the_stages(void **state) {
    (void)state;
    char **keys, **values;
    sft_atlas_events(N, &keys, &values);
    sf_engine_conf c;
    conf_for(&c, N);
    c.threads = 1;
    char err[512];
    sf_engine *e;
    if (sf_engine_load(&e, &c, err, sizeof err))
        fail_msg("%s", err);
    const sf_model *m = sf_engine_model(e);
    const sf_vars *v = sf_engine_vars(e);
    assert_int_equal(sf_engine_n_outputs(e), 2);
    assert_int_equal(sf_engine_threads(e), 1);

    sf_assembler *a = sf_assembler_new(v, "EventId");
    sf_infer *inf; /* the engine's backend and precision (auto, fp32) */
    if (sf_infer_open(&inf, m, N, &c.infer, err, sizeof err))
        fail_msg("%s", err);
    float *rows = malloc(N * m->n_inputs * sizeof *rows), *probs = malloc(N * 2 * sizeof *probs);
    assert_non_null(rows);
    assert_non_null(probs);
    sf_engine_clear(e);
    for (size_t i = 0; i < N; i++) {
        sf_event_id id;
        assert_int_equal(sf_assembler_run(a, values[i], strlen(values[i]), rows + i * m->n_inputs,
                                          &id, err, sizeof err), SF_REJECT_NONE);
        assert_int_equal(sf_engine_add(e, values[i], strlen(values[i]), err, sizeof err),
                         SF_REJECT_NONE);
    }
    assert_int_equal(sf_engine_rows(e), N);
    sf_features_normalize(v, SF_NORM_STANDARD, rows, N);
    sf_infer_run(inf, rows, N, probs);
    sf_engine_score(e);
    assert_memory_equal(sf_engine_probs(e, 0), probs, N * 2 * sizeof *probs);
    size_t signals = 0;
    for (size_t i = 0; i < N; i++) {
        assert_string_equal(sf_engine_id(e, i)->key, keys[i]);
        size_t label = sf_argmax(probs + 2 * i, 2);
        assert_int_equal(sf_engine_label(e, i), label);
        /* default selection: the argmax is "s" */
        assert_int_equal(sf_engine_selected(e, i), label == 1);
        signals += label == 1;
    }
    assert_true(signals > 0 && signals < N); /* the rule is exercised both ways */

    /* A rejected event leaves the batch as it was; a full batch refuses. */
    assert_int_equal(sf_engine_add(e, "{}", 2, err, sizeof err), SF_REJECT_TOO_LARGE);
    assert_non_null(strstr(err, "full"));
    sf_engine_clear(e);
    assert_int_equal(sf_engine_add(e, "[1]", 3, err, sizeof err), SF_REJECT_NOT_OBJECT);
    assert_int_equal(sf_engine_rows(e), 0);

    free(rows);
    free(probs);
    sf_infer_free(inf);
    sf_assembler_free(a);
    sf_engine_free(e);
    sft_strings_free(keys, N);
    sft_strings_free(values, N);
}

/* Threshold and emit-all selection, and the label they need. */
static void selection_rules(void **state) {
    (void)state;
    sf_engine_conf c;
    conf_for(&c, 4);
    char err[512];
    sf_engine *e;
    const float p[2] = {0.6f, 0.4f};

    c.threshold = 0.4;
    assert_int_equal(sf_engine_load(&e, &c, err, sizeof err), 0);
    assert_int_equal(sf_engine_signal_index(e), 1);
    assert_true(sf_engine_is_selected(e, p, 0));  /* P(s) >= 0.4 whatever the argmax */
    const float q[2] = {0.61f, 0.39f};
    assert_false(sf_engine_is_selected(e, q, 0));
    sf_engine_free(e);

    c.threshold = -1;
    c.emit = SF_EMIT_ALL;
    assert_int_equal(sf_engine_load(&e, &c, err, sizeof err), 0);
    assert_true(sf_engine_is_selected(e, q, 0));
    sf_engine_free(e);

    c.emit = SF_EMIT_SIGNAL;
    c.signal_label = "b";
    assert_int_equal(sf_engine_load(&e, &c, err, sizeof err), 0);
    assert_int_equal(sf_engine_signal_index(e), 0);
    assert_true(sf_engine_is_selected(e, q, 0));
    assert_false(sf_engine_is_selected(e, q, 1));
    sf_engine_free(e);

    c.signal_label = "higgs";
    assert_int_equal(sf_engine_load(&e, &c, err, sizeof err), -1);
    assert_null(e);
    assert_non_null(strstr(err, "no output label 'higgs'"));
}

/* What loading refuses, and the inspect-only engine without variables. */
static void load_errors_and_model_only(void **state) {
    (void)state;
    sf_engine_conf c;
    conf_for(&c, 8);
    char err[512];
    sf_engine *e;
    c.model_path = SF_SOURCE_DIR "/tests/fixtures/bad_conv1d.h5";
    assert_int_equal(sf_engine_load(&e, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "bad_conv1d.h5"));
    conf_for(&c, 0);
    assert_int_equal(sf_engine_load(&e, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "batch size"));

    conf_for(&c, 8);
    c.vars_path = NULL;
    c.threads = 1;
    assert_int_equal(sf_engine_load(&e, &c, err, sizeof err), 0);
    assert_null(sf_engine_vars(e));
    assert_int_equal(sf_engine_model(e)->n_inputs, 30);
    sf_engine_free(e);
    sf_engine_free(NULL);
}

/* A reload reads the files again into a new engine; the old one is intact. */
static void reload_gives_a_fresh_engine(void **state) {
    (void)state;
    sf_engine_conf c;
    conf_for(&c, 8);
    char err[512], desc[1024];
    sf_engine *e, *fresh;
    assert_int_equal(sf_engine_load(&e, &c, err, sizeof err), 0);
    assert_int_equal(sf_engine_reload(e, &fresh, err, sizeof err), 0);
    assert_ptr_not_equal(fresh, e);
    assert_string_equal(sf_engine_model(fresh)->sha256, sf_engine_model(e)->sha256);
    sf_engine_describe(fresh, desc, sizeof desc);
    assert_non_null(strstr(desc, "higgs_mlp.h5"));
    assert_non_null(strstr(desc, "select=argmax signal_label=s"));
    sf_engine_free(e);
    sf_engine_free(fresh);
}

/* A batch assembled in slots (as the daemon's threads do, here in reverse
 * order within odd chunks) is the batch sf_engine_add builds: the same rows,
 * ids, probabilities and defaulted counts, the refused events left out. For
 * a single model and for a set, whose higgs member refuses some events. */
static void slots_match_add(void **state) {
    (void)state;
    char **keys, **values;
    sft_atlas_events(N, &keys, &values);
    const char *models[] = {SF_TEST_MODEL, SF_SOURCE_DIR "/tests/fixtures/set_pair.json"};
    for (size_t t = 0; t < 2; t++) {
        sf_engine_conf c;
        conf_for(&c, N);
        c.model_path = models[t];
        c.vars_path = t ? NULL : SF_TEST_VARS;
        c.threads = 1;
        char err[512];
        sf_engine *byadd, *byslot;
        if (sf_engine_load(&byadd, &c, err, sizeof err) || sf_engine_load(&byslot, &c, err, sizeof err))
            fail_msg("%s", err);
        size_t refused = 0;
        for (size_t i = 0; i < N; i++)
            refused += sf_engine_add(byadd, values[i], strlen(values[i]), err, sizeof err) != SF_REJECT_NONE;
        for (size_t from = 0; from < N; from += 7) {
            size_t n = N - from < 7 ? N - from : 7;
            unsigned char keep[7];
            for (size_t j = n; j-- > 0;) {
                const char *v = values[from + j];
                keep[j] = sf_engine_assemble_slot(byslot, j, v, strlen(v), err, sizeof err) ==
                          SF_REJECT_NONE;
            }
            sf_engine_append_slots(byslot, keep, n);
        }
        assert_true(t == 0 ? refused == 0 : refused > 0);
        assert_int_equal(sf_engine_rows(byslot), N - refused);
        assert_int_equal(sf_engine_rows(byadd), N - refused);
        sf_engine_score(byadd);
        sf_engine_score(byslot);
        for (size_t i = 0; i < N - refused; i++) {
            assert_memory_equal(sf_engine_probs(byslot, i), sf_engine_probs(byadd, i), 2 * sizeof(float));
            assert_string_equal(sf_engine_id(byslot, i)->key, sf_engine_id(byadd, i)->key);
        }
        for (size_t i = 0; i < sf_engine_n_inputs(byadd); i++)
            assert_int_equal(sf_engine_take_defaulted(byslot, i), sf_engine_take_defaulted(byadd, i));
        sf_engine_free(byadd);
        sf_engine_free(byslot);
    }
    sft_strings_free(keys, N);
    sft_strings_free(values, N);
}

/* A set: the batch path (one parse, each member's gather) and the stage calls
 * on caller buffers (sigflow-bench's) give the same bits; each member's
 * probabilities are those of the member loaded alone, and the combined ones
 * their weighted mean; the member refusing an event is named. */
static void set_members(void **state) {
    (void)state;
    char **keys, **values;
    sft_atlas_events(N, &keys, &values);
    sf_engine_conf c;
    conf_for(&c, N);
    c.model_path = SF_SOURCE_DIR "/tests/fixtures/set_pair.json";
    c.vars_path = NULL;
    c.threads = 1;
    char err[512];
    sf_engine *e, *alone[2];
    if (sf_engine_load(&e, &c, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(sf_engine_n_members(e), 2);
    assert_non_null(sf_engine_set(e));
    assert_int_equal(sf_engine_n_inputs(e), 30);
    for (size_t k = 0; k < 2; k++) {
        sf_engine_member_info mi;
        assert_int_equal(sf_engine_member(e, k, &mi), 0);
        assert_string_equal(mi.name, k ? "higgs" : "mlp");
        sf_engine_conf one;
        conf_for(&one, N);
        one.model_path = mi.path;
        one.vars_path = mi.vars_path;
        one.threads = 1;
        if (sf_engine_load(&alone[k], &one, err, sizeof err))
            fail_msg("%s", err);
    }
    sf_engine_member_info mi;
    assert_int_equal(sf_engine_member(e, 2, &mi), -1);

    float *rows = malloc(N * 30 * sizeof *rows), *probs = malloc(N * 2 * sizeof *probs);
    assert_non_null(rows);
    assert_non_null(probs);
    size_t n = 0, refused = 0;
    for (size_t i = 0; i < N; i++) {
        size_t len = strlen(values[i]);
        sf_event_id id;
        sf_reject r = sf_engine_add(e, values[i], len, err, sizeof err);
        if (r != SF_REJECT_NONE) {
            /* Only the higgs member lacks a default (for DER_mass_MMC). */
            assert_int_equal(r, SF_REJECT_MISSING_FIELD);
            assert_non_null(strstr(err, "member 'higgs': field 'DER_mass_MMC'"));
            assert_int_equal(sf_engine_add(alone[1], values[i], len, err, sizeof err),
                             SF_REJECT_MISSING_FIELD);
            assert_int_equal(sf_engine_assemble(e, values[i], len, rows + n * 30, &id, err,
                                                sizeof err), SF_REJECT_MISSING_FIELD);
            refused++;
            continue;
        }
        assert_int_equal(sf_engine_assemble(e, values[i], len, rows + n * 30, &id, err, sizeof err),
                         SF_REJECT_NONE);
        assert_int_equal(sf_engine_add(alone[0], values[i], len, err, sizeof err), SF_REJECT_NONE);
        assert_int_equal(sf_engine_add(alone[1], values[i], len, err, sizeof err), SF_REJECT_NONE);
        n++;
    }
    assert_true(n > 0 && refused > 0);
    assert_int_equal(sf_engine_rows(e), n);
    assert_int_equal(sf_engine_rows(alone[0]), n);
    sf_engine_score(e);
    sf_engine_score(alone[0]);
    sf_engine_score(alone[1]);
    sf_engine_normalize_rows(e, rows, n); /* a set's rows stay raw: a no-op */
    sf_engine_infer_rows(e, rows, n, probs);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < 2; k++) {
            float p0 = sf_engine_member_probs(e, 0, i)[k], p1 = sf_engine_member_probs(e, 1, i)[k];
            assert_memory_equal(&p0, &sf_engine_probs(alone[0], i)[k], sizeof p0);
            assert_memory_equal(&p1, &sf_engine_probs(alone[1], i)[k], sizeof p1);
            float want = (float)(0.75 * p0 + 0.25 * p1);
            assert_memory_equal(&sf_engine_probs(e, i)[k], &want, sizeof want);
            assert_memory_equal(&probs[i * 2 + k], &want, sizeof want);
        }
    /* --threshold selects on the combined probabilities. Scored as the daemon
     * does, in chunks (odd ones here) whose forward passes run on the members'
     * helpers while the next chunk is added: the bits of sf_engine_score. */
    sf_engine *sel;
    c.emit = SF_EMIT_SIGNAL;
    c.threshold = 0.3;
    c.threads = 2;
    if (sf_engine_load(&sel, &c, err, sizeof err))
        fail_msg("%s", err);
    size_t selected = 0, started = 0;
    for (size_t i = 0; i < N; i++) {
        sf_engine_add(sel, values[i], strlen(values[i]), err, sizeof err);
        size_t rows = sf_engine_rows(sel);
        if (rows - started == 37 || i == N - 1) {
            if (started)
                sf_engine_infer_finish(sel);
            sf_engine_normalize_range(sel, started, rows - started);
            sf_engine_infer_start(sel, started, rows - started);
            started = rows;
        }
    }
    sf_engine_infer_finish(sel);
    assert_int_equal(sf_engine_rows(sel), n);
    for (size_t i = 0; i < n; i++) {
        assert_memory_equal(sf_engine_probs(sel, i), sf_engine_probs(e, i), 2 * sizeof(float));
        assert_int_equal(sf_engine_selected(sel, i), sf_engine_probs(e, i)[1] >= 0.3f);
        selected += (size_t)sf_engine_selected(sel, i);
    }
    assert_true(selected > 0 && selected < n);
    sf_engine_free(sel);

    /* sigflow-model of a set: its file's digest, then each member's model. */
    char digest[512], want_digest[512];
    sf_engine_member_info m0, m1;
    assert_int_equal(sf_engine_member(e, 0, &m0), 0);
    assert_int_equal(sf_engine_member(e, 1, &m1), 0);
    snprintf(want_digest, sizeof want_digest, "%s mlp=%s higgs=%s", sf_engine_set(e)->sha256,
             m0.model->sha256, m1.model->sha256);
    assert_int_equal(sf_engine_digest(e, digest, sizeof digest), (int)strlen(want_digest));
    assert_string_equal(digest, want_digest);
    assert_int_equal(sf_engine_digest(e, digest, 100), -1);

    /* Required inputs over the union: {} is refused by the first member,
     * naming every input it requires; an optional input both members
     * default is counted once per event, and only for accepted events. */
    sf_engine_clear(e);
    assert_int_equal(sf_engine_add(e, "{}", 2, err, sizeof err), SF_REJECT_MISSING_FIELD);
    assert_non_null(strstr(err, "member 'mlp': 19 required fields 'DER_"));
    size_t opt = sf_engine_n_inputs(e);
    for (size_t j = 0; j < sf_engine_n_inputs(e); j++) {
        sf_engine_take_defaulted(e, j); /* from zero */
        const char *name = sf_engine_input_name(e, j);
        int both = 0;
        for (size_t k = 0; k < 2; k++) {
            const sf_vars *v = (k ? m1 : m0).vars;
            for (size_t i = 0; i < v->n_vars; i++)
                both += !strcmp(v->vars[i].name, name) && v->vars[i].has_default;
        }
        if (both == 2 && opt == sf_engine_n_inputs(e))
            opt = j;
    }
    assert_true(opt < sf_engine_n_inputs(e));
    size_t accepted = 0;
    for (size_t i = 0; i < N && accepted < 3; i++) {
        char *event = sft_edit_field(values[i], sf_engine_input_name(e, opt), NULL);
        accepted += sf_engine_add(e, event, strlen(event), err, sizeof err) == SF_REJECT_NONE;
        free(event);
    }
    assert_int_equal(accepted, 3);
    assert_int_equal(sf_engine_take_defaulted(e, opt), 3);
    assert_int_equal(sf_engine_take_defaulted(e, opt), 0);

    char line[1024];
    assert_true(sf_engine_output(e, 0, 1, -1, 0, line, sizeof line) > 0);
    assert_non_null(strstr(line, "\"members\": {\"mlp\": ["));
    assert_true(sf_engine_output(alone[0], 0, 1, -1, 0, line, sizeof line) > 0);
    assert_null(strstr(line, "members")); /* a single model has none to add */
    free(rows);
    free(probs);
    sf_engine_free(alone[0]);
    sf_engine_free(alone[1]);
    sf_engine_free(e);
    sft_strings_free(keys, N);
    sft_strings_free(values, N);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(matches_the_stages),
        cmocka_unit_test(selection_rules),
        cmocka_unit_test(load_errors_and_model_only),
        cmocka_unit_test(reload_gives_a_fresh_engine),
        cmocka_unit_test(set_members),
        cmocka_unit_test(slots_match_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
