/* test_ops_eos.c: --exactly-once on Apache Kafka, across crashes. Each batch
 * is one transaction carrying its outputs, its dead letters and its input
 * offsets, so a read_committed reader must see every output and every dead
 * letter exactly once even when the daemon is SIGKILLed mid-batch and
 * restarted: the restart's init_transactions fences the dead instance and
 * aborts its open transaction, and the group's committed offsets (written by
 * the committed transactions only) say where to resume.
 *
 * This needs a real broker: librdkafka's mock cluster ignores the offsets of
 * TxnOffsetCommit and writes no commit/abort markers, so it cannot give
 * exactly-once across a crash. The ctest fixture starts the cluster. */
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
#define FIRST_ID 100000   /* EventIds of the ATLAS sample: FIRST_ID .. FIRST_ID + N_EVENTS - 1 */
#define BAD_EVERY 100     /* one malformed event after every 100 valid ones */
#define N_BAD (N_EVENTS / BAD_EVERY)
#define FIRST_BAD 900000
#define RATE 2000         /* events per second fed to the daemon */
#define KILLS 3
#define WAIT_MS 120000

static const char *const topics[] = {"eos.in", "eos.out", "eos.dlq"};

static void start(sft_daemon *d, const char *brokers, const char *model, const char *vars) {
    const char *args[] = {"--brokers", brokers, "--model", model, "--variables", vars,
                          "--input-topic", "eos.in", "--output-topic", "eos.out",
                          "--dlq-topic", "eos.dlq", "--group", "ops-eos", "--emit", "all",
                          "--exactly-once", "--transactional-id", "ops-eos-1",
                          /* a killed member's partitions move once its session expires */
                          "-X", "session.timeout.ms=" SFT_SESSION_MS,
                          "-X", "heartbeat.interval.ms=500", NULL};
    sft_daemon_start(d, args, WAIT_MS);
}

static int cmp_size(const void *a, const void *b) {
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static void count(const char *brokers, const char *topic, int64_t lo, size_t n, unsigned *counts,
                  size_t *total, size_t *missing, size_t *dup) {
    *total = sft_count_keys(brokers, topic, lo, lo + (int64_t)n, counts, 1, WAIT_MS);
    *missing = *dup = 0;
    for (size_t i = 0; i < n; i++) {
        *missing += counts[i] == 0;
        *dup += counts[i] > 1;
    }
}

/* N_EVENTS events and N_BAD malformed ones streamed at RATE through an
 * exactly-once daemon that is SIGKILLed KILLS times at seeded random points
 * and restarted at once with the same transactional id. */
static void test_exactly_once_across_sigkills(void **state) {
    (void)state;
    const char *model, *vars;
    sft_pick_model(&model, &vars);
    sft_kafka *k = sft_kafka_open(4, topics, 3, NULL, 1);
    unsigned seed = sft_seed();
    size_t kill_at[KILLS];
    for (int i = 0; i < KILLS; i++)
        kill_at[i] = 2000 + (size_t)rand() % (N_EVENTS - 4000);
    qsort(kill_at, KILLS, sizeof *kill_at, cmp_size);
    printf("seed %u (SIGFLOW_TEST_SEED replays it): SIGKILL once the group committed %zu, %zu, %zu inputs\n",
           seed, kill_at[0], kill_at[1], kill_at[2]);

    int64_t t0 = sft_now_ms();
    sft_daemon d = {0};
    start(&d, k->bootstrap, model, vars);
    assert_true(sft_wait_metric(&d, "sigflow_assigned_partitions", 4, WAIT_MS) == 4);

    sft_feed *feed = sft_feed_start(k->bootstrap, "eos.in", N_EVENTS, RATE, BAD_EVERY, FIRST_BAD);
    for (int i = 0; i < KILLS; i++) {
        /* the kill points are in input committed by the group (by the
         * transactions of all incarnations so far) */
        int64_t deadline = sft_now_ms() + WAIT_MS, done_in = 0;
        while ((done_in = sft_topic_end(k->bootstrap, "eos.in") -
                          sft_group_lag(k->bootstrap, "ops-eos", "eos.in")) < (int64_t)kill_at[i]) {
            if (!sft_daemon_running(&d))
                fail_msg("the daemon exited (status %d); log: %s", d.status, d.log);
            if (sft_now_ms() > deadline)
                fail_msg("seed %u: input committed stays at %lld of %zu", seed, (long long)done_in,
                         kill_at[i]);
            sft_nap_ms(50); /* poll interval */
        }
        /* kill it while it works: at least one transaction of this incarnation done */
        double done = sft_wait_metric(&d, "sigflow_batches_total", 1, WAIT_MS);
        double out = sft_scrape(d.port, "sigflow_signals_published_total");
        printf("kill %d: %lld input committed, %zu events sent, this instance committed %.0f batches, %.0f outputs\n", i + 1,
               (long long)done_in, sft_feed_sent(feed), done, out);
        assert_int_equal(sft_daemon_stop(&d, SIGKILL, 10000), 128 + SIGKILL);
        sft_daemon_free(&d);
        start(&d, k->bootstrap, model, vars);
    }
    assert_int_equal(sft_feed_join(feed), N_EVENTS + N_BAD);
    /* the input holds each event once: a duplicate out is the daemon's */
    assert_int_equal(sft_topic_end(k->bootstrap, "eos.in"), N_EVENTS + N_BAD);

    unsigned *counts = calloc(N_EVENTS, sizeof *counts);
    assert_non_null(counts);
    size_t total, missing, dup, btotal, bmissing, bdup;
    /* everything out (the reader waits for every key), then a clean stop */
    sft_count_keys(k->bootstrap, "eos.out", FIRST_ID, FIRST_ID + N_EVENTS, counts, 1, WAIT_MS);
    int64_t took = sft_now_ms() - t0;
    assert_int_equal(sft_daemon_stop(&d, SIGTERM, WAIT_MS), 0);
    count(k->bootstrap, "eos.out", FIRST_ID, N_EVENTS, counts, &total, &missing, &dup);
    printf("read_committed after %d SIGKILLs: %zu outputs for %d events, %zu missing, %zu duplicated "
           "(%lld ms from first start to the last output)\n",
           KILLS, total, N_EVENTS, missing, dup, (long long)took);
    count(k->bootstrap, "eos.dlq", FIRST_BAD, N_BAD, counts, &btotal, &bmissing, &bdup);
    printf("dead letters: %zu for %d malformed events, %zu missing, %zu duplicated\n", btotal, N_BAD,
           bmissing, bdup);
    if (missing || dup || total != N_EVENTS || bmissing || bdup || btotal != N_BAD)
        printf("seed %u failed\n", seed);
    assert_int_equal(missing, 0);
    assert_int_equal(dup, 0);
    assert_int_equal(total, N_EVENTS);
    assert_int_equal(bmissing, 0);
    assert_int_equal(bdup, 0);
    assert_int_equal(btotal, N_BAD);
    free(counts);
    sft_daemon_free(&d);
    sft_kafka_close(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exactly_once_across_sigkills),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
