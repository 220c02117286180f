/* support.c: shared plumbing for the Kafka-facing tests (see support.h). */
#define _GNU_SOURCE /* close_range */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "sigflow/clock.h"
#include "sigflow/replay.h"
#include "support.h"

extern char **environ;

int64_t sft_now_ms(void) {
    return sf_clock_ms();
}

unsigned sft_seed(void) {
    const char *env = getenv("SIGFLOW_TEST_SEED");
    unsigned seed = env && *env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)sft_now_ms();
    srand(seed);
    return seed;
}

void sft_nap_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

size_t sft_count_lines(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

const char *sft_tmpdir(void) {
    const char *dir = getenv("TMPDIR");
    return dir && *dir ? dir : P_tmpdir;
}

sf_broker *sft_broker(int partitions, const char *const *topics, size_t n_topics) {
    sf_broker *b = NULL;
    char err[512];
    if (sf_broker_start(&b, partitions > 0 ? partitions : 8, topics, n_topics, err, sizeof err))
        fail_msg("broker: %s", err);
    return b;
}


/* Deletes each topic (absent ones are fine) and waits until the cluster no
 * longer lists them, so they can be created afresh. */
static void delete_topics(rd_kafka_t *rk, const char *const *topics, size_t n) {
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_DeleteTopic_t **del = calloc(n, sizeof *del);
    assert_non_null(del);
    for (size_t i = 0; i < n; i++)
        del[i] = rd_kafka_DeleteTopic_new(topics[i]);
    rd_kafka_DeleteTopics(rk, del, n, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
    if (!ev || rd_kafka_event_error(ev))
        fail_msg("DeleteTopics: %s", ev ? rd_kafka_event_error_string(ev) : "timed out");
    rd_kafka_event_destroy(ev);
    rd_kafka_DeleteTopic_destroy_array(del, n);
    free(del);
    rd_kafka_queue_destroy(q);
}

/* Creates the topics, retrying while a deletion of the same name is still
 * going through the controller. */
static void create_topics(rd_kafka_t *rk, int partitions, int rf, const char *const *topics,
                          size_t n, const char *const *configs) {
    char err[512];
    int64_t deadline = sft_now_ms() + 60000;
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    for (size_t i = 0; i < n; i++) {
        for (;;) {
            rd_kafka_NewTopic_t *t = rd_kafka_NewTopic_new(topics[i], partitions, rf, err, sizeof err);
            if (!t)
                fail_msg("NewTopic %s: %s", topics[i], err);
            for (const char *const *kv = configs; kv && kv[0]; kv += 2)
                rd_kafka_NewTopic_set_config(t, kv[0], kv[1]);
            rd_kafka_CreateTopics(rk, &t, 1, NULL, q);
            rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
            rd_kafka_NewTopic_destroy(t);
            if (!ev)
                fail_msg("CreateTopics %s: timed out", topics[i]);
            size_t cnt = 0;
            const rd_kafka_topic_result_t **res =
                rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
            rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
            char msg[512];
            snprintf(msg, sizeof msg, "%s", rd_kafka_event_error_string(ev));
            if (!e && cnt == 1 && rd_kafka_topic_result_error(res[0])) {
                e = rd_kafka_topic_result_error(res[0]);
                snprintf(msg, sizeof msg, "%s", rd_kafka_topic_result_error_string(res[0]));
            }
            rd_kafka_event_destroy(ev);
            if (!e)
                break;
            /* INVALID_REPLICATION_FACTOR: "All brokers are currently fenced", a
             * loaded node missed its 4 s heartbeat (kafka.sh) and rejoins. */
            if ((e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS &&
                 e != RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR) ||
                sft_now_ms() > deadline)
                fail_msg("CreateTopics %s: %s", topics[i], msg);
            sft_nap_ms(200);
        }
    }
    rd_kafka_queue_destroy(q);
}

/* 1 when rk's metadata shows topic with `partitions` partitions, each led. */
static int topic_led(rd_kafka_t *rk, const char *topic, int partitions) {
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    int ok = 0;
    if (!rd_kafka_metadata(rk, 0, t, &md, 5000)) {
        ok = md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt == partitions;
        for (int p = 0; ok && p < md->topics[0].partition_cnt; p++)
            ok = md->topics[0].partitions[p].leader >= 0 && !md->topics[0].partitions[p].err;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(t);
    return ok;
}

/* Waits until every node of the cluster knows every topic with a leader for
 * each partition. Asking one node is not enough: a client that bootstraps
 * from another may hear "unknown topic" for a moment. Suspected, not proven:
 * before this waited for every node, test_ops_failover's replay lost 3
 * acknowledged rows once in 12 runs under load, which is what librdkafka
 * issue #3712 describes (an idempotent producer that sees a partition vanish
 * and come back restarts its sequence numbers, and the broker drops the next
 * batches as duplicates). */
static void wait_leaders(const char *bootstrap, int partitions, const char *const *topics,
                         size_t n) {
    int64_t deadline = sft_now_ms() + 60000;
    char *list = strdup(bootstrap), *save = NULL;
    assert_non_null(list);
    for (char *node = strtok_r(list, ",", &save); node; node = strtok_r(NULL, ",", &save)) {
        rd_kafka_t *rk = sft_client(RD_KAFKA_PRODUCER, node, NULL);
        for (size_t i = 0; i < n; i++) {
            while (!topic_led(rk, topics[i], partitions)) {
                if (sft_now_ms() > deadline)
                    fail_msg("node %s: topic %s has no leader for every partition after 60 s",
                             node, topics[i]);
                sft_nap_ms(100);
            }
        }
        rd_kafka_destroy(rk);
    }
    free(list);
}

sft_kafka *sft_kafka_open(int partitions, const char *const *topics, size_t n_topics,
                          const char *const *configs, int need_real) {
    sft_kafka *k = calloc(1, sizeof *k);
    assert_non_null(k);
    partitions = partitions > 0 ? partitions : 8;
    const char *dir = getenv("SF_TEST_KAFKA_DIR");
    if (!dir || !*dir) {
        if (need_real)
            fail_msg("this test needs Apache Kafka: run it through ctest (its fixture starts a "
                     "cluster) or set SF_TEST_KAFKA_DIR to a `tests/kafka/kafka.sh start DIR`");
        k->mock = sft_broker(partitions, topics, n_topics);
        k->bootstrap = sf_broker_bootstrap(k->mock);
        k->nodes = 1;
        return k;
    }
    k->real = 1;
    k->dir = strdup(dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/bootstrap", dir);
    k->bs_copy = sft_read_file(path, NULL);
    if (!k->bs_copy)
        fail_msg("no cluster in %s (%s unreadable)", dir, path);
    k->bs_copy[strcspn(k->bs_copy, "\n")] = '\0';
    k->bootstrap = k->bs_copy;
    snprintf(path, sizeof path, "%s/size", dir);
    char *size = sft_read_file(path, NULL);
    k->nodes = size ? atoi(size) : 1;
    free(size);
    rd_kafka_t *rk = sft_client(RD_KAFKA_PRODUCER, k->bootstrap, NULL);
    delete_topics(rk, topics, n_topics);
    create_topics(rk, partitions, k->nodes < 3 ? k->nodes : 3, topics, n_topics, configs);
    rd_kafka_destroy(rk);
    wait_leaders(k->bootstrap, partitions, topics, n_topics);
    return k;
}

void sft_kafka_close(sft_kafka *k) {
    if (!k)
        return;
    if (k->mock)
        sf_broker_stop(k->mock);
    free(k->dir);
    free(k->bs_copy);
    free(k);
}

void sft_kafka_node(sft_kafka *k, const char *cmd, int node) {
    assert_true(k->real);
    char idx[16];
    snprintf(idx, sizeof idx, "%d", node);
    char *const argv[] = {"/bin/bash", SF_SOURCE_DIR "/tests/kafka/kafka.sh", (char *)cmd, k->dir,
                          idx, NULL};
    int rc = sft_wait(sft_spawn(argv, NULL, NULL, NULL), 120000);
    if (rc)
        fail_msg("kafka.sh %s %s %d: exit %d", cmd, k->dir, node, rc);
}

int sft_partition_leader(const char *brokers, const char *topic, int partition) {
    rd_kafka_t *rk = sft_client(RD_KAFKA_PRODUCER, brokers, NULL);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    int leader = -1;
    if (!rd_kafka_metadata(rk, 0, t, &md, 10000)) {
        if (md->topic_cnt == 1 && partition < md->topics[0].partition_cnt)
            leader = md->topics[0].partitions[partition].leader;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(rk);
    return leader;
}

struct sft_feed {
    char *brokers, *topic;
    size_t n, bad_every;
    int rate;
    long first_bad;
    pthread_t thread;
    atomic_size_t sent;
    atomic_size_t hold_at; /* events before the pause; n: none */
    size_t delivered;
    char *err;
};

static void feed_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    sft_feed *f = opaque;
    if (!m->err)
        f->delivered++;
    else if (!f->err)
        f->err = strdup(rd_kafka_err2str(m->err));
}

static void feed_one(rd_kafka_t *rk, const char *topic, const char *key, const char *value) {
    while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                             RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                             RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 10);
}

static void *feed_run(void *arg) {
    sft_feed *f = arg;
    char **keys, **values;
    sft_atlas_events(f->n, &keys, &values);
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", f->brokers, err, sizeof err);
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err);
    rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err);
    rd_kafka_conf_set(conf, "message.timeout.ms", "0", err, sizeof err); /* outlive a broker failure */
    rd_kafka_conf_set_dr_msg_cb(conf, feed_delivery);
    rd_kafka_conf_set_opaque(conf, f);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        f->err = strdup(err);
        return NULL;
    }
    int64_t t0 = sft_now_ms();
    for (size_t i = 0; i < f->n; i++) {
        if (i == atomic_load(&f->hold_at)) { /* paused until released, then paced from then on */
            while (i == atomic_load(&f->hold_at))
                rd_kafka_poll(rk, 10);
            t0 = sft_now_ms() - (int64_t)i * 1000 / f->rate;
        }
        int64_t due = t0 + (int64_t)i * 1000 / f->rate; /* pacing: event i is due then */
        while (sft_now_ms() < due)
            rd_kafka_poll(rk, (int)(due - sft_now_ms()));
        feed_one(rk, f->topic, keys[i], values[i]);
        if (f->bad_every && i % f->bad_every == f->bad_every - 1) {
            char key[32], value[64];
            snprintf(key, sizeof key, "%ld", f->first_bad + (long)(i / f->bad_every));
            snprintf(value, sizeof value, "not json %zu", i);
            feed_one(rk, f->topic, key, value);
        }
        atomic_store(&f->sent, i + 1);
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 120000);
    rd_kafka_destroy(rk);
    sft_strings_free(keys, f->n);
    sft_strings_free(values, f->n);
    return NULL;
}

sft_feed *sft_feed_start(const char *brokers, const char *topic, size_t n, int rate, size_t bad_every,
                         long first_bad) {
    return sft_feed_start_held(brokers, topic, n, rate, bad_every, first_bad, n);
}

sft_feed *sft_feed_start_held(const char *brokers, const char *topic, size_t n, int rate,
                              size_t bad_every, long first_bad, size_t hold_at) {
    sft_feed *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->brokers = strdup(brokers);
    f->topic = strdup(topic);
    f->n = n;
    f->rate = rate > 0 ? rate : 1;
    f->bad_every = bad_every;
    f->first_bad = first_bad;
    atomic_store(&f->hold_at, hold_at);
    assert_int_equal(pthread_create(&f->thread, NULL, feed_run, f), 0);
    return f;
}

void sft_feed_release(sft_feed *f) {
    atomic_store(&f->hold_at, f->n);
}

size_t sft_feed_sent(sft_feed *f) {
    return atomic_load(&f->sent);
}

size_t sft_feed_join(sft_feed *f) {
    assert_int_equal(pthread_join(f->thread, NULL), 0);
    if (f->err)
        fail_msg("feeding %s: %s", f->topic, f->err);
    size_t delivered = f->delivered;
    free(f->brokers);
    free(f->topic);
    free(f);
    return delivered;
}

static char *dup_n(const void *p, size_t n) {
    char *s = malloc(n + 1);
    assert_non_null(s);
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static char *header(rd_kafka_message_t *m, const char *name) {
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t len;
    if (rd_kafka_message_headers(m, &h) || !h || rd_kafka_header_get_last(h, name, &v, &len))
        return NULL;
    return dup_n(v, len);
}

/* Every header as "name=value\n" lines, in order. */
static char *all_headers(rd_kafka_message_t *m) {
    rd_kafka_headers_t *h = NULL;
    size_t cap = 1, len = 0;
    char *s = calloc(1, 1);
    assert_non_null(s);
    if (rd_kafka_message_headers(m, &h) || !h)
        return s;
    const char *name;
    const void *v;
    size_t vlen;
    for (size_t i = 0; !rd_kafka_header_get_all(h, i, &name, &v, &vlen); i++) {
        size_t need = len + strlen(name) + vlen + 3;
        if (need > cap) {
            cap = need * 2;
            s = realloc(s, cap);
            assert_non_null(s);
        }
        len += (size_t)sprintf(s + len, "%s=", name);
        if (vlen)
            memcpy(s + len, v, vlen);
        len += vlen;
        s[len++] = '\n';
        s[len] = '\0';
    }
    return s;
}

void sft_msgs_free(sft_msgs *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].key);
        free(m->v[i].value);
        free(m->v[i].error_header);
        free(m->v[i].source_header);
        free(m->v[i].headers);
    }
    free(m->v);
    memset(m, 0, sizeof *m);
}

rd_kafka_t *sft_client(rd_kafka_type_t type, const char *brokers, const char *const *kv) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err))
        fail_msg("%s", err);
    for (; kv && kv[0]; kv += 2)
        if (rd_kafka_conf_set(conf, kv[0], kv[1], err, sizeof err))
            fail_msg("%s=%s: %s", kv[0], kv[1], err);
    rd_kafka_t *rk = rd_kafka_new(type, conf, err, sizeof err);
    if (!rk)
        fail_msg("rd_kafka_new: %s", err);
    return rk;
}

sft_msgs sft_consume_all(const char *brokers, const char *topic, size_t expect, int quiet_ms,
                         int timeout_ms, int committed_only) {
    const char *kv[] = {"group.id", "sigflow-test-reader", "enable.auto.commit", "false",
                        "isolation.level", committed_only ? "read_committed" : "read_uncommitted",
                        NULL};
    rd_kafka_t *rk = sft_client(RD_KAFKA_CONSUMER, brokers, kv);
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, t, &md, 10000) || md->topic_cnt != 1 || md->topics[0].err)
        fail_msg("no metadata for topic %s", topic);
    int parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);

    sft_msgs out = {0};
    int64_t deadline = sft_now_ms() + timeout_ms, last = sft_now_ms();
    while (sft_now_ms() < deadline) {
        if ((expect == 0 || out.n >= expect) && sft_now_ms() - last >= quiet_ms)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (!m)
            continue;
        if (!m->err) {
            if (out.n == out.cap) {
                out.cap = out.cap ? out.cap * 2 : 256;
                out.v = realloc(out.v, out.cap * sizeof *out.v);
                assert_non_null(out.v);
            }
            rd_kafka_timestamp_type_t tt;
            sft_msg *s = &out.v[out.n++];
            s->key = m->key ? dup_n(m->key, m->key_len) : NULL;
            s->value = dup_n(m->payload, m->len);
            s->len = m->len;
            s->partition = m->partition;
            s->offset = m->offset;
            s->timestamp = rd_kafka_message_timestamp(m, &tt);
            s->error_header = header(m, "sigflow-error");
            s->source_header = header(m, "sigflow-source");
            s->headers = all_headers(m);
            last = sft_now_ms();
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return out;
}

static void count_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    if (!m->err)
        (*(size_t *)opaque)++;
}

size_t sft_produce(const char *brokers, const char *topic, const char *const *keys,
                   const char *const *values, const size_t *lens, size_t n) {
    return sft_produce_headers(brokers, topic, keys, values, lens, NULL, n);
}

/* "name=value\n" lines as headers (NULL: none). */
static rd_kafka_headers_t *parse_headers(const char *text) {
    if (!text)
        return NULL;
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    while (*text) {
        const char *eq = strchr(text, '='), *nl = strchr(text, '\n');
        assert_true(eq && nl && eq < nl);
        rd_kafka_header_add(h, text, eq - text, eq + 1, nl - eq - 1);
        text = nl + 1;
    }
    return h;
}

size_t sft_produce_headers(const char *brokers, const char *topic, const char *const *keys,
                           const char *const *values, const size_t *lens,
                           const char *const *headers, size_t n) {
    char err[512];
    size_t delivered = 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) ||
        rd_kafka_conf_set(conf, "message.max.bytes", "8000000", err, sizeof err) ||
        rd_kafka_conf_set(conf, "linger.ms", "5", err, sizeof err))
        fail_msg("%s", err);
    rd_kafka_conf_set_dr_msg_cb(conf, count_delivery);
    rd_kafka_conf_set_opaque(conf, &delivered);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        fail_msg("%s", err);
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(values[i]);
        rd_kafka_resp_err_t e;
        rd_kafka_headers_t *h = parse_headers(headers ? headers[i] : NULL);
        /* headers are the producer's after a success, still ours after a failure */
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
                                      RD_KAFKA_V_KEY(keys && keys[i] ? keys[i] : NULL,
                                                     keys && keys[i] ? strlen(keys[i]) : 0),
                                      RD_KAFKA_V_VALUE((void *)values[i], len),
                                      RD_KAFKA_V_HEADERS(h),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        if (e) {
            if (h)
                rd_kafka_headers_destroy(h);
            fail_msg("produce: %s", rd_kafka_err2str(e));
        }
    }
    rd_kafka_flush(rk, 30000);
    rd_kafka_destroy(rk);
    return delivered;
}

void sft_atlas_events(size_t n, char ***keys, char ***values) {
    char err[512];
    sf_replay *r;
    if (sf_replay_open(&r, SF_TEST_DATA, NULL, NULL, err, sizeof err))
        fail_msg("%s", err);
    *keys = calloc(n, sizeof **keys);
    *values = calloc(n, sizeof **values);
    assert_true(*keys && *values);
    sf_replay_msg m;
    for (size_t i = 0; i < n; i++) {
        if (sf_replay_next(r, &m, err, sizeof err) != SF_REPLAY_ROW)
            fail_msg("bundled data ended at row %zu: %s", i, err);
        (*keys)[i] = dup_n(m.key, m.key_len);
        (*values)[i] = dup_n(m.value, m.value_len);
    }
    sf_replay_close(r);
}

/* Replaces the value of field in a compact event with repl, or drops it (NULL). */
char *sft_edit_field(const char *event, const char *field, const char *repl) {
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\":", field);
    const char *at = strstr(event, pat);
    assert_non_null(at);
    const char *end = at + strlen(pat);
    end += strcspn(end, ",}");
    size_t cap = strlen(event) + (repl ? strlen(repl) : 0) + strlen(pat) + 2;
    char *s = malloc(cap);
    assert_non_null(s);
    if (repl) {
        snprintf(s, cap, "%.*s%s%s%s", (int)(at - event), event, pat, repl, end);
    } else if (*end == ',') {
        snprintf(s, cap, "%.*s%s", (int)(at - event), event, end + 1);
    } else { /* the last field: drop the comma before it */
        assert_true(at[-1] == ',');
        snprintf(s, cap, "%.*s%s", (int)(at - event - 1), event, end);
    }
    return s;
}

void sft_strings_free(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

pid_t sft_spawn(char *const argv[], const char *in_path, const char *out_path, const char *err_path) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, in_path ? in_path : "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_path ? out_path : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_path ? err_path : "/dev/null",
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    /* The in-process broker's sockets are not close-on-exec: a child holding
     * copies would keep "down" connections alive. */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc)
        fail_msg("cannot spawn %s: %s", argv[0], strerror(rc));
    return pid;
}

int sft_wait(pid_t pid, int timeout_ms) {
    int64_t deadline = sft_now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (sft_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sft_nap_ms(10);
    }
}

char *sft_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
            }
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len)
            *len = n;
    }
    return buf;
}

void sft_install(const char *dst, const char *bytes, size_t len) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.new", dst);
    FILE *out = fopen(tmp, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(bytes, 1, len, out), len);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(rename(tmp, dst), 0);
}

void sft_install_copy(const char *dst, const char *src) {
    size_t len;
    char *bytes = sft_read_file(src, &len);
    if (!bytes)
        fail_msg("cannot read %s", src);
    sft_install(dst, bytes, len);
    free(bytes);
}

int sft_wait_for_text(const char *path, const char *needle, int timeout_ms) {
    int64_t deadline = sft_now_ms() + timeout_ms;
    do {
        char *s = sft_read_file(path, NULL);
        int found = s && strstr(s, needle);
        free(s);
        if (found)
            return 1;
        sft_nap_ms(20);
    } while (sft_now_ms() < deadline);
    return 0;
}

char *sft_gunzip_temp(const char *gz_path, const char *suffix) {
    char *path = sft_temp_path(suffix);
    gzFile in = gzopen(gz_path, "rb");
    FILE *out = fopen(path, "wb");
    if (!in || !out)
        fail_msg("%s: cannot open (or %s cannot be written)", gz_path, path);
    char buf[65536];
    int n;
    while ((n = gzread(in, buf, sizeof buf)) > 0)
        assert_int_equal(fwrite(buf, 1, (size_t)n, out), (size_t)n);
    assert_int_equal(n, 0);
    assert_int_equal(gzclose(in), Z_OK);
    assert_int_equal(fclose(out), 0);
    return path;
}

char *sft_temp_path(const char *suffix) {
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/sigflow-test-XXXXXX", sft_tmpdir());
    int fd = mkstemp(tmpl);
    assert_true(fd >= 0);
    close(fd);
    unlink(tmpl);
    size_t n = strlen(tmpl) + strlen(suffix) + 1;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s%s", tmpl, suffix);
    return p;
}

/* ------------------------------------------------------------------------
 * Running daemons and watching them (the operations tests).
 * ------------------------------------------------------------------------ */

pid_t sft_spawn_tied(char *const argv[], const char *out_path, const char *err_path) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls between fork and exec. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            _exit(126);
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path ? err_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
            _exit(126);
        /* Nothing else: the embedded broker's accepted sockets are not
         * close-on-exec, and a child holding a copy keeps a connection open
         * after the broker closes it (a "down" broker that nobody notices). */
        close_range(3, ~0U, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int sft_daemon_running(sft_daemon *d) {
    if (!d->pid)
        return 0;
    int status;
    pid_t r = waitpid(d->pid, &status, WNOHANG);
    if (r != d->pid)
        return 1;
    d->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    d->pid = 0;
    return 0;
}

static void daemon_died(sft_daemon *d, const char *doing) {
    char *log = sft_read_file(d->log, NULL);
    fail_msg("sigflow run exited with status %d while %s; its log:\n%s", d->status, doing,
             log ? log : "(unreadable)");
}

void sft_daemon_start(sft_daemon *d, const char *const *args, int timeout_ms) {
    sft_daemon_start_program(d, SF_TEST_SIGFLOW, args, timeout_ms);
}

void sft_daemon_start_program(sft_daemon *d, const char *program, const char *const *args,
                              int timeout_ms) {
    const char *argv[64];
    size_t n = 0;
    argv[n++] = program;
    argv[n++] = "run";
    for (; *args; args++) {
        assert_true(n < 60);
        argv[n++] = *args;
    }
    argv[n++] = "--metrics-addr";
    argv[n++] = "127.0.0.1:0";
    argv[n] = NULL;
    memset(d, 0, sizeof *d);
    d->log = sft_temp_path(".log");
    d->pid = sft_spawn_tied((char *const *)argv, NULL, d->log);

    int64_t deadline = sft_now_ms() + timeout_ms;
    for (;;) {
        char *log = sft_read_file(d->log, NULL);
        const char *at = log ? strstr(log, "metrics on ") : NULL;
        at = at ? strstr(at, "port=") : NULL;
        if (at)
            d->port = atoi(at + 5);
        free(log);
        if (d->port > 0)
            return;
        if (!sft_daemon_running(d))
            daemon_died(d, "starting");
        if (sft_now_ms() >= deadline)
            fail_msg("sigflow run printed no metrics port within %d ms (log %s)", timeout_ms, d->log);
        sft_nap_ms(10);
    }
}

int sft_daemon_stop(sft_daemon *d, int sig, int timeout_ms) {
    if (!d->pid)
        return d->status;
    if (sig)
        kill(d->pid, sig);
    d->status = sft_wait(d->pid, timeout_ms);
    d->pid = 0;
    return d->status;
}

void sft_daemon_free(sft_daemon *d) {
    if (d->pid)
        sft_daemon_stop(d, SIGKILL, 10000);
    if (d->log) {
        unlink(d->log);
        free(d->log);
    }
    memset(d, 0, sizeof *d);
}

int sft_http_get(int port, const char *path, char **body) {
    if (body)
        *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[512];
    int len = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) || send(fd, req, (size_t)len, MSG_NOSIGNAL) != len) {
        close(fd);
        return -1;
    }
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    ssize_t r;
    while ((r = recv(fd, buf + n, cap - n - 1, 0)) > 0) {
        n += (size_t)r;
        if (cap - n - 1 == 0) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    close(fd);
    buf[n] = '\0';
    int status = -1;
    const char *sep = strstr(buf, "\r\n\r\n");
    if (!strncmp(buf, "HTTP/1.", 7) && n > 12 && sep)
        status = atoi(buf + 9);
    if (body && sep)
        *body = strdup(sep + 4);
    free(buf);
    return status;
}

double sft_metric(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *line = text; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL)
        if (!strncmp(line, series, n) && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    return NAN;
}

double sft_scrape(int port, const char *series) {
    char *body;
    if (sft_http_get(port, "/metrics", &body) != 200) {
        free(body);
        return NAN;
    }
    double v = body ? sft_metric(body, series) : NAN;
    free(body);
    return v;
}

double sft_wait_metric(sft_daemon *d, const char *series, double min, int timeout_ms) {
    int64_t deadline = sft_now_ms() + timeout_ms;
    double v;
    for (;;) {
        v = sft_scrape(d->port, series);
        if (v >= min || sft_now_ms() >= deadline)
            return v;
        if (!sft_daemon_running(d))
            daemon_died(d, "waited on");
        sft_nap_ms(20);
    }
}

static int partition_count(rd_kafka_t *rk, const char *topic) {
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, t, &md, 10000) || md->topic_cnt != 1 || md->topics[0].err)
        fail_msg("no metadata for topic %s", topic);
    int parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return parts;
}

/* A partition's watermarks. A leader that moves or is briefly fenced (a
 * loaded single-node Kafka fences itself when its heartbeats run late) is
 * asked again, up to a deadline: the question has an answer, just not yet. */
static void watermarks(rd_kafka_t *rk, const char *topic, int partition, int64_t *lo, int64_t *hi) {
    int64_t deadline = sft_now_ms() + 60000;
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(rk, topic, partition, lo, hi, 10000);
        if (!err)
            return;
        int retriable = err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                        err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION || /* metadata not in yet */
                        err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                        err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                        err == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT ||
                        err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT;
        if (!retriable || sft_now_ms() > deadline)
            fail_msg("watermarks of %s [%d]: %s", topic, partition, rd_kafka_err2str(err));
        sft_nap_ms(200); /* the leader's election: seconds, not milliseconds */
    }
}

int64_t sft_topic_end(const char *brokers, const char *topic) {
    rd_kafka_t *rk = sft_client(RD_KAFKA_PRODUCER, brokers, NULL);
    int parts = partition_count(rk, topic);
    int64_t sum = 0;
    for (int i = 0; i < parts; i++) {
        int64_t lo, hi;
        watermarks(rk, topic, i, &lo, &hi);
        sum += hi;
    }
    rd_kafka_destroy(rk);
    return sum;
}

size_t sft_count_keys(const char *brokers, const char *topic, int64_t lo, int64_t hi,
                      unsigned *counts, int committed_only, int timeout_ms) {
    const char *kv[] = {"group.id", "sigflow-test-key-reader", "enable.auto.commit", "false",
                        "enable.partition.eof", "true",
                        "isolation.level", committed_only ? "read_committed" : "read_uncommitted",
                        NULL};
    rd_kafka_t *rk = sft_client(RD_KAFKA_CONSUMER, brokers, kv);
    int parts = partition_count(rk, topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);

    char *at_end = calloc((size_t)parts, 1);
    assert_non_null(at_end);
    memset(counts, 0, (size_t)(hi - lo) * sizeof *counts);
    size_t total = 0, distinct = 0, n_at_end = 0;
    int64_t deadline = sft_now_ms() + timeout_ms;
    while (sft_now_ms() < deadline && (distinct < (size_t)(hi - lo) || n_at_end < (size_t)parts)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (!m)
            continue;
        if (m->partition >= 0 && m->partition < parts) {
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                n_at_end += !at_end[m->partition];
                at_end[m->partition] = 1;
            } else if (!m->err) {
                n_at_end -= at_end[m->partition];
                at_end[m->partition] = 0;
                total++;
                char key[32];
                size_t kl = m->key_len < sizeof key - 1 ? m->key_len : sizeof key - 1;
                memcpy(key, m->key ? m->key : "", kl);
                key[kl] = '\0';
                char *end;
                long long k = strtoll(key, &end, 10);
                if (kl && !*end && k >= lo && k < hi && counts[k - lo]++ == 0)
                    distinct++;
            }
        }
        rd_kafka_message_destroy(m);
    }
    free(at_end);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return total;
}

void sft_assert_each_key_once(const char *brokers, const char *topic, int64_t lo, int64_t hi,
                              int timeout_ms) {
    size_t n = (size_t)(hi - lo);
    unsigned *counts = calloc(n, sizeof *counts);
    assert_non_null(counts);
    int64_t t0 = sft_now_ms();
    size_t total = sft_count_keys(brokers, topic, lo, hi, counts, 0, timeout_ms);
    size_t missing = 0, twice = 0;
    int64_t first_missing = -1, first_dup = -1;
    for (size_t i = 0; i < n; i++) {
        if (counts[i] == 0 && missing++ == 0)
            first_missing = lo + (int64_t)i;
        if (counts[i] > 1 && twice++ == 0)
            first_dup = lo + (int64_t)i;
    }
    free(counts);
    printf("topic %s: %zu messages for %zu keys, %zu missing, %zu more than once (read for %lld "
           "ms)\n", topic, total, n, missing, twice, (long long)(sft_now_ms() - t0));
    if (missing || twice || total != n)
        fail_msg("topic %s is not each key once: %zu messages for %zu keys, %zu missing (first "
                 "%lld), %zu more than once (first %lld)", topic, total, n, missing,
                 (long long)first_missing, twice, (long long)first_dup);
}

int64_t sft_group_lag(const char *brokers, const char *group, const char *topic) {
    const char *kv[] = {"group.id", group, "enable.auto.commit", "false", NULL};
    rd_kafka_t *rk = sft_client(RD_KAFKA_CONSUMER, brokers, kv);
    int parts = partition_count(rk, topic);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts; i++)
        rd_kafka_topic_partition_list_add(l, topic, i);
    rd_kafka_resp_err_t err = rd_kafka_committed(rk, l, 10000);
    if (err)
        fail_msg("committed offsets of group %s: %s", group, rd_kafka_err2str(err));
    int64_t lag = 0;
    for (int i = 0; i < parts; i++) {
        int64_t lo, hi;
        watermarks(rk, topic, i, &lo, &hi);
        int64_t at = l->elems[i].offset >= 0 ? l->elems[i].offset : lo;
        lag += hi - at;
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return lag;
}

void sft_pick_model(const char **model, const char **vars) {
    if (access(SF_TEST_MODEL, R_OK) == 0 && access(SF_TEST_VARS, R_OK) == 0) {
        *model = SF_TEST_MODEL;
        *vars = SF_TEST_VARS;
    } else {
        *model = SF_SOURCE_DIR "/tests/fixtures/model_mlp.h5";
        *vars = SF_SOURCE_DIR "/tests/fixtures/vars_higgs.json";
    }
}

char *sft_temp_dir(void) {
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/sigflow-test-XXXXXX", sft_tmpdir());
    assert_non_null(mkdtemp(tmpl));
    char *p = strdup(tmpl);
    assert_non_null(p);
    return p;
}

int sft_remove_tree(const char *dir) {
    char *const argv[] = {"/bin/rm", "-rf", (char *)dir, NULL};
    return sft_wait(sft_spawn(argv, NULL, NULL, NULL), 30000) == 0 ? 0 : -1;
}

/* ------------------------------------------------------------------------
 * The streaming operations tests.
 * ------------------------------------------------------------------------ */

int sft_stream_setup(void **state) {
    static const char *const topics[] = {"events", "signals"};
    sft_stream *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->kafka = sft_kafka_open(8, topics, 2, NULL, 0);
    f->broker = f->kafka->mock;
    f->brokers = f->kafka->bootstrap;
    *state = f;
    return 0;
}

int sft_stream_teardown(void **state) {
    sft_stream *f = *state;
    if (f->broker)
        sf_broker_set_down(f->broker, 0);
    sft_daemon_free(&f->d[0]);
    sft_daemon_free(&f->d[1]);
    if (f->replay > 0)
        sft_wait(f->replay, 0);
    sft_kafka_close(f->kafka);
    free(f);
    return 0;
}

pid_t sft_replay_spawn(const char *brokers, const char *topic, const char *rate,
                       const char *const *extra, const char *log_path) {
    const char *argv[32] = {SF_TEST_REPLAY, "-b", brokers, "-t", topic, "-f", SF_TEST_DATA,
                            "--rate", rate, "--timeout", "60", "-q"};
    size_t n = 12;
    for (; extra && *extra; extra++) {
        assert_true(n < sizeof argv / sizeof *argv - 1);
        argv[n++] = *extra;
    }
    argv[n] = NULL;
    return sft_spawn_tied((char *const *)argv, log_path, log_path);
}
