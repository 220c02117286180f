/* test_contract.c: what goes in is what gets scored (issue 23), end to end
 * through `sigflow run`, on the embedded broker and (test_contract_real) on
 * Apache Kafka.
 *
 * The shipped model with its variables file, in which every input is
 * required except one made optional here: an event lacking a required input,
 * `{}` and `{"foo":"bar"}` are dead letters with sigflow-error-code
 * missing_field, one lacking the optional input is scored and counted. Every
 * class of dead letter the daemon produces carries its code, and the input's
 * key, bytes and headers unchanged. Outputs are keyed by the event id, else by
 * the input's key, and carry the input's headers (traceparent included) and
 * sigflow-model; with --headers none only sigflow-model. test_topics: topic
 * creation, names, missing topics and subscriptions to lists and patterns.
 * test_model_header_reload: sigflow-model across a SIGHUP reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sigflow/model.h"
#include "support.h"

#define IN "contract.events"
#define OUT "contract.signals"
#define OUT_BARE "contract.bare"
#define DLQ "contract.dlq"
#define WAIT_MS 60000
#define OPTIONAL_INPUT "DER_mass_MMC"
#define TRACE "traceparent=00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\n"

/* The shipped variables file with OPTIONAL_INPUT given a default. */
static char *vars_with_one_optional(void) {
    json_error_t jerr;
    json_t *root = json_load_file(SF_TEST_VARS, 0, &jerr);
    assert_non_null(root);
    json_t *first = json_array_get(json_object_get(root, "inputs"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "name")), OPTIONAL_INPUT);
    assert_null(json_object_get(first, "default"));
    json_object_set_new(first, "default", json_real(121.5));
    char *path = sft_temp_path(".json");
    assert_int_equal(json_dump_file(root, path, 0), 0);
    json_decref(root);
    return path;
}

typedef struct input {
    char *key;     /* NULL: none */
    char *value;
    size_t len;
    char *headers; /* as sft_msg.headers */
    const char *code;   /* dead letter: its sigflow-error-code; NULL: scored */
    const char *why;    /* dead letter: a substring of sigflow-error */
    const char *out_key; /* scored: the output's key */
} input;

static const input *find_input(const input *v, size_t n, const sft_msg *m) {
    for (size_t i = 0; i < n; i++)
        if (v[i].len == m->len && !memcmp(v[i].value, m->value, m->len))
            return &v[i];
    return NULL;
}

static void test_contract(void **state) {
    (void)state;
    const char *topics[] = {IN, OUT, OUT_BARE, DLQ};
    sft_kafka *b = sft_kafka_open(4, topics, 4, NULL, 0);
    const char *bs = b->bootstrap;
    char *vars = vars_with_one_optional();
    char err[512];
    sf_model *model;
    if (sf_model_load(&model, SF_TEST_MODEL, NULL, NULL, err, sizeof err))
        fail_msg("%s", err);

    const size_t n_atlas = 12;
    char **keys, **values;
    sft_atlas_events(n_atlas, &keys, &values);
    input in[32];
    size_t n = 0, n_scored = 0, n_dead = 0, n_optional = 0;
    char *long_id = malloc(300);
    assert_non_null(long_id);
    memset(long_id, '7', 299);
    long_id[299] = '\0';
    for (size_t i = 0; i < n_atlas; i++) {
        input *e = &in[n++];
        memset(e, 0, sizeof *e);
        char hdr[256];
        snprintf(hdr, sizeof hdr, "%sx-tenant=t%zu\n", i % 3 ? TRACE : "", i);
        e->headers = strdup(hdr);
        if (i < 4) { /* scored, keyed by the id */
            e->key = strdup(keys[i]);
            e->value = strdup(values[i]);
            e->out_key = keys[i];
        } else if (i < 7) { /* no id: keyed by the input's key */
            char k[32];
            snprintf(k, sizeof k, "in-key-%zu", i);
            e->key = strdup(k);
            e->value = sft_edit_field(values[i], "EventId", NULL);
            e->out_key = e->key;
        } else if (i < 9) { /* the optional input absent: scored and counted */
            e->key = strdup(keys[i]);
            e->value = sft_edit_field(values[i], OPTIONAL_INPUT, NULL);
            e->out_key = keys[i];
            n_optional++;
        } else if (i == 9) { /* a required input absent */
            e->key = strdup("dl-missing");
            e->value = sft_edit_field(values[i], "DER_mass_vis", NULL);
            e->code = "missing_field";
            e->why = "field 'DER_mass_vis' is missing and has no default";
        } else if (i == 10) {
            e->key = strdup("dl-string");
            e->value = sft_edit_field(values[i], "PRI_met", "\"16.8\"");
            e->code = "not_number";
            e->why = "'PRI_met'";
        } else {
            e->key = strdup("dl-range");
            e->value = sft_edit_field(values[i], "DER_mass_vis", "3.5e38");
            e->code = "not_finite";
            e->why = "'DER_mass_vis'";
        }
        e->len = strlen(e->value);
    }
    struct { const char *key, *value, *code, *why; } bad[] = {
        {"dl-empty-object", "{}", "missing_field", "29 required fields 'DER_mass_transverse_met_lep'"},
        {"dl-foo", "{\"foo\":\"bar\"}", "missing_field", "29 required fields"},
        {"dl-json", "this is {not json", "not_json", "invalid JSON"},
        {NULL, "[1, 2, 3]", "not_object", "object"},
        {"dl-id", NULL, "too_large", "id longer than"},
        {"dl-big", NULL, "too_large", "exceeds the limit of 4096 bytes"},
    };
    for (size_t j = 0; j < sizeof bad / sizeof bad[0]; j++) {
        input *e = &in[n++];
        memset(e, 0, sizeof *e);
        e->key = bad[j].key ? strdup(bad[j].key) : NULL;
        if (j == 4) { /* an id over 127 bytes */
            char id[320];
            snprintf(id, sizeof id, "\"%s\"", long_id);
            e->value = sft_edit_field(values[0], "EventId", id);
        } else if (j == 5) { /* over --max-event-bytes */
            e->value = malloc(6000);
            assert_non_null(e->value);
            snprintf(e->value, 6000, "{\"pad\": \"%04990d\"}", 0);
        } else {
            e->value = strdup(bad[j].value);
        }
        e->len = strlen(e->value);
        e->headers = strdup(j % 2 ? TRACE "x-dup=1\nx-dup=2\n" : "");
        e->code = bad[j].code;
        e->why = bad[j].why;
    }
    const char *k[32], *v[32], *h[32];
    size_t lens[32];
    for (size_t i = 0; i < n; i++) {
        k[i] = in[i].key;
        v[i] = in[i].value;
        h[i] = in[i].headers;
        lens[i] = in[i].len;
        n_scored += !in[i].code;
        n_dead += !!in[i].code;
    }
    assert_int_equal(sft_produce_headers(bs, IN, k, v, lens, h, n), n);

    const char *args[] = {"--brokers", bs, "--input-topic", IN, "--output-topic", OUT,
                          "--dlq-topic", DLQ, "--group", "contract", "--model", SF_TEST_MODEL,
                          "--variables", vars, "--emit", "all", "--max-event-bytes", "4096", NULL};
    const char *bare_args[] = {"--brokers", bs, "--input-topic", IN, "--output-topic", OUT_BARE,
                               "--group", "contract-bare", "--model", SF_TEST_MODEL,
                               "--variables", vars, "--emit", "all", "--headers", "none", NULL};
    sft_daemon d, dn;
    sft_daemon_start(&d, args, WAIT_MS);
    sft_daemon_start(&dn, bare_args, WAIT_MS);
    sft_msgs out = sft_consume_all(bs, OUT, n_scored, 1000, WAIT_MS, 0);
    sft_msgs bare = sft_consume_all(bs, OUT_BARE, n_scored, 1000, WAIT_MS, 0);
    sft_msgs dlq = sft_consume_all(bs, DLQ, n_dead, 1000, WAIT_MS, 0);
    char series[128];
    snprintf(series, sizeof series, "sigflow_defaulted_inputs_total{input=\"%s\"}", OPTIONAL_INPUT);
    assert_true(sft_wait_metric(&d, "sigflow_events_consumed_total", (double)n, WAIT_MS) == n);
    assert_true(sft_scrape(d.port, series) == (double)n_optional);
    assert_true(sft_scrape(d.port, "sigflow_events_rejected_total{reason=\"missing_field\"}") ==
                3);
    assert_int_equal(sft_daemon_stop(&d, SIGTERM, WAIT_MS), 0);
    assert_int_equal(sft_daemon_stop(&dn, SIGTERM, WAIT_MS), 0);
    assert_int_equal(out.n, n_scored);
    assert_int_equal(bare.n, n_scored);
    assert_int_equal(dlq.n, n_dead);

    char model_hdr[128];
    snprintf(model_hdr, sizeof model_hdr, "sigflow-model=%s\n", model->sha256);
    for (size_t i = 0; i < out.n; i++) {
        const sft_msg *m = &out.v[i];
        const input *e = find_input(in, n, m);
        assert_null(e); /* an output is a prediction, not its input */
        /* The input is found by its x-tenant header, one per event. */
        const char *t = strstr(m->headers, "x-tenant=");
        assert_non_null(t);
        char line[64];
        snprintf(line, sizeof line, "%.*s", (int)strcspn(t, "\n") + 1, t);
        for (size_t j = 0; j < n && !e; j++)
            if (strstr(in[j].headers, line))
                e = &in[j];
        if (!e)
            fail_msg("output %zu: headers '%s' are no input's", i, m->headers);
        assert_null(e->code);
        char want[512];
        snprintf(want, sizeof want, "%s%s", e->headers, model_hdr);
        if (strcmp(m->headers, want))
            fail_msg("output keyed %s: headers '%s', expected '%s'", m->key, m->headers, want);
        if (!m->key || strcmp(m->key, e->out_key))
            fail_msg("output: key '%s', expected '%s'", m->key ? m->key : "(null)", e->out_key);
    }
    for (size_t i = 0; i < bare.n; i++) {
        if (strcmp(bare.v[i].headers, model_hdr))
            fail_msg("--headers none: headers '%s'", bare.v[i].headers);
        assert_non_null(bare.v[i].key);
    }
    for (size_t i = 0; i < dlq.n; i++) {
        const sft_msg *m = &dlq.v[i];
        const input *e = find_input(in, n, m);
        if (!e)
            fail_msg("dead letter %zu: its bytes are no input's", i);
        if (!e->code)
            fail_msg("a valid event went to the dead letters: %s (%s)", e->value, m->error_header);
        if (e->key)
            assert_true(m->key && !strcmp(m->key, e->key));
        else
            assert_null(m->key);
        /* The input's headers first, unchanged, then sigflow's three. */
        if (strncmp(m->headers, e->headers, strlen(e->headers)))
            fail_msg("dead letter %s: headers '%s' do not start with the input's '%s'",
                     e->code, m->headers, e->headers);
        char code[64];
        snprintf(code, sizeof code, "\nsigflow-error-code=%s\nsigflow-source=" IN "/", e->code);
        if (!strstr(m->headers + strlen(e->headers), code) ||
            strncmp(m->headers + strlen(e->headers), "sigflow-error=", 14))
            fail_msg("dead letter %s: headers '%s'", e->code, m->headers);
        if (!m->error_header || !strstr(m->error_header, e->why))
            fail_msg("dead letter %s: sigflow-error '%s' does not say '%s'", e->code,
                     m->error_header ? m->error_header : "(none)", e->why);
        print_message("dead letter %-16s %-13s %s\n", m->key ? m->key : "(no key)", e->code,
                      m->error_header);
    }

    sft_msgs_free(&out);
    sft_msgs_free(&bare);
    sft_msgs_free(&dlq);
    sft_daemon_free(&d);
    sft_daemon_free(&dn);
    for (size_t i = 0; i < n; i++) {
        free(in[i].key);
        free(in[i].value);
        free(in[i].headers);
    }
    free(long_id);
    sft_strings_free(keys, n_atlas);
    sft_strings_free(values, n_atlas);
    sf_model_free(model);
    unlink(vars);
    free(vars);
    sft_kafka_close(b);
}

/* Partitions of topic, -1 when it does not exist (all topics' metadata:
 * naming it would have the embedded broker create it). */
static int partitions_of(const char *brokers, const char *topic) {
    rd_kafka_t *rk = sft_client(RD_KAFKA_PRODUCER, brokers, NULL);
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000))
        fail_msg("no metadata from %s", brokers);
    int n = -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, topic) && !md->topics[i].err)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_destroy(rk);
    return n;
}

/* Runs a command to its end; its exit status, stderr in *err_text. */
static int run_cmd(const char *const *argv, char **err_text) {
    char *out = sft_temp_path(".out"), *err = sft_temp_path(".err");
    int rc = sft_wait(sft_spawn((char *const *)argv, NULL, out, err), WAIT_MS);
    *err_text = sft_read_file(err, NULL);
    assert_non_null(*err_text);
    unlink(out);
    unlink(err);
    free(out);
    free(err);
    return rc;
}

/* Topics: replay creates a missing topic with the partitions asked (the
 * embedded broker, which has no Admin API, with its own count, and says so);
 * an illegal name is a usage error for replay and run; the daemon refuses a
 * missing output topic naming it, creates it with --create-topics, and
 * subscribes to a list of topics and to a regular expression. */
static void test_topics(void **state) {
    (void)state;
    const char *topics[] = {"contract.t.out", "contract.list.a", "contract.list.b",
                            "contract.rx.one", "contract.rx.two"};
    sft_kafka *b = sft_kafka_open(2, topics, 5, NULL, 0);
    const char *bs = b->bootstrap;
    char fresh[64], *err;
    snprintf(fresh, sizeof fresh, "contract.fresh.%d", (int)getpid());
    assert_int_equal(partitions_of(bs, fresh), -1);
    const char *replay[] = {SF_BUILD_DIR "/sigflow-replay", "-b", bs, "-t", fresh, "-f",
                            SF_TEST_DATA, "--limit", "20", "--partitions", "3", "-q", NULL};
    int rc = run_cmd(replay, &err);
    if (rc != 0)
        fail_msg("replay onto a missing topic: exit %d: %s", rc, err);
    int parts = partitions_of(bs, fresh);
    if (b->real) {
        assert_int_equal(parts, 3);
        assert_non_null(strstr(err, "created topic"));
    } else {
        assert_true(parts > 0);
        if (parts != 3)
            assert_non_null(strstr(err, "not the 3 asked"));
        print_message("embedded broker: topic created with its own %d partitions (no Admin "
                      "API): %s", parts, err);
    }
    free(err);
    assert_int_equal(sft_topic_end(bs, fresh), 20);

    /* Illegal names: usage errors, nothing created. */
    const char *bad_replay[] = {SF_BUILD_DIR "/sigflow-replay", "-b", bs, "-t", "a,b", "-f",
                                SF_TEST_DATA, NULL};
    assert_int_equal(run_cmd(bad_replay, &err), 2);
    assert_non_null(strstr(err, "topic name 'a,b' has ','"));
    free(err);
    char long_name[260];
    memset(long_name, 'x', 250);
    long_name[250] = '\0';
    const char *bad_run[] = {SF_TEST_SIGFLOW, "run", "--brokers", bs, "--model", SF_TEST_MODEL,
                             "--variables", SF_TEST_VARS, "--metrics-addr", "none",
                             "--dlq-topic", long_name, NULL};
    assert_int_equal(run_cmd(bad_run, &err), 2);
    assert_non_null(strstr(err, "dead-letter topic: topic name"));
    assert_non_null(strstr(err, "at most 249"));
    free(err);
    /* The shadow's outputs never go to the output topic, and need a shadow. */
    const char *shadow_out[] = {SF_TEST_SIGFLOW, "run", "--brokers", bs, "--model",
                                SF_TEST_MODEL, "--variables", SF_TEST_VARS, "--metrics-addr",
                                "none", "--shadow-model", SF_TEST_MODEL, "--shadow-variables",
                                SF_TEST_VARS, "--output-topic", "contract.t.out",
                                "--shadow-topic", "contract.t.out", NULL};
    assert_int_equal(run_cmd(shadow_out, &err), 2);
    assert_non_null(strstr(err, "shadow topic: 'contract.t.out' is the output topic"));
    free(err);
    const char *no_shadow[] = {SF_TEST_SIGFLOW, "run", "--brokers", bs, "--model",
                               SF_TEST_MODEL, "--variables", SF_TEST_VARS, "--metrics-addr",
                               "none", "--shadow-topic", "contract.shadow", NULL};
    assert_int_equal(run_cmd(no_shadow, &err), 2);
    assert_non_null(strstr(err, "--shadow-topic contract.shadow needs --shadow-model"));
    free(err);

    /* A missing output topic: named, unless --create-topics. */
    char missing[64];
    snprintf(missing, sizeof missing, "contract.missing.%d", (int)getpid());
    const char *no_out[] = {SF_TEST_SIGFLOW, "run", "--brokers", bs, "--model", SF_TEST_MODEL,
                            "--variables", SF_TEST_VARS, "--metrics-addr", "none",
                            "--input-topic", "contract.list.a", "--output-topic", missing, NULL};
    assert_int_equal(run_cmd(no_out, &err), 1);
    char want[160];
    snprintf(want, sizeof want, "topic %s does not exist (create it, or run with --create-topics)",
             missing);
    if (!strstr(err, want))
        fail_msg("missing output topic: %s", err);
    free(err);
    assert_int_equal(partitions_of(bs, missing), -1);

    /* A list and a regular expression; the second daemon creates its output. */
    const char *list_args[] = {"--brokers", bs, "--model", SF_TEST_MODEL, "--variables",
                               SF_TEST_VARS, "--emit", "all", "--group", "contract-list",
                               "--input-topic", "contract.list.a,contract.list.b",
                               "--output-topic", "contract.t.out", NULL};
    const char *rx_args[] = {"--brokers", bs, "--model", SF_TEST_MODEL, "--variables",
                             SF_TEST_VARS, "--emit", "all", "--group", "contract-rx",
                             "--input-topic", "^contract\\.rx\\..*", "--output-topic", missing,
                             "--create-topics", NULL};
    sft_daemon dl, dr;
    sft_daemon_start(&dl, list_args, WAIT_MS);
    sft_daemon_start(&dr, rx_args, WAIT_MS);
    /* The metrics port comes before the brokers are asked: wait for the start. */
    assert_true(sft_wait_for_text(dr.log, "created missing topics count=1", WAIT_MS));
    assert_true(sft_wait_for_text(dl.log, "started", WAIT_MS));
    assert_true(sft_wait_for_text(dr.log, "started", WAIT_MS));
    int64_t deadline = sft_now_ms() + WAIT_MS;
    while (partitions_of(bs, missing) <= 0 && sft_now_ms() < deadline)
        sft_nap_ms(50);
    assert_true(partitions_of(bs, missing) > 0);
    char **keys, **values;
    sft_atlas_events(40, &keys, &values);
    const char *in_topics[] = {"contract.list.a", "contract.list.b", "contract.rx.one",
                               "contract.rx.two"};
    for (size_t t = 0; t < 4; t++)
        assert_int_equal(sft_produce(bs, in_topics[t], (const char *const *)keys + 10 * t,
                                     (const char *const *)values + 10 * t, NULL, 10), 10);
    assert_true(sft_wait_metric(&dl, "sigflow_signals_published_total", 20, WAIT_MS) == 20);
    assert_true(sft_wait_metric(&dr, "sigflow_signals_published_total", 20, WAIT_MS) == 20);
    assert_int_equal(sft_daemon_stop(&dl, SIGTERM, WAIT_MS), 0);
    assert_int_equal(sft_daemon_stop(&dr, SIGTERM, WAIT_MS), 0);
    /* Each daemon read its own two topics, every event once. */
    sft_msgs lo = sft_consume_all(bs, "contract.t.out", 20, 500, WAIT_MS, 0);
    sft_msgs ro = sft_consume_all(bs, missing, 20, 500, WAIT_MS, 0);
    assert_int_equal(lo.n, 20);
    assert_int_equal(ro.n, 20);
    for (size_t i = 0; i < 20; i++) {
        assert_non_null(strstr(lo.v[i].value, "\"partition\""));
        size_t k = 0;
        while (k < 40 && strcmp(keys[k], lo.v[i].key))
            k++;
        assert_true(k < 20);
        k = 0;
        while (k < 40 && strcmp(keys[k], ro.v[i].key))
            k++;
        assert_true(k >= 20 && k < 40);
    }
    sft_msgs_free(&lo);
    sft_msgs_free(&ro);
    sft_daemon_free(&dl);
    sft_daemon_free(&dr);
    sft_strings_free(keys, 40);
    sft_strings_free(values, 40);
    sft_kafka_close(b);
}

/* sigflow-model follows a SIGHUP reload onto another model: each output
 * names the model that scored it. */
static void test_model_header_reload(void **state) {
    (void)state;
    const char *topics[] = {"contract.r.in", "contract.r.out"};
    sft_kafka *b = sft_kafka_open(2, topics, 2, NULL, 0);
    const char *bs = b->bootstrap;
    const char *models[] = {SF_TEST_MODEL, SF_SOURCE_DIR "/models/higgs_mlp_tf.h5"};
    char sha[2][65], err[512];
    for (size_t k = 0; k < 2; k++) {
        sf_model *m;
        if (sf_model_load(&m, models[k], NULL, NULL, err, sizeof err))
            fail_msg("%s", err);
        snprintf(sha[k], sizeof sha[k], "%s", m->sha256);
        sf_model_free(m);
    }
    assert_string_not_equal(sha[0], sha[1]);
    char *path = sft_temp_path(".h5"), tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    size_t len;
    char *bytes = sft_read_file(models[0], &len);
    FILE *f = fopen(path, "wb");
    assert_true(bytes && f && fwrite(bytes, 1, len, f) == len && fclose(f) == 0);
    free(bytes);

    const char *args[] = {"--brokers", bs, "--model", path, "--variables", SF_TEST_VARS,
                          "--emit", "all", "--group", "contract-reload", "--input-topic",
                          "contract.r.in", "--output-topic", "contract.r.out", NULL};
    sft_daemon d;
    sft_daemon_start(&d, args, WAIT_MS);
    char **keys, **values;
    sft_atlas_events(10, &keys, &values);
    assert_int_equal(sft_produce(bs, "contract.r.in", (const char *const *)keys,
                                 (const char *const *)values, NULL, 5), 5);
    assert_true(sft_wait_metric(&d, "sigflow_signals_published_total", 5, WAIT_MS) == 5);
    bytes = sft_read_file(models[1], &len); /* a deployment: renamed over the old file */
    f = fopen(tmp, "wb");
    assert_true(bytes && f && fwrite(bytes, 1, len, f) == len && fclose(f) == 0);
    free(bytes);
    assert_int_equal(rename(tmp, path), 0);
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    assert_true(sft_wait_metric(&d, "sigflow_model_reloads_total", 1, WAIT_MS) == 1);
    assert_int_equal(sft_produce(bs, "contract.r.in", (const char *const *)keys + 5,
                                 (const char *const *)values + 5, NULL, 5), 5);
    assert_true(sft_wait_metric(&d, "sigflow_signals_published_total", 10, WAIT_MS) == 10);
    assert_int_equal(sft_daemon_stop(&d, SIGTERM, WAIT_MS), 0);

    sft_msgs out = sft_consume_all(bs, "contract.r.out", 10, 500, WAIT_MS, 0);
    assert_int_equal(out.n, 10);
    for (size_t i = 0; i < out.n; i++) {
        size_t k = 0;
        while (k < 10 && strcmp(keys[k], out.v[i].key))
            k++;
        assert_true(k < 10);
        char want[128];
        snprintf(want, sizeof want, "sigflow-model=%s\n", sha[k >= 5]);
        if (strcmp(out.v[i].headers, want))
            fail_msg("event %s (%s the reload): headers '%s', expected '%s'", keys[k],
                     k >= 5 ? "after" : "before", out.v[i].headers, want);
    }
    sft_msgs_free(&out);
    sft_daemon_free(&d);
    sft_strings_free(keys, 10);
    sft_strings_free(values, 10);
    unlink(path);
    free(path);
    sft_kafka_close(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contract),
        cmocka_unit_test(test_topics),
        cmocka_unit_test(test_model_header_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
