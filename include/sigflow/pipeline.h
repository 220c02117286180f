/* pipeline.h: the daemon's main loop (`sigflow run`), also run in-process by
 * `sigflow demo` and the benchmark.
 *
 * Consume from Kafka, close a micro-batch on size or age, assemble + normalize +
 * infer the whole batch, publish the selected predictions and the dead letters,
 * and store an input offset only once every output derived from it, and from all
 * earlier offsets of its partition, has been acknowledged by the broker. */
#ifndef SIGFLOW_PIPELINE_H
#define SIGFLOW_PIPELINE_H

#include <stdatomic.h>
#include <stddef.h>

#include "sigflow/drift.h"
#include "sigflow/engine.h"
#include "sigflow/log.h"
#include "sigflow/infer.h"
#include "sigflow/metrics.h"
#include "sigflow/truth.h"

/* Where the pipeline thread spends its CPU time (CLOCK_THREAD_CPUTIME_ID). */
typedef enum {
    SF_STAGE_CONSUME = 0, /* consumer polls, handing messages over, freeing them */
    SF_STAGE_PARSE,       /* JSON parse + feature assembly */
    SF_STAGE_NORMALIZE,
    SF_STAGE_INFERENCE,   /* this thread's share; BLAS worker threads not included */
    SF_STAGE_PUBLISH,     /* formatting, producing, delivery reports, storing offsets */
    SF_STAGE_OTHER,       /* the rest: reports, reloads, rebalances */
    SF_STAGE_MONITOR,     /* model-health monitoring: drift (drift.h), the exports */
    SF_STAGE_TRUTH,       /* live quality: predictions into the truth store, truth read
                             and joined (truth.h) */
    SF_STAGE_SHADOW,      /* the shadow model: parse, forward pass, comparison */
    SF_STAGE_SHADOW_PUBLISH, /* its outputs formatted and produced (--shadow-topic;
                             their delivery reports are the publish stage's) */
    SF_STAGE__COUNT
} sf_stage;

/* Where one output's latency went, in ms, wall clock (sigflow-bench's
 * breakdown, bench/README.md). The segments add up to the whole latency. */
typedef struct sf_latency_parts {
    double to_consumer; /* input timestamp -> taken from the consumer: the input
                           producer's linger, the broker, the fetch wait */
    double batch_wait;  /* -> its batch closed (full, or batch_wait_ms after
                           the batch's first event; 0 by default) */
    double inference;   /* -> assembled, normalized and through the forward pass
                           (its chunk's, and the chunks before it in the batch) */
    double publish;     /* -> handed to the producer (formatting, earlier outputs) */
    double ack;         /* -> delivery report: output linger, broker, acks */
} sf_latency_parts;

/* Optional instrumentation, for sigflow-bench. The pipeline thread adds to the
 * counters as it goes; any thread may read them at any time. */
typedef struct sf_pipeline_stats {
    atomic_uint_least64_t cpu_ns[SF_STAGE__COUNT];
    /* The inference threads' CPU in the pipeline's task units (parsing:
     * SF_STAGE_PARSE, rendering: SF_STAGE_PUBLISH), which their thread
     * group's CPU includes. */
    atomic_uint_least64_t helper_cpu_ns[SF_STAGE__COUNT];
    atomic_uint_least64_t events;  /* taken from the consumer into batches */
    atomic_uint_least64_t batches;
    /* Called on the pipeline thread for every acknowledged output, with the
     * milliseconds from its input's Kafka timestamp to the acknowledgement
     * (NULL: not called). */
    void (*on_ack)(void *opaque, double latency_ms);
    /* The same output's latency in parts (NULL: not called, not measured). */
    void (*on_ack_parts)(void *opaque, const sf_latency_parts *parts);
    void *opaque;
} sf_pipeline_stats;

typedef struct sf_pipeline_conf {
    const char *brokers;
    const char *input_topic;     /* used when n_input_topics is 0 */
    /* The topics to consume: names, or regular expressions starting with '^'
     * (librdkafka's convention), which follow topics as they appear. */
    const char *const *input_topics;
    size_t n_input_topics;
    int create_topics;           /* create a missing output or dead-letter topic (Admin
                                    API); else a missing one is a start-up error */
    const char *output_topic;
    const char *dlq_topic;       /* NULL: dead letters are logged and counted only */
    const char *group;
    sf_engine_conf engine;       /* the model; engine.batch_size is the batch size */
    sf_engine *loaded;           /* NULL, or `engine` loaded already (sf_engine_load),
                                    which sf_pipeline_run then owns and frees. A
                                    caller about to start threads loads first: the
                                    loader forks, and a fork of a busy threaded
                                    process can inherit a lock held for good */
    int emit_members;            /* a set: each output carries its members' probabilities */
    int drop_headers;            /* --headers none: outputs do not copy the input's headers
                                    (dead letters always keep them) */
    int batch_wait_ms;
    size_t max_event_bytes;      /* larger events are dead letters */
    const char *const *kafka_props; /* "key=value", applied to consumer and producer */
    size_t n_kafka_props;
    int exactly_once;            /* Kafka transactions, one per batch */
    const char *transactional_id; /* exactly-once: stable per instance */
    int connect_timeout_ms;      /* start-up: brokers unreachable for this long is fatal */
    const char *metrics_addr;    /* "HOST:PORT", or NULL / "none" */
    sf_log_level log_level;
    sf_log_format log_format;    /* text or JSON lines (sf_log) */
    atomic_int *stop;            /* set to stop: drain, flush, commit, leave, return 0 */
    atomic_int *reload;          /* set to reload the model and variables files */
    sf_drift_conf drift;         /* input and score drift; on by default */
    /* Live quality from delayed labels (truth.h): NULL topic, off. The truth
     * consumer reads every partition of it from its end at start. */
    const char *truth_topic;
    const char *truth_field;     /* the label ("Label"): a label name, or its index */
    const char *truth_id_field;  /* the event id ("EventId") */
    sf_truth_conf truth;         /* store bound and window; threshold: the engine's */
    /* A shadow model (--shadow-model; model_path NULL: none), scored on every
     * batch beside the serving one and never published to the output topic:
     * its label agreement, |dp| histogram and, with truth, its live quality.
     * Reloaded with the serving model on SIGHUP (the old shadow kept if the
     * new one is refused). */
    sf_engine_conf shadow;
    /* NULL: the shadow's outputs are not published. Else the events the
     * shadow selects go here, rendered as the serving outputs are, with its
     * digest in sigflow-model and the header sigflow-shadow: 1; outputs of
     * their batch (its transaction, or acknowledged before its offsets are
     * stored). Must differ from the output and dead-letter topics. */
    const char *shadow_topic;
    sf_metrics *metrics;         /* caller-owned, so the demo and bench can watch it */
    sf_pipeline_stats *stats;    /* caller-owned; NULL: no per-stage accounting */
} sf_pipeline_conf;

/* Fills the defaults (batch 512, wait 0 ms, group "sigflow", the engine's, ...). */
void sf_pipeline_conf_init(sf_pipeline_conf *conf);

/* Runs until *conf->stop is set (returns 0) or a fatal error (returns -1 with
 * errstr); -2 (with errstr) when a topic name is illegal, or the model or
 * variables files are refused at start-up, before any Kafka client exists: a
 * usage error, not an outage. */
int sf_pipeline_run(const sf_pipeline_conf *conf, char *errstr, size_t errstr_size);

#endif
