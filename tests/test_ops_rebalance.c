/* test_ops_rebalance.c: the consumer group changing under load, on Apache
 * Kafka. Three instances share a group; mid-stream a fourth joins and then one
 * of the first three is stopped with SIGTERM. Each change moves partitions
 * between live instances (a real rebalance, not a crash). Nothing may be lost;
 * at-least-once may publish an event twice (counted and printed), exactly-once
 * may not (a read_committed reader sees each event once).
 *
 * Needs the cluster of the ctest fixture kafka_single. */
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

#include "support.h"

#define N_EVENTS 12000
#define FIRST_ID 100000
#define RATE 800 /* a 15 s stream: both changes land mid-stream */
#define PARTITIONS 12
#define INSTANCES 4
#define WAIT_MS 120000

static void start(sft_daemon *d, const char *bs, const char *in, const char *out, const char *group,
                  int eos, int i) {
    const char *model, *vars;
    sft_pick_model(&model, &vars);
    char txid[64];
    snprintf(txid, sizeof txid, "%s-%d", group, i);
    const char *args[] = {"--brokers", bs, "--model", model, "--variables", vars,
                          "--input-topic", in, "--output-topic", out, "--group", group,
                          "--emit", "all", "-X", "session.timeout.ms=" SFT_SESSION_MS,
                          "-X", "heartbeat.interval.ms=500",
                          /* at-least-once ends the list here */
                          eos ? "--exactly-once" : NULL, "--transactional-id", txid, NULL};
    sft_daemon_start(d, args, WAIT_MS);
}

static double sum_metric(sft_daemon *d, int n, const char *series) {
    double sum = 0;
    for (int i = 0; i < n; i++)
        if (d[i].pid) {
            double v = sft_scrape(d[i].port, series);
            sum += isnan(v) ? 0 : v;
        }
    return sum;
}

/* Polls until the live instances together own every partition. */
static void wait_assigned(sft_daemon *d, int n) {
    int64_t deadline = sft_now_ms() + WAIT_MS;
    while (sum_metric(d, n, "sigflow_assigned_partitions") != PARTITIONS) {
        for (int i = 0; i < n; i++)
            if (d[i].pid && !sft_daemon_running(&d[i]))
                fail_msg("instance %d exited (status %d); log: %s", i, d[i].status, d[i].log);
        if (sft_now_ms() > deadline)
            fail_msg("the group never owned all %d partitions", PARTITIONS);
        sft_nap_ms(100); /* poll interval */
    }
}

static void run(int eos) {
    const char *in = eos ? "rb.eos.in" : "rb.alo.in", *out = eos ? "rb.eos.out" : "rb.alo.out";
    const char *group = eos ? "ops-rebalance-eos" : "ops-rebalance-alo";
    const char *topics[] = {in, out};
    sft_kafka *k = sft_kafka_open(PARTITIONS, topics, 2, NULL, 1);
    const char *bs = k->bootstrap;
    sft_daemon d[INSTANCES] = {0};
    for (int i = 0; i < 3; i++)
        start(&d[i], bs, in, out, group, eos, i);
    wait_assigned(d, 3);

    int64_t t0 = sft_now_ms();
    /* Half the stream waits until the group has changed twice, so both changes
     * land mid-stream however slow the machine. */
    sft_feed *feed = sft_feed_start_held(bs, in, N_EVENTS, RATE, 0, 0, N_EVENTS / 2);
    /* a fifth of the stream through, a fourth instance joins ... */
    int64_t deadline = sft_now_ms() + WAIT_MS;
    while (sum_metric(d, 3, "sigflow_signals_published_total") < N_EVENTS / 5) {
        if (sft_now_ms() > deadline)
            fail_msg("fewer than %d outputs after %d ms", N_EVENTS / 5, WAIT_MS);
        sft_nap_ms(50); /* poll interval */
    }
    start(&d[3], bs, in, out, group, eos, 3);
    assert_true(sft_wait_metric(&d[3], "sigflow_assigned_partitions", 1, WAIT_MS) >= 1);
    int64_t t_joined = sft_now_ms() - t0;
    /* ... and, once it owns partitions, the first one leaves */
    size_t sent_at_stop = sft_feed_sent(feed);
    assert_int_equal(sft_daemon_stop(&d[0], SIGTERM, WAIT_MS), 0);
    int64_t t_left = sft_now_ms() - t0;
    wait_assigned(d, INSTANCES);
    sft_feed_release(feed);
    assert_int_equal(sft_feed_join(feed), N_EVENTS);

    unsigned *counts = calloc(N_EVENTS, sizeof *counts);
    assert_non_null(counts);
    sft_count_keys(bs, out, FIRST_ID, FIRST_ID + N_EVENTS, counts, eos, WAIT_MS);
    int64_t took = sft_now_ms() - t0;
    for (int i = 1; i < INSTANCES; i++)
        assert_int_equal(sft_daemon_stop(&d[i], SIGTERM, WAIT_MS), 0);
    size_t total = sft_count_keys(bs, out, FIRST_ID, FIRST_ID + N_EVENTS, counts, eos, WAIT_MS);
    size_t missing = 0, twice = 0;
    for (size_t i = 0; i < N_EVENTS; i++) {
        missing += counts[i] == 0;
        twice += counts[i] > 1;
    }
    printf("%s: 4th instance joined at %lld ms, 1st left (SIGTERM, %zu of %d fed) at %lld ms, all "
           "out at %lld ms; %zu outputs for %d events: %zu missing, %zu duplicates (%zu events more "
           "than once)\n",
           eos ? "exactly-once" : "at-least-once", (long long)t_joined, sent_at_stop, N_EVENTS,
           (long long)t_left, (long long)took, total, N_EVENTS, missing, total - (N_EVENTS - missing),
           twice);
    free(counts);
    assert_int_equal(missing, 0);
    if (eos) {
        assert_int_equal(twice, 0);
        assert_int_equal(total, N_EVENTS);
    }
    for (int i = 0; i < INSTANCES; i++)
        sft_daemon_free(&d[i]);
    sft_kafka_close(k);
}

static void test_rebalance_at_least_once(void **state) {
    (void)state;
    run(0);
}

static void test_rebalance_exactly_once(void **state) {
    (void)state;
    run(1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rebalance_at_least_once),
        cmocka_unit_test(test_rebalance_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
