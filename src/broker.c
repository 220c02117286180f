/* broker.c: the embedded Kafka-protocol broker, librdkafka's mock cluster
 * behind the small sf_broker contract, so `sigflow broker`, `sigflow demo` and
 * the tests get a real TCP broker on loopback without a JVM.
 *
 * The mock cluster lives inside an rd_kafka_t handle: we create an idle
 * producer only to host it (it never produces), configured with
 * test.mock.num.brokers rather than rd_kafka_mock_cluster_new(): in 2.0.2 an
 * explicitly created cluster takes up to a second to destroy (a broker thread
 * joined on shutdown sleeps out its timeout), the configured one a
 * millisecond, and tests start and stop many brokers. One broker is enough: the
 * mock serves every broker from a single thread anyway, and one broker keeps
 * the bootstrap address a single HOST:PORT. Transactions and consumer groups
 * work on it (the coordinator is that broker). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "sigflow/broker.h"

#define SF_BROKER_COUNT 1

struct sf_broker {
    rd_kafka_t *rk;                /* hosts the cluster; never produces */
    rd_kafka_mock_cluster_t *mc;
    char *bootstrap;
};

/* Nothing the host handle logs concerns the caller: it is only a client of
 * its own cluster, and idle. */
static void broker_quiet_log(const rd_kafka_t *rk, int level, const char *fac,
                                const char *buf) {
    (void)rk, (void)level, (void)fac, (void)buf;
}

/* Waking the mock thread. In 2.0.2 it serves its op queue right after poll()
 * returns and drains its wakeup pipe afterwards, so an op posted in between
 * (typically while it handles connections) loses its wakeup and waits out the
 * 1 s poll timeout: sf_broker_set_down took up to a second, at random (topic
 * creation can hit it too).
 * While an op is pending, a nudger thread keeps connecting to the broker's
 * listener; each connection makes poll() return, so the op is served within
 * milliseconds. It changes only how fast, never what, the mock does. */
typedef struct {
    struct sockaddr_in addr;
    atomic_int done;
    pthread_t thread;
    int running;
} nudger;

static void *nudge_loop(void *arg) {
    nudger *n = arg;
    while (!atomic_load(&n->done)) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s >= 0) {
            (void)connect(s, (const struct sockaddr *)&n->addr, sizeof n->addr);
            close(s);
        }
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* Starts nudging the first broker of `bootstrap` ("127.0.0.1:PORT,..."); when
 * that fails the op merely risks the slow path. */
static void nudge_start(nudger *n, const char *bootstrap) {
    memset(n, 0, sizeof *n);
    const char *colon = bootstrap ? strchr(bootstrap, ':') : NULL;
    if (!colon)
        return;
    char host[64];
    size_t hlen = (size_t)(colon - bootstrap);
    if (hlen >= sizeof host)
        return;
    memcpy(host, bootstrap, hlen);
    host[hlen] = '\0';
    n->addr.sin_family = AF_INET;
    n->addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &n->addr.sin_addr) != 1)
        return;
    atomic_init(&n->done, 0);
    n->running = pthread_create(&n->thread, NULL, nudge_loop, n) == 0;
}

static void nudge_stop(nudger *n) {
    if (!n->running)
        return;
    atomic_store(&n->done, 1);
    pthread_join(n->thread, NULL);
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
    rd_kafka_conf_set_log_cb(conf, broker_quiet_log);
    char count[16];
    snprintf(count, sizeof count, "%d", SF_BROKER_COUNT);
    if (rd_kafka_conf_set(conf, "test.mock.num.brokers", count, rderr, sizeof rderr) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "broker: %s", rderr);
        free(b);
        return -1;
    }
    b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof rderr);
    if (!b->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "broker: cannot create host handle: %s", rderr);
        free(b);
        return -1;
    }
    b->mc = rd_kafka_handle_mock_cluster(b->rk);
    if (!b->mc) {
        snprintf(errstr, errstr_size, "broker: cannot start the mock cluster on loopback");
        sf_broker_stop(b);
        return -1;
    }
    b->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(b->mc));
    if (!b->bootstrap) {
        snprintf(errstr, errstr_size, "broker: out of memory");
        sf_broker_stop(b);
        return -1;
    }
    nudger n;
    nudge_start(&n, b->bootstrap);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    size_t i;
    for (i = 0; i < n_topics && !err; i++) {
        if (!topics[i] || !topics[i][0])
            break;
        err = rd_kafka_mock_topic_create(b->mc, topics[i], partitions, SF_BROKER_COUNT);
    }
    nudge_stop(&n);
    if (i < n_topics && !err) {
        snprintf(errstr, errstr_size, "broker: topic %zu has an empty name", i + 1);
        sf_broker_stop(b);
        return -1;
    }
    if (err) {
        snprintf(errstr, errstr_size, "broker: cannot create topic %s: %s", topics[i - 1],
                 rd_kafka_err2str(err));
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
    nudger n;
    nudge_start(&n, b->bootstrap);
    for (int id = 1; id <= SF_BROKER_COUNT; id++) {
        if (down)
            rd_kafka_mock_broker_set_down(b->mc, id);
        else
            rd_kafka_mock_broker_set_up(b->mc, id);
    }
    nudge_stop(&n);
}

void sf_broker_stop(sf_broker *b) {
    if (!b)
        return;
    /* The host handle owns the cluster and destroys it with itself. */
    if (b->rk)
        rd_kafka_destroy(b->rk);
    free(b->bootstrap);
    free(b);
}
