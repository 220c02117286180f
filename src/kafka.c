/* kafka.c: how sigflow's binaries configure and create their Kafka clients
 * (kafka.h): -X / -F properties, and the daemon's producer and consumer
 * defaults with the reason for each. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sigflow/kafka.h"

/* librdkafka backs off reconnecting up to 10 s: after a broker outage the
 * consumer could come back after its 10 s session expired, lose its
 * partitions and redo everything since its last commit. Retry every second. */
#define RECONNECT_BACKOFF_MAX_MS "1000"

int sf_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                      char *errstr, size_t errstr_size) {
    char rderr[512];
    if (rd_kafka_conf_set(conf, key, value, rderr, sizeof rderr) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka property %s=%s: %s", key, value, rderr);
        return -1;
    }
    return 0;
}

/* The '=' of "key=value" (key non-empty), or NULL with errstr. */
static const char *kv_equals(const char *kv, char *errstr, size_t errstr_size) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        snprintf(errstr, errstr_size, "kafka property '%s': expected key=value", kv);
        return NULL;
    }
    return eq;
}

int sf_kafka_conf_set_kv(rd_kafka_conf_t *conf, const char *kv, char *errstr, size_t errstr_size) {
    const char *eq = kv_equals(kv, errstr, errstr_size);
    if (!eq)
        return -1;
    char key[256];
    size_t klen = (size_t)(eq - kv);
    if (klen >= sizeof key) {
        snprintf(errstr, errstr_size, "kafka property '%.40s...': key too long", kv);
        return -1;
    }
    memcpy(key, kv, klen);
    key[klen] = '\0';
    return sf_kafka_conf_set(conf, key, eq + 1, errstr, errstr_size);
}

int sf_kafka_conf_set_all(rd_kafka_conf_t *conf, const char *const *kv, char *errstr,
                          size_t errstr_size) {
    for (; kv[0]; kv += 2)
        if (sf_kafka_conf_set(conf, kv[0], kv[1], errstr, errstr_size))
            return -1;
    return 0;
}

int sf_kafka_props_apply(rd_kafka_conf_t *conf, const char *const *kv, size_t n, char *errstr,
                         size_t errstr_size) {
    for (size_t i = 0; i < n; i++)
        if (sf_kafka_conf_set_kv(conf, kv[i], errstr, errstr_size))
            return -1;
    return 0;
}

/* Appends key[0..klen) "=" value[0..vlen). */
static int props_append(sf_kafka_props *p, const char *key, size_t klen, const char *value,
                        size_t vlen) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 8;
        char **kv = realloc(p->kv, cap * sizeof *kv);
        if (!kv)
            return -1;
        p->kv = kv;
        p->cap = cap;
    }
    char *s = malloc(klen + vlen + 2);
    if (!s)
        return -1;
    memcpy(s, key, klen);
    s[klen] = '=';
    memcpy(s + klen + 1, value, vlen);
    s[klen + 1 + vlen] = '\0';
    p->kv[p->n++] = s;
    return 0;
}

int sf_kafka_props_add(sf_kafka_props *p, const char *kv, char *errstr, size_t errstr_size) {
    const char *eq = kv_equals(kv, errstr, errstr_size);
    if (!eq)
        return -1;
    if (props_append(p, kv, (size_t)(eq - kv), eq + 1, strlen(eq + 1))) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

static const char *trim(const char *s, const char **end) {
    while (s < *end && isspace((unsigned char)*s))
        s++;
    while (*end > s && isspace((unsigned char)(*end)[-1]))
        (*end)--;
    return s;
}

int sf_kafka_props_load(sf_kafka_props *p, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long lineno = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        const char *end = line + len;
        const char *s = trim(line, &end);
        if (s == end || *s == '#')
            continue;
        const char *eq = memchr(s, '=', (size_t)(end - s));
        const char *kend = eq;
        if (eq)
            trim(s, &kend);
        if (!eq || kend == s) {
            snprintf(errstr, errstr_size, "%s:%lu: expected key=value, got '%.*s'", path, lineno,
                     (int)(end - s > 60 ? 60 : end - s), s);
            rc = -1;
            break;
        }
        const char *vend = end;
        const char *v = trim(eq + 1, &vend);
        if (props_append(p, s, (size_t)(kend - s), v, (size_t)(vend - v))) {
            snprintf(errstr, errstr_size, "out of memory");
            rc = -1;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(errstr, errstr_size, "%s: read error", path);
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

void sf_kafka_props_free(sf_kafka_props *p) {
    for (size_t i = 0; i < p->n; i++)
        free(p->kv[i]);
    free(p->kv);
    memset(p, 0, sizeof *p);
}

static rd_kafka_conf_t *conf_with(const char *const *defaults, const sf_kafka_opts *o,
                                  char *errstr, size_t n) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (sf_kafka_conf_set_all(conf, defaults, errstr, n) ||
        sf_kafka_props_apply(conf, o->props, o->n_props, errstr, n)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

rd_kafka_conf_t *sf_kafka_producer_conf(const sf_kafka_opts *o, char *errstr, size_t n) {
    /* Room for any dead letter: a too-large event is copied to the dead-letter
     * topic whole, so the limit is what the consumer can receive, not the
     * event size limit; plus room for key and headers. */
    char max_bytes[32];
    size_t largest = o->max_message_bytes > SF_KAFKA_RECEIVE_MAX_BYTES ? o->max_message_bytes
                                                                        : SF_KAFKA_RECEIVE_MAX_BYTES;
    snprintf(max_bytes, sizeof max_bytes, "%zu", largest + (64 << 10));
    const char *defaults[] = {
        "bootstrap.servers", o->brokers,
        "enable.idempotence", "true",
        "linger.ms", "2",
        "message.timeout.ms", "0", /* retry until acknowledged: never drop an output */
        "message.max.bytes", max_bytes,
        "queue.buffering.max.kbytes", "32768",
        "reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS,
        NULL};
    rd_kafka_conf_t *conf = conf_with(defaults, o, errstr, n);
    if (conf && o->exactly_once &&
        sf_kafka_conf_set(conf, "transactional.id", o->transactional_id, errstr, n)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

rd_kafka_conf_t *sf_kafka_consumer_conf(const sf_kafka_opts *o, char *errstr, size_t n) {
    char receive_max[32];
    snprintf(receive_max, sizeof receive_max, "%u", SF_KAFKA_RECEIVE_MAX_BYTES);
    const char *defaults[] = {
        "bootstrap.servers", o->brokers,
        "group.id", o->group,
        "auto.offset.reset", "earliest",
        "enable.auto.offset.store", "false",
        "enable.auto.commit", o->exactly_once ? "false" : "true",
        /* Stored offsets go out often: after a crash, what was acknowledged
         * but not yet committed is published again. */
        "auto.commit.interval.ms", "100",
        "isolation.level", "read_committed",
        /* Kafka's pre-3.0 default: a dead instance's partitions move within
         * 10 s (librdkafka's 45 s default also delays restarts on the
         * embedded broker, which holds a departed group that long). */
        "session.timeout.ms", "10000",
        "heartbeat.interval.ms", "1000",
        "reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS,
        /* Bounded memory whatever the input rate: cap the prefetch queue. */
        "queued.max.messages.kbytes", "16384",
        "queued.min.messages", "20000",
        "fetch.max.bytes", "8388608",
        "receive.message.max.bytes", receive_max,
        "statistics.interval.ms", o->statistics ? "5000" : "0",
        /* Idle fetches come back within 100 ms; librdkafka's 500 ms would
         * stall a batch that long on brokers (the embedded one among them)
         * that answer an empty fetch only when it expires. */
        "fetch.wait.max.ms", "100",
        NULL};
    return conf_with(defaults, o, errstr, n);
}

rd_kafka_t *sf_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr, size_t n) {
    char rderr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, rderr, sizeof rderr);
    if (!rk) {
        snprintf(errstr, n, "cannot create %s: %s",
                 type == RD_KAFKA_PRODUCER ? "producer" : "consumer", rderr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int sf_kafka_check_brokers(rd_kafka_t *rk, const char *brokers, const char *topic, int timeout_ms,
                           int *topic_exists, char *errstr, size_t n) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (err) {
        snprintf(errstr, n, "cannot reach brokers %s within %d ms: %s", brokers, timeout_ms,
                 rd_kafka_err2str(err));
        return -1;
    }
    *topic_exists = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, topic) && !md->topics[i].err)
            *topic_exists = 1;
    rd_kafka_metadata_destroy(md);
    return 0;
}

int sf_kafka_rewind_to_committed(rd_kafka_t *consumer, const rd_kafka_topic_partition_list_t *parts,
                                 int timeout_ms) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    int rc = -1;
    if (rd_kafka_committed(consumer, l, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < l->cnt; i++)
            if (l->elems[i].offset < 0)
                l->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        /* A failed seek leaves the consumer where it was: the next fetch
         * error or rebalance puts it right, as before this function. */
        rd_kafka_error_t *err = rd_kafka_seek_partitions(consumer, l, timeout_ms);
        if (err)
            rd_kafka_error_destroy(err);
        rc = 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

double sf_kafka_stats_consumer_lag(const char *json, size_t len) {
    json_t *root = json_loadb(json, len, 0, NULL);
    if (!root)
        return -1;
    double lag = 0;
    const char *tname;
    json_t *topic;
    json_object_foreach(json_object_get(root, "topics"), tname, topic) {
        const char *pname;
        json_t *part;
        json_object_foreach(json_object_get(topic, "partitions"), pname, part) {
            json_t *l = json_object_get(part, "consumer_lag");
            const char *state = json_string_value(json_object_get(part, "fetch_state"));
            if (strcmp(pname, "-1") && json_is_integer(l) && json_integer_value(l) > 0 && state &&
                !strcmp(state, "active"))
                lag += (double)json_integer_value(l);
        }
    }
    json_decref(root);
    return lag;
}

void sf_kafka_partitions_format(char *buf, size_t size, const rd_kafka_topic_partition_list_t *l) {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < l->cnt && n + 32 < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s[%d]", i ? " " : "", l->elems[i].topic,
                              (int)l->elems[i].partition);
}

sf_log_level sf_kafka_log_level(int level) {
    return level <= 2 ? SF_LOG_ERROR : level <= 4 ? SF_LOG_WARN : level <= 6 ? SF_LOG_INFO : SF_LOG_DEBUG;
}
