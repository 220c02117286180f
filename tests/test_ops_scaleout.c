/* test_ops_scaleout.c: scaling out is "start another instance with the same
 * --group", and surviving an instance's death is Kafka's group protocol
 * handing its partitions to the others. Two `sigflow run` processes share an
 * 8-partition topic while sigflow-replay streams events; one is SIGKILLed
 * mid-stream and the survivor must take over and publish every event. */
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
#define RATE "8000"
#define WAIT_MS 90000

static double assigned(sft_daemon *d) {
    return sft_scrape(d->port, "sigflow_assigned_partitions");
}

static void test_two_instances_then_one(void **state) {
    sft_stream *f = *state;
    const char *brokers = f->brokers;
    const char *model, *vars;
    sft_pick_model(&model, &vars);
    unsigned seed = sft_seed();
    /* A killed member holds its partitions until its session times out
     * (45 s by default): a short session keeps the test quick. */
    const char *args[] = {"--brokers", brokers, "--model", model, "--variables", vars,
                          "--group", "ops-scale", "--emit", "all",
                          "-X", "session.timeout.ms=" SFT_SESSION_MS, "-X", "heartbeat.interval.ms=500",
                          NULL};
    sft_daemon_start(&f->d[0], args, WAIT_MS);
    sft_daemon_start(&f->d[1], args, WAIT_MS);

    /* Both members share the 8 partitions. */
    int64_t deadline = sft_now_ms() + WAIT_MS;
    double pa = 0, pb = 0;
    while (!(pa > 0 && pb > 0 && pa + pb == 8) && sft_now_ms() < deadline) {
        assert_true(sft_daemon_running(&f->d[0]) && sft_daemon_running(&f->d[1]));
        pa = assigned(&f->d[0]);
        pb = assigned(&f->d[1]);
    }
    printf("assigned partitions: %g and %g\n", pa, pb);
    assert_true(pa > 0 && pb > 0 && pa + pb == 8);

    f->replay = sft_replay_spawn(brokers, "events", RATE, NULL, NULL);

    /* Both do work; then one dies at a random point of the stream. */
    double kill_at = 1000 + rand() % 4000;
    printf("seed %u: killing one instance once it consumed %.0f events\n", seed, kill_at);
    double ca = sft_wait_metric(&f->d[0], "sigflow_events_consumed_total", kill_at, WAIT_MS);
    double cb = sft_wait_metric(&f->d[1], "sigflow_events_consumed_total", 1, WAIT_MS);
    printf("consumed before the kill: %g and %g\n", ca, cb);
    assert_true(ca >= kill_at && cb > 0);
    assert_int_equal(sft_daemon_stop(&f->d[0], SIGKILL, 10000), 128 + SIGKILL);
    int64_t killed = sft_now_ms();

    /* The survivor takes every partition... */
    double pb_now = assigned(&f->d[1]);
    while (pb_now != 8 && sft_now_ms() < killed + WAIT_MS) {
        assert_true(sft_daemon_running(&f->d[1]));
        pb_now = assigned(&f->d[1]);
    }
    int64_t takeover = sft_now_ms() - killed;
    assert_true(pb_now == 8);
    assert_int_equal(sft_wait(f->replay, WAIT_MS), 0);
    f->replay = 0;

    /* ...and every event gets published. */
    unsigned *counts = calloc(N_EVENTS, sizeof *counts);
    assert_non_null(counts);
    size_t total = sft_count_keys(brokers, "signals", FIRST_ID, FIRST_ID + N_EVENTS, counts, 0, WAIT_MS);
    int64_t caught_up = sft_now_ms() - killed;
    size_t missing = 0;
    for (size_t i = 0; i < N_EVENTS; i++)
        missing += counts[i] == 0;
    free(counts);
    printf("takeover %lld ms after SIGKILL, all published %lld ms after; %zu outputs for %d events "
           "(%zu duplicates), %zu missing\n",
           (long long)takeover, (long long)caught_up, total, N_EVENTS, total - (N_EVENTS - missing),
           missing);
    assert_int_equal(missing, 0);
    assert_true(total >= N_EVENTS);

    assert_int_equal(sft_daemon_stop(&f->d[1], SIGTERM, WAIT_MS), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_two_instances_then_one, sft_stream_setup,
                                        sft_stream_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
