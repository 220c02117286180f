/* pipeline_publish.c: the daemon's output side. Producing with back-pressure,
 * delivery reports that complete batches (delivery.c), dead letters and the
 * re-sending of those the broker refused for size, and the per-batch Kafka
 * transaction of --exactly-once. Runs on the pipeline thread (pipeline.c). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sigflow/clock.h"
#include "sigflow/kafka.h"
#include "pipeline_impl.h"

/* delivery.c's store callback: the offsets of a completed batch. */
void sf_pipeline_store_offsets(void *opaque, rd_kafka_topic_partition_list_t *offsets) {
    pipeline *p = opaque;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(p->consumer, offsets);
    /* A partition revoked while its outputs were in flight is not ours to
     * commit: its new owner re-reads it (at-least-once). */
    if (err)
        sf_log(p->log, SF_LOG_DEBUG, "offsets not stored error=\"%s\"", rd_kafka_err2str(err));
}

/* The delivery-report opaque of f's next output. */
sf_out_ref *sf_pipeline_out_ref(pipeline *p, sf_delivery_batch *f, int64_t input_ts) {
    sf_out_ref *r = sf_delivery_ref(f, input_ts);
    if (!r) /* more outputs than events: a bug */
        sf_pipeline_fail(p, "internal error: more outputs than events in a batch");
    return r;
}

int sf_pipeline_produce(pipeline *p, const char *topic, const void *key, size_t key_len,
                        const void *value, size_t len, rd_kafka_headers_t *headers, int64_t ts,
                        sf_out_ref *ref) {
    if (!ref) {
        if (headers)
            rd_kafka_headers_destroy(headers);
        return -1;
    }
    int64_t stuck_since = 0;
    for (;;) {
        /* Headers are freed by a successful producev (NULL: none); on
         * failure they are still ours. */
        rd_kafka_resp_err_t err = rd_kafka_producev(
            p->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_TIMESTAMP(ts), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(ref),
            RD_KAFKA_V_END);
        if (!err) {
            sf_delivery_sent(ref);
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
            sf_pipeline_fail(p, "cannot produce: %s", rd_kafka_err2str(err));
            return -1;
        }
        /* Back-pressure: serve delivery reports until the queue has room. A stop
         * request gives up after the drain timeout, committing nothing more. */
        if (!stuck_since)
            stuck_since = sf_clock_ms();
        if (atomic_load(p->conf->stop) && sf_clock_ms() - stuck_since > DRAIN_TIMEOUT_MS) {
            if (headers)
                rd_kafka_headers_destroy(headers);
            sf_pipeline_fail(p, "stopped while the producer queue stayed full; "
                                "uncommitted events will be read again");
            return -1;
        }
        rd_kafka_poll(p->producer, 10);
    }
}

void sf_pipeline_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    pipeline *p = opaque;
    sf_out_ref *ref = m->_private;
    const char *topic = rd_kafka_topic_name(m->rkt);
    int is_dlq = p->conf->dlq_topic && !strcmp(topic, p->conf->dlq_topic);
    int is_shadow = p->conf->shadow_topic && !strcmp(topic, p->conf->shadow_topic);

    if (m->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE && is_dlq && m->len > 0) {
        /* Keep the dead letter's record, if not its payload: send it again empty. */
        rd_kafka_headers_t *h = NULL;
        if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
            h = NULL;
        if (sf_delivery_redo_push(p->dlv, ref, m->key, m->key_len, h, m->len))
            sf_pipeline_fail(p, "out of memory");
        return;
    }
    if (m->err) {
        /* Retriable errors never get here: librdkafka retries them itself until
         * message.timeout.ms (infinite by default in sigflow). */
        sf_pipeline_fail(p, "delivery failed to %s [%d]: %s", topic, (int)m->partition,
                  rd_kafka_err2str(m->err));
        return;
    }
    sf_delivery_acked(ref);
    if (is_shadow) { /* neither a signal nor a served event's latency */
        p->shadow_published++;
        return;
    }
    if (p->conf->metrics)
        sf_metrics_add(p->conf->metrics, is_dlq ? SF_C_DEAD_LETTERS : SF_C_SIGNALS, 1);
    const sf_pipeline_stats *st = p->conf->stats;
    if (ref->input_ts > 0 && (p->conf->metrics || (st && st->on_ack))) {
        double latency_ms = sf_clock_wall_ms() - (double)ref->input_ts;
        if (p->conf->metrics)
            sf_metrics_observe(p->conf->metrics, SF_H_END_TO_END, latency_ms / 1000.0);
        if (st && st->on_ack)
            st->on_ack(st->opaque, latency_ms);
        if (st && st->on_ack_parts && ref->produced_ms > 0) {
            double now = latency_ms + (double)ref->input_ts;
            sf_latency_parts parts = {ref->taken_ms - (double)ref->input_ts,
                                      ref->closed_ms - ref->taken_ms, ref->inferred_ms - ref->closed_ms,
                                      ref->produced_ms - ref->inferred_ms, now - ref->produced_ms};
            st->on_ack_parts(st->opaque, &parts);
        }
    }
}

void sf_pipeline_send_redos(pipeline *p) {
    sf_delivery_redo *r;
    while ((r = sf_delivery_redo_pop(p->dlv))) {
        char note[128];
        snprintf(note, sizeof note, "payload of %zu bytes not kept: the broker refused its size",
                 r->value_len);
        if (!r->headers)
            r->headers = rd_kafka_headers_new(2);
        rd_kafka_header_add(r->headers, "sigflow-note", -1, note, -1);
        rd_kafka_headers_t *h = r->headers;
        r->headers = NULL; /* sf_pipeline_produce() owns them */
        sf_pipeline_produce(p, p->conf->dlq_topic, r->key, r->key_len, NULL, 0, h, 0, r->ref);
        sf_delivery_redo_free(r);
    }
}

int sf_pipeline_produce_output(pipeline *p, const char *topic, const rd_kafka_message_t *m,
                               const sf_event_id *id, const char *out, size_t len,
                               const char *model_header, int shadow, int64_t ts, sf_out_ref *ref) {
    rd_kafka_headers_t *h = p->conf->drop_headers ? rd_kafka_headers_new(2)
                                                  : sf_pipeline_input_headers(m);
    if (!h) {
        sf_pipeline_fail(p, "out of memory");
        return -1;
    }
    rd_kafka_header_add(h, "sigflow-model", -1, model_header, -1);
    if (shadow)
        rd_kafka_header_add(h, "sigflow-shadow", -1, "1", 1);
    return sf_pipeline_produce(p, topic, id->key_len ? id->key : m->key,
                               id->key_len ? id->key_len : m->key_len, out, len, h,
                               ts > 0 ? ts : 0, ref);
}

rd_kafka_headers_t *sf_pipeline_input_headers(const rd_kafka_message_t *m) {
    rd_kafka_headers_t *in = NULL;
    /* The message's own headers stay the consumer's: copy them. */
    if (rd_kafka_message_headers(m, &in) == RD_KAFKA_RESP_ERR_NO_ERROR && in)
        return rd_kafka_headers_copy(in);
    return rd_kafka_headers_new(4);
}

void sf_pipeline_dead_letter(pipeline *p, const rd_kafka_message_t *m, sf_reject reason,
                             const char *why, sf_delivery_batch *f) {
    const sf_pipeline_conf *c = p->conf;
    char source[512];
    snprintf(source, sizeof source, "%s/%d/%" PRId64, rd_kafka_topic_name(m->rkt),
             (int)m->partition, m->offset);
    if (c->metrics)
        sf_metrics_reject(c->metrics, reason);
    if (p->rejects_logged < MAX_LOGGED_REJECTS) {
        p->rejects_logged++;
        sf_log(p->log, SF_LOG_WARN,
               "rejected event topic=%s partition=%d offset=%" PRId64 " reason=%s error=\"%s\"",
               rd_kafka_topic_name(m->rkt), (int)m->partition, m->offset, sf_reject_name(reason), why);
    } else {
        p->rejects_suppressed++;
    }
    if (!c->dlq_topic)
        return;
    rd_kafka_headers_t *h = sf_pipeline_input_headers(m);
    if (!h) {
        sf_pipeline_fail(p, "out of memory");
        return;
    }
    rd_kafka_header_add(h, "sigflow-error", -1, why, -1);
    rd_kafka_header_add(h, "sigflow-error-code", -1, sf_reject_name(reason), -1);
    rd_kafka_header_add(h, "sigflow-source", -1, source, -1);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    sf_pipeline_produce(p, c->dlq_topic, m->key, m->key_len, m->payload, m->len, h, ts > 0 ? ts : 0,
            sf_pipeline_out_ref(p, f, ts));
}

/* ------------------------------------------------------------ exactly-once */

int sf_pipeline_transaction_commit(pipeline *p, sf_delivery_batch *f) {
    rd_kafka_error_t *err = NULL;
    if (!p->fatal) {
        /* The group metadata of now, not of start-up: it carries the current
         * generation, so the broker refuses the offsets of an instance that
         * lost these partitions in a rebalance it did not see (KIP-447). */
        rd_kafka_consumer_group_metadata_t *md = rd_kafka_consumer_group_metadata(p->consumer);
        err = rd_kafka_send_offsets_to_transaction(p->producer, sf_delivery_offsets(f), md, -1);
        rd_kafka_consumer_group_metadata_destroy(md);
    }
    if (!p->fatal && !err)
        err = rd_kafka_commit_transaction(p->producer, -1);
    /* commit_transaction flushed: every delivery report of the batch was served. */
    if (!err && !p->fatal) {
        sf_delivery_settle(f);
        sf_delivery_advance(p->dlv);
        return 0;
    }
    if (err && rd_kafka_error_txn_requires_abort(err)) {
        sf_log(p->log, SF_LOG_WARN, "transaction aborted, batch will be retried error=\"%s\"",
               rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
        err = rd_kafka_abort_transaction(p->producer, -1);
        if (!err) {
            /* The events of the aborted transaction are read again. */
            if (sf_kafka_rewind_to_committed(p->consumer, sf_delivery_offsets(f), 10000))
                sf_pipeline_fail(p, "cannot read committed offsets to retry an aborted transaction");
            sf_delivery_settle(f);
            sf_delivery_advance(p->dlv);
            return p->fatal ? -1 : 0;
        }
    }
    if (err) {
        sf_pipeline_fail(p, "transaction failed: %s", rd_kafka_error_string(err));
        rd_kafka_error_destroy(err);
    }
    return -1;
}

