/* bench.c: sigflow-bench, how fast sigflow is and how far from the machine's
 * limit.
 *
 * One process runs what a deployment on one machine runs: the embedded broker,
 * a producer replaying the bundled ATLAS sample into `events`, and the
 * pipeline with the shipped model publishing every prediction (--emit all, so
 * every event has an acknowledged output to time), with the daemon's Kafka
 * defaults: the product as shipped. It measures while both run (the embedded
 * broker keeps only a few MB per partition), first flat out, then paced at
 * half the rate it found and at a low rate, for the latency; then a backlog,
 * pre-filled into a broker of its own with enough partitions to hold it,
 * before a fresh pipeline starts. Beforehand it times the model alone and the
 * JSON parsing alone on the same events in memory: the ratios to those limits
 * are what we track, as absolute figures move with the machine. Usage and
 * figures: bench/README.md. */
#include <getopt.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include "sigflow/args.h"
#include "sigflow/paths.h"
#include "sigflow/blas.h"
#include "sigflow/broker.h"
#include "sigflow/clock.h"
#include "sigflow/kafka.h"
#include "sigflow/metrics.h"
#include "sigflow/modelset.h"
#include "sigflow/pipeline.h"
#include "sigflow/version.h"
#include "bench.h"

#define INPUT_TOPIC "events"
#define OUTPUT_TOPIC "signals"
#define START_TIMEOUT_S 60.0 /* group join and first batch */
#define DRAIN_TIMEOUT_S 60.0
#define MIN_OUTPUTS 1024 /* a measured window lasts until this many... */
#define MIN_OUTPUTS_TIMEOUT_S 60.0 /* ...or this long past its length */
#define MAX_BROKER_PIDS 16
#define BACKLOG_TIMEOUT_S 3600.0
#define DEAD_TOPIC "dead"
#define TRUTH_TOPIC "truth"   /* --monitor-costs */
#define SHADOW_TOPIC "shadow"
#define SOAK_BAD_EVERY 1000 /* one malformed event in this many */
#define SOAK_RELOAD_TIMEOUT_S 180.0 /* beyond any model-load limit a test sets (60 s) */

#define LOW_RATE 500.0 /* events/s of the low-rate phase: a quiet stream's latency */
#define DEFAULT_BACKLOG 200000 /* events of the default run's backlog phase */
#define QUICK_BACKLOG 20000
/* The embedded broker keeps at most 5 MB and 100,000 messages a partition:
 * a backlog there is spread so each partition stays well under both. */
#define EMBEDDED_PARTITION_BYTES (4u << 20)
#define EMBEDDED_PARTITION_EVENTS 80000

typedef struct opts {
    const char *model, *vars, *file;
    double seconds, warmup, limit_seconds, rate;
    size_t batch_size, window;
    int batch_wait_ms, partitions, blas_threads, json, quick, compare;
    sf_infer_conf infer;        /* --backend, --precision */
    sf_kafka_props kafka_props; /* -X and -F, for the pipeline: none by default */
    const char *brokers;                      /* an external cluster; NULL: embedded */
    int broker_pids[MAX_BROKER_PIDS];         /* its processes, for its CPU share */
    size_t n_broker_pids;
    uint64_t backlog;                         /* pre-fill this many, time the catch-up */
    sf_log_format log_format; /* of the pipeline's warnings */
    double soak_minutes, soak_period; /* --soak: minutes in all, seconds between reloads */
    sf_drift_conf drift;      /* the daemon's drift monitoring, on by default */
    int monitor_costs;        /* also a truth feed and a shadow (the model itself) */
} opts;

/* One measured stretch at one input rate. */
typedef struct phase {
    const char *name;
    double offered_rate;    /* events/s; 0: closed loop (as fast as the pipeline goes) */
    double seconds;
    uint64_t events;        /* outputs acknowledged in the window */
    double events_per_s;
    double fed_per_s;
    double batch_size_mean;
    double stage_cpu[SF_STAGE__COUNT]; /* pipeline thread, s per event */
    double helper_stage_cpu[SF_STAGE__COUNT]; /* the inference threads' task units */
    double group_cpu[BENCH_T__COUNT];  /* per thread group, s per event */
    double process_cpu;                /* s per event */
    bench_hist hist;                   /* input timestamp to output acknowledgement */
    bench_hist parts[6];               /* that latency in parts (part_keys) */
} phase;

/* sf_latency_parts in order, then the feed's own timestamp -> acknowledgement. */
static const char *const part_keys[6] = {"to_consumer", "batch_wait", "inference", "publish",
                                         "output_ack", "input_producer_ack"};

typedef struct pipeline_job {
    sf_pipeline_conf conf;
    atomic_int stop;
    atomic_int done;
    int rc;
    char err[512];
} pipeline_job;

/* Every phase one configuration ran; a phase that did not run has no name. */
typedef struct results {
    phase flat, half, low, backlog; /* half: the --rate phase with --rate */
    uint64_t backlog_events;    /* pre-filled */
    int backlog_partitions;
    double backlog_prefill_eps, backlog_rss_mb, backlog_log_mb;
} results;

/* Everything the phases share. */
typedef struct bench {
    const opts *o;
    const char *brokers;
    const char *in_topic, *out_topic;
    const char *truth_topic;    /* --monitor-costs: the feed's truth goes here; else NULL */
    const bench_events *events;
    int partitions;             /* of each topic */
    sf_metrics *metrics;
    sf_pipeline_stats stats;
    _Atomic(bench_hist *) hist; /* where on_ack records, NULL between windows */
    _Atomic(bench_hist *) parts; /* where on_ack_parts records (6 of them) */
    _Atomic(bench_hist *) feed_ack;
    pipeline_job job;
    uint64_t delivered;         /* events fed so far, all phases */
    double prefill_eps;         /* --backlog: how fast the feed filled it */
    int blas_threads;           /* BLAS threads while the pipeline ran */
    int infer_threads;          /* threads its forward pass was split over */
    atomic_int reload;          /* the pipeline's SIGHUP flag */
    const char *live_model;     /* --soak: the file the pipeline (re)loads */
} bench;

static const char *const stage_keys[SF_STAGE__COUNT] = {
    "consume", "parse_assemble", "normalize", "inference", "publish", "other", "monitor",
    "truth", "shadow", "shadow_publish"};

static void on_ack(void *opaque, double latency_ms) {
    bench *b = opaque;
    bench_hist *h = atomic_load_explicit(&b->hist, memory_order_acquire);
    if (h)
        bench_hist_add(h, latency_ms);
}

static void on_ack_parts(void *opaque, const sf_latency_parts *l) {
    bench *b = opaque;
    bench_hist *h = atomic_load_explicit(&b->parts, memory_order_acquire);
    if (!h)
        return;
    const double v[5] = {l->to_consumer, l->batch_wait, l->inference, l->publish, l->ack};
    for (int i = 0; i < 5; i++)
        bench_hist_add(&h[i], v[i] > 0 ? v[i] : 0);
}

static void *pipeline_thread(void *arg) {
    pipeline_job *job = arg;
    bench_thread_name("sf-pipeline");
    job->rc = sf_pipeline_run(&job->conf, job->err, sizeof job->err);
    atomic_store(&job->done, 1);
    return NULL;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Sleeps `seconds`, or less if the pipeline stops. 0, or -1 if it stopped. */
static int wait_running(bench *b, double seconds) {
    double end = sf_clock_s() + seconds;
    while (sf_clock_s() < end) {
        if (atomic_load(&b->job.done))
            return -1;
        double left = end - sf_clock_s();
        sleep_ms(left > 0.02 ? 20 : (int)(left * 1000) + 1);
    }
    return atomic_load(&b->job.done) ? -1 : 0;
}

/* Every event fed so far consumed, and every prediction acknowledged. */
static int drained(const bench *b) {
    return sf_metrics_get(b->metrics, SF_C_CONSUMED) >= b->delivered &&
           sf_metrics_get(b->metrics, SF_C_SIGNALS) >= sf_metrics_get(b->metrics, SF_C_PREDICTED);
}

static int wait_for(bench *b, int (*cond)(const bench *), double timeout_s, const char *what,
                    char *errstr, size_t n) {
    double end = sf_clock_s() + timeout_s;
    while (!cond(b)) {
        if (atomic_load(&b->job.done)) {
            snprintf(errstr, n, "pipeline stopped: %s", b->job.err);
            return -1;
        }
        if (sf_clock_s() > end) {
            snprintf(errstr, n, "%s: not done after %.0f s (consumed %llu of %llu fed)", what, timeout_s,
                     (unsigned long long)sf_metrics_get(b->metrics, SF_C_CONSUMED),
                     (unsigned long long)b->delivered);
            return -1;
        }
        sleep_ms(10);
    }
    return 0;
}

static int consuming(const bench *b) {
    return sf_metrics_get(b->metrics, SF_C_SIGNALS) > 0;
}

/* Waits, feeding a single event, until the pipeline has joined its group and
 * published: events fed during the join would be a backlog in the first phase. */
static int prime(bench *b, char *errstr, size_t n) {
    bench_feed_conf fc = {.brokers = b->brokers, .topic = b->in_topic, .events = b->events,
                          .truth_topic = b->truth_topic,
                          .rate = 0, .window = 1, .metrics = b->metrics};
    bench_feed *feed;
    if (bench_feed_start(&feed, &fc, errstr, n))
        return -1;
    int rc = wait_for(b, consuming, START_TIMEOUT_S, "start", errstr, n);
    uint64_t delivered = 0;
    char ferr[512];
    if (bench_feed_stop(feed, &delivered, ferr, sizeof ferr) && rc == 0) {
        snprintf(errstr, n, "%s", ferr);
        rc = -1;
    }
    b->delivered += delivered;
    return rc ? rc : wait_for(b, drained, DRAIN_TIMEOUT_S, "drain", errstr, n);
}

typedef struct snapshot {
    double t, process_cpu, broker_cpu;
    uint64_t acked, sent, events, batches;
    uint64_t stage_ns[SF_STAGE__COUNT], helper_stage_ns[SF_STAGE__COUNT];
    bench_threads threads;
} snapshot;

static void snap(bench *b, const bench_feed *feed, snapshot *s) {
    s->t = sf_clock_s();
    s->acked = sf_metrics_get(b->metrics, SF_C_SIGNALS);
    s->sent = feed ? bench_feed_sent(feed) : 0;
    s->events = atomic_load(&b->stats.events);
    s->batches = atomic_load(&b->stats.batches);
    for (int i = 0; i < SF_STAGE__COUNT; i++) {
        s->stage_ns[i] = atomic_load(&b->stats.cpu_ns[i]);
        s->helper_stage_ns[i] = atomic_load(&b->stats.helper_cpu_ns[i]);
    }
    s->process_cpu = bench_process_cpu_s();
    s->broker_cpu = bench_pids_cpu_s(b->o->broker_pids, b->o->n_broker_pids);
    bench_threads_snapshot(&s->threads);
}

/* Per-event figures of the window s0..s1. */
static void phase_figures(phase *ph, const snapshot *s0, const snapshot *s1) {
    double dt = s1->t - s0->t;
    uint64_t ev = s1->events - s0->events;
    ph->seconds = dt;
    ph->events = s1->acked - s0->acked;
    ph->events_per_s = (double)ph->events / dt;
    ph->fed_per_s = (double)(s1->sent - s0->sent) / dt;
    ph->batch_size_mean = s1->batches > s0->batches ? (double)ev / (double)(s1->batches - s0->batches) : 0;
    double per = ev ? 1.0 / (double)ev : 0;
    for (int i = 0; i < SF_STAGE__COUNT; i++) {
        ph->stage_cpu[i] = (double)(s1->stage_ns[i] - s0->stage_ns[i]) / 1e9 * per;
        ph->helper_stage_cpu[i] =
            (double)(s1->helper_stage_ns[i] - s0->helper_stage_ns[i]) / 1e9 * per;
    }
    bench_threads_diff(&s0->threads, &s1->threads, ph->group_cpu);
    /* an external broker is another process: its CPU is the broker's share */
    ph->group_cpu[BENCH_T_BROKER] += s1->broker_cpu - s0->broker_cpu;
    for (int g = 0; g < BENCH_T__COUNT; g++)
        ph->group_cpu[g] *= per;
    ph->process_cpu = (s1->process_cpu - s0->process_cpu) * per;
}

/* Feeds at `rate` (0: closed loop), warms up, measures, stops feeding and
 * waits until the pipeline has caught up. */
static int run_phase(bench *b, phase *ph, const char *name, double rate, char *errstr, size_t n) {
    const opts *o = b->o;
    memset(ph, 0, sizeof *ph);
    ph->name = name;
    ph->offered_rate = rate;
    bench_feed_conf fc = {.brokers = b->brokers, .topic = b->in_topic, .events = b->events,
                          .truth_topic = b->truth_topic,
                          .rate = rate, .window = o->window, .metrics = b->metrics,
                          .ack_hist = &b->feed_ack};
    bench_feed *feed;
    if (bench_feed_start(&feed, &fc, errstr, n))
        return -1;
    int rc = -1;
    snapshot s0, s1;
    if (wait_running(b, o->warmup))
        goto died;
    snap(b, feed, &s0);
    /* What the pipeline's engine reports, OpenBLAS's or oneDNN's threads. */
    char inf[512];
    sf_metrics_get_inference(b->metrics, inf, sizeof inf);
    const char *lt = strstr(inf, "library_threads=\"");
    b->blas_threads = lt ? atoi(lt + strlen("library_threads=\"")) : -1;
    atomic_store_explicit(&b->parts, ph->parts, memory_order_release);
    atomic_store_explicit(&b->feed_ack, &ph->parts[5], memory_order_release);
    atomic_store_explicit(&b->hist, &ph->hist, memory_order_release);
    if (wait_running(b, o->seconds))
        goto died;
    /* A window with no output measures nothing: on a starved machine (a
     * sanitizer build, --quick) a batch can take longer than the window.
     * Stretch it until a few batches are acknowledged, up to a deadline. */
    for (double end = sf_clock_s() + MIN_OUTPUTS_TIMEOUT_S;
         sf_metrics_get(b->metrics, SF_C_SIGNALS) - s0.acked < MIN_OUTPUTS && sf_clock_s() < end;)
        if (wait_running(b, 0.05))
            goto died;
    atomic_store_explicit(&b->hist, NULL, memory_order_release);
    atomic_store_explicit(&b->parts, NULL, memory_order_release);
    atomic_store_explicit(&b->feed_ack, NULL, memory_order_release);
    snap(b, feed, &s1);
    rc = 0;
    goto stop;
died:
    snprintf(errstr, n, "pipeline stopped: %s", b->job.err);
stop:
    atomic_store_explicit(&b->hist, NULL, memory_order_release);
    atomic_store_explicit(&b->parts, NULL, memory_order_release);
    atomic_store_explicit(&b->feed_ack, NULL, memory_order_release);
    {
        uint64_t delivered = 0;
        char ferr[512];
        if (bench_feed_stop(feed, &delivered, ferr, sizeof ferr) && rc == 0) {
            snprintf(errstr, n, "%s", ferr);
            rc = -1;
        }
        b->delivered += delivered;
    }
    if (rc || wait_for(b, drained, DRAIN_TIMEOUT_S, "drain", errstr, n))
        return -1;

    phase_figures(ph, &s0, &s1);
    return 0;
}

/* --backlog: fills the input topic with o->backlog events before the pipeline
 * starts (the feed at full speed). */
static int prefill(bench *b, double *rate, char *errstr, size_t n) {
    const opts *o = b->o;
    bench_feed_conf fc = {.brokers = b->brokers, .topic = b->in_topic, .events = b->events,
                          .truth_topic = b->truth_topic,
                          .rate = 0, .window = o->backlog, .metrics = b->metrics,
                          .limit = o->backlog};
    bench_feed *feed;
    if (bench_feed_start(&feed, &fc, errstr, n))
        return -1;
    double t0 = sf_clock_s();
    while (bench_feed_sent(feed) < o->backlog && sf_clock_s() - t0 < BACKLOG_TIMEOUT_S)
        sleep_ms(20);
    uint64_t delivered = 0;
    if (bench_feed_stop(feed, &delivered, errstr, n))
        return -1;
    *rate = (double)delivered / (sf_clock_s() - t0);
    b->delivered += delivered;
    if (delivered != o->backlog) {
        snprintf(errstr, n, "pre-fill: %llu of %llu events delivered", (unsigned long long)delivered,
                 (unsigned long long)o->backlog);
        return -1;
    }
    return 0;
}

static int caught_up(const bench *b) {
    return sf_metrics_get(b->metrics, SF_C_SIGNALS) >= b->o->backlog;
}

/* --backlog: the pipeline (started after the pre-fill) works through it; the
 * window runs from its first output to its last. */
static int run_backlog(bench *b, phase *ph, char *errstr, size_t n) {
    memset(ph, 0, sizeof *ph);
    ph->name = "backlog";
    if (wait_for(b, consuming, START_TIMEOUT_S, "start", errstr, n))
        return -1;
    snapshot s0, s1;
    snap(b, NULL, &s0);
    sf_blas_info blas;
    sf_blas_info_get(&blas);
    b->blas_threads = blas.threads;
    if (wait_for(b, caught_up, BACKLOG_TIMEOUT_S, "backlog", errstr, n))
        return -1;
    snap(b, NULL, &s1);
    phase_figures(ph, &s0, &s1);
    return 0;
}

/* ---------------------------------------------------------------- soak */

/* Reads a whole file, gunzipping it when it is gzip (zlib reads both). */
static char *slurp(const char *path, size_t *len, char *errstr, size_t n) {
    gzFile in = gzopen(path, "rb");
    size_t cap = 1 << 20, used = 0;
    char *buf = in ? malloc(cap) : NULL;
    int got = 0;
    while (buf && (got = gzread(in, buf + used, (unsigned)(cap - used))) > 0) {
        used += (size_t)got;
        if (used == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
            }
            buf = bigger;
        }
    }
    if (in)
        gzclose(in);
    if (!buf || got < 0) {
        snprintf(errstr, n, "cannot read %s", path);
        free(buf);
        return NULL;
    }
    *len = used;
    return buf;
}

/* Replaces path by the given bytes as a deployment should: a new file renamed
 * over the old one. */
static int install(const char *path, const char *bytes, size_t len, char *errstr, size_t n) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(bytes, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(errstr, n, "cannot install %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int all_answered(const bench *b) {
    return sf_metrics_get(b->metrics, SF_C_SIGNALS) + sf_metrics_get(b->metrics, SF_C_DEAD_LETTERS) >=
           b->delivered;
}

static uint64_t reloads_seen(const bench *b) {
    return sf_metrics_get(b->metrics, SF_C_RELOADS) + sf_metrics_get(b->metrics, SF_C_RELOAD_FAILURES);
}

/* --soak: the feed paced at `rate` with one malformed event in SOAK_BAD_EVERY,
 * and a reload every soak_period seconds, alternately of a corrupt model and
 * the good one; the corrupt ones take turns: one on which libhdf5 segfaults
 * (issue 15), one whose external link makes libhdf5 open /etc/passwd (the
 * loader's sandbox kills it, issue 26). One line per period, then the totals
 * with the refusals by cause; -1 when an event was lost. */
static int soak(bench *b, double rate, char *errstr, size_t n) {
    const opts *o = b->o;
    size_t periods = (size_t)ceil(o->soak_minutes * 60 / o->soak_period - 1e-9);
    /* Shipped beside the model (share/sigflow/), so an installed bench soaks too. */
    char corrupt_path[4096], escape_path[4096];
    sf_paths_data(SF_PATHS_SOAK_CORRUPT, corrupt_path, sizeof corrupt_path);
    sf_paths_data(SF_PATHS_SOAK_SANDBOX, escape_path, sizeof escape_path);
    size_t good_len = 0, corrupt_len = 0, escape_len = 0;
    char *good = slurp(o->model, &good_len, errstr, n);
    char *corrupt = good ? slurp(corrupt_path, &corrupt_len, errstr, n) : NULL;
    char *escape = corrupt ? slurp(escape_path, &escape_len, errstr, n) : NULL;
    bench_hist *hists = calloc(periods, sizeof *hists);
    int rc = -1;
    bench_feed *feed = NULL;
    if (!good || !corrupt || !escape || !hists) {
        if (!hists)
            snprintf(errstr, n, "out of memory");
        goto out;
    }
    bench_feed_conf fc = {.brokers = b->brokers, .topic = b->in_topic, .events = b->events,
                          .truth_topic = b->truth_topic,
                          .rate = rate, .window = o->window, .metrics = b->metrics,
                          .bad_every = SOAK_BAD_EVERY, .bounded = 1};
    double rss0 = 0; /* taken after the first period, with the feed's producer up */
    int fds0 = 0;
    uint64_t accepted = 0, refused = 0, dead0 = sf_metrics_get(b->metrics, SF_C_DEAD_LETTERS);
    printf("soak: %.0f events/s (half of flat out; slower when the pipeline is %zu events "
           "behind), 1 in %d malformed, a reload every %.0f s (corrupt, good, ...), %zu periods\n",
           rate, (size_t)o->window, SOAK_BAD_EVERY, o->soak_period, periods);
    printf("%6s %10s %10s %9s %9s %8s %5s  %s\n", "period", "fed", "outputs", "p99_ms", "max_ms",
           "rss_mb", "fds", "reload at its start");
    fflush(stdout);
    if (bench_feed_start(&feed, &fc, errstr, n))
        goto out;
    const char *last_reload = "-";
    for (size_t k = 0; k < periods; k++) {
        uint64_t acked0 = sf_metrics_get(b->metrics, SF_C_SIGNALS), sent0 = bench_feed_sent(feed);
        double len = k + 1 < periods ? o->soak_period : o->soak_minutes * 60 - o->soak_period * (double)k;
        atomic_store_explicit(&b->hist, &hists[k], memory_order_release);
        if (wait_running(b, len)) {
            snprintf(errstr, n, "pipeline stopped: %s", b->job.err);
            goto out;
        }
        atomic_store_explicit(&b->hist, NULL, memory_order_release);
        printf("%6zu %10llu %10llu %9.1f %9.1f %8.1f %5d  %s\n", k + 1,
               (unsigned long long)(bench_feed_sent(feed) - sent0),
               (unsigned long long)(sf_metrics_get(b->metrics, SF_C_SIGNALS) - acked0),
               bench_hist_quantile(&hists[k], 0.99), bench_hist_max(&hists[k]), bench_rss_mb(),
               bench_open_fds(), last_reload);
        fflush(stdout);
        if (k == 0) {
            rss0 = bench_rss_mb();
            fds0 = bench_open_fds();
        }
        if (k + 1 == periods)
            break;
        /* Odd periods start with a corrupt model (the crash, then the
         * escape), even ones with the good one. */
        int bad = k % 2 == 0, crash = k % 4 == 0;
        uint64_t seen = reloads_seen(b), ok0 = sf_metrics_get(b->metrics, SF_C_RELOADS);
        if (install(b->live_model, !bad ? good : crash ? corrupt : escape,
                    !bad ? good_len : crash ? corrupt_len : escape_len, errstr, n))
            goto out;
        atomic_store(&b->reload, 1);
        double deadline = sf_clock_s() + SOAK_RELOAD_TIMEOUT_S;
        while (reloads_seen(b) == seen && sf_clock_s() < deadline && !atomic_load(&b->job.done))
            sleep_ms(10);
        if (reloads_seen(b) == seen) {
            snprintf(errstr, n, "the reload was not done after %.0f s", SOAK_RELOAD_TIMEOUT_S);
            goto out;
        }
        int ok = sf_metrics_get(b->metrics, SF_C_RELOADS) > ok0;
        accepted += ok;
        refused += !ok;
        last_reload = bad ? (ok ? "corrupt model ACCEPTED (wrong)" : "corrupt model refused")
                          : (ok ? "good model accepted" : "good model REFUSED (wrong)");
        if (ok == bad) {
            snprintf(errstr, n, "period %zu: %s", k + 2, last_reload);
            goto out;
        }
    }
    double rss1 = bench_rss_mb();
    int fds1 = bench_open_fds();
    uint64_t delivered = 0;
    rc = bench_feed_stop(feed, &delivered, errstr, n);
    feed = NULL;
    b->delivered += delivered;
    if (rc == 0)
        rc = wait_for(b, all_answered, DRAIN_TIMEOUT_S, "soak drain", errstr, n);
    uint64_t answered = sf_metrics_get(b->metrics, SF_C_SIGNALS) +
                        sf_metrics_get(b->metrics, SF_C_DEAD_LETTERS);
    uint64_t lost = b->delivered > answered ? b->delivered - answered : 0;
    printf("soak totals: %.1f min; events fed %llu, outputs %llu, dead letters %llu, %s %llu; "
           "reloads accepted %llu, refused %llu\n"
           "             refusals by cause: crash %llu, timeout %llu, sandbox %llu, invalid %llu "
           "(sigflow_model_refusals_total)\n"
           "             RSS %.1f -> %.1f MB (%+.1f MB), open fds %d -> %d (end of period 1 -> end)\n",
           o->soak_minutes, (unsigned long long)b->delivered,
           (unsigned long long)sf_metrics_get(b->metrics, SF_C_SIGNALS),
           (unsigned long long)(sf_metrics_get(b->metrics, SF_C_DEAD_LETTERS) - dead0),
           rc == 0 ? "lost" : "unanswered after the drain timeout", (unsigned long long)lost, (unsigned long long)accepted, (unsigned long long)refused,
           (unsigned long long)sf_metrics_model_refusals(b->metrics, SF_MODEL_REFUSED_CRASH),
           (unsigned long long)sf_metrics_model_refusals(b->metrics, SF_MODEL_REFUSED_TIMEOUT),
           (unsigned long long)sf_metrics_model_refusals(b->metrics, SF_MODEL_REFUSED_SANDBOX),
           (unsigned long long)sf_metrics_model_refusals(b->metrics, SF_MODEL_REFUSED_INVALID),
           rss0, rss1, rss1 - rss0, fds0, fds1);
    fflush(stdout);
    if (rc == 0 && lost) {
        snprintf(errstr, n, "%llu events lost", (unsigned long long)lost);
        rc = -1;
    }
out:
    atomic_store_explicit(&b->hist, NULL, memory_order_release);
    if (feed) {
        uint64_t delivered = 0;
        char ferr[512];
        bench_feed_stop(feed, &delivered, ferr, sizeof ferr);
        b->delivered += delivered;
    }
    free(good);
    free(corrupt);
    free(escape);
    free(hists);
    return rc;
}

/* ---------------------------------------------------------------- output */

static json_t *breakdown_json(const phase *ph) {
    json_t *o = json_object();
    for (int i = 0; i < 6; i++)
        json_object_set_new(o, part_keys[i],
                            json_pack("{s:f, s:f, s:f}", "p50", bench_hist_quantile(&ph->parts[i], 0.5),
                                      "p90", bench_hist_quantile(&ph->parts[i], 0.9), "p99",
                                      bench_hist_quantile(&ph->parts[i], 0.99)));
    return o;
}

static json_t *latency_json(const phase *ph) {
    return json_pack("{s:f, s:f, s:f, s:f, s:f, s:I}", "rate_events_per_s", ph->events_per_s, "p50",
                     bench_hist_quantile(&ph->hist, 0.50), "p90", bench_hist_quantile(&ph->hist, 0.90),
                     "p99", bench_hist_quantile(&ph->hist, 0.99), "max", bench_hist_max(&ph->hist),
                     "samples", (json_int_t)bench_hist_count(&ph->hist));
}

/* Where the CPU went, in s per event: sigflow's own threads (the pipeline
 * thread, the inference helpers, BLAS workers, the pipeline's librdkafka
 * clients) apart from the bench's (broker, feed). */
static double sigflow_cpu(const phase *ph) {
    return ph->group_cpu[BENCH_T_PIPELINE] + ph->group_cpu[BENCH_T_INFER] +
           ph->group_cpu[BENCH_T_BLAS] + ph->group_cpu[BENCH_T_KAFKA];
}

static double bench_cpu(const phase *ph) {
    return ph->group_cpu[BENCH_T_BROKER] + ph->group_cpu[BENCH_T_FEED];
}

/* A -X/-F property as the report shows it: a secret's value masked. */
static void prop_shown(const char *kv, char *buf, size_t size) {
    if (sf_kafka_secret(kv))
        snprintf(buf, size, "%.*s=***", (int)strcspn(kv, "="), kv);
    else
        snprintf(buf, size, "%s", kv);
}

static int n_cores(void) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    return c > 0 ? (int)c : 1;
}

/* How much of the machine the phase kept busy: events/s x CPU s per event
 * (the whole process) / cores. */
static double cpu_utilisation(const phase *ph) {
    return ph->events_per_s * ph->process_cpu / n_cores();
}

static json_t *cpu_json(const phase *ph) {
    json_t *o = json_object();
    double pipeline = 0;
    for (int i = 0; i < SF_STAGE__COUNT; i++) {
        json_object_set_new(o, stage_keys[i], json_real(ph->stage_cpu[i]));
        pipeline += ph->stage_cpu[i];
    }
    json_object_set_new(o, "pipeline_thread_total", json_real(pipeline));
    /* What the inference threads parsed and rendered for the pipeline. */
    double tasks = ph->helper_stage_cpu[SF_STAGE_PARSE] + ph->helper_stage_cpu[SF_STAGE_PUBLISH];
    json_object_set_new(o, "helpers_parse_assemble", json_real(ph->helper_stage_cpu[SF_STAGE_PARSE]));
    json_object_set_new(o, "helpers_render", json_real(ph->helper_stage_cpu[SF_STAGE_PUBLISH]));
    /* The forward pass wherever it ran: this thread, our helpers, BLAS's. */
    json_object_set_new(o, "inference_all_threads",
                        json_real(ph->stage_cpu[SF_STAGE_INFERENCE] + ph->group_cpu[BENCH_T_INFER] +
                                  ph->group_cpu[BENCH_T_BLAS] - tasks));
    json_t *threads = json_object();
    for (int g = 0; g < BENCH_T__COUNT; g++)
        json_object_set_new(threads, bench_thread_group_names[g], json_real(ph->group_cpu[g]));
    json_object_set_new(o, "threads", threads);
    json_object_set_new(o, "sigflow", json_real(sigflow_cpu(ph)));
    json_object_set_new(o, "bench_broker_and_feed", json_real(bench_cpu(ph)));
    json_object_set_new(o, "process", json_real(ph->process_cpu));
    return o;
}

static json_t *phase_json(const phase *ph) {
    return json_pack("{s:s, s:f, s:f, s:f, s:I, s:f, s:f, s:f, s:o, s:o}", "name", ph->name,
                     "offered_events_per_s", ph->offered_rate, "seconds", ph->seconds, "events_per_s",
                     ph->events_per_s, "events", (json_int_t)ph->events, "fed_events_per_s",
                     ph->fed_per_s, "batch_size_mean", ph->batch_size_mean, "cpu_utilisation",
                     cpu_utilisation(ph), "latency_ms", latency_json(ph), "cpu_s_per_event",
                     cpu_json(ph));
}

/* The headline phases: the throughput (flat out, else the --rate phase,
 * else the backlog) and the latency (at half rate, else the same). */
static const phase *top_phase(const results *r) {
    return r->flat.name ? &r->flat : r->half.name ? &r->half : &r->backlog;
}

static const phase *lat_phase(const results *r) {
    return r->half.name ? &r->half : top_phase(r);
}

static void print_latency(const char *label, const phase *ph) {
    if (bench_hist_count(&ph->hist))
        printf("%-10s at %.0f ev/s: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms (%llu outputs)\n",
               label, ph->events_per_s, bench_hist_quantile(&ph->hist, 0.5),
               bench_hist_quantile(&ph->hist, 0.9), bench_hist_quantile(&ph->hist, 0.99),
               bench_hist_max(&ph->hist), (unsigned long long)bench_hist_count(&ph->hist));
}

static void print_human(const opts *o, const bench *b, const bench_limits *lim, const results *r,
                        double rss, const json_t *machine) {
    const phase *top = top_phase(r), *lat = lat_phase(r);
    printf("sigflow-bench: %s (%zu parameters), batch %zu / %d ms, %d partitions\n", o->model,
           lim->parameters, o->batch_size, o->batch_wait_ms, b->partitions);
    printf("machine:   %lld cores, %s, load %.2f, kernel %s; BLAS kernel %s\n",
           (long long)json_integer_value(json_object_get(machine, "cores")),
           json_string_value(json_object_get(machine, "cpu_model")),
           json_real_value(json_array_get(json_object_get(machine, "loadavg_at_start"), 0)),
           json_string_value(json_object_get(machine, "kernel")),
           json_string_value(json_object_get(machine, "blas_core")));
    printf("kafka:     ");
    if (o->kafka_props.n == 0)
        printf("the daemon's defaults\n");
    for (size_t i = 0; i < o->kafka_props.n; i++) {
        char shown[1024];
        prop_shown(o->kafka_props.kv[i], shown, sizeof shown);
        printf("-X %s%s", shown, i + 1 < o->kafka_props.n ? " " : "\n");
    }
    printf("engine:    backend %s, precision %s, isa %s%s\n", sf_backend_name(lim->info.backend),
           sf_precision_name(lim->info.precision), lim->info.kernel,
           lim->info.generic ? " (GENERIC kernel)" : "");
    printf("pipeline:  forward pass on %d thread(s), %d library thread(s) each\n", b->infer_threads,
           lim->info.backend == SF_BACKEND_OPENBLAS ? b->blas_threads : 1);
    printf("limits:    inference only %.0f ev/s on %d threads (%.0f on 1 thread, %.0f with %d library threads)\n"
           "           per CPU second of 1 thread: %.0f ev/s, bare oneDNN loop %.0f (%s):\n"
           "           inference_vs_bare_onednn %.2f\n"
           "           held-out: AUC %.4f (%+.5f vs openblas/fp32), labels as openblas/fp32 %.2f%%, max |dp| %.2g\n"
           "           parse + assemble only %.0f ev/s\n",
           lim->inference_eps, (int)json_integer_value(json_object_get(machine, "cores")),
           lim->inference_1thread_eps, lim->inference_blas_threads_eps,
           (int)json_integer_value(json_object_get(machine, "cores")),
           lim->inference_1thread_best_eps, lim->bare_onednn_eps,
           lim->bare_impl, lim->bare_onednn_eps > 0 ? lim->inference_1thread_best_eps / lim->bare_onednn_eps : 0,
           lim->auc, lim->auc - lim->auc_reference, 100 * lim->label_agreement,
           lim->max_dp_vs_reference, lim->parse_eps);
    if (o->brokers)
        printf("broker:    %s\n", o->brokers);
    if (lim->members)
        printf("set:       forward pass %.1f us/event of CPU on 1 thread, its %zu members alone "
               "%.1f us summed: %.3f x the sum\n", lim->set_cpu_us_per_event, lim->members,
               lim->members_cpu_us_per_event,
               lim->set_cpu_us_per_event / lim->members_cpu_us_per_event);
    printf("%-10s %.0f ev/s end to end = %.2f of inference only; mean batch %.0f; cpu_utilisation %.2f\n",
           top == &r->backlog ? "catch-up:" : top->offered_rate > 0 ? "at rate:" : "flat out:",
           top->events_per_s, top->events_per_s / lim->inference_eps, top->batch_size_mean,
           cpu_utilisation(top));
    printf("cpu/event: ");
    for (int i = 0; i < SF_STAGE__COUNT; i++)
        printf("%s %.1f us%s", stage_keys[i], top->stage_cpu[i] * 1e6, i + 1 < SF_STAGE__COUNT ? ", " : "\n");
    printf("           inference threads' share of parse_assemble %.1f us, of rendering %.1f us\n",
           top->helper_stage_cpu[SF_STAGE_PARSE] * 1e6, top->helper_stage_cpu[SF_STAGE_PUBLISH] * 1e6);
    printf("           ");
    for (int g = 0; g < BENCH_T__COUNT; g++)
        printf("%s %.1f us, ", bench_thread_group_names[g], top->group_cpu[g] * 1e6);
    printf("process %.1f us\n", top->process_cpu * 1e6);
    printf("           sigflow's own %.1f us (pipeline, inference threads, Kafka clients); the bench's "
           "broker and feed %.1f us\n", sigflow_cpu(top) * 1e6, bench_cpu(top) * 1e6);
    if (o->monitor_costs) {
        const double *s = top->stage_cpu;
        double all = 0;
        for (int i = 0; i < SF_STAGE__COUNT; i++)
            all += s[i];
        printf("monitoring: drift %.2f us, truth %.2f us, shadow %.2f us, shadow publish %.2f us "
               "a event; drift + truth + shadow publish %.1f %% of the pipeline thread\n",
               s[SF_STAGE_MONITOR] * 1e6, s[SF_STAGE_TRUTH] * 1e6, s[SF_STAGE_SHADOW] * 1e6,
               s[SF_STAGE_SHADOW_PUBLISH] * 1e6,
               all > 0 ? 100 * (s[SF_STAGE_MONITOR] + s[SF_STAGE_TRUTH] +
                                s[SF_STAGE_SHADOW_PUBLISH]) / all : 0.0);
    }
    print_latency("latency:", lat);
    if (r->low.name)
        print_latency("low rate:", &r->low);
    printf("breakdown: p50/p99 ms:");
    for (int i = 0; i < 6; i++)
        printf(" %s %.1f/%.1f%s", part_keys[i], bench_hist_quantile(&lat->parts[i], 0.5),
               bench_hist_quantile(&lat->parts[i], 0.99), i < 5 ? "," : "\n");
    printf("memory:    peak RSS %.1f MB\n", r->flat.name || r->half.name ? rss : r->backlog_rss_mb);
    if (r->backlog.name) {
        printf("backlog:   %llu events on %d partitions (pre-filled at %.0f ev/s): caught up at %.0f ev/s",
               (unsigned long long)r->backlog_events, r->backlog_partitions, r->backlog_prefill_eps,
               r->backlog.events_per_s);
        if (r->flat.name)
            printf(" = %.2f of flat out", r->backlog.events_per_s / r->flat.events_per_s);
        printf("; cpu_utilisation %.2f; peak RSS %.1f MB, %.0f MB of it the %s's copy of the backlog\n",
               cpu_utilisation(&r->backlog), r->backlog_rss_mb, r->backlog_log_mb,
               o->brokers ? "(external) broker" : "embedded broker");
    }
}

/* Partitions for a backlog on the embedded broker: enough that none holds
 * more than it keeps, and at least --partitions. */
static int backlog_partitions(const opts *o, const bench_events *events, uint64_t backlog) {
    double bytes = (double)backlog * bench_events_mean_bytes(events);
    double by_bytes = ceil(bytes / EMBEDDED_PARTITION_BYTES);
    double by_count = ceil((double)backlog / EMBEDDED_PARTITION_EVENTS);
    double p = by_bytes > by_count ? by_bytes : by_count;
    return p > o->partitions ? (int)p : o->partitions;
}

/* ---------------------------------------------------------------- options */

static const char usage[] =
    "usage: sigflow-bench [--json] [--quick] [--seconds S] [--warmup S] [--rate R]\n"
    "                     [--model PATH --variables PATH] [--file CSV]\n"
    "                     [--batch-size N] [--batch-wait-ms MS] [--blas-threads N]\n"
    "                     [--partitions N] [--window N] [--limit-seconds S]\n"
    "                     [--brokers B [--broker-pids P,P...] [--backlog N]]\n"
    "                     [--backend auto|openblas|onednn] [--precision fp32|bf16|int8]\n"
    "                     [--compare] [--log-format text|json] [-X key=value ...] [-F FILE]\n"
    "                     [--soak MINUTES [--soak-period S]]\n"
    "                     [--drift-window-events N] [--drift-window-s S] [--drift-warn-psi X]\n"
    "                     [--monitor-costs]\n"
    "       sigflow-bench -h | --help | --version\n"
    "\n"
    "Times the model alone and JSON parsing alone, then runs the embedded broker, a\n"
    "replay of the bundled ATLAS sample and the pipeline together: flat out for S\n"
    "seconds after a warm-up, then at half that rate and at 500 events/s for the\n"
    "latency, then a backlog of 200,000 events on a broker of its own (or only at\n"
    "--rate R events/s). Prints a summary, or one JSON object with --json.\n"
    "The pipeline runs with the daemon's defaults; -X: librdkafka properties for it\n"
    "instead (listed in the report's config); -F: a file of them, key=value lines\n"
    "and # comments. --quick: a few seconds in all (the smoke test).\n"
    "--brokers B: an external Kafka cluster instead of the embedded broker (fresh\n"
    "topics, deleted at the end); --broker-pids: its processes, for its CPU share;\n"
    "--backlog N: only pre-fill N events, then time the pipeline working through\n"
    "them (on the embedded broker with enough partitions to hold them).\n"
    "--backend/--precision: the configuration run (default auto, fp32); --compare:\n"
    "every available backend x precision in turn (int8 where the CPU has VNNI or\n"
    "AMX-INT8), then a table (and a `comparison` array with --json). Each reports the\n"
    "held-out labels' agreement with openblas/fp32 and its AUC difference.\n"
    "--soak MINUTES: after flat out, MINUTES at half that rate with 1 event in 1000\n"
    "malformed and a model reload every --soak-period S (60), alternately a corrupt\n"
    "model (a crash, then a sandbox violation) and the good one; reports outputs,\n"
    "p99, RSS and open fds per period, and events lost (exit 1 unless 0), reloads\n"
    "accepted/refused and the refusals by cause.\n"
    "The pipeline monitors drift as the daemon does (its CPU is the `monitor` stage,\n"
    "and `monitoring` in the JSON); --drift-window-events 0 turns it off, for an A/B.\n"
    "--monitor-costs: also live quality, from a truth message the feed sends with each\n"
    "event, and the model as its own shadow, published to a shadow topic; their CPU\n"
    "is the `truth`, `shadow` and `shadow_publish` stages, each in `monitoring`.\n";

/* 0 to run, 1 when --help or --version was printed, -1 on a usage error. */
static int parse_opts(int argc, char **argv, opts *o, char *paths, size_t paths_size) {
    memset(o, 0, sizeof *o);
    /* The shipped model and sample, found next to the executable; a missing
     * one fails later, naming the path, unless an option replaces it. */
    char *model = paths, *vars = paths + paths_size / 3, *file = paths + 2 * (paths_size / 3);
    sf_paths_data(SF_PATHS_MODEL, model, paths_size / 3);
    sf_paths_data(SF_PATHS_VARIABLES, vars, paths_size / 3);
    sf_paths_data(SF_PATHS_SAMPLE, file, paths_size / 3);
    o->model = model;
    o->vars = vars;
    o->file = file;
    o->seconds = 10;
    o->warmup = 3;
    o->limit_seconds = 3;
    sf_pipeline_conf daemon; /* the daemon's defaults */
    sf_pipeline_conf_init(&daemon);
    o->batch_size = daemon.engine.batch_size;
    o->batch_wait_ms = daemon.batch_wait_ms;
    o->drift = daemon.drift;
    o->partitions = 2;
    o->blas_threads = 0;
    char err[512];
    sf_cli cli = sf_args_cli("sigflow-bench", argc, argv);
    o->log_format = cli.format;
    o->soak_period = 60;
    int seconds_set = 0, warmup_set = 0, limit_set = 0, vars_set = 0;
    long window = 0, v;
    enum { O_VARS = 256, O_FILE, O_SECONDS, O_WARMUP, O_RATE, O_JSON, O_QUICK, O_BS, O_BW, O_BLAS,
           O_PARTS, O_WINDOW, O_LIMIT, O_BROKERS, O_BROKER_PIDS, O_BACKLOG, O_BACKEND, O_PREC,
           O_COMPARE, O_LOGF, O_SOAK, O_SOAK_PERIOD, O_MONITOR_COSTS };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'}, {"variables", required_argument, NULL, O_VARS},
        {"file", required_argument, NULL, O_FILE}, {"seconds", required_argument, NULL, O_SECONDS},
        {"warmup", required_argument, NULL, O_WARMUP}, {"rate", required_argument, NULL, O_RATE},
        {"json", no_argument, NULL, O_JSON}, {"quick", no_argument, NULL, O_QUICK},
        {"batch-size", required_argument, NULL, O_BS}, {"batch-wait-ms", required_argument, NULL, O_BW},
        {"blas-threads", required_argument, NULL, O_BLAS},
        {"partitions", required_argument, NULL, O_PARTS}, {"window", required_argument, NULL, O_WINDOW},
        {"limit-seconds", required_argument, NULL, O_LIMIT}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {"brokers", required_argument, NULL, O_BROKERS},
        {"broker-pids", required_argument, NULL, O_BROKER_PIDS},
        {"backlog", required_argument, NULL, O_BACKLOG},
        {"backend", required_argument, NULL, O_BACKEND}, {"precision", required_argument, NULL, O_PREC},
        {"compare", no_argument, NULL, O_COMPARE},
        {"log-format", required_argument, NULL, O_LOGF},
        {"soak", required_argument, NULL, O_SOAK},
        {"soak-period", required_argument, NULL, O_SOAK_PERIOD},
        {"monitor-costs", no_argument, NULL, O_MONITOR_COSTS},
        SF_ARGS_DRIFT_OPTIONS,
        {NULL, 0, NULL, 0}};
    int opt, bad = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":hX:F:", longopts, NULL)) != -1) {
        if (sf_args_drift(&cli, opt, optarg, &o->drift, &bad))
            continue;
        switch (opt) {
        case O_LOGF: bad |= sf_args_log_format(&cli, optarg, &o->log_format); break;
        case 'X':
            if (sf_kafka_props_add(&o->kafka_props, optarg, err, sizeof err))
                bad = sf_args_usage(&cli, "-X: %s", err);
            break;
        case 'F':
            if (sf_kafka_props_load(&o->kafka_props, optarg, err, sizeof err))
                bad = sf_args_usage(&cli, "%s", err);
            break;
        case 'm': o->model = optarg; break;
        case O_VARS: o->vars = optarg; vars_set = 1; break;
        case O_FILE: o->file = optarg; break;
        case O_SECONDS:
            if (sf_args_double(optarg, 0.1, 86400, &o->seconds))
                bad = sf_args_bad(&cli, "--seconds", optarg, "a number of seconds in 0.1..86400");
            seconds_set = 1;
            break;
        case O_WARMUP:
            if (sf_args_double(optarg, 0, 3600, &o->warmup))
                bad = sf_args_bad(&cli, "--warmup", optarg, "a number of seconds in 0..3600");
            warmup_set = 1;
            break;
        case O_LIMIT:
            if (sf_args_double(optarg, 0.05, 600, &o->limit_seconds))
                bad = sf_args_bad(&cli, "--limit-seconds", optarg, "a number of seconds in 0.05..600");
            limit_set = 1;
            break;
        case O_RATE:
            if (sf_args_double(optarg, 1, 1e8, &o->rate))
                bad = sf_args_bad(&cli, "--rate", optarg, "events per second, at least 1");
            break;
        case O_SOAK:
            if (sf_args_double(optarg, 0.01, 10080, &o->soak_minutes))
                bad = sf_args_bad(&cli, "--soak", optarg, "minutes in 0.01..10080");
            break;
        case O_SOAK_PERIOD:
            if (sf_args_double(optarg, 1, 3600, &o->soak_period))
                bad = sf_args_bad(&cli, "--soak-period", optarg, "seconds in 1..3600");
            break;
        case O_JSON: o->json = 1; break;
        case O_BACKEND: bad |= sf_args_backend(&cli, optarg, &o->infer); break;
        case O_PREC: bad |= sf_args_precision(&cli, optarg, &o->infer); break;
        case O_COMPARE: o->compare = 1; break;
        case O_MONITOR_COSTS: o->monitor_costs = 1; break;
        case O_QUICK: o->quick = 1; break;
        case O_BS:
            if (sf_args_long(optarg, 1, 4096, &v))
                bad = sf_args_bad(&cli, "--batch-size", optarg, "an integer in 1..4096");
            o->batch_size = (size_t)v;
            break;
        case O_BW:
            if (sf_args_long(optarg, 0, 60000, &v))
                bad = sf_args_bad(&cli, "--batch-wait-ms", optarg, "an integer in 0..60000");
            o->batch_wait_ms = (int)v;
            break;
        case O_BLAS:
            if (sf_args_long(optarg, 1, 256, &v))
                bad = sf_args_bad(&cli, "--blas-threads", optarg, "an integer in 1..256");
            o->blas_threads = (int)v;
            break;
        case O_PARTS:
            if (sf_args_long(optarg, 1, 64, &v))
                bad = sf_args_bad(&cli, "--partitions", optarg, "an integer in 1..64");
            o->partitions = (int)v;
            break;
        case O_WINDOW:
            if (sf_args_long(optarg, 1, 1000000, &window))
                bad = sf_args_bad(&cli, "--window", optarg, "an integer in 1..1000000");
            break;
        case O_BROKERS: o->brokers = optarg; break;
        case O_BROKER_PIDS:
            for (char *p = optarg, *end; *p; p = *end ? end + 1 : end) {
                long pid = strtol(p, &end, 10);
                if (end == p || pid <= 0 || (*end && *end != ',') || o->n_broker_pids == MAX_BROKER_PIDS) {
                    bad = sf_args_bad(&cli, "--broker-pids", optarg,
                                      "process ids separated by commas (at most 16)");
                    break;
                }
                o->broker_pids[o->n_broker_pids++] = (int)pid;
            }
            break;
        case O_BACKLOG:
            if (sf_args_long(optarg, 1, 1000000000, &v))
                bad = sf_args_bad(&cli, "--backlog", optarg, "an integer in 1..1000000000");
            o->backlog = (uint64_t)v;
            break;
        case 'h': fputs(usage, stdout); return 1;
        case 'V': sf_version_print(stdout, "sigflow-bench"); return 1;
        default: bad = sf_args_getopt_error(&cli, opt, argv);
        }
    }
    if (!bad && o->soak_minutes > 0 && (o->json || o->rate > 0 || o->backlog || o->compare)) {
        bad = sf_args_usage(&cli, "--soak prints its own report; not with --json, --rate, "
                                  "--backlog or --compare");
    }
    if (!bad && sf_kafka_props_check((const char *const *)o->kafka_props.kv, o->kafka_props.n,
                                     SF_KAFKA_FOR_CONSUMER | SF_KAFKA_FOR_PRODUCER, err, sizeof err))
        bad = sf_args_usage(&cli, "%s", err);
    if (!bad && optind < argc)
        bad = sf_args_usage(&cli, "unexpected argument '%s'", argv[optind]);
    if (bad) {
        sf_args_try(&cli);
        return -1;
    }
    /* A set's members carry their own variables; the default file is not theirs. */
    if (!vars_set && sf_modelset_is_set(o->model))
        o->vars = NULL;
    if (o->quick) {
        if (!seconds_set)
            o->seconds = 1.5;
        if (!warmup_set)
            o->warmup = 0.5;
        if (!limit_set)
            o->limit_seconds = 0.3;
    }
    /* Enough in flight for the consumer's prefetch to stay ahead of the
     * pipeline (16 batches, at least 2), yet well under what the embedded
     * broker keeps: 5 MB a partition, about 6,500 events. */
    if (window) {
        o->window = (size_t)window;
    } else {
        size_t cap = 4096 * (size_t)o->partitions;
        o->window = 16 * o->batch_size < cap ? 16 * o->batch_size : cap;
        if (o->window < 2 * o->batch_size)
            o->window = 2 * o->batch_size;
    }
    return 0;
}

/* ---------------------------------------------------------------- main */

/* Broker, pipeline, then the phases: flat out and at half that rate, or only
 * at --rate. *top is the phase for the throughput, *lat the one for the
 * latency. 0, or -1 with errstr. */
static int stream(bench *b, results *r, char *errstr, size_t n) {
    const opts *o = b->o;
    sf_pipeline_conf *c = &b->job.conf;
    sf_pipeline_conf_init(c);
    c->engine.model_path = b->live_model ? b->live_model : o->model;
    c->engine.vars_path = o->vars;
    c->engine.emit = SF_EMIT_ALL;
    c->engine.batch_size = o->batch_size;
    c->engine.infer = o->infer;
    /* Before the broker's threads exist (pipeline.h). */
    if (sf_engine_load(&c->loaded, &c->engine, errstr, n))
        return -1;
    sf_broker *broker = NULL;
    /* input, output; the soak's dead letters; --monitor-costs' truth and shadow */
    static char names[5][64], group[64];
    static const char *const kinds[5] = {INPUT_TOPIC, OUTPUT_TOPIC, DEAD_TOPIC, TRUTH_TOPIC,
                                         SHADOW_TOPIC};
    const char *topics[5];
    size_t n_topics = 0;
    long id = (long)time(NULL) * 100000 + (long)getpid() % 100000;
    for (size_t i = 0; i < 5; i++) {
        if ((i == 2 && !(o->soak_minutes > 0)) || (i >= 3 && !o->monitor_costs))
            continue;
        /* fresh topics and group on a cluster that may hold earlier runs' */
        if (o->brokers)
            snprintf(names[i], sizeof names[i], "sigflow-bench-%ld-%s", id, kinds[i]);
        else
            snprintf(names[i], sizeof names[i], "%s", kinds[i]);
        topics[n_topics++] = names[i];
    }
    if (o->brokers) {
        snprintf(group, sizeof group, "sigflow-bench-%ld", id);
        if (bench_topics_create(o->brokers, topics, n_topics, b->partitions, errstr, n)) {
            sf_engine_free(c->loaded);
            return -1;
        }
        b->brokers = o->brokers;
    } else {
        if (sf_broker_start(&broker, b->partitions, topics, n_topics, errstr, n)) {
            sf_engine_free(c->loaded);
            return -1;
        }
        b->brokers = sf_broker_bootstrap(broker);
        snprintf(group, sizeof group, "sigflow-bench");
    }
    b->in_topic = names[0];
    b->out_topic = names[1];
    b->truth_topic = o->monitor_costs ? names[3] : NULL;
    b->stats.on_ack = on_ack;
    b->stats.on_ack_parts = on_ack_parts;
    b->stats.opaque = b;
    int t = sf_blas_inference_threads(); /* what the pipeline will choose */
    b->infer_threads = t > 0 ? t : 1;
    c->brokers = b->brokers;
    c->input_topic = b->in_topic;
    c->output_topic = b->out_topic;
    c->group = group;
    c->reload = &b->reload;
    if (o->soak_minutes > 0)
        c->dlq_topic = names[2]; /* the soak's malformed events: acknowledged, counted */
    if (o->monitor_costs) {
        /* Live quality from the feed's truth, and the model as its own shadow,
         * published: what the daemon does with --truth-topic, --shadow-model
         * and --shadow-topic (cmd_run.c's shadow settings). */
        c->truth_topic = b->truth_topic;
        c->shadow = c->engine;
        c->shadow.arch_path = NULL;
        c->shadow.threads = 1;
        c->shadow_topic = names[4];
    }
    c->batch_wait_ms = o->batch_wait_ms;
    c->drift = o->drift;
    /* The soak's malformed events would log a warning each; its refused reloads
     * log errors. */
    c->log_level = o->soak_minutes > 0 ? SF_LOG_ERROR : SF_LOG_WARN;
    c->log_format = o->log_format;
    c->stop = &b->job.stop;
    c->stats = &b->stats;
    c->kafka_props = (const char *const *)o->kafka_props.kv;
    c->n_kafka_props = o->kafka_props.n;
    c->metrics = b->metrics = sf_metrics_new();
    pthread_t tid;
    int rc = -1, started = 0;
    if (!b->metrics) {
        snprintf(errstr, n, "out of memory");
        goto out;
    }
    if (o->backlog) {
        if (!o->json)
            sf_log_cli(o->log_format, SF_LOG_INFO, "sigflow-bench", "pre-filling %s with %llu events...", b->in_topic,
                    (unsigned long long)o->backlog);
        if (prefill(b, &b->prefill_eps, errstr, n))
            goto out;
    }
    if (pthread_create(&tid, NULL, pipeline_thread, &b->job)) {
        snprintf(errstr, n, "cannot start the pipeline");
        goto out;
    }
    started = 1; /* the pipeline owns the engine */
    rc = o->backlog ? 0 : prime(b, errstr, n);
    if (rc == 0 && o->backlog) {
        if (!o->json)
            sf_log_cli(o->log_format, SF_LOG_INFO, "sigflow-bench", "pre-filled at %.0f events/s; the pipeline catches up...",
                    b->prefill_eps);
        rc = run_backlog(b, &r->backlog, errstr, n);
        r->backlog_partitions = b->partitions;
        r->backlog_events = o->backlog;
        r->backlog_prefill_eps = b->prefill_eps;
    } else if (rc == 0 && o->rate > 0) {
        if (!o->json)
            sf_log_cli(o->log_format, SF_LOG_INFO, "sigflow-bench", "%.0f events/s for %.1f s after %.1f s of warm-up...",
                    o->rate, o->seconds, o->warmup);
        rc = run_phase(b, &r->half, "rate", o->rate, errstr, n);
    } else if (rc == 0) {
        if (!o->json)
            sf_log_cli(o->log_format, SF_LOG_INFO, "sigflow-bench", "flat out for %.1f s after %.1f s of warm-up...",
                    o->seconds, o->warmup);
        rc = run_phase(b, &r->flat, "max", 0, errstr, n);
        if (rc == 0 && r->flat.events_per_s < 2) {
            snprintf(errstr, n, "no events processed flat out");
            rc = -1;
        }
        if (rc == 0 && o->soak_minutes > 0) {
            rc = soak(b, r->flat.events_per_s / 2, errstr, n);
        } else if (rc == 0) {
            if (!o->json)
                sf_log_cli(o->log_format, SF_LOG_INFO, "sigflow-bench", "at half that, %.0f events/s, for the latency...",
                        r->flat.events_per_s / 2);
            rc = run_phase(b, &r->half, "half", r->flat.events_per_s / 2, errstr, n);
            if (rc == 0 && !o->json)
                sf_log_cli(o->log_format, SF_LOG_INFO, "sigflow-bench", "at %.0f events/s, a quiet stream's latency...",
                        LOW_RATE);
            if (rc == 0)
                rc = run_phase(b, &r->low, "low", LOW_RATE, errstr, n);
        }
    }
    atomic_store(&b->job.stop, 1);
    pthread_join(tid, NULL);
    if (rc == 0 && b->job.rc) {
        snprintf(errstr, n, "pipeline: %s", b->job.err);
        rc = -1;
    }
out:
    if (!started)
        sf_engine_free(c->loaded);
    sf_metrics_free(b->metrics);
    b->metrics = NULL;
    if (broker)
        sf_broker_stop(broker);
    else
        bench_topics_delete(o->brokers, topics, n_topics);
    return rc;
}

/* One configuration's figures, for --compare's table. */
typedef struct summary {
    sf_infer_info info;
    double inf_1thread, inf_best, inf_all, inf_library, e2e, p99_half, agreement, auc, auc_delta, max_dp,
        rss, bare;
    double p99_low, backlog, utilisation;
} summary;

/* What model-health monitoring costs, flat out: each part's CPU per event on
 * the pipeline thread (its stage) against the thread's whole, and what that
 * share of the rate is worth (the pipeline thread bounds the rate). Drift
 * always; truth and the shadow with --monitor-costs. The shadow's scoring
 * stands beside the serving model's (parse, normalize, inference), which it
 * repeats; the rest (drift, truth, the shadow's publishing) is what the 5 %
 * budget of issue 25 is about. */
static json_t *monitoring_json(const opts *o, const phase *top) {
    double total = 0;
    for (int i = 0; i < SF_STAGE__COUNT; i++)
        total += top->stage_cpu[i];
    const double *s = top->stage_cpu;
    double share = total > 0 ? 1 / total : 0;
    json_t *j = json_pack("{s:b, s:I, s:f, s:f, s:f}", "drift", sf_drift_enabled(&o->drift),
                          "drift_window_events", (json_int_t)o->drift.window_events,
                          "drift_window_s", o->drift.window_s, "drift_cpu_s_per_event",
                          s[SF_STAGE_MONITOR], "drift_share_of_pipeline_thread",
                          s[SF_STAGE_MONITOR] * share);
    json_object_set_new(j, "truth", json_boolean(o->monitor_costs));
    json_object_set_new(j, "shadow", json_boolean(o->monitor_costs));
    if (!o->monitor_costs)
        return j;
    /* The serving forward pass wherever it ran; the shadow's runs on this thread. */
    double serving = s[SF_STAGE_PARSE] + s[SF_STAGE_NORMALIZE] + s[SF_STAGE_INFERENCE] +
                     top->group_cpu[BENCH_T_INFER] + top->group_cpu[BENCH_T_BLAS];
    double rest = s[SF_STAGE_MONITOR] + s[SF_STAGE_TRUTH] + s[SF_STAGE_SHADOW_PUBLISH];
    double own = sigflow_cpu(top);
    json_t *more = json_pack(
        "{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "truth_cpu_s_per_event", s[SF_STAGE_TRUTH],
        "truth_share_of_pipeline_thread", s[SF_STAGE_TRUTH] * share, "shadow_cpu_s_per_event",
        s[SF_STAGE_SHADOW], "shadow_share_of_pipeline_thread", s[SF_STAGE_SHADOW] * share,
        "shadow_vs_serving_scoring", serving > 0 ? s[SF_STAGE_SHADOW] / serving : 0.0,
        "shadow_publish_cpu_s_per_event", s[SF_STAGE_SHADOW_PUBLISH],
        "shadow_publish_share_of_pipeline_thread", s[SF_STAGE_SHADOW_PUBLISH] * share,
        "drift_truth_shadow_publish_share_of_pipeline_thread", rest * share,
        "drift_truth_shadow_publish_share_of_sigflow_cpu", own > 0 ? rest / own : 0.0);
    json_object_update(j, more);
    json_decref(more);
    return j;
}

static json_t *report_json(const opts *o, const bench *b, const bench_limits *lim, const results *r,
                           double rss, json_t *machine) {
    const phase *top = top_phase(r), *lat = lat_phase(r);
    json_t *phases = json_array();
    const phase *all[] = {&r->flat, &r->half, &r->low, &r->backlog};
    for (size_t i = 0; i < 4; i++)
        if (all[i]->name)
            json_array_append_new(phases, phase_json(all[i]));
    json_t *model = json_pack("{s:s, s:s?, s:I, s:s}", "path", o->model, "variables", o->vars,
                              "parameters", (json_int_t)lim->parameters, "sha256", lim->sha256);
    json_t *config = json_pack(
        "{s:I, s:i, s:i, s:I, s:i, s:i, s:f, s:f, s:f, s:b}", "batch_size", (json_int_t)o->batch_size,
        "batch_wait_ms", o->batch_wait_ms, "partitions", b->partitions, "window", (json_int_t)o->window,
        "inference_threads", b->infer_threads, "blas_threads", b->blas_threads, "seconds", o->seconds,
        "warmup_s", o->warmup, "limit_seconds", o->limit_seconds, "quick", o->quick);
    json_object_set_new(config, "monitor_costs", json_boolean(o->monitor_costs));
    /* The product as shipped, unless these say otherwise. */
    json_t *props = json_array();
    for (size_t i = 0; i < o->kafka_props.n; i++) {
        char shown[1024];
        prop_shown(o->kafka_props.kv[i], shown, sizeof shown);
        json_array_append_new(props, json_string(shown));
    }
    json_object_set_new(config, "kafka_props", props);
    json_object_set_new(config, "daemon_kafka_defaults", json_boolean(o->kafka_props.n == 0));
    json_t *out = json_object();
    json_object_set_new(config, "broker", json_string(o->brokers ? o->brokers : "embedded"));
    if (o->backlog) {
        json_object_set_new(config, "backlog", json_integer((json_int_t)o->backlog));
        json_object_set_new(out, "prefill_events_per_s", json_real(r->backlog_prefill_eps));
    }
    json_object_set_new(out, "backend", json_string(sf_backend_name(lim->info.backend)));
    json_object_set_new(out, "precision", json_string(sf_precision_name(lim->info.precision)));
    json_object_set_new(out, "isa", json_string(lim->info.kernel));
    json_object_set_new(out, "model", model);
    json_object_set_new(out, "config", config);
    json_object_set_new(out, "events_per_s", json_real(top->events_per_s));
    json_object_set_new(out, "cpu_utilisation", json_real(cpu_utilisation(top)));
    json_object_set_new(out, "latency_ms", latency_json(lat));
    json_object_set_new(out, "latency_breakdown_ms", breakdown_json(lat));
    if (r->low.name)
        json_object_set_new(out, "low_rate_latency_ms", latency_json(&r->low));
    if (r->backlog.name) {
        json_t *bl = json_pack("{s:I, s:i, s:f, s:f, s:f, s:f, s:f, s:f}", "events",
                               (json_int_t)r->backlog_events, "partitions", r->backlog_partitions,
                               "prefill_events_per_s", r->backlog_prefill_eps, "events_per_s",
                               r->backlog.events_per_s, "seconds", r->backlog.seconds,
                               "cpu_utilisation", cpu_utilisation(&r->backlog), "rss_max_mb",
                               r->backlog_rss_mb, "broker_copy_mb", r->backlog_log_mb);
        json_object_set_new(bl, "vs_flat_out", r->flat.name && r->flat.events_per_s > 0
                                                   ? json_real(r->backlog.events_per_s / r->flat.events_per_s)
                                                   : json_null());
        json_object_set_new(out, "backlog", bl);
    }
    json_object_set_new(out, "batch_size_mean", json_real(top->batch_size_mean));
    json_object_set_new(out, "cpu_s_per_event", cpu_json(top));
    json_object_set_new(out, "monitoring", monitoring_json(o, top));
    json_object_set_new(out, "rss_max_mb", json_real(r->flat.name || r->half.name ? rss : r->backlog_rss_mb));
    json_object_set_new(out, "inference_only_events_per_s", json_real(lim->inference_eps));
    json_object_set_new(out, "inference_only_1thread_events_per_s", json_real(lim->inference_1thread_eps));
    json_object_set_new(out, "inference_only_library_threads_events_per_s",
                        json_real(lim->inference_blas_threads_eps));
    /* per second of the thread's CPU time, best of the turns with the bare
     * loop: the inference-only figure that compares precisions on a shared
     * machine (the ones above are per second of wall time) */
    json_object_set_new(out, "inference_only_1thread_cpu_events_per_s",
                        json_real(lim->inference_1thread_best_eps));
    json_object_set_new(out, "bare_onednn_1thread_events_per_s", json_real(lim->bare_onednn_eps));
    json_object_set_new(out, "bare_onednn_isa", json_string(lim->bare_impl));
    json_object_set_new(out, "inference_vs_bare_onednn",
                        lim->bare_onednn_eps > 0 ? json_real(lim->inference_1thread_best_eps / lim->bare_onednn_eps)
                                                 : json_null());
    json_object_set_new(out, "inference_batch_independent", json_boolean(lim->batch_independent));
    json_object_set_new(out, "inference_split_identical", json_boolean(lim->split_identical));
    json_object_set_new(out, "label_agreement_with_openblas_fp32", json_real(lim->label_agreement));
    json_object_set_new(out, "max_abs_dp_vs_openblas_fp32", json_real(lim->max_dp_vs_reference));
    json_object_set_new(out, "heldout_auc", json_real(lim->auc));
    json_object_set_new(out, "heldout_auc_delta_vs_openblas_fp32", json_real(lim->auc - lim->auc_reference));
    json_object_set_new(out, "parse_only_events_per_s", json_real(lim->parse_eps));
    if (lim->members) {
        json_object_set_new(out, "set_members", json_integer((json_int_t)lim->members));
        json_object_set_new(out, "set_forward_cpu_us_per_event", json_real(lim->set_cpu_us_per_event));
        json_object_set_new(out, "set_members_alone_cpu_us_per_event",
                            json_real(lim->members_cpu_us_per_event));
    }
    json_object_set_new(out, "normalize_only_events_per_s", json_real(lim->normalize_eps));
    json_object_set_new(out, "ratio_end_to_end_to_inference_only",
                        json_real(top->events_per_s / lim->inference_eps));
    json_object_set_new(out, "machine", json_incref(machine));
    json_object_set_new(out, "phases", phases);
    return out;
}

/* Limits, then the streaming phases, for one backend and precision. */
static int run_config(const opts *o, const bench_events *events, const bench_heldout *heldout,
                      json_t *machine, json_t **report, summary *row, char *err, size_t n) {
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    static bench_limits lim;
    bench_limits_conf lc = {.model_path = o->model, .vars_path = o->vars, .events = events,
                            .heldout = heldout, .infer = o->infer, .batch_size = o->batch_size,
                            .seconds = o->limit_seconds, .all_threads = cores > 0 ? cores : 1};
    if (!o->json)
        sf_log_cli(o->log_format, SF_LOG_INFO, "sigflow-bench", "%s/%s: timing the model and the parser alone...",
                sf_backend_name(o->infer.backend), sf_precision_name(o->infer.precision));
    if (bench_limits_run(&lc, &lim, err, n))
        return -1;

    static bench b; /* the histograms make it large for a stack */
    static results r;
    memset(&b, 0, sizeof b);
    memset(&r, 0, sizeof r);
    b.o = o;
    b.events = events;
    b.partitions = o->backlog && !o->brokers ? backlog_partitions(o, events, o->backlog)
                                             : o->partitions;
    /* --compare: each configuration's own peak, not a previous one's backlog
     * (the embedded broker's copy of it). */
    if (o->compare)
        bench_rss_reset_peak();
    if (stream(&b, &r, err, n))
        return -1;
    double rss = bench_rss_max_mb();
    if (o->backlog) {
        r.backlog_rss_mb = rss;
    } else if (!o->rate && !o->brokers) {
        /* The default run's backlog: a broker of its own with enough
         * partitions to hold it, and a fresh pipeline started once it is
         * full. Its peak RSS is its own (the embedded broker holds the
         * whole backlog in this process). */
        static bench bb;
        static opts ob;
        ob = *o;
        ob.backlog = o->quick ? QUICK_BACKLOG : DEFAULT_BACKLOG;
        memset(&bb, 0, sizeof bb);
        bb.o = &ob;
        bb.events = events;
        bb.partitions = backlog_partitions(&ob, events, ob.backlog);
        bench_rss_reset_peak();
        if (stream(&bb, &r, err, n))
            return -1;
        r.backlog_rss_mb = bench_rss_max_mb();
    }
    if (r.backlog.name)
        r.backlog_log_mb = (double)r.backlog_events * bench_events_mean_bytes(events) / (1 << 20);
    json_object_set_new(machine, "blas_threads", json_integer(b.blas_threads));
    const phase *top = top_phase(&r), *lat = lat_phase(&r);
    if (!o->json)
        print_human(o, &b, &lim, &r, rss, machine);
    *report = report_json(o, &b, &lim, &r, rss, machine);
    row->info = lim.info;
    row->inf_1thread = lim.inference_1thread_eps;
    row->inf_all = lim.inference_eps;
    row->inf_library = lim.inference_blas_threads_eps;
    row->e2e = top->events_per_s;
    row->p99_half = bench_hist_quantile(&lat->hist, 0.99);
    row->p99_low = r.low.name ? bench_hist_quantile(&r.low.hist, 0.99) : 0;
    row->backlog = r.backlog.name ? r.backlog.events_per_s : 0;
    row->utilisation = cpu_utilisation(top);
    row->agreement = lim.label_agreement;
    row->auc = lim.auc;
    row->auc_delta = lim.auc - lim.auc_reference;
    row->max_dp = lim.max_dp_vs_reference;
    row->rss = rss;
    row->bare = lim.bare_onednn_eps;
    row->inf_best = lim.inference_1thread_best_eps;
    return 0;
}

static json_t *summary_json(const summary *r) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "backend",
                          sf_backend_name(r->info.backend), "precision",
                          sf_precision_name(r->info.precision), "isa", r->info.kernel,
                          "inference_only_1thread_events_per_s", r->inf_1thread,
                          "inference_only_events_per_s", r->inf_all,
                          "inference_only_library_threads_events_per_s", r->inf_library,
                          "events_per_s", r->e2e, "p99_half_load_ms", r->p99_half,
                          "label_agreement_with_openblas_fp32", r->agreement, "heldout_auc", r->auc,
                          "max_abs_dp_vs_openblas_fp32", r->max_dp, "rss_max_mb_so_far", r->rss);
    json_object_set_new(j, "p99_low_rate_ms", json_real(r->p99_low));
    json_object_set_new(j, "inference_only_1thread_cpu_events_per_s", json_real(r->inf_best));
    json_object_set_new(j, "heldout_auc_delta_vs_openblas_fp32", json_real(r->auc_delta));
    json_object_set_new(j, "backlog_events_per_s", json_real(r->backlog));
    json_object_set_new(j, "cpu_utilisation", json_real(r->utilisation));
    json_object_set_new(j, "inference_vs_bare_onednn",
                        r->bare > 0 ? json_real(r->inf_best / r->bare) : json_null());
    return j;
}

static void print_table(const summary *rows, size_t n) {
    printf("\n%-9s %-5s %-24s %9s %9s %9s %9s %9s %5s %8s %8s %8s %7s %6s\n", "backend", "prec", "isa",
           "inf 1thr", "inf all", "inf lib", "e2e", "backlog", "util", "p99 half", "p99 low",
           "vs bare", "agree", "AUC");
    for (size_t i = 0; i < n; i++) {
        const summary *r = &rows[i];
        printf("%-9s %-5s %-24.24s %9.0f %9.0f %9.0f %9.0f %9.0f %5.2f %6.1fms %6.1fms %8.2f %6.2f%% %6.4f\n",
               sf_backend_name(r->info.backend), sf_precision_name(r->info.precision), r->info.kernel,
               r->inf_1thread, r->inf_all, r->inf_library, r->e2e, r->backlog, r->utilisation,
               r->p99_half, r->p99_low, r->bare > 0 ? r->inf_best / r->bare : 0, 100 * r->agreement,
               r->auc);
    }
    printf("(events/s; inf: inference only on 1 thread, split over all cores our way, one caller with\n"
           " the library's own threads; e2e: end to end flat out; backlog: catch-up rate; util:\n"
           " cpu_utilisation flat out; p99 at half rate and at %.0f events/s; vs bare: inf 1thr / the\n"
           " bare oneDNN loop in the same precision, timed in turns; agree: held-out labels equal to\n"
           " openblas/fp32's)\n", LOW_RATE);
}

/* --soak: the embedded broker, the pipeline serving a copy of the model that
 * the soak replaces under it, flat out, then soak() (from stream()). */
static int soak_main(const opts *o, const bench_events *events, char *err, size_t n) {
    static bench b; /* the histograms make it large for a stack */
    static results r;
    memset(&b, 0, sizeof b);
    memset(&r, 0, sizeof r);
    b.o = o;
    b.events = events;
    b.partitions = o->partitions;
    char soak_dir[4096], live_model[4200];
    const char *tmp = getenv("TMPDIR");
    snprintf(soak_dir, sizeof soak_dir, "%s/sigflow-soak-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(soak_dir)) {
        snprintf(err, n, "cannot create a directory under %.900s: %s", tmp && *tmp ? tmp : "/tmp",
                 strerror(errno));
        return -1;
    }
    snprintf(live_model, sizeof live_model, "%s/model.h5", soak_dir);
    size_t len;
    char *bytes = slurp(o->model, &len, err, n);
    int rc = bytes && install(live_model, bytes, len, err, n) == 0 ? 0 : -1;
    free(bytes);
    if (rc == 0) {
        b.live_model = live_model;
        rc = stream(&b, &r, err, n);
    }
    unlink(live_model);
    rmdir(soak_dir);
    return rc;
}

int main(int argc, char **argv) {
    /* Before anything else: OpenBLAS may have settled on a generic kernel. */
    sf_blas_select_core(argv);
    bench_thread_name("sf-main");
    static opts o;
    static char paths[3 * 4096];
    int parsed = parse_opts(argc, argv, &o, paths, sizeof paths);
    if (parsed) {
        sf_kafka_props_free(&o.kafka_props);
        return parsed > 0 ? 0 : 2;
    }
    json_t *machine = bench_machine_json(); /* first: the load average before we add to it */
    char err[1024];
    bench_events *events = NULL;
    bench_heldout heldout = {0};
    json_t *out = NULL;
    int rc = 1;

    /* --blas-threads N acts as OPENBLAS_NUM_THREADS=N would: the pipeline keeps
     * a thread count the user chose. */
    if (o.blas_threads > 0) {
        char v[16];
        snprintf(v, sizeof v, "%d", o.blas_threads);
        setenv("OPENBLAS_NUM_THREADS", v, 1);
        sf_blas_set_threads(o.blas_threads);
    }
    if (bench_events_load(&events, o.file, err, sizeof err) ||
        bench_heldout_load(&heldout, o.file, err, sizeof err))
        goto fail;

    if (o.soak_minutes > 0) {
        if (soak_main(&o, events, err, sizeof err))
            goto fail;
    } else if (!o.compare) {
        summary row;
        if (run_config(&o, events, &heldout, machine, &out, &row, err, sizeof err))
            goto fail;
    } else {
        /* openblas/fp32 (the reference) first, then what oneDNN can do here. */
        static const sf_infer_conf configs[] = {
            {.backend = SF_BACKEND_OPENBLAS, .precision = SF_PRECISION_FP32},
            {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_FP32},
            {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_BF16},
            {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_INT8}};
        summary rows[4];
        size_t n_rows = 0;
        json_t *runs = json_array(), *comparison = json_array();
        for (size_t i = 0; i < 4; i++) {
            if (configs[i].backend == SF_BACKEND_ONEDNN && !sf_infer_backend_available(SF_BACKEND_ONEDNN))
                continue;
            /* int8 where it runs natively only (it is refused elsewhere) */
            if (configs[i].precision == SF_PRECISION_INT8 && !sf_infer_cpu_int8())
                continue;
            o.infer = configs[i];
            json_t *rep = NULL;
            if (run_config(&o, events, &heldout, machine, &rep, &rows[n_rows], err, sizeof err)) {
                /* a model without int8 calibration still compares the rest */
                if (configs[i].precision == SF_PRECISION_INT8 && strstr(err, "calibration")) {
                    sf_log_cli(o.log_format, SF_LOG_WARN, "sigflow-bench", "int8 left out: %s", err);
                    continue;
                }
                json_decref(runs);
                json_decref(comparison);
                goto fail;
            }
            json_array_append_new(runs, rep);
            json_array_append_new(comparison, summary_json(&rows[n_rows]));
            n_rows++;
        }
        if (!o.json)
            print_table(rows, n_rows);
        /* The top-level keys describe what `auto` picks here. */
        sf_infer_conf def = {0};
        sf_backend chosen = sf_infer_backend_available(SF_BACKEND_ONEDNN) ? SF_BACKEND_ONEDNN
                                                                            : SF_BACKEND_OPENBLAS;
        const char *isa = "";
        for (size_t i = 0; i < n_rows; i++)
            if (rows[i].info.backend == chosen && rows[i].info.precision == def.precision)
                isa = rows[i].info.kernel;
        out = json_pack("{s:s, s:s, s:s, s:O, s:o, s:o}", "backend", sf_backend_name(chosen),
                        "precision", sf_precision_name(def.precision), "isa", isa, "machine",
                        machine, "comparison", comparison, "runs", runs);
    }
    if (o.json) {
        json_dumpf(out, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        putchar('\n');
    }
    rc = 0;
    goto done;
fail:
    sf_log_cli(o.log_format, SF_LOG_ERROR, "sigflow-bench", "%s", err);
done:
    json_decref(out);
    bench_heldout_free(&heldout);
    bench_events_free(events);
    json_decref(machine);
    sf_kafka_props_free(&o.kafka_props);
    return rc;
}
