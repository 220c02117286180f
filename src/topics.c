/* topics.c: topic names checked once, for every command, and missing topics
 * created through the Admin API when the caller asks (topics.h says when).
 * A broker that auto-creates topics is not relied on: many production
 * clusters turn it off, and one that has it on creates them with its own
 * partition count, never the one asked for. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sigflow/clock.h"
#include "sigflow/topics.h"

int sf_topic_check(const char *name, char *errstr, size_t n) {
    size_t len = strlen(name);
    if (len == 0) {
        snprintf(errstr, n, "topic name is empty");
        return -1;
    }
    if (len > SF_TOPIC_MAX) {
        snprintf(errstr, n, "topic name '%.40s...' is %zu characters; Kafka allows at most %d",
                 name, len, SF_TOPIC_MAX);
        return -1;
    }
    if (!strcmp(name, ".") || !strcmp(name, "..")) {
        snprintf(errstr, n, "topic name '%s' is not allowed by Kafka", name);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '.' || c == '_' || c == '-')
            continue;
        if (c >= 0x20 && c < 0x7f)
            snprintf(errstr, n, "topic name '%s' has '%c' at %zu; Kafka allows only ASCII letters, "
                     "digits, '.', '_' and '-'", name, c, i + 1);
        else
            snprintf(errstr, n, "topic name '%.64s' has byte 0x%02x at %zu; Kafka allows only "
                     "ASCII letters, digits, '.', '_' and '-'", name, c, i + 1);
        return -1;
    }
    return 0;
}

int sf_topic_is_pattern(const char *name) { return name[0] == '^'; }

static int create(rd_kafka_t *rk, const char *const *names, size_t n, const sf_topic_spec *spec,
                  int timeout_ms, char *errstr, size_t errstr_size) {
    rd_kafka_NewTopic_t **t = calloc(n, sizeof *t);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    int rc = -1;
    char why[256];
    if (!t || !q || !opt) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, why, sizeof why);
    for (size_t i = 0; i < n; i++) {
        t[i] = rd_kafka_NewTopic_new(names[i], spec->partitions, spec->replication_factor, why,
                                     sizeof why);
        if (!t[i]) {
            snprintf(errstr, errstr_size, "cannot create topic %s: %s", names[i], why);
            goto out;
        }
    }
    rd_kafka_CreateTopics(rk, t, n, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (!ev) {
        snprintf(errstr, errstr_size, "cannot create topic %s: no answer from the brokers in %d ms",
                 names[0], timeout_ms);
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(errstr, errstr_size, "cannot create topic %s: %s", names[0],
                 rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    rc = 0;
    for (size_t i = 0; rc == 0 && i < cnt; i++) {
        rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[i]);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            const char *s = rd_kafka_topic_result_error_string(res[i]);
            snprintf(errstr, errstr_size, "the brokers refused to create topic %s: %s",
                     rd_kafka_topic_result_name(res[i]), s ? s : rd_kafka_err2str(e));
            rc = -1;
        }
    }
    rd_kafka_event_destroy(ev);
out:
    for (size_t i = 0; t && i < n; i++)
        if (t[i])
            rd_kafka_NewTopic_destroy(t[i]);
    free(t);
    if (opt)
        rd_kafka_AdminOptions_destroy(opt);
    if (q)
        rd_kafka_queue_destroy(q);
    return rc;
}

/* A cluster without a reachable controller has no Admin API: sigflow's
 * embedded broker (librdkafka's mock cluster), which creates a topic, with its
 * own partition count, when a client asks for the topic's metadata. */
static int auto_create(rd_kafka_t *rk, const char *const *names, size_t n, int timeout_ms,
                       char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < n; i++) {
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, names[i], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err =
            t ? rd_kafka_metadata(rk, 0, t, &md, timeout_ms) : rd_kafka_last_error();
        int ok = !err && md->topic_cnt == 1 && !md->topics[0].err;
        if (!err && !ok)
            err = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        if (md)
            rd_kafka_metadata_destroy(md);
        if (t)
            rd_kafka_topic_destroy(t);
        if (!ok) {
            snprintf(errstr, errstr_size, "cannot create topic %s: the cluster has no controller "
                     "for the Admin API and did not create it on request: %s", names[i],
                     rd_kafka_err2str(err));
            return -1;
        }
    }
    return 0;
}

/* Which of topics the cluster's metadata lacks (into missing, *n_missing),
 * and whether its controller is among the brokers. 0, or -1 with errstr. */
static int find_missing(rd_kafka_t *rk, const char *const *topics, size_t n, int timeout_ms,
                        const char **missing, size_t *n_missing, int *has_controller,
                        char *errstr, size_t errstr_size) {
    /* Every topic's metadata: asking for the ones we want by name would let
     * a broker with auto-creation create them as a side effect. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (err) {
        snprintf(errstr, errstr_size, "cannot read the topics of the cluster within %d ms: %s",
                 timeout_ms, rd_kafka_err2str(err));
        return -1;
    }
    *n_missing = 0;
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (int k = 0; k < md->topic_cnt && !found; k++)
            found = !strcmp(md->topics[k].topic, topics[i]) && !md->topics[k].err;
        for (size_t k = 0; k < *n_missing && !found; k++)
            found = !strcmp(missing[k], topics[i]); /* named twice */
        if (!found)
            missing[(*n_missing)++] = topics[i];
    }
    /* A controller that is not among the brokers cannot take admin requests
     * (the embedded broker names one that does not exist). */
    int32_t controller = rd_kafka_controllerid(rk, timeout_ms);
    *has_controller = 0;
    for (int k = 0; k < md->broker_cnt; k++)
        *has_controller |= md->brokers[k].id == controller;
    rd_kafka_metadata_destroy(md);
    return 0;
}

/* A topic created a moment ago (by a script, or the bench, just before
 * sigflow starts) reaches every broker's metadata a little later: before a
 * topic is called missing, the metadata is asked again for this long. */
#define TOPICS_SETTLE_MS 3000

int sf_topics_ensure(rd_kafka_t *rk, const char *const *topics, size_t n,
                     const sf_topic_spec *spec, int timeout_ms, size_t *created,
                     char *errstr, size_t errstr_size) {
    if (created)
        *created = 0;
    const char **missing = calloc(n ? n : 1, sizeof *missing);
    if (!missing) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    size_t n_missing = 0;
    int has_controller = 0;
    int64_t settle_until = sf_clock_ms() + TOPICS_SETTLE_MS;
    for (;;) {
        if (find_missing(rk, topics, n, timeout_ms, missing, &n_missing, &has_controller, errstr,
                         errstr_size)) {
            free(missing);
            return -1;
        }
        if (!n_missing || spec || sf_clock_ms() >= settle_until)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 200 * 1000000L}, NULL);
    }
    int rc = 0;
    if (n_missing && !spec) {
        snprintf(errstr, errstr_size, "topic %s does not exist", missing[0]);
        rc = -1;
    } else if (n_missing && !has_controller) {
        rc = auto_create(rk, missing, n_missing, timeout_ms, errstr, errstr_size);
        if (rc == 0 && created)
            *created = n_missing;
    } else if (n_missing) {
        rc = create(rk, missing, n_missing, spec, timeout_ms, errstr, errstr_size);
        if (rc == 0 && created)
            *created = n_missing;
    }
    free(missing);
    return rc;
}
