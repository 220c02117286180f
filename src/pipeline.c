/* pipeline.c: the daemon's main loop.
 *
 * Everything that touches the pipeline's state runs on one thread: the loop,
 * librdkafka's rebalance and statistics callbacks (served by the consumer poll)
 * and the delivery reports (served by the producer poll). So the offset
 * bookkeeping needs no locks.
 *
 * At-least-once works batch by batch. Every batch gets an `inflight` record
 * counting its outputs not yet acknowledged and holding, per partition, the
 * offset after its last event. Records sit in a FIFO in consumption order; only
 * a completed prefix of that FIFO has its offsets stored (and later committed by
 * librdkafka's auto-commit), so no offset is committed before everything derived
 * from it and from every earlier offset has been acknowledged. With
 * --exactly-once the batch is one Kafka transaction instead. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "sigflow/blas.h"
#include "sigflow/clock.h"
#include "sigflow/http.h"
#include "sigflow/kafka.h"
#include "sigflow/output.h"
#include "sigflow/pipeline.h"

#define REPORT_INTERVAL_MS 10000
#define DRAIN_TIMEOUT_MS 30000
#define OUTPUT_MAX 4096
#define MAX_LOGGED_REJECTS 10 /* per report interval; the rest are counted */
#define RECEIVE_MAX_BYTES (16u << 20) /* the consumer's receive.message.max.bytes */
/* librdkafka backs off reconnecting up to 10 s: after a broker outage the
 * consumer could come back after its 10 s session expired, lose its
 * partitions and redo everything since its last commit. Retry every second. */
#define RECONNECT_BACKOFF_MAX_MS "1000"

/* One output in flight, the opaque of its delivery report: the report's own
 * timestamp may be the broker's LogAppendTime (the embedded broker always says
 * 1234), so the input's timestamp travels here for the end-to-end latency. */
typedef struct out_ref {
    struct inflight *owner;
    int64_t input_ts; /* ms; 0 when the input had none */
} out_ref;

typedef struct inflight {
    struct inflight *next;
    size_t pending; /* outputs not yet acknowledged (+1 while still producing) */
    rd_kafka_topic_partition_list_t *offsets; /* next offset to consume, per partition */
    out_ref *refs;  /* one per output: an event of the batch yields at most one */
    size_t n_refs, cap_refs;
} inflight;

/* A dead letter the broker refused for its size, to send again without payload. */
typedef struct redo {
    struct redo *next;
    void *key;
    size_t key_len;
    rd_kafka_headers_t *headers;
    size_t value_len;
    out_ref *ref;
} redo;

typedef struct pipeline {
    const sf_pipeline_conf *conf;
    sf_log_level log;
    sf_engine *eng; /* replaced whole on reload */
    rd_kafka_t *consumer, *producer;
    rd_kafka_queue_t *queue;

    rd_kafka_message_t **msgs; /* the batch being filled */
    size_t n_msgs;
    int64_t first_ms;
    size_t *row_msg; /* row j of the batch came from msgs[row_msg[j]] */

    inflight *head, *tail;
    redo *redo;
    int fatal;
    char fatal_msg[1024];

    int64_t report_ms;
    uint64_t report_consumed, report_predicted;
    unsigned rejects_logged, rejects_suppressed;
    sf_health *health;
    int64_t cpu_mark_ns; /* conf->stats: this thread's CPU time at the last stage mark */
} pipeline;

void sf_pipeline_conf_init(sf_pipeline_conf *c) {
    memset(c, 0, sizeof *c);
    c->input_topic = "events";
    c->output_topic = "signals";
    c->group = "sigflow";
    sf_engine_conf_init(&c->engine);
    c->batch_wait_ms = 5;
    c->max_event_bytes = 1 << 20;
    c->connect_timeout_ms = 10000;
    c->log_level = SF_LOG_INFO;
}

static void set_fatal(pipeline *p, const char *fmt, const char *detail) {
    if (p->fatal)
        return;
    p->fatal = 1;
    snprintf(p->fatal_msg, sizeof p->fatal_msg, fmt, detail);
}

/* ---------------------------------------------------------------- engine */

static void engine_announce(pipeline *p) {
    const sf_model *m = sf_engine_model(p->eng);
    if (p->conf->metrics)
        sf_metrics_set_model(p->conf->metrics, m->sha256, m->n_inputs, m->n_outputs);
    if (p->health)
        sf_health_set_model_loaded(p->health, 1);
}

/* ------------------------------------------------------------ stage costs */

static int64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Charges this thread's CPU time since the previous mark to stage s. */
static void stage_mark(pipeline *p, sf_stage s) {
    sf_pipeline_stats *st = p->conf->stats;
    if (!st)
        return;
    int64_t now = thread_cpu_ns();
    atomic_fetch_add_explicit(&st->cpu_ns[s], (uint64_t)(now - p->cpu_mark_ns), memory_order_relaxed);
    p->cpu_mark_ns = now;
}

/* ------------------------------------------------------------ bookkeeping */

static void inflight_free(inflight *f) {
    if (f->offsets)
        rd_kafka_topic_partition_list_destroy(f->offsets);
    free(f->refs);
    free(f);
}

/* A record for a batch of n events. */
static inflight *inflight_push(pipeline *p, size_t n) {
    inflight *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->offsets = rd_kafka_topic_partition_list_new(8);
    f->refs = malloc(n * sizeof *f->refs);
    if (!f->offsets || !f->refs) {
        inflight_free(f);
        return NULL;
    }
    f->cap_refs = n;
    f->pending = 1;
    if (p->tail)
        p->tail->next = f;
    else
        p->head = f;
    p->tail = f;
    return f;
}

static void inflight_note_offset(inflight *f, const rd_kafka_message_t *m) {
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(f->offsets, topic, m->partition);
    if (!tp)
        tp = rd_kafka_topic_partition_list_add(f->offsets, topic, m->partition);
    if (m->offset + 1 > tp->offset)
        tp->offset = m->offset + 1;
}

/* Stores the offsets of the completed prefix of the FIFO. After a fatal error
 * nothing more is stored: the failed output's batch may look complete. */
static void advance(pipeline *p) {
    while (p->head && p->head->pending == 0 && !p->fatal) {
        inflight *f = p->head;
        if (!p->conf->exactly_once && f->offsets->cnt > 0) {
            rd_kafka_resp_err_t err = rd_kafka_offsets_store(p->consumer, f->offsets);
            /* A partition revoked while its outputs were in flight is not ours to
             * commit: its new owner re-reads it (at-least-once). */
            if (err)
                sf_log(p->log, SF_LOG_DEBUG, "offsets not stored: %s", rd_kafka_err2str(err));
        }
        p->head = f->next;
        if (!p->head)
            p->tail = NULL;
        inflight_free(f);
    }
}

/* The delivery-report opaque of f's next output. */
static out_ref *out_ref_new(pipeline *p, inflight *f, int64_t input_ts) {
    if (f->n_refs == f->cap_refs) { /* more outputs than events: a bug */
        set_fatal(p, "%s", "internal error: more outputs than events in a batch");
        return NULL;
    }
    out_ref *r = &f->refs[f->n_refs++];
    r->owner = f;
    r->input_ts = input_ts > 0 ? input_ts : 0;
    return r;
}

static int produce(pipeline *p, const char *topic, const void *key, size_t key_len,
                   const void *value, size_t len, rd_kafka_headers_t *headers, int64_t ts,
                   out_ref *ref) {
    if (!ref) {
        if (headers)
            rd_kafka_headers_destroy(headers);
        return -1;
    }
    int64_t stuck_since = 0;
    for (;;) {
        rd_kafka_resp_err_t err;
        if (headers)
            err = rd_kafka_producev(p->producer, RD_KAFKA_V_TOPIC(topic),
                                    RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, len),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts),
                                    RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(ref), RD_KAFKA_V_END);
        else
            err = rd_kafka_producev(p->producer, RD_KAFKA_V_TOPIC(topic),
                                    RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_VALUE((void *)value, len),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts),
                                    RD_KAFKA_V_OPAQUE(ref), RD_KAFKA_V_END);
        if (!err) {
            ref->owner->pending++;
            return 0;
        }
        if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && headers && len > 0) {
            /* A dead letter over our own message.max.bytes (only -X can make it
             * so): keep its record without the payload, as when a broker refuses it. */
            char note[128];
            snprintf(note, sizeof note, "payload of %zu bytes not kept: over message.max.bytes",
                     len);
            rd_kafka_header_add(headers, "sigflow-note", -1, note, -1);
            value = NULL;
            len = 0;
            continue;
        }
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            if (headers)
                rd_kafka_headers_destroy(headers);
            set_fatal(p, "cannot produce: %s", rd_kafka_err2str(err));
            return -1;
        }
        /* Back-pressure: serve delivery reports until the queue has room. A stop
         * request gives up after the drain timeout, committing nothing more. */
        if (!stuck_since)
            stuck_since = sf_clock_ms();
        if (atomic_load(p->conf->stop) && sf_clock_ms() - stuck_since > DRAIN_TIMEOUT_MS) {
            if (headers)
                rd_kafka_headers_destroy(headers);
            set_fatal(p, "%s", "stopped while the producer queue stayed full; uncommitted events will be read again");
            return -1;
        }
        rd_kafka_poll(p->producer, 10);
    }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    pipeline *p = opaque;
    out_ref *ref = m->_private;
    inflight *f = ref->owner;
    const char *topic = rd_kafka_topic_name(m->rkt);
    int is_dlq = p->conf->dlq_topic && !strcmp(topic, p->conf->dlq_topic);

    if (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && is_dlq && m->len > 0) {
        /* Keep the dead letter's record, if not its payload: send it again empty. */
        redo *r = calloc(1, sizeof *r);
        rd_kafka_headers_t *h = NULL;
        if (r && rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h)
            r->headers = rd_kafka_headers_copy(h);
        if (r && m->key_len && (r->key = malloc(m->key_len)))
            memcpy(r->key, m->key, m->key_len);
        if (!r) {
            set_fatal(p, "%s", "out of memory");
            return;
        }
        r->key_len = r->key ? m->key_len : 0;
        r->value_len = m->len;
        r->ref = ref;
        r->next = p->redo;
        p->redo = r;
        return;
    }
    if (m->err) {
        /* Retriable errors never get here: librdkafka retries them itself until
         * message.timeout.ms (infinite by default in sigflow). */
        char what[512];
        snprintf(what, sizeof what, "%s [%d]: %s", topic, (int)m->partition, rd_kafka_err2str(m->err));
        set_fatal(p, "delivery failed to %s", what);
        return;
    }
    f->pending--;
    if (p->conf->metrics)
        sf_metrics_add(p->conf->metrics, is_dlq ? SF_C_DEAD_LETTERS : SF_C_SIGNALS, 1);
    const sf_pipeline_stats *st = p->conf->stats;
    if (ref->input_ts > 0 && (p->conf->metrics || (st && st->on_ack))) {
        double latency_ms = sf_clock_wall_ms() - (double)ref->input_ts;
        if (p->conf->metrics)
            sf_metrics_observe(p->conf->metrics, SF_H_END_TO_END, latency_ms / 1000.0);
        if (st && st->on_ack)
            st->on_ack(st->opaque, latency_ms);
    }
}

static void send_redos(pipeline *p) {
    while (p->redo) {
        redo *r = p->redo;
        p->redo = r->next;
        char note[128];
        snprintf(note, sizeof note, "payload of %zu bytes not kept: the broker refused its size",
                 r->value_len);
        if (!r->headers)
            r->headers = rd_kafka_headers_new(2);
        rd_kafka_header_add(r->headers, "sigflow-note", -1, note, -1);
        r->ref->owner->pending--; /* the refused copy; produce() counts the new one */
        produce(p, p->conf->dlq_topic, r->key, r->key_len, NULL, 0, r->headers, 0, r->ref);
        free(r->key);
        free(r);
    }
}

/* ------------------------------------------------------------ the batch */

static void dead_letter(pipeline *p, const rd_kafka_message_t *m, sf_reject reason,
                        const char *why, inflight *f) {
    const sf_pipeline_conf *c = p->conf;
    char source[512];
    snprintf(source, sizeof source, "%s/%d/%" PRId64, rd_kafka_topic_name(m->rkt),
             (int)m->partition, m->offset);
    if (c->metrics)
        sf_metrics_reject(c->metrics, reason);
    if (p->rejects_logged < MAX_LOGGED_REJECTS) {
        p->rejects_logged++;
        sf_log(p->log, SF_LOG_WARN, "rejected event %s (%s): %s", source, sf_reject_name(reason), why);
    } else {
        p->rejects_suppressed++;
    }
    if (!c->dlq_topic)
        return;
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "sigflow-error", -1, why, -1);
    rd_kafka_header_add(h, "sigflow-source", -1, source, -1);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    produce(p, c->dlq_topic, m->key, m->key_len, m->payload, m->len, h, ts > 0 ? ts : 0,
            out_ref_new(p, f, ts));
}

/* Closes the batch: assemble, normalize, infer, publish. */
static int transaction_commit(pipeline *p, inflight *f);

static int process_batch(pipeline *p) {
    const sf_pipeline_conf *c = p->conf;
    sf_engine *e = p->eng;
    size_t n = p->n_msgs;
    if (n == 0)
        return 0;
    stage_mark(p, SF_STAGE_OTHER);
    if (c->exactly_once) {
        rd_kafka_error_t *err = rd_kafka_begin_transaction(p->producer);
        if (err) {
            set_fatal(p, "cannot begin transaction: %s", rd_kafka_error_string(err));
            rd_kafka_error_destroy(err);
            return -1;
        }
    }
    inflight *f = inflight_push(p, n);
    if (!f) {
        set_fatal(p, "%s", "out of memory");
        return -1;
    }

    sf_engine_clear(e);
    char why[512];
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_message_t *m = p->msgs[i];
        inflight_note_offset(f, m);
        sf_reject r;
        if (m->len > c->max_event_bytes) {
            r = SF_REJECT_TOO_LARGE;
            snprintf(why, sizeof why, "message of %zu bytes exceeds the limit of %zu bytes", m->len,
                     c->max_event_bytes);
        } else {
            r = sf_engine_add(e, m->payload ? m->payload : "", m->len, why, sizeof why);
        }
        if (r == SF_REJECT_NONE)
            p->row_msg[sf_engine_rows(e) - 1] = i;
        else
            dead_letter(p, m, r, why, f);
    }

    stage_mark(p, SF_STAGE_PARSE);
    double t0 = sf_clock_s();
    size_t rows = sf_engine_rows(e);
    sf_engine_normalize(e);
    stage_mark(p, SF_STAGE_NORMALIZE);
    sf_engine_infer(e);
    double t1 = sf_clock_s();
    stage_mark(p, SF_STAGE_INFERENCE);
    if (c->metrics) {
        sf_metrics_add(c->metrics, SF_C_CONSUMED, n);
        sf_metrics_add(c->metrics, SF_C_PREDICTED, rows);
        sf_metrics_add(c->metrics, SF_C_BATCHES, 1);
        sf_metrics_observe(c->metrics, SF_H_BATCH_SIZE, (double)n);
        if (rows)
            sf_metrics_observe(c->metrics, SF_H_INFERENCE, t1 - t0);
    }

    char out[OUTPUT_MAX];
    for (size_t j = 0; j < rows && !p->fatal; j++) {
        if (!sf_engine_selected(e, j))
            continue;
        const rd_kafka_message_t *m = p->msgs[p->row_msg[j]];
        const sf_event_id *id = sf_engine_id(e, j);
        int len = sf_output_format(out, sizeof out, c->engine.id_field, id, sf_engine_vars(e),
                                   sf_engine_probs(e, j), sf_engine_label(e, j), m->partition,
                                   m->offset);
        if (len < 0) { /* only an absurdly long label list gets here */
            dead_letter(p, m, SF_REJECT_TOO_LARGE, "prediction does not fit in an output message", f);
            continue;
        }
        rd_kafka_timestamp_type_t tstype;
        int64_t ts = rd_kafka_message_timestamp(m, &tstype);
        produce(p, c->output_topic, id->key_len ? id->key : NULL, id->key_len, out, (size_t)len,
                NULL, ts > 0 ? ts : 0, out_ref_new(p, f, ts));
    }
    stage_mark(p, SF_STAGE_PUBLISH);

    for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy(p->msgs[i]);
    p->n_msgs = 0;
    stage_mark(p, SF_STAGE_CONSUME);
    if (c->stats) {
        atomic_fetch_add_explicit(&c->stats->events, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->stats->batches, 1, memory_order_relaxed);
    }
    f->pending--;
    if (c->exactly_once)
        return transaction_commit(p, f);
    advance(p);
    return p->fatal ? -1 : 0;
}

/* ------------------------------------------------------------ exactly-once */

/* Moves the consumer back to the group's committed offsets, so the events of an
 * aborted transaction are read again. */
static void rewind_to_committed(pipeline *p, const rd_kafka_topic_partition_list_t *parts) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    if (rd_kafka_committed(p->consumer, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < l->cnt; i++)
            if (l->elems[i].offset < 0)
                l->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_error_t *err = rd_kafka_seek_partitions(p->consumer, l, 10000);
        if (err)
            rd_kafka_error_destroy(err);
    } else {
        set_fatal(p, "%s", "cannot read committed offsets to retry an aborted transaction");
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static int transaction_commit(pipeline *p, inflight *f) {
    rd_kafka_error_t *err = NULL;
    if (!p->fatal) {
        /* The group metadata of now, not of start-up: it carries the current
         * generation, so the broker refuses the offsets of an instance that
         * lost these partitions in a rebalance it did not see (KIP-447). */
        rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(p->consumer);
        err = rd_kafka_send_offsets_to_transaction(p->producer, f->offsets, md, -1);
        rd_kafka_consumer_group_metadata_destroy(md);
    }
    if (!p->fatal && !err)
        err = rd_kafka_commit_transaction(p->producer, -1);
    /* commit_transaction flushed: every delivery report of the batch was served. */
    if (!err && !p->fatal) {
        f->pending = 0;
        advance(p);
        return 0;
    }
    if (err && rd_kafka_error_txn_requires_abort(err)) {
        sf_log(p->log, SF_LOG_WARN, "transaction aborted, batch will be retried: %s",
               rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
        err = rd_kafka_abort_transaction(p->producer, -1);
        if (!err) {
            rewind_to_committed(p, f->offsets);
            f->pending = 0;
            advance(p);
            return p->fatal ? -1 : 0;
        }
    }
    if (err) {
        set_fatal(p, "transaction failed: %s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    }
    return -1;
}

/* Finishes the batch in flight and waits until every output is acknowledged
 * and every completed offset stored. 0 when nothing is left in flight. */
static int drain(pipeline *p) {
    process_batch(p);
    int64_t deadline = sf_clock_ms() + DRAIN_TIMEOUT_MS;
    while ((p->head || p->redo) && !p->fatal && sf_clock_ms() < deadline) {
        send_redos(p);
        rd_kafka_flush(p->producer, 100);
        rd_kafka_poll(p->producer, 0);
        advance(p);
    }
    if (p->head) {
        size_t left = 0;
        for (inflight *f = p->head; f; f = f->next)
            left++;
        sf_log(p->log, SF_LOG_ERROR, "%zu batches still unacknowledged; their offsets are not committed",
               left);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ callbacks */

static void log_partitions(pipeline *p, const char *what, const rd_kafka_topic_partition_list_t *l) {
    char buf[1024];
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < l->cnt && n < sizeof buf - 32; i++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s[%d]", i ? " " : "", l->elems[i].topic,
                              (int)l->elems[i].partition);
    sf_log(p->log, SF_LOG_INFO, "%s %d partitions: %s", what, l->cnt, buf);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    pipeline *p = opaque;
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_partitions(p, "assigned", parts);
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e)
                rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, parts);
        }
    } else {
        log_partitions(p, "revoked", parts);
        /* Everything read from these partitions is published and committed
         * before they go, so their next owner starts where we stopped. */
        if (drain(p) == 0 && !p->conf->exactly_once)
            rd_kafka_commit(rk, NULL, 0);
        if (cooperative) {
            rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
            if (e)
                rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, NULL);
        }
    }
    rd_kafka_topic_partition_list_t *now = NULL;
    if (rd_kafka_assignment(rk, &now) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (p->conf->metrics)
            sf_metrics_set(p->conf->metrics, SF_G_ASSIGNED_PARTITIONS, now->cnt);
        if (p->health)
            sf_health_set_assigned(p->health, now->cnt > 0);
        rd_kafka_topic_partition_list_destroy(now);
    }
}

/* Consumer lag: the sum of consumer_lag over the partitions we fetch. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    (void)rk;
    pipeline *p = opaque;
    json_t *root = json_loadb(json, len, 0, NULL);
    if (!root)
        return 0;
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
    if (p->conf->metrics)
        sf_metrics_set(p->conf->metrics, SF_G_CONSUMER_LAG, lag);
    return 0;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    pipeline *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_fatal_error(rk, buf, sizeof buf);
        set_fatal(p, "kafka fatal error: %s", buf);
        return;
    }
    /* librdkafka logs the same event through on_kafka_log; repeat it only for
     * debugging. */
    sf_log(p->log, SF_LOG_DEBUG, "kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* librdkafka's own log lines, in sigflow's format and under its --log-level. */
static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    const pipeline *p = rd_kafka_opaque(rk);
    sf_log_level l = level <= 2 ? SF_LOG_ERROR : level <= 4 ? SF_LOG_WARN : level <= 6 ? SF_LOG_INFO
                                                                                     : SF_LOG_DEBUG;
    sf_log(p->log, l, "kafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

/* ------------------------------------------------------------ setup */

static int apply_props(rd_kafka_conf_t *conf, const sf_pipeline_conf *c, char *errstr, size_t n) {
    for (size_t i = 0; i < c->n_kafka_props; i++)
        if (sf_kafka_conf_set_kv(conf, c->kafka_props[i], errstr, n))
            return -1;
    return 0;
}

static int set_all(rd_kafka_conf_t *conf, const char *const *kv, char *errstr, size_t n) {
    for (; kv[0]; kv += 2)
        if (sf_kafka_conf_set(conf, kv[0], kv[1], errstr, n))
            return -1;
    return 0;
}

/* The callbacks both clients share, then the client itself (which owns conf
 * from then on). NULL with errstr when librdkafka refuses the configuration. */
static rd_kafka_t *new_client(pipeline *p, rd_kafka_type_t type, rd_kafka_conf_t *conf,
                              char *errstr, size_t n) {
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    rd_kafka_conf_set_opaque(conf, p);
    char rderr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, rderr, sizeof rderr);
    if (!rk) {
        snprintf(errstr, n, "cannot create %s: %s",
                 type == RD_KAFKA_PRODUCER ? "producer" : "consumer", rderr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

static rd_kafka_t *make_producer(pipeline *p, char *errstr, size_t n) {
    const sf_pipeline_conf *c = p->conf;
    /* Room for any dead letter: a too-large event is copied to the dead-letter
     * topic whole, so the limit is what the consumer can receive, not
     * max_event_bytes; plus room for key and headers. */
    char max_bytes[32];
    size_t largest = c->max_event_bytes > RECEIVE_MAX_BYTES ? c->max_event_bytes : RECEIVE_MAX_BYTES;
    snprintf(max_bytes, sizeof max_bytes, "%zu", largest + (64 << 10));
    const char *defaults[] = {
        "bootstrap.servers", c->brokers,
        "enable.idempotence", "true",
        "linger.ms", "2",
        "message.timeout.ms", "0", /* retry until acknowledged: never drop an output */
        "message.max.bytes", max_bytes,
        "queue.buffering.max.kbytes", "32768",
        "reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS,
        NULL};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (set_all(conf, defaults, errstr, n) || apply_props(conf, c, errstr, n) ||
        (c->exactly_once && sf_kafka_conf_set(conf, "transactional.id", c->transactional_id, errstr, n))) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    return new_client(p, RD_KAFKA_PRODUCER, conf, errstr, n);
}

static rd_kafka_t *make_consumer(pipeline *p, char *errstr, size_t n) {
    const sf_pipeline_conf *c = p->conf;
    char receive_max[32];
    snprintf(receive_max, sizeof receive_max, "%u", RECEIVE_MAX_BYTES);
    const char *defaults[] = {
        "bootstrap.servers", c->brokers,
        "group.id", c->group,
        "auto.offset.reset", "earliest",
        "enable.auto.offset.store", "false",
        "enable.auto.commit", c->exactly_once ? "false" : "true",
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
        "statistics.interval.ms", c->metrics ? "5000" : "0",
        /* Idle fetches come back within 100 ms; librdkafka's 500 ms would
         * stall a batch that long on brokers (the embedded one among them)
         * that answer an empty fetch only when it expires. */
        "fetch.wait.max.ms", "100",
        NULL};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (set_all(conf, defaults, errstr, n) || apply_props(conf, c, errstr, n)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    if (c->metrics)
        rd_kafka_conf_set_stats_cb(conf, on_stats);
    return new_client(p, RD_KAFKA_CONSUMER, conf, errstr, n);
}

/* Fails fast when the brokers cannot be reached at start-up. */
static int check_brokers(pipeline *p, char *errstr, size_t n) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(p->producer, 1, NULL, &md, p->conf->connect_timeout_ms);
    if (err) {
        snprintf(errstr, n, "cannot reach brokers %s within %d ms: %s", p->conf->brokers,
                 p->conf->connect_timeout_ms, rd_kafka_err2str(err));
        return -1;
    }
    int found = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, p->conf->input_topic) && !md->topics[i].err)
            found = 1;
    if (!found)
        sf_log(p->log, SF_LOG_WARN, "input topic '%s' does not exist (yet); waiting for it",
               p->conf->input_topic);
    rd_kafka_metadata_destroy(md);
    return 0;
}

static void report(pipeline *p, int64_t now) {
    const sf_pipeline_conf *c = p->conf;
    if (!c->metrics)
        return;
    uint64_t consumed = sf_metrics_get(c->metrics, SF_C_CONSUMED);
    uint64_t predicted = sf_metrics_get(c->metrics, SF_C_PREDICTED);
    double secs = (double)(now - p->report_ms) / 1000.0;
    uint64_t rejected = 0;
    for (int r = SF_REJECT_NONE + 1; r < SF_REJECT__COUNT; r++)
        rejected += sf_metrics_rejected(c->metrics, (sf_reject)r);
    sf_log(p->log, SF_LOG_INFO,
           "%.0f events/s consumed, %.0f predicted/s; totals: %" PRIu64 " consumed, %" PRIu64
           " predicted, %" PRIu64 " signals, %" PRIu64 " dead letters, %" PRIu64 " rejected%s",
           (double)(consumed - p->report_consumed) / secs, (double)(predicted - p->report_predicted) / secs,
           consumed, predicted, sf_metrics_get(c->metrics, SF_C_SIGNALS),
           sf_metrics_get(c->metrics, SF_C_DEAD_LETTERS), rejected,
           p->rejects_suppressed ? " (some rejections not logged)" : "");
    p->report_ms = now;
    p->report_consumed = consumed;
    p->report_predicted = predicted;
    p->rejects_logged = 0;
    p->rejects_suppressed = 0;
}

static void maybe_reload(pipeline *p) {
    if (!p->conf->reload || !atomic_exchange(p->conf->reload, 0))
        return;
    char err[1024];
    sf_engine *fresh;
    if (sf_engine_reload(p->eng, &fresh, err, sizeof err)) {
        sf_log(p->log, SF_LOG_ERROR, "reload failed, still serving the previous model: %s", err);
        return;
    }
    process_batch(p); /* events read under the old model are scored by it */
    sf_engine_free(p->eng);
    p->eng = fresh;
    engine_announce(p);
    const sf_model *m = sf_engine_model(p->eng);
    sf_log(p->log, SF_LOG_INFO, "reloaded %s (sha256 %.12s, %zu parameters)",
           p->conf->engine.model_path, m->sha256, m->n_params);
}

/* ------------------------------------------------------------ main loop */

static void add_messages(pipeline *p, rd_kafka_message_t **ms, size_t n) {
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = ms[i];
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sf_log(p->log, SF_LOG_WARN, "consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (p->n_msgs == 0)
            p->first_ms = sf_clock_ms();
        p->msgs[p->n_msgs++] = m;
    }
}

static void loop(pipeline *p) {
    const sf_pipeline_conf *c = p->conf;
    const size_t batch_size = c->engine.batch_size;
    rd_kafka_message_t **got = malloc(batch_size * sizeof *got);
    if (!got) {
        set_fatal(p, "%s", "out of memory");
        return;
    }
    p->report_ms = sf_clock_ms();
    p->cpu_mark_ns = thread_cpu_ns();
    while (!atomic_load(c->stop) && !p->fatal) {
        int64_t now = sf_clock_ms();
        if (p->health)
            sf_health_beat(p->health);
        if (now - p->report_ms >= REPORT_INTERVAL_MS)
            report(p, now);
        maybe_reload(p);

        /* Wait for the first event of a batch, then until it is full or old. */
        int timeout = 100;
        if (p->n_msgs > 0) {
            int64_t left = p->first_ms + c->batch_wait_ms - now;
            timeout = left > 0 ? (int)left : 0;
        }
        /* With outputs in flight, come back every millisecond for their
         * delivery reports: waiting out a whole batch first would add its
         * wait and its processing to every event's latency. */
        if (p->head && timeout > 1)
            timeout = 1;
        size_t room = batch_size - p->n_msgs;
        ssize_t got_n;
        stage_mark(p, SF_STAGE_OTHER);
        if (p->n_msgs == 0) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, timeout);
            got[0] = m;
            got_n = m ? 1 : 0;
        } else {
            got_n = rd_kafka_consume_batch_queue(p->queue, timeout, got, room);
        }
        if (got_n > 0)
            add_messages(p, got, (size_t)got_n);
        stage_mark(p, SF_STAGE_CONSUME);
        if (p->n_msgs > 0 &&
            (p->n_msgs == batch_size || sf_clock_ms() - p->first_ms >= c->batch_wait_ms))
            process_batch(p);
        send_redos(p);
        rd_kafka_poll(p->producer, 0);
        advance(p);
        stage_mark(p, SF_STAGE_PUBLISH);
    }
    free(got);
}

static void log_startup(const pipeline *p) {
    const sf_pipeline_conf *c = p->conf;
    const sf_engine_conf *ec = &c->engine;
    const sf_model *m = sf_engine_model(p->eng);
    int signal = sf_engine_signal_index(p->eng), threads = sf_engine_threads(p->eng);
    sf_blas_info blas;
    sf_blas_info_get(&blas);
    sf_log(p->log, SF_LOG_INFO,
           "sigflow run: model %s (%zu->%zu, %zu layers, %zu parameters, sha256 %.12s), brokers %s, "
           "input %s, output %s, dead letters %s, group %s, batch %zu events / %d ms, normalize %s, "
           "select %s%s, %s, forward pass on %d thread%s (BLAS kernel %s, %d thread%s each)",
           ec->model_path, m->n_inputs, m->n_outputs, m->n_layers, m->n_params, m->sha256, c->brokers,
           c->input_topic, c->output_topic, c->dlq_topic ? c->dlq_topic : "(log only)", c->group,
           ec->batch_size, c->batch_wait_ms,
           ec->norm == SF_NORM_L2 ? "l2" : ec->norm == SF_NORM_NONE ? "none" : "standard",
           ec->emit == SF_EMIT_ALL ? "all" : ec->threshold >= 0 ? "threshold on " : "argmax is ",
           ec->emit == SF_EMIT_ALL || signal < 0 ? "" : sf_engine_vars(p->eng)->labels[signal],
           c->exactly_once ? "exactly-once" : "at-least-once", threads ? threads : 1,
           threads > 1 ? "s" : "", blas.corename, blas.threads, blas.threads == 1 ? "" : "s");
}

int sf_pipeline_run(const sf_pipeline_conf *c, char *errstr, size_t n) {
    pipeline p;
    memset(&p, 0, sizeof p);
    p.conf = c;
    p.log = c->log_level;
    sf_http *http = NULL;
    sf_health health;
    int rc = -1;

    if (c->engine.batch_size == 0 || c->batch_wait_ms < 0) {
        snprintf(errstr, n, "batch size must be positive and batch wait non-negative");
        return -1;
    }
    if (sf_engine_load(&p.eng, &c->engine, errstr, n))
        return -1;
    p.msgs = calloc(c->engine.batch_size, sizeof *p.msgs);
    p.row_msg = calloc(c->engine.batch_size, sizeof *p.row_msg);
    if (!p.msgs || !p.row_msg) {
        snprintf(errstr, n, "out of memory");
        goto out;
    }
    if (c->metrics_addr && strcmp(c->metrics_addr, "none")) {
        if (!c->metrics) {
            snprintf(errstr, n, "a metrics address needs a metrics registry");
            goto out;
        }
        sf_health_init(&health);
        p.health = &health;
        if (sf_http_start(&http, c->metrics_addr, c->metrics, &health, errstr, n))
            goto out;
        sf_log(p.log, SF_LOG_INFO, "metrics on %s (port %d): /metrics /healthz /readyz", c->metrics_addr,
               sf_http_port(http));
    }
    engine_announce(&p);

    if (!(p.producer = make_producer(&p, errstr, n)) || check_brokers(&p, errstr, n))
        goto out;
    if (c->exactly_once) {
        rd_kafka_error_t *err = rd_kafka_init_transactions(p.producer, c->connect_timeout_ms);
        if (err) {
            snprintf(errstr, n, "cannot initialise transactions (transactional.id %s): %s",
                     c->transactional_id, rd_kafka_error_string(err));
            rd_kafka_error_destroy(err);
            goto out;
        }
    }
    if (!(p.consumer = make_consumer(&p, errstr, n)))
        goto out;
    rd_kafka_poll_set_consumer(p.consumer);
    p.queue = rd_kafka_queue_get_consumer(p.consumer);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, c->input_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(p.consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (serr) {
        snprintf(errstr, n, "cannot subscribe to %s: %s", c->input_topic, rd_kafka_err2str(serr));
        goto out;
    }
    log_startup(&p);

    loop(&p);

    /* Stop fetching, finish the batch in flight, flush, commit, leave the group. */
    if (!p.fatal) {
        sf_log(p.log, SF_LOG_INFO, "stopping: draining the batch in flight");
        if (drain(&p) == 0) {
            if (!c->exactly_once) {
                rd_kafka_resp_err_t cerr = rd_kafka_commit(p.consumer, NULL, 0);
                if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
                    sf_log(p.log, SF_LOG_WARN, "final commit: %s", rd_kafka_err2str(cerr));
            }
            rc = 0;
        } else {
            snprintf(errstr, n, "stopped with outputs unacknowledged; their events will be read again");
        }
    }
    if (p.fatal) {
        snprintf(errstr, n, "%s", p.fatal_msg);
        rc = -1;
    }
    report(&p, sf_clock_ms());
    rd_kafka_consumer_close(p.consumer);
out:
    if (p.queue)
        rd_kafka_queue_destroy(p.queue);
    if (p.consumer)
        rd_kafka_destroy(p.consumer);
    if (p.producer) {
        rd_kafka_flush(p.producer, 1000);
        rd_kafka_destroy(p.producer);
    }
    for (size_t i = 0; i < p.n_msgs; i++)
        rd_kafka_message_destroy(p.msgs[i]);
    while (p.head) {
        inflight *f = p.head;
        p.head = f->next;
        inflight_free(f);
    }
    while (p.redo) {
        redo *r = p.redo;
        p.redo = r->next;
        if (r->headers)
            rd_kafka_headers_destroy(r->headers);
        free(r->key);
        free(r);
    }
    sf_http_stop(http);
    free(p.msgs);
    free(p.row_msg);
    sf_engine_free(p.eng);
    return rc;
}
