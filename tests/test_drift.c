/* test_drift.c: input and score drift (drift.h) end to end on the embedded
 * broker: the bundled sample replayed with one input scaled by 1.5 must show
 * on /metrics as that input's PSI above 0.2 while every other input stays
 * below 0.05, and in the periodic log line; a window in events holds what it
 * says. Live quality: the held-out events replayed with their truth 2 s
 * later give the accuracy and AUC of `sigflow evaluate` on the same events,
 * and the store stays within its bound when truth never comes. A shadow
 * identical to the serving model agrees on every event with |dp| = 0; one
 * with other weights agrees as `sigflow predict` of the two does offline.
 * With --shadow-topic, the identical shadow publishes the serving outputs'
 * events and probabilities, inside the --exactly-once transactions (read
 * back read_committed), and the other publishes what `sigflow predict` of
 * its model selects. The daemon runs as a real process, as in test_daemon. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "sigflow/vars.h"
#include "support.h"

#define WAIT_MS 60000
#define N_EVENTS 20000
/* The embedded broker answers a fetch only after the consumer's fetch.wait.max.ms
 * (bench/README.md): 500 ms per fetch would make the sample take minutes. */
#define FETCH_WAIT "fetch.wait.max.ms=5"
#define SCALED "DER_mass_vis" /* always defined, so every event is scaled */

/* The event with SCALED multiplied by 1.5. */
static char *scale_field(const char *event) {
    const char *at = strstr(event, "\"" SCALED "\":");
    assert_non_null(at);
    double x = strtod(at + strlen("\"" SCALED "\":"), NULL);
    char repl[64];
    snprintf(repl, sizeof repl, "%.9g", x * 1.5);
    char *out = sft_edit_field(event, SCALED, repl);
    assert_non_null(out);
    return out;
}

static double input_figure(int port, const char *family, const char *input) {
    char series[256];
    snprintf(series, sizeof series, "%s{input=\"%s\"}", family, input);
    return sft_scrape(port, series);
}

static void test_scaled_input(void **state) {
    (void)state;
    const char *topics[] = {"drift.in", "drift.out"};
    /* 8 partitions: the embedded broker keeps a few MB per partition, and the
     * sample is 14 MB of JSON. */
    sft_kafka *b = sft_kafka_open(8, topics, 2, NULL, 0);
    const char *bs = b->bootstrap;
    char **keys, **values;
    sft_atlas_events(N_EVENTS, &keys, &values);
    for (size_t i = 0; i < N_EVENTS; i++) {
        char *v = scale_field(values[i]);
        free(values[i]);
        values[i] = v;
    }
    assert_int_equal(sft_produce(bs, "drift.in", (const char *const *)keys,
                                 (const char *const *)values, NULL, N_EVENTS),
                     N_EVENTS);
    sft_strings_free(keys, N_EVENTS);
    sft_strings_free(values, N_EVENTS);

    /* The default window (50,000 events) holds the whole sample; the second
     * daemon's holds 2,000: 10 slices of 200, the oldest dropped whole. */
    const char *whole[] = {"--brokers", bs, "--input-topic", "drift.in", "--output-topic",
                           "drift.out", "--group", "drift-whole", "--model", SF_TEST_MODEL,
                           "--variables", SF_TEST_VARS, "-X", FETCH_WAIT, NULL};
    const char *small[] = {"--brokers", bs, "--input-topic", "drift.in", "--output-topic",
                           "drift.out", "--group", "drift-small", "--model", SF_TEST_MODEL,
                           "--variables", SF_TEST_VARS, "--drift-window-events", "2000", "-X", FETCH_WAIT, NULL};
    sft_daemon d, ds;
    sft_daemon_start(&d, whole, WAIT_MS);
    sft_daemon_start(&ds, small, WAIT_MS);
    /* Exported once a second: wait for the figures of the whole sample. */
    if (sft_wait_metric(&d, "sigflow_drift_window_events", N_EVENTS, WAIT_MS) != N_EVENTS) {
        char *body = NULL, *log = sft_read_file(d.log, NULL);
        sft_http_get(d.port, "/metrics", &body);
        fprintf(stderr, "%s\n---- daemon log\n%s", body ? body : "(no scrape)", log ? log : "");
        fail_msg("no drift figures for %d events", N_EVENTS);
    }
    assert_true(sft_wait_metric(&ds, "sigflow_events_predicted_total", N_EVENTS, WAIT_MS) ==
                N_EVENTS);

    sf_vars *v;
    char err[512];
    if (sf_vars_load(&v, SF_TEST_VARS, err, sizeof err))
        fail_msg("%s", err);
    double worst_other = 0;
    const char *worst = "";
    for (size_t i = 0; i < v->n_vars; i++) {
        const char *name = v->vars[i].name;
        double psi = input_figure(d.port, "sigflow_input_psi", name);
        double missing = input_figure(d.port, "sigflow_input_missing_ratio", name);
        if (isnan(psi) || isnan(missing))
            fail_msg("%s: no PSI or missing ratio exported", name);
        /* The sample holds training's rows: missing as often as in training. */
        double want = v->vars[i].training.missing_fraction;
        if (fabs(missing - want) > 0.02)
            fail_msg("%s: missing ratio %g, training's %g", name, missing, want);
        if (!strcmp(name, SCALED)) {
            printf("test_drift: %s scaled x1.5: PSI %.3f, mean shift %.3f std, std ratio %.3f\n",
                   name, psi, input_figure(d.port, "sigflow_input_mean_shift", name),
                   input_figure(d.port, "sigflow_input_std_ratio", name));
            assert_true(psi > 0.2);
            /* x1.5: the mean moves by mean/(2 std) training stds, the std by 1.5. */
            double shift = 0.5 * v->vars[i].training.mean / v->vars[i].training.std;
            assert_true(fabs(input_figure(d.port, "sigflow_input_mean_shift", name) - shift) <
                        0.05);
            assert_true(fabs(input_figure(d.port, "sigflow_input_std_ratio", name) - 1.5) < 0.1);
            continue;
        }
        if (psi > worst_other) {
            worst_other = psi;
            worst = name;
        }
        assert_true(fabs(input_figure(d.port, "sigflow_input_mean_shift", name)) < 0.05);
    }
    printf("test_drift: the other 29 inputs: largest PSI %.4f (%s)\n", worst_other, worst);
    assert_true(worst_other < 0.05);
    double score_psi = sft_scrape(d.port, "sigflow_score_psi");
    double rate = sft_scrape(d.port, "sigflow_signal_rate");
    printf("test_drift: score PSI %.3f, signal rate %.4f\n", score_psi, rate);
    assert_true(score_psi >= 0 && rate >= 0 && rate <= 1);

    /* The small window: between 9 and 10 slices of 200 events. */
    double in_small = sft_wait_metric(&ds, "sigflow_drift_window_events", 1800, WAIT_MS);
    assert_true(in_small >= 1800 && in_small <= 2000);
    assert_true(input_figure(ds.port, "sigflow_input_psi", SCALED) > 0.2);

    /* The periodic log line (every 10 s) names the drifting input. */
    assert_int_equal(sft_wait_for_text(d.log, "drift window_events=20000 warn_psi=0.2 psi_" SCALED
                                       "=", WAIT_MS), 1);
    assert_int_equal(sft_daemon_stop(&d, SIGTERM, WAIT_MS), 0);
    assert_int_equal(sft_daemon_stop(&ds, SIGTERM, WAIT_MS), 0);
    sft_daemon_free(&d);
    sft_daemon_free(&ds);
    sf_vars_free(v);
    sft_kafka_close(b);
}

/* The held-out rows of the sample (EventId % 10 == 9) as a CSV; caller frees. */
static char *heldout_csv(void) {
    char *all = sft_gunzip_temp(SF_TEST_DATA, ".csv");
    char *path = sft_temp_path(".csv");
    FILE *in = fopen(all, "r"), *out = fopen(path, "w");
    assert_non_null(in);
    assert_non_null(out);
    char line[4096];
    for (int n = 0; fgets(line, sizeof line, in); n++)
        if (!n || atol(line) % 10 == 9)
            fputs(line, out);
    fclose(in);
    fclose(out);
    unlink(all);
    free(all);
    return path;
}

/* sigflow evaluate's accuracy and AUC of the same events. */
static void evaluate(const char *csv, double *acc, double *auc) {
    char *out = sft_temp_path(".txt");
    char *const argv[] = {SF_TEST_SIGFLOW, "evaluate", "--model", SF_TEST_MODEL, "--variables",
                          SF_TEST_VARS, "--csv", (char *)csv, NULL};
    pid_t pid = sft_spawn(argv, NULL, out, NULL);
    assert_int_equal(sft_wait(pid, WAIT_MS), 0);
    char *text = sft_read_file(out, NULL);
    const char *a = strstr(text, "accuracy"), *r = strstr(text, "roc auc");
    assert_true(a && r);
    *acc = atof(a + strlen("accuracy"));
    *auc = atof(r + strlen("roc auc"));
    free(text);
    unlink(out);
    free(out);
}

static void test_live_quality(void **state) {
    (void)state;
    const char *topics[] = {"truth.in", "truth.out", "truth.labels", "quiet.in", "quiet.labels"};
    sft_kafka *b = sft_kafka_open(4, topics, 5, NULL, 0);
    const char *bs = b->bootstrap;
    char *csv = heldout_csv();
    const char *args[] = {"--brokers", bs, "--input-topic", "truth.in", "--output-topic",
                          "truth.out", "--group", "truth", "--model", SF_TEST_MODEL,
                          "--variables", SF_TEST_VARS, "--truth-topic", "truth.labels",
                          "-X", FETCH_WAIT, NULL};
    /* Truth never comes: 300 events through a store of 100. */
    const char *quiet[] = {"--brokers", bs, "--input-topic", "quiet.in", "--output-topic",
                           "truth.out", "--group", "quiet", "--model", SF_TEST_MODEL,
                           "--variables", SF_TEST_VARS, "--truth-topic", "quiet.labels",
                           "--truth-window-events", "100", "-X", FETCH_WAIT, NULL};
    sft_daemon d, dq;
    sft_daemon_start(&d, args, WAIT_MS);
    sft_daemon_start(&dq, quiet, WAIT_MS);
    assert_int_equal(sft_wait_for_text(d.log, "truth topic=truth.labels partitions=4 from=end",
                                       WAIT_MS), 1);
    /* The events' partitions assigned, so the replay is read as it comes. */
    assert_true(sft_wait_metric(&d, "sigflow_assigned_partitions", 4, WAIT_MS) == 4);
    assert_true(sft_wait_metric(&dq, "sigflow_assigned_partitions", 4, WAIT_MS) == 4);
    /* Truth that cannot say: counted as malformed, never stored. */
    assert_int_equal(sft_wait_for_text(dq.log, "truth topic=quiet.labels partitions=4 from=end",
                                       WAIT_MS), 1);
    const char *bad_truth[] = {"not json", "{\"EventId\": null, \"Label\": \"s\"}",
                               "{\"EventId\": 1, \"Label\": \"x\"}",
                               "{\"EventId\": 1, \"Label\": 5}",
                               "{\"EventId\": [1], \"Label\": \"s\"}", "{\"EventId\": 1}",
                               "{\"Label\": \"b\"}"};
    enum { N_BAD_TRUTH = sizeof bad_truth / sizeof bad_truth[0] };
    assert_int_equal(sft_produce(bs, "quiet.labels", NULL, bad_truth, NULL, N_BAD_TRUTH),
                     N_BAD_TRUTH);
    const char *extra[] = {"-f", csv, "--truth-topic", "truth.labels", "--truth-delay-s", "2",
                           NULL};
    char *replay_log = sft_temp_path(".log");
    pid_t replay = sft_replay_spawn(bs, "truth.in", "2000", extra, replay_log);
    char **keys, **values;
    sft_atlas_events(300, &keys, &values);
    assert_int_equal(sft_produce(bs, "quiet.in", (const char *const *)keys,
                                 (const char *const *)values, NULL, 300), 300);
    sft_strings_free(keys, 300);
    sft_strings_free(values, 300);
    assert_int_equal(sft_wait(replay, WAIT_MS), 0);

    if (sft_wait_metric(&d, "sigflow_truth_joined_total", 2000, WAIT_MS) != 2000) {
        char *body = NULL, *log = sft_read_file(d.log, NULL);
        sft_http_get(d.port, "/metrics", &body);
        const char *t = body ? strstr(body, "# HELP sigflow_truth") : NULL;
        char *rl = sft_read_file(replay_log, NULL);
        fprintf(stderr, "%s\n---- daemon log\n%s---- replay\n%s", t ? t : "(no truth series)",
                log ? log : "", rl ? rl : "");
        fail_msg("truth not joined; %lld truth messages on the topic", (long long)sft_topic_end(bs, "truth.labels"));
    }
    double acc, auc;
    evaluate(csv, &acc, &auc);
    double live_acc = sft_scrape(d.port, "sigflow_live_accuracy{model=\"serving\"}");
    double live_auc = sft_scrape(d.port, "sigflow_live_auc{model=\"serving\"}");
    double bound = sft_scrape(d.port, "sigflow_live_auc_error_bound{model=\"serving\"}");
    printf("test_drift: live accuracy %.6f AUC %.6f (error bound %.2g); evaluate %.6f %.6f; "
           "log loss %.4f, ECE %.4f, signal efficiency %.4f, background rejection %.4f\n",
           live_acc, live_auc, bound, acc, auc,
           sft_scrape(d.port, "sigflow_live_log_loss{model=\"serving\"}"),
           sft_scrape(d.port, "sigflow_live_ece{model=\"serving\"}"),
           sft_scrape(d.port, "sigflow_live_signal_efficiency{model=\"serving\"}"),
           sft_scrape(d.port, "sigflow_live_background_rejection{model=\"serving\"}"));
    assert_true(fabs(live_acc - acc) < 1e-6); /* evaluate prints 6 decimals */
    assert_true(bound < 2e-3);
    assert_true(fabs(live_auc - auc) <= bound + 1e-6);
    assert_true(sft_scrape(d.port, "sigflow_truth_unmatched_total{reason=\"no_prediction\"}") == 0);
    assert_true(sft_scrape(d.port, "sigflow_truth_unmatched_total{reason=\"malformed\"}") == 0);

    assert_true(sft_wait_metric(&dq, "sigflow_events_predicted_total", 300, WAIT_MS) == 300);
    assert_true(sft_wait_metric(&dq, "sigflow_truth_expired_predictions_total", 200, WAIT_MS) ==
                200);
    assert_true(sft_scrape(dq.port, "sigflow_truth_store_events") == 100);
    assert_true(sft_wait_metric(&dq, "sigflow_truth_unmatched_total{reason=\"malformed\"}",
                                N_BAD_TRUTH, WAIT_MS) == N_BAD_TRUTH);
    assert_true(isnan(sft_scrape(dq.port, "sigflow_live_accuracy{model=\"serving\"}")));

    assert_int_equal(sft_daemon_stop(&d, SIGTERM, WAIT_MS), 0);
    assert_int_equal(sft_daemon_stop(&dq, SIGTERM, WAIT_MS), 0);
    sft_daemon_free(&d);
    sft_daemon_free(&dq);
    unlink(csv);
    free(csv);
    unlink(replay_log);
    free(replay_log);
    sft_kafka_close(b);
}

/* `sigflow predict` of the events in path: its output lines. */
static char *predict(const char *model, const char *vars, const char *path) {
    char *out = sft_temp_path(".jsonl");
    char *const argv[] = {SF_TEST_SIGFLOW, "predict", "--model", (char *)model, "--variables",
                          (char *)vars, NULL};
    pid_t pid = sft_spawn(argv, path, out, NULL);
    assert_int_equal(sft_wait(pid, WAIT_MS), 0);
    char *text = sft_read_file(out, NULL);
    assert_non_null(text);
    unlink(out);
    free(out);
    return text;
}

/* The labels of predict's output, one char per event ('s', 'b'). */
static char *predict_labels(const char *text, size_t n) {
    char *labels = calloc(n + 1, 1);
    size_t k = 0;
    for (const char *at = text; k < n && (at = strstr(at, "\"label\": \"")); at++)
        labels[k++] = at[strlen("\"label\": \"")];
    assert_int_equal(k, n);
    return labels;
}

/* Output line -> its EventId (as JSON text) and its probabilities, added to
 * `into`; only the lines labelled "s" when signals_only (predict's lines are
 * every event's; the daemon publishes the signals). */
static void add_output(json_t *into, const char *line, size_t len, int signals_only) {
    json_error_t jerr;
    json_t *o = json_loadb(line, len, 0, &jerr);
    if (!o)
        fail_msg("not an output line: %s: %.*s", jerr.text, (int)len, line);
    const char *label = json_string_value(json_object_get(o, "label"));
    if (!signals_only || (label && !strcmp(label, "s"))) {
        char *id = json_dumps(json_object_get(o, "EventId"), JSON_ENCODE_ANY);
        assert_non_null(id);
        assert_null(json_object_get(into, id)); /* each event once */
        json_object_set(into, id, json_object_get(o, "probabilities"));
        free(id);
    }
    json_decref(o);
}

/* The topic's outputs by event; each carries sigflow-model: model_sha and,
 * when shadow, sigflow-shadow: 1 (and, when not, no such header). */
static json_t *topic_outputs(const sft_msgs *m, const char *model_sha, int shadow) {
    json_t *by_id = json_object();
    char want[256];
    snprintf(want, sizeof want, "sigflow-model=%s\n", model_sha);
    for (size_t i = 0; i < m->n; i++) {
        if (!strstr(m->v[i].headers, want))
            fail_msg("output without %s: headers %s", want, m->v[i].headers);
        assert_int_equal(strstr(m->v[i].headers, "sigflow-shadow=1\n") != NULL, shadow);
        add_output(by_id, m->v[i].value, m->v[i].len, 0);
    }
    return by_id;
}

/* The same events with the same probabilities (within tol). */
static void assert_same_outputs(const char *what, json_t *want, json_t *got, double tol) {
    if (json_object_size(got) != json_object_size(want))
        fail_msg("%s: %zu outputs, %zu expected", what, json_object_size(got),
                 json_object_size(want));
    const char *id;
    json_t *pw;
    json_object_foreach(want, id, pw) {
        json_t *pg = json_object_get(got, id);
        if (!pg || json_array_size(pg) != json_array_size(pw))
            fail_msg("%s: event %s missing or of another shape", what, id);
        for (size_t k = 0; k < json_array_size(pw); k++) {
            double a = json_number_value(json_array_get(pw, k));
            double b = json_number_value(json_array_get(pg, k));
            if (fabs(a - b) > tol)
                fail_msg("%s: event %s p[%zu] %.9g, %.9g expected", what, id, k, b, a);
        }
    }
}

/* The sha256 of a model file, as `sigflow inspect` and sigflow-model name it. */
static char *model_sha(const char *path) {
    char *out = sft_temp_path(".txt");
    char *const argv[] = {"/usr/bin/sha256sum", (char *)path, NULL};
    assert_int_equal(sft_wait(sft_spawn(argv, NULL, out, NULL), WAIT_MS), 0);
    char *text = sft_read_file(out, NULL);
    assert_non_null(text);
    text[strcspn(text, " ")] = '\0';
    unlink(out);
    free(out);
    return text;
}

static void test_shadow(void **state) {
    (void)state;
    enum { N = 2000 };
    const char *topics[] = {"shadow.in", "shadow.out", "shadow.out.tf", "shadow.same",
                            "shadow.tf"};
    sft_kafka *b = sft_kafka_open(4, topics, 5, NULL, 0);
    const char *bs = b->bootstrap;
    char **keys, **values;
    sft_atlas_events(N, &keys, &values);
    assert_int_equal(sft_produce(bs, "shadow.in", (const char *const *)keys,
                                 (const char *const *)values, NULL, N), N);
    char *events = sft_temp_path(".jsonl");
    FILE *f = fopen(events, "w");
    for (size_t i = 0; i < N; i++)
        fprintf(f, "%s\n", values[i]);
    fclose(f);
    sft_strings_free(keys, N);
    sft_strings_free(values, N);
    const char *tf = SF_SOURCE_DIR "/models/higgs_mlp_tf.h5";
    const char *tf_vars = SF_SOURCE_DIR "/models/higgs_variables_tf.json";
    const char *same[] = {"--brokers", bs, "--input-topic", "shadow.in", "--output-topic",
                          "shadow.out", "--group", "shadow-same", "--model", SF_TEST_MODEL,
                          "--variables", SF_TEST_VARS, "--shadow-model", SF_TEST_MODEL,
                          "--shadow-variables", SF_TEST_VARS, "--shadow-topic", "shadow.same",
                          "--exactly-once", "--transactional-id", "shadow-same",
                          "-X", FETCH_WAIT, NULL};
    const char *other[] = {"--brokers", bs, "--input-topic", "shadow.in", "--output-topic",
                           "shadow.out.tf", "--group", "shadow-tf", "--model", SF_TEST_MODEL,
                           "--variables", SF_TEST_VARS, "--shadow-model", tf,
                           "--shadow-variables", tf_vars, "--shadow-topic", "shadow.tf",
                           "-X", FETCH_WAIT, NULL};
    sft_daemon d, dt;
    sft_daemon_start(&d, same, WAIT_MS);
    sft_daemon_start(&dt, other, WAIT_MS);
    assert_true(sft_wait_metric(&d, "sigflow_shadow_abs_dp_count", N, WAIT_MS) == N);
    assert_true(sft_wait_metric(&dt, "sigflow_shadow_abs_dp_count", N, WAIT_MS) == N);
    /* The gauges are exported each second, together: the drift window's
     * count says when the export covers every event. */
    assert_true(sft_wait_metric(&d, "sigflow_drift_window_events", N, WAIT_MS) == N);
    assert_true(sft_wait_metric(&dt, "sigflow_drift_window_events", N, WAIT_MS) == N);
    assert_true(sft_scrape(d.port, "sigflow_shadow_agreement") == 1);
    assert_true(sft_scrape(d.port, "sigflow_shadow_abs_dp_bucket{le=\"1e-07\"}") == N);
    assert_true(sft_scrape(d.port, "sigflow_shadow_refused_total") == 0);

    char *serving_text = predict(SF_TEST_MODEL, SF_TEST_VARS, events);
    char *shadow_text = predict(tf, tf_vars, events);
    char *serving = predict_labels(serving_text, N), *shadow = predict_labels(shadow_text, N);
    size_t agree = 0;
    for (size_t i = 0; i < N; i++)
        agree += serving[i] == shadow[i];
    double live = sft_scrape(dt.port, "sigflow_shadow_agreement");
    printf("test_drift: shadow tf against numpy: agreement %.4f live, %.4f offline (predict)\n",
           live, (double)agree / N);
    assert_true(agree < N);
    assert_true(fabs(live - (double)agree / N) < 1e-9);
    assert_true(sft_scrape(dt.port, "sigflow_shadow_abs_dp_bucket{le=\"1e-07\"}") < N);

    /* --shadow-topic: the identical shadow publishes the serving outputs'
     * events and probabilities, committed in the same transactions; the
     * other publishes what predict of its model selects. */
    size_t signals = 0, tf_signals = 0;
    for (size_t i = 0; i < N; i++) {
        signals += serving[i] == 's';
        tf_signals += shadow[i] == 's';
    }
    assert_true(sft_wait_metric(&d, "sigflow_shadow_published_total", (double)signals, WAIT_MS) ==
                (double)signals);
    assert_true(sft_wait_metric(&dt, "sigflow_shadow_published_total", (double)tf_signals,
                                WAIT_MS) == (double)tf_signals);
    char *sha = model_sha(SF_TEST_MODEL), *tf_sha = model_sha(tf);
    sft_msgs out = sft_consume_all(bs, "shadow.out", signals, 500, WAIT_MS, 1);
    sft_msgs shadow_out = sft_consume_all(bs, "shadow.same", signals, 500, WAIT_MS, 1);
    sft_msgs tf_out = sft_consume_all(bs, "shadow.tf", tf_signals, 500, WAIT_MS, 0);
    json_t *want = topic_outputs(&out, sha, 0), *got = topic_outputs(&shadow_out, sha, 1);
    assert_int_equal(json_object_size(want), signals);
    assert_same_outputs("identical shadow, read_committed", want, got, 0);
    json_t *tf_want = json_object(), *tf_got = topic_outputs(&tf_out, tf_sha, 1);
    for (const char *line = shadow_text; *line;) {
        size_t len = strcspn(line, "\n");
        if (len)
            add_output(tf_want, line, len, 1);
        line += len + (line[len] == '\n');
    }
    /* Scored in other batches than predict's: BLAS may round differently. */
    assert_same_outputs("tf shadow against predict", tf_want, tf_got, 1e-6);
    printf("test_drift: --shadow-topic: %zu shadow outputs equal to the serving ones "
           "(read_committed), %zu equal to predict of the tf model within 1e-6\n",
           json_object_size(got), json_object_size(tf_got));
    json_decref(want);
    json_decref(got);
    json_decref(tf_want);
    json_decref(tf_got);
    sft_msgs_free(&out);
    sft_msgs_free(&shadow_out);
    sft_msgs_free(&tf_out);
    free(sha);
    free(tf_sha);

    /* SIGHUP reloads the shadow with the serving model. */
    kill(dt.pid, SIGHUP);
    assert_int_equal(sft_wait_for_text(dt.log, "reloaded shadow model=", WAIT_MS), 1);
    assert_int_equal(sft_daemon_stop(&d, SIGTERM, WAIT_MS), 0);
    assert_int_equal(sft_daemon_stop(&dt, SIGTERM, WAIT_MS), 0);
    sft_daemon_free(&d);
    sft_daemon_free(&dt);
    free(serving);
    free(shadow);
    free(serving_text);
    free(shadow_text);
    unlink(events);
    free(events);
    sft_kafka_close(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shadow),
        cmocka_unit_test(test_scaled_input),
        cmocka_unit_test(test_live_quality),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
