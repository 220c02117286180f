/* bench.h: the pieces of sigflow-bench, one file each: the input feed, the
 * compute limits, the latency histogram and the process/machine probes. They
 * live apart from the product because they exist only to measure it. */
#ifndef SIGFLOW_BENCH_H
#define SIGFLOW_BENCH_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sigflow/infer.h"
#include "sigflow/metrics.h"
#include "sigflow/model.h"

/* ---- latency histogram (bench_hist.c) ----
 * Log-spaced buckets 1% wide from 10 us to 10 min: quantiles to within 0.5%,
 * which is finer than the 1 ms resolution of Kafka timestamps. Lock-free, so
 * the pipeline thread records while the main thread reads. */
#define BENCH_HIST_BUCKETS 1800

typedef struct bench_hist {
    atomic_uint_least64_t count;
    atomic_uint_least64_t max_ns;
    atomic_uint_least64_t bucket[BENCH_HIST_BUCKETS];
} bench_hist;

void bench_hist_add(bench_hist *h, double ms);
uint64_t bench_hist_count(const bench_hist *h);
/* The q-quantile (0 < q <= 1) in ms; 0 when empty. */
double bench_hist_quantile(const bench_hist *h, double q);
double bench_hist_max(const bench_hist *h);

/* ---- process and machine (bench_sys.c) ---- */

/* CPU seconds per thread group, from /proc/self/task (10 ms resolution). The
 * groups follow thread names: the bench names its own threads, librdkafka
 * names its "rdk:*", OpenBLAS workers keep the process name. */
typedef enum {
    BENCH_T_PIPELINE = 0, /* the pipeline thread ("sf-pipeline") */
    BENCH_T_INFER,        /* the forward pass's helper threads ("sf-infer") */
    BENCH_T_BLAS,         /* OpenBLAS worker threads */
    BENCH_T_KAFKA,        /* librdkafka client threads of the pipeline ("rdk:*") */
    BENCH_T_BROKER,       /* the embedded broker ("rdk:mock") */
    BENCH_T_FEED,         /* the bench's producer loop ("sf-feed") and its
                             librdkafka threads ("sf-feed-rdk") */
    BENCH_T_OTHER,        /* the bench's main thread and anything else */
    BENCH_T__COUNT
} bench_thread_group;

extern const char *const bench_thread_group_names[BENCH_T__COUNT];

#define BENCH_MAX_THREADS 256

typedef struct bench_threads {
    size_t n;
    int tid[BENCH_MAX_THREADS];
    bench_thread_group group[BENCH_MAX_THREADS];
    double cpu_s[BENCH_MAX_THREADS];
} bench_threads;

/* Names the calling thread (at most 15 characters). */
void bench_thread_name(const char *name);
void bench_threads_snapshot(bench_threads *out);
/* CPU seconds per group spent between two snapshots. */
void bench_threads_diff(const bench_threads *before, const bench_threads *after,
                        double cpu_s[BENCH_T__COUNT]);

double bench_process_cpu_s(void);
/* CPU seconds (user + system) of other processes, e.g. an external broker's
 * JVMs, from /proc/PID/stat; a process that is gone counts 0. */
double bench_pids_cpu_s(const int *pids, size_t n);
double bench_rss_max_mb(void);
/* Restarts the peak (bench_rss_max_mb) from the current RSS, so a phase
 * can report its own; 0, or -1 where the kernel cannot (then the peak
 * stays the process's). */
int bench_rss_reset_peak(void);
double bench_rss_mb(void);   /* resident now (/proc/self/statm) */
int bench_open_fds(void);    /* entries of /proc/self/fd */
/* Cores, CPU model, load average, kernel, BLAS kernel and threads, librdkafka. */
json_t *bench_machine_json(void);

/* ---- the sample (bench_feed.c) ----
 * The sample's events as the replay tool sends them (JSON value, EventId key),
 * read once. */
typedef struct bench_events bench_events;

int bench_events_load(bench_events **out, const char *csv_path, char *errstr, size_t errstr_size);
size_t bench_events_count(const bench_events *ev);
/* Event i's JSON (NUL-terminated) and its length. */
const char *bench_events_value(const bench_events *ev, size_t i, size_t *len);
/* Mean bytes of an event as a Kafka message (value + key). */
double bench_events_mean_bytes(const bench_events *ev);
void bench_events_free(bench_events *ev);

/* ---- compute limits (bench_limits.c) ---- */

/* ---- the held-out events, with their truth (bench_limits.c) ----
 * EventId % 10 == 9 of the sample, never trained on: for the label agreement
 * and the AUC of each backend and precision. */
typedef struct bench_heldout {
    size_t n;
    char **json;
    size_t *len;
    unsigned char *signal; /* Label == "s" */
} bench_heldout;

int bench_heldout_load(bench_heldout *out, const char *csv_path, char *errstr, size_t errstr_size);
void bench_heldout_free(bench_heldout *h);

/* The calling thread's CPU time, s (CLOCK_THREAD_CPUTIME_ID). */
double bench_thread_cpu_s(void);

/* ---- the bare oneDNN loop (bench_bare.c) ----
 * The model's Dense layers as plain oneDNN matmuls (bias + ReLU fused), one
 * thread, `batch` rows. NULL when oneDNN cannot; impl: the implementation
 * strings. bench_bare_rate: events per second of this thread's CPU time,
 * over `seconds` of it (on a shared machine, wall time would count the other
 * processes' share too). */
typedef struct bench_bare bench_bare;
bench_bare *bench_bare_new(const sf_model *m, sf_precision precision, size_t batch, char *impl,
                           size_t impl_size);
double bench_bare_rate(bench_bare *b, double seconds);
void bench_bare_free(bench_bare *b);

typedef struct bench_limits_conf {
    const char *model_path;
    const char *vars_path;
    const bench_events *events; /* the sample, its first 4,096 events */
    const bench_heldout *heldout; /* NULL: no quality figures */
    sf_infer_conf infer;        /* the configuration measured */
    size_t batch_size;
    double seconds;          /* per measurement */
    int all_threads;         /* threads for the machine's limit (its cores); the BLAS
                                thread count in force before is restored at the end */
} bench_limits_conf;

typedef struct bench_limits {
    size_t parameters;             /* the model's, as Keras counts them */
    char sha256[65];               /* the model file's */
    size_t events;                 /* distinct sample events the loops cycle through */
    double inference_eps;          /* batched forward pass split over all_threads
                                      threads of ours, one BLAS thread each (the daemon's way) */
    double inference_1thread_eps;  /* the same on one thread */
    double inference_blas_threads_eps; /* one caller, all_threads library threads
                                          (OpenBLAS's pool, oneDNN's OpenMP team) */
    double bare_onednn_eps;        /* the bare loop in the same precision, best of 5 turns, -1: none */
    double inference_1thread_best_eps; /* the engine on one thread, best of the same turns */
    char bare_impl[128];
    sf_infer_info info;            /* what the engine ran on */
    double label_agreement;        /* held-out labels equal to openblas/fp32's, fraction */
    double auc;                    /* held-out ROC AUC */
    double auc_reference;          /* openblas/fp32's on the same events (bf16's and
                                      int8's bound is |auc - auc_reference| <= 0.002) */
    double max_dp_vs_reference;    /* largest |p - p(openblas/fp32)| over held-out */
    int batch_independent;         /* one thread gives a row the same bits in a whole
                                      batch as in either half of it (a property of
                                      the BLAS kernel, see ROW_BLOCK in src/infer.c) */
    int split_identical;           /* the split gave the very bits of one thread */
    /* A model set: its forward pass on one thread (gather + normalization +
     * each member's forward pass + the weighted mean) against its members'
     * forward passes alone, summed; both in CPU seconds of the calling thread,
     * the best of 3 alternating rounds, so other processes weigh little. */
    size_t members;                /* 0: a single model */
    double set_cpu_us_per_event;
    double members_cpu_us_per_event; /* the sum over the members */
    double parse_eps;              /* JSON parse + assemble, one thread */
    double normalize_eps;
} bench_limits;

int bench_limits_run(const bench_limits_conf *c, bench_limits *out, char *errstr,
                     size_t errstr_size);

/* ---- input feed (bench_feed.c) ----
 * A producer thread replaying the events (from the top again at the end) into a topic, either
 * paced at `rate` events/s or, with rate 0, as fast as the pipeline takes
 * them: at most `window` events produced and not yet consumed, so the
 * pipeline never starves and the embedded broker (a few MB per partition)
 * never drops unread events. */
typedef struct bench_feed bench_feed;

typedef struct bench_feed_conf {
    const char *brokers;
    const char *topic;
    const bench_events *events; /* must outlive the feed */
    double rate;                /* events/s; 0: closed loop */
    uint64_t window;            /* closed loop: events in flight */
    const sf_metrics *metrics;  /* the pipeline's, for SF_C_CONSUMED */
    uint64_t limit;             /* stop after this many events; 0: until stopped */
    /* Where delivery reports record timestamp -> acknowledgement of the
     * feed's own messages (its linger and the broker), NULL: nowhere. */
    _Atomic(bench_hist *) *ack_hist;
    uint64_t bad_every;         /* > 0: every bad_every-th event is malformed (the soak) */
    int bounded;                /* paced, yet at most `window` events ahead of the
                                   pipeline: a slow machine slows the feed instead
                                   of the embedded broker dropping events */
    const char *truth_topic;    /* each event's truth here as it goes, {"EventId": id,
                                   "Label": "s"} (--monitor-costs); NULL: none */
} bench_feed_conf;

int bench_feed_start(bench_feed **out, const bench_feed_conf *c, char *errstr, size_t errstr_size);
uint64_t bench_feed_sent(const bench_feed *f);
/* Stops producing, waits for every delivery report and frees the feed.
 * *delivered: events the broker acknowledged. 0, or -1 with errstr. */
int bench_feed_stop(bench_feed *f, uint64_t *delivered, char *errstr, size_t errstr_size);

/* ---- topics on an external cluster (bench_topics.c) ---- */

/* Creates nt (at most BENCH_TOPICS_MAX) topics with the cluster's default replication
 * factor. 0, or -1 with errstr. */
#define BENCH_TOPICS_MAX 5 /* input, output, dead letters, truth, shadow */
int bench_topics_create(const char *brokers, const char *const *topics, size_t nt, int partitions,
                        char *errstr, size_t errstr_size);
/* Deletes them (best effort). */
void bench_topics_delete(const char *brokers, const char *const *topics, size_t nt);

#endif
