/* delivery.c: the in-flight FIFO that makes the daemon at-least-once
 * (delivery.h), kept free of Kafka I/O so tests can drive it directly. */
#include <stdlib.h>
#include <string.h>

#include "sigflow/delivery.h"

struct sf_delivery_batch {
    sf_delivery_batch *next;
    size_t pending; /* outputs not yet acknowledged (+1 until closed) */
    rd_kafka_topic_partition_list_t *offsets;
    sf_out_ref *refs; /* one per output */
    size_t n_refs, cap_refs;
};

struct sf_delivery {
    sf_delivery_batch *head, *tail;
    size_t n_batches;
    sf_delivery_redo *redo;
    int failed;
    sf_delivery_store_fn store;
    void *opaque;
};

sf_delivery *sf_delivery_new(sf_delivery_store_fn store, void *opaque) {
    sf_delivery *d = calloc(1, sizeof *d);
    if (d) {
        d->store = store;
        d->opaque = opaque;
    }
    return d;
}

static void batch_free(sf_delivery_batch *b) {
    if (b->offsets)
        rd_kafka_topic_partition_list_destroy(b->offsets);
    free(b->refs);
    free(b);
}

void sf_delivery_redo_free(sf_delivery_redo *r) {
    if (!r)
        return;
    if (r->headers)
        rd_kafka_headers_destroy(r->headers);
    free(r->key);
    free(r);
}

void sf_delivery_free(sf_delivery *d) {
    if (!d)
        return;
    while (d->head) {
        sf_delivery_batch *b = d->head;
        d->head = b->next;
        batch_free(b);
    }
    while (d->redo) {
        sf_delivery_redo *r = d->redo;
        d->redo = r->next;
        sf_delivery_redo_free(r);
    }
    free(d);
}

sf_delivery_batch *sf_delivery_open(sf_delivery *d, size_t max_outputs) {
    sf_delivery_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->offsets = rd_kafka_topic_partition_list_new(8);
    b->refs = malloc((max_outputs ? max_outputs : 1) * sizeof *b->refs);
    if (!b->offsets || !b->refs) {
        batch_free(b);
        return NULL;
    }
    b->cap_refs = max_outputs;
    b->pending = 1;
    d->n_batches++;
    if (d->tail)
        d->tail->next = b;
    else
        d->head = b;
    d->tail = b;
    return b;
}

int sf_delivery_note(sf_delivery_batch *b, const char *topic, int32_t partition, int64_t offset) {
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(b->offsets, topic, partition);
    if (!tp && !(tp = rd_kafka_topic_partition_list_add(b->offsets, topic, partition)))
        return -1;
    if (offset + 1 > tp->offset)
        tp->offset = offset + 1;
    return 0;
}

const rd_kafka_topic_partition_list_t *sf_delivery_offsets(const sf_delivery_batch *b) {
    return b->offsets;
}

sf_out_ref *sf_delivery_ref(sf_delivery_batch *b, int64_t input_ts) {
    if (b->n_refs == b->cap_refs)
        return NULL;
    sf_out_ref *r = &b->refs[b->n_refs++];
    r->owner = b;
    r->input_ts = input_ts > 0 ? input_ts : 0;
    r->taken_ms = r->closed_ms = r->inferred_ms = r->produced_ms = 0;
    return r;
}

void sf_delivery_sent(sf_out_ref *ref) { ref->owner->pending++; }

void sf_delivery_acked(sf_out_ref *ref) { ref->owner->pending--; }

void sf_delivery_close(sf_delivery_batch *b) { b->pending--; }

void sf_delivery_settle(sf_delivery_batch *b) { b->pending = 0; }

void sf_delivery_fail(sf_delivery *d) {
    if (d)
        d->failed = 1;
}

int sf_delivery_failed(const sf_delivery *d) { return d->failed; }

void sf_delivery_advance(sf_delivery *d) {
    while (d->head && d->head->pending == 0 && !d->failed) {
        sf_delivery_batch *b = d->head;
        if (d->store && b->offsets->cnt > 0)
            d->store(d->opaque, b->offsets);
        d->head = b->next;
        if (!d->head)
            d->tail = NULL;
        d->n_batches--;
        batch_free(b);
    }
}

size_t sf_delivery_pending(const sf_delivery *d) { return d->n_batches; }

int sf_delivery_redo_push(sf_delivery *d, sf_out_ref *ref, const void *key, size_t key_len,
                          const rd_kafka_headers_t *headers, size_t value_len) {
    sf_delivery_redo *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    if (key_len && !(r->key = malloc(key_len))) {
        free(r);
        return -1;
    }
    if (key_len)
        memcpy(r->key, key, key_len);
    r->key_len = key_len;
    if (headers)
        r->headers = rd_kafka_headers_copy(headers);
    r->value_len = value_len;
    r->ref = ref;
    r->next = d->redo;
    d->redo = r;
    return 0;
}

sf_delivery_redo *sf_delivery_redo_pop(sf_delivery *d) {
    sf_delivery_redo *r = d->redo;
    if (!r)
        return NULL;
    d->redo = r->next;
    r->next = NULL;
    r->ref->owner->pending--; /* the refused copy; the caller counts the new one */
    return r;
}

int sf_delivery_has_redo(const sf_delivery *d) { return d->redo != NULL; }
