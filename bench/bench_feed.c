/* bench_feed.c: the producer side of sigflow-bench.
 *
 * sf_replay_run paces or floods, and flooding the embedded broker (a few MB
 * per partition) faster than the pipeline reads would make it drop unread
 * events and the measurement with them. So the feed has its own loop: paced at
 * a fixed rate for latency, or closed-loop for throughput, keeping a bounded
 * number of events between the producer and the pipeline's consumer so the
 * pipeline never waits for input.
 *
 * The events are the replay reader's JSON, rendered once up front: the feed
 * shares the machine with what it measures, and decompressing and converting
 * the CSV again for every event cost about 2 us of CPU an event. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "sigflow/clock.h"
#include "sigflow/kafka.h"
#include "sigflow/replay.h"
#include "bench.h"

struct bench_events {
    size_t n;
    char *arena;         /* every value, key and truth, NUL-terminated, back to back */
    size_t *value, *value_len, *key, *key_len; /* offsets into arena */
    size_t *truth, *truth_len; /* the event's truth message (length 0: none) */
};

struct bench_feed {
    bench_feed_conf conf;
    rd_kafka_t *rk;
    pthread_t tid;
    atomic_int stop;
    atomic_uint_least64_t sent;
    atomic_uint_least64_t delivered; /* written by delivery reports, on the feed thread */
    atomic_uint_least64_t failed;
    uint64_t consumed0; /* the pipeline's consumed count when the feed started */
    atomic_uint_least64_t truth_sent, truth_delivered;
    int rc;
    char err[512];
};

/* The opaque of a truth message (an event's carries its produce time). */
static char truth_marker;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    bench_feed *f = opaque;
    if (m->_private == &truth_marker && !m->err) {
        atomic_fetch_add(&f->truth_delivered, 1);
        return;
    }
    if (m->err) {
        if (atomic_fetch_add(&f->failed, 1) == 0)
            snprintf(f->err, sizeof f->err, "delivery to %s failed: %s",
                     rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    } else {
        bench_hist *h = f->conf.ack_hist ? atomic_load(f->conf.ack_hist) : NULL;
        /* The produce time rides in the opaque (the report's timestamp is not
         * the one the pipeline sees). */
        intptr_t sent_ms = (intptr_t)m->_private;
        if (h && sent_ms > 0)
            bench_hist_add(h, sf_clock_wall_ms() - (double)sent_ms);
        atomic_fetch_add(&f->delivered, 1);
    }
}

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

void bench_events_free(bench_events *ev) {
    if (!ev)
        return;
    free(ev->arena);
    free(ev->value);
    free(ev->value_len);
    free(ev->key);
    free(ev->key_len);
    free(ev->truth);
    free(ev->truth_len);
    free(ev);
}

/* Appends len bytes to the arena; returns their offset, or (size_t)-1. */
static size_t arena_add(bench_events *ev, size_t *used, size_t *cap, const char *p, size_t len) {
    if (*used + len > *cap) {
        size_t ncap = *cap ? *cap : 1 << 20;
        while (*used + len > ncap)
            ncap *= 2;
        char *a = realloc(ev->arena, ncap);
        if (!a)
            return (size_t)-1;
        ev->arena = a;
        *cap = ncap;
    }
    if (len)
        memcpy(ev->arena + *used, p, len);
    *used += len;
    return *used - len;
}

int bench_events_load(bench_events **out, const char *path, char *errstr, size_t n) {
    *out = NULL;
    sf_replay *r;
    if (sf_replay_open(&r, path, NULL, NULL, errstr, n))
        return -1;
    bench_events *ev = calloc(1, sizeof *ev);
    size_t used = 0, cap = 0, slots = 0;
    int rc = ev ? 0 : -1;
    while (rc == 0) {
        sf_replay_msg m;
        int got = sf_replay_next(r, &m, errstr, n);
        if (got == SF_REPLAY_EOF)
            break;
        if (got == SF_REPLAY_BAD)
            continue;
        if (got != SF_REPLAY_ROW) {
            rc = -1;
            break;
        }
        if (ev->n == slots) {
            slots = slots ? 2 * slots : 4096;
            size_t **arrays[] = {&ev->value, &ev->value_len, &ev->key, &ev->key_len,
                                 &ev->truth, &ev->truth_len};
            for (size_t i = 0; i < 6 && rc == 0; i++) {
                size_t *a = realloc(*arrays[i], slots * sizeof *a);
                if (a)
                    *arrays[i] = a;
                else
                    rc = -1;
            }
        }
        /* Each NUL-terminated, as the replay reader hands them out. */
        size_t v = rc ? (size_t)-1 : arena_add(ev, &used, &cap, m.value, m.value_len + 1);
        size_t k = v == (size_t)-1 ? v : arena_add(ev, &used, &cap, m.key ? m.key : "", m.key ? m.key_len + 1 : 1);
        char truth[128];
        int tl = sf_replay_truth_format(&m, SF_REPLAY_DEFAULT_KEY, truth, sizeof truth);
        size_t t = k == (size_t)-1 ? k : arena_add(ev, &used, &cap, truth, tl > 0 ? (size_t)tl + 1 : 1);
        if (t == (size_t)-1) {
            snprintf(errstr, n, "out of memory reading %s", path);
            rc = -1;
            break;
        }
        ev->value[ev->n] = v;
        ev->value_len[ev->n] = m.value_len;
        ev->key[ev->n] = k;
        ev->key_len[ev->n] = m.key ? m.key_len : 0;
        ev->truth[ev->n] = t;
        ev->truth_len[ev->n] = tl > 0 ? (size_t)tl : 0;
        ev->n++;
    }
    sf_replay_close(r);
    if (rc == 0 && (!ev || ev->n == 0)) {
        snprintf(errstr, n, ev ? "%s: no events" : "out of memory reading %s", path);
        rc = -1;
    }
    if (rc) {
        bench_events_free(ev);
        return -1;
    }
    *out = ev;
    return 0;
}

size_t bench_events_count(const bench_events *ev) {
    return ev->n;
}

double bench_events_mean_bytes(const bench_events *ev) {
    double sum = 0;
    for (size_t i = 0; i < ev->n; i++)
        sum += (double)(ev->value_len[i] + ev->key_len[i]);
    return ev->n ? sum / (double)ev->n : 0;
}

const char *bench_events_value(const bench_events *ev, size_t i, size_t *len) {
    *len = ev->value_len[i];
    return ev->arena + ev->value[i];
}

/* May the next event go now? Otherwise sleeps a little and says no. */
static int may_send(bench_feed *f, double t0, uint64_t sent) {
    const bench_feed_conf *c = &f->conf;
    uint64_t consumed = sf_metrics_get(c->metrics, SF_C_CONSUMED) - f->consumed0;
    if (c->rate > 0 && c->bounded && sent >= consumed + c->window) {
        /* Paced, but never more than the window ahead of the pipeline: the
         * embedded broker drops unread events beyond a few MB a partition. */
        rd_kafka_poll(f->rk, 1);
        return 0;
    }
    if (c->rate > 0) {
        /* Whatever is due goes out at once, then a whole millisecond's sleep:
         * waking for every event (50 us apart at 20,000/s) cost the feed
         * several times the CPU of the events themselves. Timestamps are taken
         * as each event is produced, so the bursts bias no latency. */
        if (t0 + (double)sent / c->rate <= sf_clock_s())
            return 1;
        rd_kafka_poll(f->rk, 0);
        sleep_s(0.001);
        return 0;
    }
    if (sent < consumed + c->window)
        return 1;
    rd_kafka_poll(f->rk, 1); /* serves delivery reports while it waits */
    return 0;
}

/* One of each way an event is refused before the model: not JSON, not an
 * object, a field the model needs missing, a number that is text. */
static const char *const bad_events[] = {
    "{\"EventId\": 1, \"DER_mass_MMC\": ",
    "[\"EventId\", 1]",
    "{\"EventId\": 2}",
    "{\"EventId\": 3, \"DER_mass_MMC\": \"heavy\"}",
};
#define N_BAD_EVENTS (sizeof bad_events / sizeof bad_events[0])

static void *feed_thread(void *arg) {
    bench_feed *f = arg;
    const bench_events *ev = f->conf.events;
    bench_thread_name("sf-feed");
    double t0 = sf_clock_s();
    uint64_t sent = 0;
    while (!atomic_load(&f->stop) && !(f->conf.limit && sent >= f->conf.limit)) {
        if (!may_send(f, t0, sent))
            continue;
        size_t i = (size_t)(sent % ev->n);
        const char *key = ev->key_len[i] ? ev->arena + ev->key[i] : NULL;
        size_t key_len = ev->key_len[i];
        const char *value = ev->arena + ev->value[i];
        size_t value_len = ev->value_len[i];
        uint64_t every = f->conf.bad_every;
        if (every && sent % every == every - 1) { /* the soak's sprinkle of bad input */
            value = bad_events[(sent / every) % N_BAD_EVENTS];
            value_len = strlen(value);
        }
        /* No copy: the events outlive the producer. */
        rd_kafka_resp_err_t err;
        while ((err = rd_kafka_producev(
                    f->rk, RD_KAFKA_V_TOPIC(f->conf.topic), RD_KAFKA_V_KEY(key, key_len),
                    RD_KAFKA_V_VALUE((void *)value, value_len),
                    RD_KAFKA_V_OPAQUE((void *)(intptr_t)sf_clock_wall_ms()), RD_KAFKA_V_END)) ==
                   RD_KAFKA_RESP_ERR__QUEUE_FULL &&
               !atomic_load(&f->stop))
            rd_kafka_poll(f->rk, 10);
        if (err) {
            if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                snprintf(f->err, sizeof f->err, "cannot produce to %s: %s", f->conf.topic,
                         rd_kafka_err2str(err));
                f->rc = -1;
            }
            break;
        }
        /* Its truth at once: the pipeline joins whichever comes first. */
        if (f->conf.truth_topic && ev->truth_len[i] && !f->rc) {
            while ((err = rd_kafka_producev(
                        f->rk, RD_KAFKA_V_TOPIC(f->conf.truth_topic),
                        RD_KAFKA_V_VALUE(ev->arena + ev->truth[i], ev->truth_len[i]),
                        RD_KAFKA_V_OPAQUE(&truth_marker), RD_KAFKA_V_END)) ==
                       RD_KAFKA_RESP_ERR__QUEUE_FULL &&
                   !atomic_load(&f->stop))
                rd_kafka_poll(f->rk, 10);
            if (err && err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                snprintf(f->err, sizeof f->err, "cannot produce to %s: %s", f->conf.truth_topic,
                         rd_kafka_err2str(err));
                f->rc = -1;
                break;
            }
            if (!err)
                atomic_fetch_add(&f->truth_sent, 1);
        }
        atomic_store(&f->sent, ++sent);
        if (sent % 64 == 0)
            rd_kafka_poll(f->rk, 0);
    }
    rd_kafka_flush(f->rk, 30000);
    return NULL;
}

/* A new producer learns the topic's leaders only from its first message on,
 * holding everything produced meanwhile (about a second): the paced clock
 * must not start before that. */
static int learn_topic(bench_feed *f, char *errstr, size_t n) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(f->rk, f->conf.topic, NULL);
    if (!rkt) {
        snprintf(errstr, n, "cannot create topic handle %s", f->conf.topic);
        return -1;
    }
    /* A topic Kafka has just created can be unknown to the broker answering
     * for a moment (on a loaded machine, seconds): ask again until it is known. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;
    int64_t deadline = sf_clock_ms() + 30000;
    for (;;) {
        err = rd_kafka_metadata(f->rk, 0, rkt, &md, 10000);
        if (!err && (md->topic_cnt != 1 || md->topics[0].err))
            err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
        if ((err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART &&
             err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) ||
            sf_clock_ms() > deadline)
            break;
        if (md)
            rd_kafka_metadata_destroy(md);
        md = NULL;
        rd_kafka_poll(f->rk, 100);
    }
    if (err)
        snprintf(errstr, n, "no metadata for topic %s: %s", f->conf.topic, rd_kafka_err2str(err));
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return err ? -1 : 0;
}

/* The feed's librdkafka threads are the bench's cost, not sigflow's: renamed
 * as they start (after librdkafka has named them "rdk:*"), they count as the
 * feed in bench_sys.c's thread groups, apart from the pipeline's clients. */
static rd_kafka_resp_err_t on_thread_start(rd_kafka_t *rk, rd_kafka_thread_type_t type,
                                           const char *name, void *opaque) {
    (void)rk, (void)type, (void)name, (void)opaque;
    bench_thread_name("sf-feed-rdk");
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static rd_kafka_resp_err_t on_new(rd_kafka_t *rk, const rd_kafka_conf_t *conf, void *opaque,
                                  char *errstr, size_t n) {
    (void)conf, (void)errstr, (void)n;
    return rd_kafka_interceptor_add_on_thread_start(rk, "sf-feed", on_thread_start, opaque);
}

static void feed_free(bench_feed *f) {
    if (f->rk)
        rd_kafka_destroy(f->rk);
    free(f);
}

int bench_feed_start(bench_feed **out, const bench_feed_conf *c, char *errstr, size_t n) {
    *out = NULL;
    bench_feed *f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    f->conf = *c;
    f->consumed0 = sf_metrics_get(c->metrics, SF_C_CONSUMED);
    /* The replay tool's settings: batches of up to 10,000 messages, 5 ms linger. */
    static const char *const props[] = {
        "linger.ms", "5", "batch.num.messages", "10000", "compression.codec", "none",
        "queue.buffering.max.messages", "100000", NULL};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    int bad = sf_kafka_conf_set(conf, "bootstrap.servers", c->brokers, errstr, n);
    for (size_t i = 0; !bad && props[i]; i += 2)
        bad = sf_kafka_conf_set(conf, props[i], props[i + 1], errstr, n);
    if (!bad) {
        rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
        rd_kafka_conf_set_opaque(conf, f);
        rd_kafka_conf_interceptor_add_on_new(conf, "sf-feed", on_new, NULL);
        char rderr[512];
        if (!(f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rderr, sizeof rderr))) {
            snprintf(errstr, n, "cannot create the feed's producer: %s", rderr);
            bad = 1;
        }
    }
    if (bad) {
        if (!f->rk)
            rd_kafka_conf_destroy(conf);
        feed_free(f);
        return -1;
    }
    if (learn_topic(f, errstr, n)) {
        feed_free(f);
        return -1;
    }
    if (pthread_create(&f->tid, NULL, feed_thread, f)) {
        snprintf(errstr, n, "cannot start the feed thread");
        feed_free(f);
        return -1;
    }
    *out = f;
    return 0;
}

uint64_t bench_feed_sent(const bench_feed *f) {
    return atomic_load(&f->sent);
}

int bench_feed_stop(bench_feed *f, uint64_t *delivered, char *errstr, size_t n) {
    atomic_store(&f->stop, 1);
    pthread_join(f->tid, NULL);
    *delivered = atomic_load(&f->delivered);
    int rc = f->rc;
    uint64_t failed = atomic_load(&f->failed), sent = atomic_load(&f->sent);
    if (rc == 0 && atomic_load(&f->truth_delivered) != atomic_load(&f->truth_sent)) {
        snprintf(f->err, sizeof f->err, "%llu truth messages undelivered after 30 s",
                 (unsigned long long)(atomic_load(&f->truth_sent) -
                                      atomic_load(&f->truth_delivered)));
        rc = -1;
    }
    if (rc == 0 && failed > 0) {
        rc = -1;
    } else if (rc == 0 && *delivered != sent) {
        snprintf(f->err, sizeof f->err, "%llu of %llu events still undelivered after 30 s",
                 (unsigned long long)(sent - *delivered), (unsigned long long)sent);
        rc = -1;
    }
    if (rc)
        snprintf(errstr, n, "feed: %s", f->err);
    feed_free(f);
    return rc;
}
