/* test_ops_crash.c: at-least-once means a daemon killed at any moment loses
 * nothing. While sigflow-replay streams 20,000 events, `sigflow run` is
 * SIGKILLed at three random points (each instance after a random number of
 * its own outputs plus a random delay; the seed is printed and
 * SIGFLOW_TEST_SEED replays it) and
 * restarted each time; every EventId must come out at least once. The
 * duplicates are the price of at-least-once and are printed, not judged.
 * Runs on the embedded broker and, as test_ops_crash_real, on Apache Kafka. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "support.h"

#define N_EVENTS 20000
#define FIRST_ID 100000
#define RATE "1000" /* the stream outlasts the three restarts (~7 s each) */
#define KILLS 3
#define WAIT_MS 90000

static void test_sigkill_three_times(void **state) {
    sft_stream *f = *state;
    const char *brokers = f->brokers;
    const char *model, *vars;
    sft_pick_model(&model, &vars);
    unsigned seed = sft_seed();
    /* The dead instance stays a group member until its session expires: a
     * short session makes each restart take seconds, not the default 45. */
    const char *args[] = {"--brokers", brokers, "--model", model, "--variables", vars,
                          "--group", "ops-crash", "--emit", "all",
                          "-X", "session.timeout.ms=" SFT_SESSION_MS, "-X", "heartbeat.interval.ms=500",
                          NULL};
    sft_daemon_start(&f->d[0], args, WAIT_MS);
    f->replay = sft_replay_spawn(brokers, "events", RATE, NULL, NULL);

    /* Each instance is killed once it published a random number of outputs
     * of its own (so every one of them did work), plus a random few ms, so the
     * kills land anywhere: mid-batch, mid-delivery, mid-commit, mid-backlog. */
    int64_t t0 = sft_now_ms();
    for (int k = 0; k < KILLS; k++) {
        /* At most half of what is left (the topic's end counts duplicates
         * too, so this errs low): an instance that catches up a backlog
         * quickly must still find its target before the stream runs out. */
        int64_t left = N_EVENTS - sft_topic_end(brokers, "signals");
        double own = 500 + rand() % 4000;
        if (own > (double)left / 2)
            own = left / 2 > 1 ? (double)(left / 2) : 1;
        int extra_ms = rand() % 250;
        double got = sft_wait_metric(&f->d[0], "sigflow_signals_published_total", own, WAIT_MS);
        if (got < own)
            fail_msg("instance %d published %.0f of its %.0f outputs within %d ms", k + 1, got,
                     own, WAIT_MS);
        sft_nap_ms(extra_ms);
        int64_t at = sft_now_ms() - t0;
        assert_int_equal(sft_daemon_stop(&f->d[0], SIGKILL, 10000), 128 + SIGKILL);
        printf("seed %u: kill %d at %lld ms, after %.0f outputs of its own (target %.0f + %d ms), "
               "%lld in the topic\n", seed, k + 1, (long long)at, got, own, extra_ms,
               (long long)sft_topic_end(brokers, "signals"));
        sft_daemon_free(&f->d[0]);
        sft_daemon_start(&f->d[0], args, WAIT_MS);
    }
    assert_int_equal(sft_wait(f->replay, WAIT_MS), 0);
    f->replay = 0;

    unsigned *counts = calloc(N_EVENTS, sizeof *counts);
    assert_non_null(counts);
    sft_count_keys(brokers, "signals", FIRST_ID, FIRST_ID + N_EVENTS, counts, 0, WAIT_MS);
    int64_t done = sft_now_ms() - t0;
    /* A clean stop, then the whole output, duplicates included. */
    assert_int_equal(sft_daemon_stop(&f->d[0], SIGTERM, WAIT_MS), 0);
    size_t total = sft_count_keys(brokers, "signals", FIRST_ID, FIRST_ID + N_EVENTS, counts, 0, WAIT_MS);
    size_t missing = 0, twice = 0;
    for (size_t i = 0; i < N_EVENTS; i++) {
        missing += counts[i] == 0;
        twice += counts[i] > 1;
    }
    free(counts);
    printf("after %d SIGKILLs: %zu outputs for %d events in %lld ms: %zu duplicates "
           "(%zu events published more than once), %zu missing\n",
           KILLS, total, N_EVENTS, (long long)done, total - (N_EVENTS - missing), twice, missing);
    assert_int_equal(missing, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigkill_three_times, sft_stream_setup,
                                        sft_stream_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
