/* delivery.h: the daemon's at-least-once bookkeeping, apart from Kafka I/O so
 * it can be tested on its own.
 *
 * Every batch gets a record counting its outputs not yet acknowledged and
 * holding, per partition, the offset after its last event. Records sit in a
 * FIFO in consumption order; only a completed prefix of that FIFO has its
 * offsets stored (the store callback), so no offset is stored before
 * everything derived from it and from every earlier offset has been
 * acknowledged. After a failure nothing more is stored: the failed output's
 * batch may look complete.
 *
 * Dead letters the broker refused for their size are kept as "redos" to send
 * again without payload, so their record is not lost.
 *
 * Single-threaded: the pipeline thread serves every call, delivery reports
 * included. Conventions: CONTRIBUTING.md. */
#ifndef SIGFLOW_DELIVERY_H
#define SIGFLOW_DELIVERY_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

typedef struct sf_delivery sf_delivery;
typedef struct sf_delivery_batch sf_delivery_batch;

/* One output in flight, the opaque of its delivery report. The report's own
 * timestamp may be the broker's LogAppendTime, so the input's travels here
 * (for the end-to-end latency). */
typedef struct sf_out_ref {
    sf_delivery_batch *owner;
    int64_t input_ts; /* ms; 0 when the input had none */
    /* Wall-clock ms of the output's steps, for sf_pipeline_stats.on_ack_parts
     * (0: not measured). */
    double taken_ms, closed_ms, inferred_ms, produced_ms;
} sf_out_ref;

/* A refused dead letter to send again: its key and headers (owned by the
 * redo), the size of the payload that was not kept, and its output. */
typedef struct sf_delivery_redo {
    struct sf_delivery_redo *next;
    void *key;
    size_t key_len;
    rd_kafka_headers_t *headers; /* may be NULL; set it to NULL once given away */
    size_t value_len;
    sf_out_ref *ref;
} sf_delivery_redo;

/* Called with the offsets (next offset to consume, per partition) of each
 * completed batch, in order. */
typedef void (*sf_delivery_store_fn)(void *opaque, rd_kafka_topic_partition_list_t *offsets);

/* store may be NULL (exactly-once: the transaction carries the offsets).
 * NULL when out of memory. */
sf_delivery *sf_delivery_new(sf_delivery_store_fn store, void *opaque);

/* Frees every record and redo, stored or not; NULL is a no-op. */
void sf_delivery_free(sf_delivery *d);

/* Opens the record of a batch of up to max_outputs outputs, at the tail of
 * the FIFO. It counts as pending until sf_delivery_close. NULL when out of
 * memory (nothing changes then). */
sf_delivery_batch *sf_delivery_open(sf_delivery *d, size_t max_outputs);

/* Notes that the batch holds the message at topic/partition/offset. 0, or -1
 * when out of memory. */
int sf_delivery_note(sf_delivery_batch *b, const char *topic, int32_t partition, int64_t offset);

/* The batch's offsets, for a transaction. */
const rd_kafka_topic_partition_list_t *sf_delivery_offsets(const sf_delivery_batch *b);

/* The delivery-report opaque of the batch's next output (input_ts <= 0: none).
 * NULL when the batch already has max_outputs outputs. */
sf_out_ref *sf_delivery_ref(sf_delivery_batch *b, int64_t input_ts);

/* The output of ref was handed to the producer: one more acknowledgement due. */
void sf_delivery_sent(sf_out_ref *ref);

/* The output of ref was acknowledged. */
void sf_delivery_acked(sf_out_ref *ref);

/* Every output of the batch is produced: once they are acknowledged the
 * batch is complete. */
void sf_delivery_close(sf_delivery_batch *b);

/* The batch is settled whatever its outputs say (a committed or aborted
 * transaction). */
void sf_delivery_settle(sf_delivery_batch *b);

/* No offset is stored from now on. */
void sf_delivery_fail(sf_delivery *d);
int sf_delivery_failed(const sf_delivery *d);

/* Stores the offsets of the completed prefix of the FIFO and frees it. */
void sf_delivery_advance(sf_delivery *d);

/* Batches in the FIFO (complete ones not yet advanced included). */
size_t sf_delivery_pending(const sf_delivery *d);

/* Keeps a refused dead letter to send again: copies key and headers. 0, or -1
 * when out of memory. */
int sf_delivery_redo_push(sf_delivery *d, sf_out_ref *ref, const void *key, size_t key_len,
                          const rd_kafka_headers_t *headers, size_t value_len);

/* The next redo, or NULL. Its refused copy no longer counts as due: send it
 * again, call sf_delivery_sent on success, then sf_delivery_redo_free. */
sf_delivery_redo *sf_delivery_redo_pop(sf_delivery *d);
int sf_delivery_has_redo(const sf_delivery *d);

/* Frees the redo, its key and its headers when still held; NULL is a no-op. */
void sf_delivery_redo_free(sf_delivery_redo *r);

#endif
