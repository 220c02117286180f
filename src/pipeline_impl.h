/* pipeline_impl.h: what the daemon's loop (pipeline.c) and its output side
 * (pipeline_publish.c: producing, delivery reports, dead letters,
 * transactions), its monitoring (pipeline_monitor.c) and the shadow's
 * outputs (pipeline_shadow.c) share. Private to those files. */
#ifndef SIGFLOW_PIPELINE_IMPL_H
#define SIGFLOW_PIPELINE_IMPL_H

#include <pthread.h>

#include <librdkafka/rdkafka.h>

#include "sigflow/delivery.h"
#include "sigflow/drift.h"
#include "sigflow/http.h"
#include "sigflow/pipeline.h"

#define DRAIN_TIMEOUT_MS 30000
#define MAX_LOGGED_REJECTS 10 /* per report interval; the rest are counted */
#define OUTPUT_MAX 4096        /* bytes of one output message */
#define CHUNK_ROWS 128         /* events scored and published together (pipeline.c) */
#define WHY_MAX 512            /* bytes of a rejection's reason */

typedef struct pipeline {
    const sf_pipeline_conf *conf;
    sf_logger log;
    sf_engine *eng; /* replaced whole on reload */
    char model_header[8192]; /* sigflow-model of eng's outputs (sf_engine_digest) */
    rd_kafka_t *consumer, *producer;
    rd_kafka_queue_t *queue;

    rd_kafka_message_t **msgs; /* the batch being filled */
    double *taken_ms;          /* wall clock when each was taken, for on_ack_parts */
    size_t n_msgs;
    int64_t first_ms;
    size_t *row_msg; /* row j of the batch came from msgs[row_msg[j]] */
    /* A chunk's parse and render, shared with the inference threads
     * (pipeline.c's tasks): CHUNK_ROWS each. */
    pthread_t self;      /* the pipeline thread */
    size_t parse_from, parse_n, render_row, render_n;
    sf_reject *verdict;  /* message parse_from + j's */
    char *why;           /* WHY_MAX each: the reason of a refused one */
    char *out;           /* OUTPUT_MAX each: row render_row + j rendered */
    int *out_len;        /* its length; 0: not selected; -1: did not fit */

    sf_delivery *dlv;
    int fatal;
    char fatal_msg[1024];

    int64_t report_ms;
    uint64_t report_consumed, report_predicted;
    unsigned rejects_logged, rejects_suppressed;
    sf_health *health;
    int assigned; /* partitions owned, kept by on_rebalance */
    int64_t cpu_mark_ns; /* conf->stats: this thread's CPU time at the last stage mark */
    sf_drift *drift;     /* NULL: drift monitoring off (pipeline_monitor.c) */
    int64_t monitor_ms;  /* when the monitor last exported its figures */
    sf_truth *truth;     /* NULL: no --truth-topic */
    sf_engine *shadow;   /* NULL: no --shadow-model */
    size_t *shadow_row;  /* serving row j -> shadow row, or SIZE_MAX when it refused it */
    uint64_t shadow_agree, shadow_compared, shadow_refused;
    char shadow_header[8192]; /* sigflow-model of the shadow's outputs (--shadow-topic) */
    uint64_t shadow_published; /* shadow outputs acknowledged */
    size_t truth_models; /* the serving model and the members it scores */
    rd_kafka_t *truth_consumer;
    rd_kafka_queue_t *truth_queue; /* its messages, read in batches */
    sf_vars *truth_vars;           /* no inputs: truth messages are read for ids only */
    sf_assembler *truth_id, *truth_label; /* id field: the truth's id, its label */
} pipeline;

/* The first fatal error stops the loop, and no offset is stored after it. */
void sf_pipeline_fail(pipeline *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Charges this thread's CPU time since the previous mark to stage s. */
void sf_pipeline_stage_mark(pipeline *p, sf_stage s);

/* delivery.c's store callback: the offsets of a completed batch. */
void sf_pipeline_store_offsets(void *opaque, rd_kafka_topic_partition_list_t *offsets);

/* The delivery-report opaque of f's next output (NULL: a fatal error). */
sf_out_ref *sf_pipeline_out_ref(pipeline *p, sf_delivery_batch *f, int64_t input_ts);

/* Produces one output (headers may be NULL; they are the producer's from
 * then on, freed here on failure), waiting out a full queue. 0, or -1 after
 * a fatal error. */
int sf_pipeline_produce(pipeline *p, const char *topic, const void *key, size_t key_len,
                        const void *value, size_t len, rd_kafka_headers_t *headers, int64_t ts,
                        sf_out_ref *ref);

/* Produces the output rendered for input m (out, len) to topic: keyed by
 * the event's id, else by the input's key, so an output lands where a
 * consumer keyed on the input expects it; with the input's headers (none
 * with --headers none), sigflow-model (model_header) and, for a shadow's,
 * sigflow-shadow: 1. 0, or -1 after a fatal error. */
int sf_pipeline_produce_output(pipeline *p, const char *topic, const rd_kafka_message_t *m,
                               const sf_event_id *id, const char *out, size_t len,
                               const char *model_header, int shadow, int64_t ts, sf_out_ref *ref);

/* The producer's delivery-report callback. */
void sf_pipeline_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* Sends again, without payload, the dead letters the broker refused for size. */
void sf_pipeline_send_redos(pipeline *p);

/* The input message's headers copied (an empty set when it has none), for
 * an output or a dead letter; NULL when out of memory. */
rd_kafka_headers_t *sf_pipeline_input_headers(const rd_kafka_message_t *m);

/* Counts, logs and (with a dead-letter topic) publishes a rejected event:
 * the input's key, bytes and headers unchanged, plus sigflow-error (why),
 * sigflow-error-code (the reason's name, as /metrics counts it) and
 * sigflow-source (topic/partition/offset). */
void sf_pipeline_dead_letter(pipeline *p, const rd_kafka_message_t *m, sf_reject reason,
                             const char *why, sf_delivery_batch *f);

/* --exactly-once: commits the batch's transaction with its offsets, or aborts
 * it and rewinds so the batch is read again. 0, or -1 after a fatal error. */
int sf_pipeline_transaction_commit(pipeline *p, sf_delivery_batch *f);

/* Model-health monitoring (pipeline_monitor.c): started with each engine
 * (again after a reload); fed a chunk's raw rows (batch rows [from, from +
 * n)) before normalization and their probabilities after the forward pass;
 * ticked by the loop (exports to /metrics each second; with report, the drift
 * summary line when a PSI is over --drift-warn-psi). Each charges its CPU to
 * SF_STAGE_MONITOR, the truth's to SF_STAGE_TRUTH, the shadow's to
 * SF_STAGE_SHADOW. With a
 * truth topic, open starts the truth consumer (-1 with errstr when it
 * cannot: a start-up error), scores go to the truth store, and the tick
 * reads the truth that has arrived. */
void sf_pipeline_monitor_start(pipeline *p);
int sf_pipeline_monitor_open(pipeline *p, char *errstr, size_t errstr_size);
void sf_pipeline_monitor_rows(pipeline *p, size_t from, size_t n);
void sf_pipeline_monitor_scores(pipeline *p, size_t from, size_t n);
void sf_pipeline_monitor_tick(pipeline *p, int64_t now, int report);
void sf_pipeline_monitor_stop(pipeline *p);

/* With --shadow-topic, publishes the shadow's outputs of the chunk's rows,
 * batch rows [from, from + n) (pipeline_shadow.c), as outputs of batch f: the events the shadow scored
 * and selects. Its CPU is SF_STAGE_SHADOW_PUBLISH's. Called after
 * sf_pipeline_monitor_scores of the same chunk, while the shadow still holds
 * its rows. */
void sf_pipeline_shadow_publish(pipeline *p, sf_delivery_batch *f, size_t from, size_t n);

#endif
