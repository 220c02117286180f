/* test_delivery.c: the at-least-once bookkeeping (delivery.c) without Kafka.
 *
 * Acknowledgements arrive in any order; an offset must be stored only once
 * every output of its batch and of every earlier batch is acknowledged, in
 * consumption order, and never after a failure. These tests drive the FIFO
 * through every order of acknowledgement of a few batches and check what
 * the store callback saw against that rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigflow/delivery.h"

#define MAX_STORES 64

/* What the store callback saw: per call, partition 0's offset. */
typedef struct seen {
    int n;
    int64_t offset[MAX_STORES];
    int cnt[MAX_STORES];
} seen;

static void record(void *opaque, rd_kafka_topic_partition_list_t *l) {
    seen *s = opaque;
    assert_true(s->n < MAX_STORES);
    rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(l, "events", 0);
    s->offset[s->n] = tp ? tp->offset : -1;
    s->cnt[s->n] = l->cnt;
    s->n++;
}

static void one_batch_stores_after_its_last_ack(void **state) {
    (void)state;
    seen s = {0};
    sf_delivery *d = sf_delivery_new(record, &s);
    sf_delivery_batch *b = sf_delivery_open(d, 3);
    assert_int_equal(sf_delivery_note(b, "events", 0, 10), 0);
    assert_int_equal(sf_delivery_note(b, "events", 0, 12), 0);
    assert_int_equal(sf_delivery_note(b, "events", 0, 11), 0); /* out of order: max wins */
    assert_int_equal(sf_delivery_note(b, "events", 1, 5), 0);
    sf_out_ref *r1 = sf_delivery_ref(b, 1000), *r2 = sf_delivery_ref(b, -5);
    assert_ptr_equal(r1->owner, b);
    assert_int_equal(r2->input_ts, 0); /* no timestamp */
    sf_delivery_sent(r1);
    sf_delivery_sent(r2);
    sf_delivery_close(b);
    sf_delivery_advance(d);
    assert_int_equal(s.n, 0);
    sf_delivery_acked(r2);
    sf_delivery_advance(d);
    assert_int_equal(s.n, 0);
    assert_int_equal(sf_delivery_pending(d), 1);
    sf_delivery_acked(r1);
    sf_delivery_advance(d);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.offset[0], 13); /* the next offset to consume */
    assert_int_equal(s.cnt[0], 2);
    assert_int_equal(sf_delivery_pending(d), 0);
    sf_delivery_free(d);
}

/* A batch still being produced is not complete, even with every output so
 * far acknowledged; a batch without outputs completes when closed. */
static void open_batch_is_pending(void **state) {
    (void)state;
    seen s = {0};
    sf_delivery *d = sf_delivery_new(record, &s);
    sf_delivery_batch *b = sf_delivery_open(d, 2);
    sf_delivery_note(b, "events", 0, 0);
    sf_out_ref *r = sf_delivery_ref(b, 0);
    sf_delivery_sent(r);
    sf_delivery_acked(r);
    sf_delivery_advance(d);
    assert_int_equal(s.n, 0);
    sf_delivery_close(b);
    sf_delivery_advance(d);
    assert_int_equal(s.n, 1);

    sf_delivery_batch *empty = sf_delivery_open(d, 0);
    sf_delivery_note(empty, "events", 0, 1);
    assert_null(sf_delivery_ref(empty, 0)); /* no room: more outputs than events */
    sf_delivery_close(empty);
    sf_delivery_advance(d);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.offset[1], 2);
    sf_delivery_free(d);
}

/* Three batches of two outputs each; batch k holds offset k. Every one of the
 * 6! orders of acknowledgement: stores happen in batch order, each exactly
 * when its batch and all earlier ones are acknowledged. */
#define BATCHES 3
#define OUTS 2
#define N (BATCHES * OUTS)

static int next_permutation(int *a, int n) {
    int i = n - 2;
    while (i >= 0 && a[i] >= a[i + 1])
        i--;
    if (i < 0)
        return 0;
    int j = n - 1;
    while (a[j] <= a[i])
        j--;
    int t = a[i];
    a[i] = a[j];
    a[j] = t;
    for (int l = i + 1, r = n - 1; l < r; l++, r--) {
        t = a[l];
        a[l] = a[r];
        a[r] = t;
    }
    return 1;
}

static void every_order_of_acks(void **state) {
    (void)state;
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    int permutations = 0;
    do {
        seen s = {0};
        sf_delivery *d = sf_delivery_new(record, &s);
        sf_out_ref *refs[N];
        for (int b = 0; b < BATCHES; b++) {
            sf_delivery_batch *batch = sf_delivery_open(d, OUTS);
            sf_delivery_note(batch, "events", 0, b);
            for (int o = 0; o < OUTS; o++) {
                refs[b * OUTS + o] = sf_delivery_ref(batch, 0);
                sf_delivery_sent(refs[b * OUTS + o]);
            }
            sf_delivery_close(batch);
        }
        int acked[N] = {0};
        for (int k = 0; k < N; k++) {
            acked[order[k]] = 1;
            sf_delivery_acked(refs[order[k]]);
            sf_delivery_advance(d);
            /* Expected: the longest prefix of fully acknowledged batches. */
            int complete = 0;
            while (complete < BATCHES) {
                int all = 1;
                for (int o = 0; o < OUTS; o++)
                    all &= acked[complete * OUTS + o];
                if (!all)
                    break;
                complete++;
            }
            assert_int_equal(s.n, complete);
            for (int b = 0; b < s.n; b++)
                assert_int_equal(s.offset[b], b + 1);
            assert_int_equal(sf_delivery_pending(d), BATCHES - complete);
        }
        sf_delivery_free(d);
        permutations++;
    } while (next_permutation(order, N));
    assert_int_equal(permutations, 720);
}

/* After a failure nothing more is stored, even batches that look complete. */
static void failure_stops_stores(void **state) {
    (void)state;
    seen s = {0};
    sf_delivery *d = sf_delivery_new(record, &s);
    sf_delivery_batch *a = sf_delivery_open(d, 1), *b = sf_delivery_open(d, 1);
    sf_delivery_note(a, "events", 0, 0);
    sf_delivery_note(b, "events", 0, 1);
    sf_out_ref *ra = sf_delivery_ref(a, 0), *rb = sf_delivery_ref(b, 0);
    sf_delivery_sent(ra);
    sf_delivery_sent(rb);
    sf_delivery_close(a);
    sf_delivery_close(b);
    sf_delivery_acked(ra);
    sf_delivery_advance(d);
    assert_int_equal(s.n, 1);
    /* b's output failed: the pipeline fails the whole delivery. */
    sf_delivery_fail(d);
    assert_true(sf_delivery_failed(d));
    sf_delivery_acked(rb); /* a later report must not store it either */
    sf_delivery_advance(d);
    assert_int_equal(s.n, 1);
    assert_int_equal(sf_delivery_pending(d), 1);
    sf_delivery_free(d); /* frees the unstored batch */
}

/* A refused dead letter is re-sent: its batch stays pending until the new
 * copy is acknowledged, and the redo carries copies of key and headers. */
static void redo_keeps_batch_pending(void **state) {
    (void)state;
    seen s = {0};
    sf_delivery *d = sf_delivery_new(record, &s);
    sf_delivery_batch *b = sf_delivery_open(d, 1);
    sf_delivery_note(b, "events", 0, 7);
    sf_out_ref *r = sf_delivery_ref(b, 0);
    sf_delivery_sent(r);
    sf_delivery_close(b);

    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    rd_kafka_header_add(h, "sigflow-error", -1, "not JSON", -1);
    char key[] = "k1";
    assert_int_equal(sf_delivery_redo_push(d, r, key, 2, h, 5000000), 0);
    rd_kafka_headers_destroy(h); /* the redo holds its own copy */
    key[0] = 'X';
    assert_true(sf_delivery_has_redo(d));
    sf_delivery_advance(d);
    assert_int_equal(s.n, 0); /* refused is not acknowledged */

    sf_delivery_redo *redo = sf_delivery_redo_pop(d);
    assert_non_null(redo);
    assert_false(sf_delivery_has_redo(d));
    assert_null(sf_delivery_redo_pop(d));
    assert_int_equal(redo->key_len, 2);
    assert_memory_equal(redo->key, "k1", 2);
    assert_int_equal(redo->value_len, 5000000);
    const void *v;
    size_t vlen;
    assert_int_equal(rd_kafka_header_get_last(redo->headers, "sigflow-error", &v, &vlen), 0);
    assert_int_equal(vlen, 8);
    /* Popped: the refused copy no longer counts, the new one does once sent. */
    sf_delivery_sent(redo->ref);
    sf_delivery_advance(d);
    assert_int_equal(s.n, 0);
    sf_delivery_acked(redo->ref);
    sf_delivery_redo_free(redo);
    sf_delivery_advance(d);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.offset[0], 8);

    /* Redos left at the end are freed with the delivery (ASan checks). */
    b = sf_delivery_open(d, 1);
    r = sf_delivery_ref(b, 0);
    sf_delivery_sent(r);
    assert_int_equal(sf_delivery_redo_push(d, r, NULL, 0, NULL, 10), 0);
    sf_delivery_free(d);
    sf_delivery_free(NULL);
    sf_delivery_redo_free(NULL);
}

/* Exactly-once: no store callback; a settled batch leaves the FIFO. */
static void settle_without_store(void **state) {
    (void)state;
    sf_delivery *d = sf_delivery_new(NULL, NULL);
    sf_delivery_batch *b = sf_delivery_open(d, 2);
    sf_delivery_note(b, "events", 3, 41);
    const rd_kafka_topic_partition_list_t *l = sf_delivery_offsets(b);
    assert_int_equal(l->cnt, 1);
    assert_int_equal(l->elems[0].offset, 42);
    sf_delivery_sent(sf_delivery_ref(b, 0));
    sf_delivery_close(b);
    sf_delivery_advance(d);
    assert_int_equal(sf_delivery_pending(d), 1);
    sf_delivery_settle(b);
    sf_delivery_advance(d);
    assert_int_equal(sf_delivery_pending(d), 0);
    sf_delivery_free(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_batch_stores_after_its_last_ack),
        cmocka_unit_test(open_batch_is_pending),
        cmocka_unit_test(every_order_of_acks),
        cmocka_unit_test(failure_stops_stores),
        cmocka_unit_test(redo_keeps_batch_pending),
        cmocka_unit_test(settle_without_store),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
