/* broker.c: the embedded Kafka-protocol broker, librdkafka's mock cluster
 * behind the small sf_broker contract, so `sigflow broker`, `sigflow demo` and
 * the tests get a real TCP broker on loopback without a JVM.
 *
 * The mock cluster lives inside an rd_kafka_t handle: we create an idle
 * producer only to host it (it never produces). One broker is enough: the
 * mock serves every broker from a single thread anyway, and one broker keeps
 * the bootstrap address a single HOST:PORT. Transactions and consumer groups
 * work on it (the coordinator is that broker). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sigflow/broker.h"

#define SF_BROKER_COUNT 1

struct sf_broker {
    rd_kafka_t *rk;                /* hosts the cluster; never produces */
    rd_kafka_mock_cluster_t *mc;
    char *bootstrap;
};

/* The host handle has no bootstrap.servers of its own, which librdkafka
 * reports as a configuration warning; nothing it logs concerns the caller. */
static void sf_broker_quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                                const char *buf) {
    (void)rk, (void)level, (void)fac, (void)buf;
}

/* The 2.0.2 mock thread can lose the wakeup of an op posted right after the
 * previous op's reply (it drains its wakeup pipe after serving ops), and then
 * sleeps out its 1 s poll timeout: topic creation took ~1 s per start. Giving
 * the thread a millisecond to finish its loop before each op avoids that; it
 * only affects speed, never the outcome. */
static void sf_broker_settle(void) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
}

int sf_broker_start(sf_broker **out, int partitions, const char *const *topics,
                    size_t n_topics, char *errstr, size_t errstr_size) {
    char rderr[512];
    *out = NULL;
    if (partitions < 1 || partitions > 10000) {
        snprintf(errstr, errstr_size, "broker: partition count %d out of range 1..10000",
                 partitions);
        return -1;
    }
    sf_broker *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(errstr, errstr_size, "broker: out of memory");
        return -1;
    }
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, sf_broker_quiet_log);
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof rderr);
    if (!b->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "broker: cannot create host handle: %s", rderr);
        free(b);
        return -1;
    }
    b->mc = rd_kafka_mock_cluster_new(b->rk, SF_BROKER_COUNT);
    if (!b->mc) {
        snprintf(errstr, errstr_size, "broker: cannot start the mock cluster on loopback");
        sf_broker_stop(b);
        return -1;
    }
    for (size_t i = 0; i < n_topics; i++) {
        if (!topics[i] || !topics[i][0]) {
            snprintf(errstr, errstr_size, "broker: topic %zu has an empty name", i + 1);
            sf_broker_stop(b);
            return -1;
        }
        sf_broker_settle();
        rd_kafka_resp_err_t err =
            rd_kafka_mock_topic_create(b->mc, topics[i], partitions, SF_BROKER_COUNT);
        if (err) {
            snprintf(errstr, errstr_size, "broker: cannot create topic %s: %s", topics[i],
                     rd_kafka_err2str(err));
            sf_broker_stop(b);
            return -1;
        }
    }
    b->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(b->mc));
    if (!b->bootstrap) {
        snprintf(errstr, errstr_size, "broker: out of memory");
        sf_broker_stop(b);
        return -1;
    }
    *out = b;
    return 0;
}

const char *sf_broker_bootstrap(const sf_broker *b) {
    return b->bootstrap;
}

void sf_broker_set_down(sf_broker *b, int down) {
    for (int id = 1; id <= SF_BROKER_COUNT; id++) {
        sf_broker_settle();
        if (down)
            rd_kafka_mock_broker_set_down(b->mc, id);
        else
            rd_kafka_mock_broker_set_up(b->mc, id);
    }
}

void sf_broker_stop(sf_broker *b) {
    if (!b)
        return;
    if (b->mc)
        rd_kafka_mock_cluster_destroy(b->mc);
    if (b->rk)
        rd_kafka_destroy(b->rk);
    free(b->bootstrap);
    free(b);
}
