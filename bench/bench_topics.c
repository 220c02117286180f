/* bench_topics.c: the run's own topics on an external cluster (--brokers):
 * created fresh so earlier runs' data cannot count, removed at the end. */
#include <stdio.h>

#include <librdkafka/rdkafka.h>

#include "sigflow/kafka.h"
#include "bench.h"

/* Runs one admin request on an external cluster and waits for its result. */
static rd_kafka_event_t *admin_wait(rd_kafka_t *rk, rd_kafka_queue_t *q, char *errstr, size_t n) {
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (!ev)
        snprintf(errstr, n, "no answer from the cluster in 30 s");
    else if (rd_kafka_event_error(ev))
        snprintf(errstr, n, "%s", rd_kafka_event_error_string(ev));
    (void)rk;
    return ev;
}

static rd_kafka_t *admin_client(const char *brokers, char *errstr, size_t n) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (sf_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, n)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, n);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

/* Creates the topics with the cluster's default replication factor. */
int bench_topics_create(const char *brokers, const char *const *topics, size_t nt, int partitions,
                         char *errstr, size_t n) {
    if (nt > BENCH_TOPICS_MAX) {
        snprintf(errstr, n, "at most %d topics", BENCH_TOPICS_MAX);
        return -1;
    }
    rd_kafka_t *rk = admin_client(brokers, errstr, n);
    if (!rk)
        return -1;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_NewTopic_t *t[BENCH_TOPICS_MAX];
    int rc = 0;
    for (size_t i = 0; i < nt; i++)
        if (!(t[i] = rd_kafka_NewTopic_new(topics[i], partitions, -1, errstr, n)))
            rc = -1;
    if (rc == 0) {
        rd_kafka_CreateTopics(rk, t, nt, NULL, q);
        rd_kafka_event_t *ev = admin_wait(rk, q, errstr, n);
        rc = !ev || rd_kafka_event_error(ev) ? -1 : 0;
        size_t cnt = 0;
        const rd_kafka_topic_result_t **res =
            ev ? rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt) : NULL;
        for (size_t i = 0; rc == 0 && i < cnt; i++)
            if (rd_kafka_topic_result_error(res[i])) {
                snprintf(errstr, n, "cannot create topic %s on %s: %s", rd_kafka_topic_result_name(res[i]),
                         brokers, rd_kafka_topic_result_error_string(res[i]));
                rc = -1;
            }
        if (ev)
            rd_kafka_event_destroy(ev);
    }
    for (size_t i = 0; i < nt; i++)
        if (t[i])
            rd_kafka_NewTopic_destroy(t[i]);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}

/* Removes the run's topics again (best effort: they only take space). */
void bench_topics_delete(const char *brokers, const char *const *topics, size_t nt) {
    char err[512];
    rd_kafka_t *rk = admin_client(brokers, err, sizeof err);
    if (!rk)
        return;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopic_t *d[BENCH_TOPICS_MAX];
    if (nt > BENCH_TOPICS_MAX)
        nt = BENCH_TOPICS_MAX;
    for (size_t i = 0; i < nt; i++)
        d[i] = rd_kafka_DeleteTopic_new(topics[i]);
    rd_kafka_DeleteTopics(rk, d, nt, NULL, q);
    rd_kafka_event_t *ev = admin_wait(rk, q, err, sizeof err);
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_DeleteTopic_destroy_array(d, nt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
}
