/* test_ops_eos.c: --exactly-once, where each batch is one Kafka transaction
 * carrying both its outputs and its input offsets, so a read_committed reader
 * sees every output once even when the daemon dies mid-batch.
 *
 * The embedded broker (librdkafka 2.0.2's mock cluster) accepts the whole
 * transactional protocol but does not implement its effects: it ignores the
 * offsets of TxnOffsetCommit, writes no commit/abort markers and serves
 * read_committed fetches everything, aborted and open transactions included.
 * So the crash test probes the broker first and asserts exactly-once only
 * where the broker can deliver it; on the mock it asserts at-least-once,
 * prints the duplicates and says which part of the protocol is missing. The
 * no-crash test holds on any broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

#define N_EVENTS 20000
#define FIRST_ID 100000
#define RATE "4000"
#define WAIT_MS 90000

static const char *const topics[] = {"in.eos", "in.kill", "out.eos", "out.kill", "probe.in",
                                     "probe.out"};

/* One broker and both daemons for the whole file: started together, their
 * groups' first assignments (3 s each on the embedded broker) overlap. */
typedef struct fixture {
    sf_broker *broker;
    const char *brokers;
    sft_daemon eos, kill; /* one left alone, one to kill */
    const char *model, *vars;
    pid_t replay;
    unsigned *counts;
} fixture;

/* An exactly-once `sigflow run` from in to out, in its own group. */
static void start(sft_daemon *d, fixture *f, const char *in, const char *out, const char *group,
                  const char *txid) {
    const char *args[] = {"--brokers", f->brokers, "--model", f->model, "--variables", f->vars,
                          "--input-topic", in, "--output-topic", out, "--group", group,
                          "--emit", "all", "--exactly-once", "--transactional-id", txid,
                          /* only the daemon to kill needs a short session; it costs
                           * the other nothing */
                          "-X", "session.timeout.ms=" SFT_SESSION_MS,
                          "-X", "heartbeat.interval.ms=500", NULL};
    sft_daemon_start(d, args, WAIT_MS);
}

static int group_setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    sft_pick_model(&f->model, &f->vars);
    f->broker = sft_broker(8, topics, sizeof topics / sizeof *topics);
    f->brokers = sf_broker_bootstrap(f->broker);
    f->counts = calloc(N_EVENTS, sizeof *f->counts);
    assert_non_null(f->counts);
    start(&f->eos, f, "in.eos", "out.eos", "ops-eos", "ops-eos-1");
    start(&f->kill, f, "in.kill", "out.kill", "ops-eos-kill", "ops-eos-kill-1");
    *state = f;
    return 0;
}

static int group_teardown(void **state) {
    fixture *f = *state;
    sft_daemon_free(&f->eos);
    sft_daemon_free(&f->kill);
    if (f->replay > 0)
        sft_wait(f->replay, 0);
    sf_broker_stop(f->broker);
    free(f->counts);
    free(f);
    return 0;
}

static void ok(rd_kafka_error_t *e, const char *what) {
    if (e) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        fail_msg("probe: %s: %s", what, msg);
    }
}

/* What the broker does with transactions: whether offsets sent to a
 * committed transaction become the group's committed offsets, and whether a
 * read_committed reader skips an aborted transaction. Fills why with what is
 * missing; returns 1 when both work. */
static int broker_does_transactions(fixture *f, char *why, size_t why_size) {
    const char *pkv[] = {"transactional.id", "sigflow-test-probe", NULL};
    rd_kafka_t *p = sft_client(RD_KAFKA_PRODUCER, f->brokers, pkv);
    const char *ckv[] = {"group.id", "sigflow-test-probe", NULL};
    rd_kafka_t *c = sft_client(RD_KAFKA_CONSUMER, f->brokers, ckv);
    ok(rd_kafka_init_transactions(p, 10000), "init_transactions");

    ok(rd_kafka_begin_transaction(p), "begin_transaction");
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("probe.out"), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("aborted", 7), RD_KAFKA_V_END),
                     0);
    rd_kafka_flush(p, 10000); /* on the broker, as a dead instance's batch would be */
    ok(rd_kafka_abort_transaction(p, 10000), "abort_transaction");

    ok(rd_kafka_begin_transaction(p), "begin_transaction");
    assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC("probe.out"), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE("committed", 9), RD_KAFKA_V_END),
                     0);
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offs, "probe.in", 0)->offset = 42;
    rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(c);
    ok(rd_kafka_send_offsets_to_transaction(p, offs, md, 10000), "send_offsets_to_transaction");
    ok(rd_kafka_commit_transaction(p, 10000), "commit_transaction");
    rd_kafka_consumer_group_metadata_destroy(md);

    offs->elems[0].offset = RD_KAFKA_OFFSET_INVALID;
    assert_int_equal(rd_kafka_committed(c, offs, 10000), 0);
    int64_t committed = offs->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(offs);
    rd_kafka_destroy(c);
    rd_kafka_destroy(p);

    sft_msgs seen = sft_consume_all(f->brokers, "probe.out", 1, 500, 10000, 1);
    int skipped_aborted = seen.n == 1 && !strcmp(seen.v[0].value, "committed");
    size_t n_seen = seen.n;
    sft_msgs_free(&seen);

    snprintf(why, why_size, "%s%s%s",
             committed == 42 ? "" : "offsets sent to a committed transaction are not committed",
             committed != 42 && !skipped_aborted ? "; " : "",
             skipped_aborted ? "" : "read_committed fetches return aborted transactions' messages");
    if (!skipped_aborted)
        printf("probe: a read_committed reader saw %zu messages of 1 committed + 1 aborted\n", n_seen);
    return committed == 42 && skipped_aborted;
}

/* 20,000 events through an exactly-once daemon that nothing disturbs: a
 * read_committed reader sees each output once. */
static void test_exactly_once(void **state) {
    fixture *f = *state;
    assert_true(sft_wait_metric(&f->eos, "sigflow_assigned_partitions", 8, WAIT_MS) == 8);
    char **keys, **values;
    sft_atlas_events(N_EVENTS, &keys, &values);
    assert_int_equal(sft_produce(f->brokers, "in.eos", (const char *const *)keys,
                                 (const char *const *)values, NULL, N_EVENTS),
                     N_EVENTS);
    sft_strings_free(keys, N_EVENTS);
    sft_strings_free(values, N_EVENTS);
    sft_assert_each_key_once(f->brokers, "in.eos", FIRST_ID, FIRST_ID + N_EVENTS, WAIT_MS);
    assert_true(sft_wait_metric(&f->eos, "sigflow_signals_published_total", N_EVENTS, WAIT_MS) ==
                N_EVENTS);
    double batches = sft_scrape(f->eos.port, "sigflow_batches_total");
    assert_int_equal(sft_daemon_stop(&f->eos, SIGTERM, WAIT_MS), 0);

    size_t total = sft_count_keys(f->brokers, "out.eos", FIRST_ID, FIRST_ID + N_EVENTS, f->counts, 1,
                                  WAIT_MS);
    size_t missing = 0, dup = 0;
    for (size_t i = 0; i < N_EVENTS; i++) {
        missing += f->counts[i] == 0;
        dup += f->counts[i] > 1;
    }
    printf("%.0f transactions; read_committed: %zu outputs, %zu missing, %zu duplicated\n", batches,
           total, missing, dup);
    assert_int_equal(missing, 0);
    assert_int_equal(dup, 0);
    assert_int_equal(total, N_EVENTS);
}

/* SIGKILL mid-stream, restart with the same transactional id. */
static void test_exactly_once_across_sigkill(void **state) {
    fixture *f = *state;
    char why[512];
    int real_eos = broker_does_transactions(f, why, sizeof why);
    if (!real_eos)
        printf("this broker cannot give exactly-once: %s; asserting at-least-once instead\n", why);

    unsigned seed = sft_seed();
    assert_true(sft_wait_metric(&f->kill, "sigflow_assigned_partitions", 8, WAIT_MS) == 8);
    f->replay = sft_replay_spawn(f->brokers, "in.kill", RATE, NULL);

    double kill_at = 1000 + rand() % 5000;
    double out = sft_wait_metric(&f->kill, "sigflow_signals_published_total", kill_at, WAIT_MS);
    assert_true(out >= kill_at);
    printf("seed %u: SIGKILL after %.0f outputs\n", seed, out);
    assert_int_equal(sft_daemon_stop(&f->kill, SIGKILL, 10000), 128 + SIGKILL);
    sft_daemon_free(&f->kill);
    /* The restart fences the dead instance's producer and aborts its open
     * transaction (init_transactions with the same transactional.id). */
    start(&f->kill, f, "in.kill", "out.kill", "ops-eos-kill", "ops-eos-kill-1");
    assert_int_equal(sft_wait(f->replay, WAIT_MS), 0);
    f->replay = 0;

    sft_count_keys(f->brokers, "out.kill", FIRST_ID, FIRST_ID + N_EVENTS, f->counts, 1, WAIT_MS);
    assert_int_equal(sft_daemon_stop(&f->kill, SIGTERM, WAIT_MS), 0);
    size_t total = sft_count_keys(f->brokers, "out.kill", FIRST_ID, FIRST_ID + N_EVENTS, f->counts, 1,
                                  WAIT_MS);
    size_t missing = 0, dup = 0;
    for (size_t i = 0; i < N_EVENTS; i++) {
        missing += f->counts[i] == 0;
        dup += f->counts[i] > 1;
    }
    printf("read_committed after a SIGKILL: %zu outputs for %d events, %zu missing, %zu duplicated\n",
           total, N_EVENTS, missing, dup);
    assert_int_equal(missing, 0);
    if (real_eos) {
        assert_int_equal(dup, 0);
        assert_int_equal(total, N_EVENTS);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_once),
        cmocka_unit_test(test_exactly_once_across_sigkill),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
