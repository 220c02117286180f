/* test_ops_failover.c: a Kafka node dies under a running daemon. On a
 * three-node Apache Kafka cluster, with input and output topics replicated
 * three times and min.insync.replicas=2, the node leading an input partition
 * is SIGKILLed mid-stream and restarted 5 s later. Nothing may be lost, the
 * daemon must never exit and /healthz must answer 200 throughout (a broker
 * failure is Kafka's business: the client fails over to the new leaders).
 * Prints how long the cluster took to elect new leaders and how long the
 * daemon took to catch up with the input again.
 *
 * Then sigflow-replay writes through a leader's death: every row once.
 *
 * Needs the three-node cluster of the ctest fixture kafka_triple. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define N_EVENTS 12000
#define FIRST_ID 100000
#define RATE 1000
#define KILL_AFTER 2000 /* outputs before the kill */
#define DOWN_MS 5000
#define WAIT_MS 120000
#define REPLAY_ROWS 20000 /* the bundled sample, EventIds FIRST_ID.. */
#define REPLAY_RATE "2000"
#define REPLAY_KILL_AFTER 4000

static const char *const topics[] = {"fo.in", "fo.out"};

typedef struct watch {
    sft_daemon *d;
    sft_feed *feed;  /* NULL once joined: all N_EVENTS fed */
    int bad_health;  /* /healthz answers other than 200 */
    int64_t lag;     /* events fed but not yet published */
} watch;

/* One look at the daemon: running, healthy, how far behind the feed. */
static void look(watch *w) {
    if (!sft_daemon_running(w->d))
        fail_msg("the daemon exited (status %d) during the broker failure; log: %s", w->d->status,
                 w->d->log);
    int code = sft_http_get(w->d->port, "/healthz", NULL);
    if (code != 200) {
        w->bad_health++;
        printf("/healthz answered %d\n", code);
    }
    double out = sft_scrape(w->d->port, "sigflow_signals_published_total");
    w->lag = (int64_t)(w->feed ? sft_feed_sent(w->feed) : N_EVENTS) - (int64_t)out;
}

static void test_node_failure(void **state) {
    (void)state;
    const char *model, *vars;
    sft_pick_model(&model, &vars);
    const char *configs[] = {"min.insync.replicas", "2", NULL};
    sft_kafka *k = sft_kafka_open(4, topics, 2, configs, 1);
    if (k->nodes < 3)
        fail_msg("needs a three-node cluster, %s has %d", k->dir, k->nodes);
    const char *bs = k->bootstrap;
    const char *args[] = {"--brokers", bs, "--model", model, "--variables", vars,
                          "--input-topic", "fo.in", "--output-topic", "fo.out",
                          "--group", "ops-failover", "--emit", "all", NULL};
    sft_daemon d = {0};
    sft_daemon_start(&d, args, WAIT_MS);
    assert_true(sft_wait_metric(&d, "sigflow_assigned_partitions", 4, WAIT_MS) == 4);

    watch w = {.d = &d, .feed = sft_feed_start(bs, "fo.in", N_EVENTS, RATE, 0, 0)};
    /* The normal backlog before the failure: what "caught up" means after it. */
    int64_t normal = 0, deadline = sft_now_ms() + WAIT_MS;
    for (;;) {
        look(&w);
        if (w.lag > normal)
            normal = w.lag;
        if (sft_scrape(d.port, "sigflow_signals_published_total") >= KILL_AFTER)
            break;
        if (sft_now_ms() > deadline)
            fail_msg("fewer than %d outputs after %d ms", KILL_AFTER, WAIT_MS);
        sft_nap_ms(100); /* poll interval */
    }

    int victim = sft_partition_leader(bs, "fo.in", 0);
    assert_true(victim >= 0);
    int64_t t_kill = sft_now_ms();
    sft_kafka_node(k, "kill-node", victim);
    printf("SIGKILLed node %d (leader of fo.in [0]) after %zu events fed; normal backlog %lld\n",
           victim, sft_feed_sent(w.feed), (long long)normal);

    int64_t t_failover = -1, max_lag = 0;
    while (sft_now_ms() < t_kill + DOWN_MS) {
        look(&w);
        if (w.lag > max_lag)
            max_lag = w.lag;
        int leader = sft_partition_leader(bs, "fo.in", 0);
        if (t_failover < 0 && leader >= 0 && leader != victim)
            t_failover = sft_now_ms() - t_kill;
        sft_nap_ms(100); /* poll interval */
    }
    /* Restart it in the background and keep watching: caught up means the
     * backlog is back to what it was before the failure. */
    char idx[16];
    snprintf(idx, sizeof idx, "%d", victim);
    char *const restart[] = {"/bin/bash", SF_SOURCE_DIR "/tests/kafka/kafka.sh", "start-node", k->dir,
                             idx, NULL};
    char *restart_log = sft_temp_path(".log");
    pid_t restarter = sft_spawn(restart, NULL, restart_log, restart_log);
    int64_t t_back = -1, t_caught_up = -1;
    deadline = sft_now_ms() + WAIT_MS;
    while ((t_caught_up < 0 || t_back < 0) && sft_now_ms() < deadline) {
        look(&w);
        if (w.lag > max_lag)
            max_lag = w.lag;
        if (t_caught_up < 0 && w.lag <= normal)
            t_caught_up = sft_now_ms() - t_kill;
        int leader = t_failover < 0 ? sft_partition_leader(bs, "fo.in", 0) : -1;
        if (t_failover < 0 && leader >= 0 && leader != victim)
            t_failover = sft_now_ms() - t_kill;
        int status;
        if (t_back < 0 && waitpid(restarter, &status, WNOHANG) == restarter) {
            if (!WIFEXITED(status) || WEXITSTATUS(status)) {
                char *why = sft_read_file(restart_log, NULL);
                fail_msg("kafka.sh start-node %d failed:\n%s", victim, why ? why : "(no output)");
            }
            t_back = sft_now_ms() - t_kill;
        }
        sft_nap_ms(100); /* poll interval */
    }
    if (t_back < 0)
        fail_msg("node %d not serving %d ms after its restart", victim, WAIT_MS);
    assert_int_equal(sft_feed_join(w.feed), N_EVENTS);
    w.feed = NULL;

    unsigned *counts = calloc(N_EVENTS, sizeof *counts);
    assert_non_null(counts);
    sft_count_keys(bs, "fo.out", FIRST_ID, FIRST_ID + N_EVENTS, counts, 0, WAIT_MS);
    look(&w);
    assert_int_equal(sft_daemon_stop(&d, SIGTERM, WAIT_MS), 0);
    size_t total = sft_count_keys(bs, "fo.out", FIRST_ID, FIRST_ID + N_EVENTS, counts, 0, WAIT_MS);
    size_t missing = 0;
    for (size_t i = 0; i < N_EVENTS; i++)
        missing += counts[i] == 0;
    printf("node %d down %d ms: new leader of fo.in [0] after %lld ms (-1: none; it led again), node serving again after "
           "%lld ms, daemon caught up (backlog %lld -> <= %lld) %lld ms after the kill; "
           "%zu outputs for %d events, %zu missing, %zu duplicates, /healthz non-200: %d\n",
           victim, DOWN_MS, (long long)t_failover, (long long)t_back, (long long)max_lag,
           (long long)normal, (long long)t_caught_up, total, N_EVENTS, missing,
           total - (N_EVENTS - missing), w.bad_health);
    free(counts);
    assert_int_equal(missing, 0);
    assert_int_equal(w.bad_health, 0);
    assert_true(t_caught_up >= 0);
    unlink(restart_log);
    free(restart_log);
    sft_daemon_free(&d);
    sft_kafka_close(k);
}

/* sigflow-replay is idempotent by default: a produce request retried across
 * a leader's death does not write its events twice. Only Apache Kafka can
 * show it: the embedded broker does not check sequence numbers (see
 * test_ops_outage). The killed node stays down; the cluster goes on with two
 * (min.insync.replicas=2), and the fixture's stop takes what is left. */
static void test_replay_node_failure(void **state) {
    (void)state;
    static const char *const rtopics[] = {"fo.replay"};
    const char *configs[] = {"min.insync.replicas", "2", NULL};
    sft_kafka *k = sft_kafka_open(4, rtopics, 1, configs, 1);
    if (k->nodes < 3)
        fail_msg("needs a three-node cluster, %s has %d", k->dir, k->nodes);
    const char *bs = k->bootstrap;
    const char *const backoff[] = {"-X", "reconnect.backoff.max.ms=1000", NULL};
    char *log = sft_temp_path(".log");
    pid_t replay = sft_replay_spawn(bs, "fo.replay", REPLAY_RATE, backoff, log);

    int64_t deadline = sft_now_ms() + WAIT_MS, in;
    while ((in = sft_topic_end(bs, "fo.replay")) < REPLAY_KILL_AFTER && sft_now_ms() < deadline) {
        int st;
        if (waitpid(replay, &st, WNOHANG) == replay) {
            char *why = sft_read_file(log, NULL);
            fail_msg("the replay ended (status 0x%x) after %lld events, before the kill:\n%s", st,
                     (long long)in, why ? why : "(no output)");
        }
        sft_nap_ms(50); /* poll interval */
    }
    assert_true(in >= REPLAY_KILL_AFTER);
    int victim = sft_partition_leader(bs, "fo.replay", 0);
    assert_true(victim >= 0);
    sft_kafka_node(k, "kill-node", victim);
    printf("replay: node %d (leader of fo.replay [0]) killed after %lld events\n", victim,
           (long long)in);
    int status = sft_wait(replay, WAIT_MS);
    if (status != 0) {
        char *why = sft_read_file(log, NULL);
        fail_msg("the replay failed (%d):\n%s", status, why ? why : "(no output)");
    }

    char *account = sft_read_file(log, NULL);
    printf("replay: %s", account ? account : "(no summary)\n");
    free(account);
    unlink(log);
    free(log);
    sft_assert_each_key_once(bs, "fo.replay", FIRST_ID, FIRST_ID + REPLAY_ROWS, WAIT_MS);
    sft_kafka_close(k);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_failure),
        cmocka_unit_test(test_replay_node_failure), /* last: it leaves a node down */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
