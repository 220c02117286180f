/* test_ops_metrics.c: the daemon's /metrics, /healthz and /readyz as an
 * operator sees them, against a real `sigflow run` process and an embedded
 * broker. The counters must agree exactly with what the topics hold, since
 * dashboards and alerts are built on them; readiness must wait for a
 * partition assignment; the lag gauge must see a backlog. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/features.h"
#include "sigflow/model.h"
#include "sigflow/vars.h"
#include "support.h"

#define N_GOOD 3000
#define N_BURST 20000
#define PER_KIND 3 /* malformed events of each rejection kind */
#define MAX_EVENT_BYTES "2048"
#define WAIT_MS 60000

static const char *const topics[] = {"events", "signals", "events.dlq"};

typedef struct fixture {
    sf_broker *broker;
    const char *brokers;
    sft_daemon d;
    const char *model, *vars;
    char **keys, **values; /* N_BURST ATLAS events */
    uint64_t good, rejected[SF_REJECT__COUNT]; /* what the daemon was sent */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->broker = sft_broker(8, topics, 3);
    f->brokers = sf_broker_bootstrap(f->broker);
    sft_atlas_events(N_BURST, &f->keys, &f->values);
    sft_pick_model(&f->model, &f->vars);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    sft_daemon_free(&f->d);
    sft_strings_free(f->keys, N_BURST);
    sft_strings_free(f->values, N_BURST);
    sf_broker_stop(f->broker);
    free(f);
    return 0;
}

/* `event` with the value of field `name` replaced by `value`, or the field
 * removed when value is NULL. */
static char *with_field(const char *event, const char *name, const char *value) {
    char quoted[128];
    snprintf(quoted, sizeof quoted, "\"%s\":", name);
    const char *field = strstr(event, quoted);
    assert_non_null(field);
    const char *at = field + strlen(quoted);
    const char *end = at + strcspn(at, ",}");
    size_t n = strlen(event) + (value ? strlen(value) : 0) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    if (value)
        snprintf(s, n, "%.*s%s%s", (int)(at - event), event, value, end);
    else /* drop `"name":value,` (never the last field: EventId comes first) */
        snprintf(s, n, "%.*s%s", (int)(field - event), event, *end == ',' ? end + 1 : end);
    return s;
}

/* PER_KIND events of each rejection kind the daemon can meet, counted into
 * the expectations. A missing field is only an error for a variable without
 * a default; when the variables file gives every one a default, the event
 * with a field left out is a good one. */
static void produce_malformed(fixture *f) {
    enum { KINDS = 6 };
    static const sf_reject kind[KINDS] = {SF_REJECT_NOT_JSON, SF_REJECT_NOT_OBJECT,
                                          SF_REJECT_MISSING_FIELD, SF_REJECT_NOT_NUMBER,
                                          SF_REJECT_NOT_FINITE, SF_REJECT_TOO_LARGE};
    char err[512];
    sf_vars *vars;
    if (sf_vars_load(&vars, f->vars, err, sizeof err))
        fail_msg("%s", err);
    const char *required = NULL; /* a variable without a default */
    for (size_t i = 0; i < vars->n_vars && !required; i++)
        if (!vars->vars[i].has_default)
            required = vars->vars[i].name;

    char *values[KINDS * PER_KIND], *keys[KINDS * PER_KIND];
    char pad[3000];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < PER_KIND; i++) {
        const char *ev = f->values[i];
        char *big = malloc(strlen(ev) + sizeof pad + 16);
        assert_non_null(big);
        sprintf(big, "{\"pad\":\"%s\",%s", pad, ev + 1);
        char *v[KINDS] = {strdup("{\"EventId\": 1, \"DER_mass_MMC\": "), strdup("[1, 2, 3]"),
                          with_field(ev, required ? required : "PRI_met", NULL),
                          with_field(ev, "PRI_met", "\"oops\""), with_field(ev, "PRI_met", "1e999"),
                          big};
        for (int k = 0; k < KINDS; k++) {
            assert_non_null(v[k]);
            values[k * PER_KIND + i] = v[k];
            char key[32];
            snprintf(key, sizeof key, "bad-%d-%d", k, i);
            keys[k * PER_KIND + i] = strdup(key);
            if (kind[k] == SF_REJECT_MISSING_FIELD && !required)
                f->good++;
            else
                f->rejected[kind[k]]++;
        }
    }
    sf_vars_free(vars);
    assert_int_equal(sft_produce(f->brokers, "events", (const char *const *)keys,
                                 (const char *const *)values, NULL, KINDS * PER_KIND),
                     KINDS * PER_KIND);
    for (int i = 0; i < KINDS * PER_KIND; i++) {
        free(values[i]);
        free(keys[i]);
    }
}

/* Waits until the daemon's group committed everything written to the input:
 * offsets are committed only after every output derived from them was
 * acknowledged, so the counters are final then. */
static void wait_committed(fixture *f, const char *group) {
    int64_t deadline = sft_now_ms() + WAIT_MS, lag;
    while ((lag = sft_group_lag(f->brokers, group, "events")) > 0 && sft_now_ms() < deadline)
        assert_true(sft_daemon_running(&f->d));
    assert_int_equal(lag, 0);
}

/* Every counter against the topics and the events produced. */
static void check_counters(fixture *f) {
    char *text;
    assert_int_equal(sft_http_get(f->d.port, "/metrics", &text), 200);
    assert_non_null(text);
    uint64_t bad = 0;
    for (int r = SF_REJECT_NONE + 1; r < SF_REJECT__COUNT; r++)
        bad += f->rejected[r];
    int64_t signals = sft_topic_end(f->brokers, "signals");
    int64_t dead = sft_topic_end(f->brokers, "events.dlq");
    double consumed = sft_metric(text, "sigflow_events_consumed_total");
    double batches = sft_metric(text, "sigflow_batches_total");
    printf("consumed %.0f, signals %.0f (topic %lld), dead letters %.0f (topic %lld), %.0f batches\n",
           consumed, sft_metric(text, "sigflow_signals_published_total"), (long long)signals,
           sft_metric(text, "sigflow_dead_letters_total"), (long long)dead, batches);

    assert_true(consumed == (double)(f->good + bad));
    assert_true(sft_metric(text, "sigflow_events_predicted_total") == (double)f->good);
    assert_true(sft_metric(text, "sigflow_signals_published_total") == (double)signals);
    assert_true(sft_metric(text, "sigflow_dead_letters_total") == (double)dead);
    assert_true(dead == (int64_t)bad);
    for (int r = SF_REJECT_NONE + 1; r < SF_REJECT__COUNT; r++) {
        char series[128];
        snprintf(series, sizeof series, "sigflow_events_rejected_total{reason=\"%s\"}",
                 sf_reject_name((sf_reject)r));
        double v = sft_metric(text, series);
        if (v != (double)f->rejected[r])
            fail_msg("%s is %g, expected %llu", series, v, (unsigned long long)f->rejected[r]);
    }
    /* Histograms: one batch_size observation per batch, summing to the events. */
    assert_true(batches > 0);
    assert_true(sft_metric(text, "sigflow_batch_size_count") == batches);
    assert_true(sft_metric(text, "sigflow_batch_size_sum") == consumed);
    /* A batch takes what has arrived, not one event at a time: the events
     * were produced in bursts, so fetches bring many at once. */
    if (!(consumed / batches >= 2))
        fail_msg("%.0f events in %.0f batches: batches do not take what has arrived", consumed,
                 batches);
    /* One forward pass per chunk of at most 128 events with a valid one. */
    double infer_n = sft_metric(text, "sigflow_inference_seconds_count");
    double predicted = sft_metric(text, "sigflow_events_predicted_total");
    if (!(infer_n >= predicted / 128 && infer_n <= batches + consumed / 128))
        fail_msg("%.0f forward passes for %.0f events in %.0f batches", infer_n, predicted,
                 batches);
    /* One end-to-end observation per acknowledged output (every input had a
     * timestamp), measured in this run: seconds, not the decades a broker's
     * LogAppendTime would make of it. */
    double e2e_n = sft_metric(text, "sigflow_end_to_end_seconds_count");
    double e2e_sum = sft_metric(text, "sigflow_end_to_end_seconds_sum");
    assert_true(e2e_n == (double)(signals + dead));
    if (!(e2e_sum / e2e_n >= 0 && e2e_sum / e2e_n < 600))
        fail_msg("mean end-to-end latency %g s over %g outputs", e2e_sum / e2e_n, e2e_n);
    assert_true(sft_metric(text, "sigflow_assigned_partitions") == 8);
    free(text);

    /* What was published is what the counters say it is. */
    sft_msgs out = sft_consume_all(f->brokers, "signals", (size_t)signals, 0, WAIT_MS, 0);
    assert_int_equal(out.n, (size_t)signals);
    for (size_t i = 0; i < out.n; i++) {
        assert_non_null(out.v[i].key);
        assert_non_null(strstr(out.v[i].value, "\"label\": \"s\""));
    }
    sft_msgs_free(&out);
    sft_msgs dlq = sft_consume_all(f->brokers, "events.dlq", (size_t)dead, 0, WAIT_MS, 0);
    assert_int_equal(dlq.n, (size_t)dead);
    for (size_t i = 0; i < dlq.n; i++) {
        assert_non_null(dlq.v[i].error_header);
        assert_non_null(dlq.v[i].source_header);
    }
    sft_msgs_free(&dlq);
}

static void test_metrics_health_and_counters(void **state) {
    fixture *f = *state;
    const char *args[] = {"--brokers", f->brokers, "--model", f->model, "--variables", f->vars,
                          "--dlq-topic", "events.dlq", "--group", "ops-metrics",
                          "--max-event-bytes", MAX_EVENT_BYTES,
                          /* The lag gauge comes from librdkafka statistics, every 5 s by
                           * default: ask for them often so the test sees a backlog. */
                          "-X", "statistics.interval.ms=100", NULL};
    sft_daemon_start(&f->d, args, WAIT_MS);

    /* Alive at once; not ready before the group hands out partitions (the
     * broker delays a new group's first assignment by 3 s). */
    assert_int_equal(sft_http_get(f->d.port, "/healthz", NULL), 200);
    assert_int_equal(sft_http_get(f->d.port, "/readyz", NULL), 503);
    assert_true(sft_scrape(f->d.port, "sigflow_assigned_partitions") == 0);

    /* sigflow_model_info names the model in use. */
    char err[512], series[256];
    sf_model *m;
    if (sf_model_load(&m, f->model, NULL, NULL, err, sizeof err))
        fail_msg("%s", err);
    snprintf(series, sizeof series, "sigflow_model_info{sha256=\"%s\",inputs=\"%zu\",outputs=\"%zu\"}",
             m->sha256, m->n_inputs, m->n_outputs);
    sf_model_free(m);
    assert_true(sft_scrape(f->d.port, series) == 1);

    int64_t t0 = sft_now_ms(), deadline = t0 + WAIT_MS;
    int status;
    while ((status = sft_http_get(f->d.port, "/readyz", NULL)) != 200 && sft_now_ms() < deadline) {
        assert_int_equal(status, 503);
        assert_true(sft_daemon_running(&f->d));
    }
    assert_int_equal(status, 200);
    printf("ready %lld ms after the first probe\n", (long long)(sft_now_ms() - t0));
    assert_true(sft_scrape(f->d.port, "sigflow_assigned_partitions") == 8);

    /* Good and malformed events: every counter agrees with the topics. */
    assert_int_equal(sft_produce(f->brokers, "events", (const char *const *)f->keys,
                                 (const char *const *)f->values, NULL, N_GOOD),
                     N_GOOD);
    f->good = N_GOOD;
    produce_malformed(f);
    wait_committed(f, "ops-metrics");
    check_counters(f);

    /* A burst makes a backlog the lag gauge must show (it lasts until the
     * burst is processed and committed, about a second at most, and the gauge
     * is refreshed every 100 ms, so one burst nearly always suffices). */
    double lag = 0;
    for (int burst = 0; burst < 3 && !(lag > 0); burst++) {
        assert_int_equal(sft_produce(f->brokers, "events", (const char *const *)f->keys,
                                     (const char *const *)f->values, NULL, N_BURST),
                         N_BURST);
        f->good += N_BURST;
        int64_t until = sft_now_ms() + 3000;
        while (!((lag = sft_scrape(f->d.port, "sigflow_consumer_lag")) > 0) && sft_now_ms() < until)
            assert_true(sft_daemon_running(&f->d));
        printf("burst %d: consumer lag seen %g\n", burst + 1, lag);
    }
    assert_true(lag > 0);
    wait_committed(f, "ops-metrics");
    /* And back to 0 once caught up. */
    lag = sft_scrape(f->d.port, "sigflow_consumer_lag");
    for (deadline = sft_now_ms() + WAIT_MS; lag != 0 && sft_now_ms() < deadline;)
        lag = sft_scrape(f->d.port, "sigflow_consumer_lag");
    assert_true(lag == 0);
    check_counters(f);

    assert_int_equal(sft_daemon_stop(&f->d, SIGTERM, WAIT_MS), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics_health_and_counters, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
