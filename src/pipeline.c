/* pipeline.c: the daemon's main loop.
 *
 * Everything that touches the pipeline's state runs on one thread: the loop,
 * librdkafka's rebalance and statistics callbacks (served by the consumer poll)
 * and the delivery reports (served by the producer poll). So the offset
 * bookkeeping needs no locks.
 *
 * At-least-once works batch by batch: delivery.c keeps the batches in flight
 * and stores the offsets of a completed prefix (librdkafka's auto-commit then
 * commits them). With --exactly-once the batch is one Kafka transaction
 * instead. The model is engine.c's, the clients' configuration kafka.c's. */
#include <inttypes.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "sigflow/clock.h"
#include "sigflow/delivery.h"
#include "sigflow/http.h"
#include "sigflow/kafka.h"
#include "sigflow/output.h"
#include "sigflow/pipeline.h"
#include "sigflow/topics.h"
#include "pipeline_impl.h"

#define REPORT_INTERVAL_MS 10000

void sf_pipeline_conf_init(sf_pipeline_conf *c) {
    memset(c, 0, sizeof *c);
    c->input_topic = "events";
    c->output_topic = "signals";
    c->group = "sigflow";
    sf_engine_conf_init(&c->engine);
    c->batch_wait_ms = 0;
    c->max_event_bytes = 1 << 20;
    c->connect_timeout_ms = 10000;
    c->log_level = SF_LOG_INFO;
    sf_drift_conf_init(&c->drift);
    sf_truth_conf_init(&c->truth);
    c->truth_field = "Label";
    c->truth_id_field = "EventId";
}

void sf_pipeline_fail(pipeline *p, const char *fmt, ...) {
    if (p->fatal)
        return;
    p->fatal = 1;
    sf_delivery_fail(p->dlv);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->fatal_msg, sizeof p->fatal_msg, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------ stage costs */

/* Charges this thread's CPU time since the previous mark to stage s. */
void sf_pipeline_stage_mark(pipeline *p, sf_stage s) {
    sf_pipeline_stats *st = p->conf->stats;
    if (!st)
        return;
    int64_t now = sf_clock_thread_cpu_ns();
    atomic_fetch_add_explicit(&st->cpu_ns[s], (uint64_t)(now - p->cpu_mark_ns), memory_order_relaxed);
    p->cpu_mark_ns = now;
}

/* ---------------------------------------------------------------- engine */

static void engine_announce(pipeline *p) {
    const sf_engine *e = p->eng;
    const sf_model *m = sf_engine_model(e);
    const sf_modelset *set = sf_engine_set(e);
    if (p->conf->metrics) {
        /* A set is named by its file's hash, each member by its model's. */
        sf_metrics_set_model(p->conf->metrics, set ? set->sha256 : m->sha256,
                             sf_engine_n_inputs(e), m->n_outputs);
        size_t n = set ? sf_engine_n_members(e) : 0;
        const char *names[64], *sha[64];
        double w[64];
        n = n > 64 ? 64 : n;
        for (size_t k = 0; k < n; k++) {
            sf_engine_member_info mi;
            sf_engine_member(e, k, &mi);
            names[k] = mi.name;
            sha[k] = mi.model->sha256;
            w[k] = mi.weight;
        }
        sf_metrics_set_members(p->conf->metrics, n, names, sha, w);
        sf_infer_info in;
        sf_engine_inference(e, &in);
        sf_metrics_set_inference(p->conf->metrics, sf_backend_name(in.backend),
                                 sf_precision_name(in.precision), in.kernel, in.threads,
                                 in.library_threads);
    }
    if (sf_engine_digest(e, p->model_header, sizeof p->model_header) < 0)
        snprintf(p->model_header, sizeof p->model_header, "%s", set ? set->sha256 : m->sha256);
    if (p->health)
        sf_health_set_model_loaded(p->health, 1);
    sf_pipeline_monitor_start(p);
}

/* Hands the events that lacked optional inputs since the last time to
 * sigflow_defaulted_inputs_total (a lock per input and batch, not per event). */
static void count_defaulted(pipeline *p) {
    for (size_t i = 0; i < sf_engine_n_inputs(p->eng); i++) {
        uint64_t n = sf_engine_take_defaulted(p->eng, i);
        if (n && p->conf->metrics)
            sf_metrics_add_defaulted(p->conf->metrics, sf_engine_input_name(p->eng, i), n);
    }
}

/* ------------------------------------------------------------ the batch */

/* A chunk of the batch: messages [from, to), which became the engine's batch
 * rows [row, row + rows) (the events it refused went to the dead letters). */
typedef struct chunk {
    size_t from, to, row, rows;
    double started_s;   /* when its forward pass started (sf_clock_s) */
    double inferred_ms; /* wall clock when its probabilities were in */
} chunk;

/* --------------------------------------------------- parsing and rendering
 *
 * A chunk's messages are parsed, and its selected rows rendered, by task
 * units that the inference threads share (sf_engine_tasks_start): a helper
 * takes them when it has no rows of the forward pass left, so it does not
 * idle while this thread parses and renders (with int8's fast forward pass
 * that was most of its time). What must stay in order and on this thread,
 * the offsets, the dead letters and the produce calls, happens after. */

#define PARSE_UNIT 16  /* messages a task unit parses */
#define RENDER_UNIT 32 /* rows a task unit renders */

/* A task unit's CPU, from task_cpu to task_mark: charged to stage s of
 * the pipeline thread, or of the inference threads when one of them ran it. */
static int64_t task_cpu(const pipeline *p) {
    return p->conf->stats ? sf_clock_thread_cpu_ns() : 0;
}

static void task_mark(pipeline *p, sf_stage s, int64_t started) {
    sf_pipeline_stats *st = p->conf->stats;
    if (!st)
        return;
    if (pthread_equal(pthread_self(), p->self))
        sf_pipeline_stage_mark(p, s);
    else
        atomic_fetch_add_explicit(&st->helper_cpu_ns[s],
                                  (uint64_t)(sf_clock_thread_cpu_ns() - started),
                                  memory_order_relaxed);
}

/* Messages [from, to) of p->parse_from's chunk into the engine's slots. */
static void parse_unit(pipeline *p, size_t from, size_t to) {
    int64_t started = task_cpu(p);
    for (size_t i = from; i < to; i++) {
        const rd_kafka_message_t *m = p->msgs[i];
        size_t j = i - p->parse_from;
        char *why = p->why + j * WHY_MAX;
        if (m->len > p->conf->max_event_bytes) {
            p->verdict[j] = SF_REJECT_TOO_LARGE;
            snprintf(why, WHY_MAX, "message of %zu bytes exceeds the limit of %zu bytes", m->len,
                     p->conf->max_event_bytes);
        } else {
            p->verdict[j] = sf_engine_assemble_slot(p->eng, j, m->payload ? m->payload : "",
                                                    m->len, why, WHY_MAX);
        }
    }
    task_mark(p, SF_STAGE_PARSE, started);
}

/* Rows [from, to) of p->render_row's chunk as output messages. */
static void render_unit(pipeline *p, size_t from, size_t to) {
    const sf_engine *e = p->eng;
    int64_t started = task_cpu(p);
    for (size_t r = from; r < to; r++) {
        size_t j = r - p->render_row;
        if (!sf_engine_selected(e, r)) {
            p->out_len[j] = 0;
            continue;
        }
        const rd_kafka_message_t *m = p->msgs[p->row_msg[r]];
        p->out_len[j] = sf_engine_output(e, r, p->conf->emit_members, m->partition, m->offset,
                                         p->out + j * OUTPUT_MAX, OUTPUT_MAX);
    }
    task_mark(p, SF_STAGE_PUBLISH, started);
}

static size_t units(size_t n, size_t per) { return (n + per - 1) / per; }

/* sf_infer_task: the parse units first, then the render units. */
static void chunk_task(void *arg, size_t u) {
    pipeline *p = arg;
    size_t parse = units(p->parse_n, PARSE_UNIT);
    if (u < parse) {
        size_t from = p->parse_from + u * PARSE_UNIT, end = p->parse_from + p->parse_n;
        parse_unit(p, from, from + PARSE_UNIT < end ? from + PARSE_UNIT : end);
    } else {
        size_t from = p->render_row + (u - parse) * RENDER_UNIT, end = p->render_row + p->render_n;
        render_unit(p, from, from + RENDER_UNIT < end ? from + RENDER_UNIT : end);
    }
}

/* Parses chunk `parse` and renders chunk `render` (either may be NULL) on
 * this thread and whichever inference threads are free, and returns when
 * both are done. */
static void run_tasks(pipeline *p, const chunk *parse, const chunk *render) {
    p->parse_from = parse ? parse->from : 0;
    p->parse_n = parse ? parse->to - parse->from : 0;
    p->render_row = render ? render->row : 0;
    p->render_n = render ? render->rows : 0;
    sf_engine_tasks_start(p->eng, chunk_task, p,
                          units(p->parse_n, PARSE_UNIT) + units(p->render_n, RENDER_UNIT));
    sf_engine_tasks_finish(p->eng);
}

/* After run_tasks parsed it: notes the chunk's offsets, sends its refused
 * events to the dead letters and appends the others to the batch as rows,
 * in order; hands their raw rows to the monitor and normalizes them. */
static void parse_close(pipeline *p, sf_delivery_batch *f, chunk *k) {
    sf_engine *e = p->eng;
    unsigned char keep[CHUNK_ROWS];
    k->row = sf_engine_rows(e);
    k->rows = 0;
    for (size_t i = k->from; i < k->to; i++) {
        const rd_kafka_message_t *m = p->msgs[i];
        size_t j = i - k->from;
        if (sf_delivery_note(f, rd_kafka_topic_name(m->rkt), m->partition, m->offset))
            sf_pipeline_fail(p, "out of memory");
        keep[j] = p->verdict[j] == SF_REJECT_NONE;
        if (keep[j])
            p->row_msg[k->row + k->rows++] = i;
        else
            sf_pipeline_dead_letter(p, m, p->verdict[j], p->why + j * WHY_MAX, f);
    }
    sf_engine_append_slots(e, keep, k->to - k->from);
    sf_pipeline_stage_mark(p, SF_STAGE_PARSE);
    sf_pipeline_monitor_rows(p, k->row, k->rows);
    sf_engine_normalize_range(e, k->row, k->rows);
    sf_pipeline_stage_mark(p, SF_STAGE_NORMALIZE);
}

/* Hands the chunk's rows to the forward pass on the inference threads (the
 * batch's pass, which grows a chunk at a time). */
static void infer_start(pipeline *p, chunk *k) {
    k->started_s = sf_clock_s();
    sf_engine_infer_start(p->eng, k->row, k->rows);
    sf_pipeline_stage_mark(p, SF_STAGE_INFERENCE);
}

/* Waits for the chunk's probabilities (this thread takes rows of the pass
 * meanwhile), then hands them to the monitor. The inference histogram gets
 * the wall time from the chunk's start to here. */
static void infer_wait(pipeline *p, chunk *k) {
    const sf_pipeline_conf *c = p->conf;
    sf_engine_infer_wait(p->eng, k->row, k->rows);
    double t1 = sf_clock_s();
    sf_pipeline_stage_mark(p, SF_STAGE_INFERENCE);
    sf_pipeline_monitor_scores(p, k->row, k->rows);
    k->inferred_ms = c->stats && c->stats->on_ack_parts ? sf_clock_wall_ms() : 0;
    if (c->metrics) {
        sf_metrics_add(c->metrics, SF_C_PREDICTED, k->rows);
        if (k->rows)
            sf_metrics_observe(c->metrics, SF_H_INFERENCE, t1 - k->started_s);
    }
}

/* Produces the chunk's outputs, as run_tasks rendered them. */
static void publish_chunk(pipeline *p, sf_delivery_batch *f, const chunk *k, double closed_ms) {
    const sf_pipeline_conf *c = p->conf;
    int parts = c->stats && c->stats->on_ack_parts;
    for (size_t r = k->row; r < k->row + k->rows && !p->fatal; r++) {
        int len = p->out_len[r - k->row];
        if (len == 0)
            continue;
        const rd_kafka_message_t *m = p->msgs[p->row_msg[r]];
        if (len < 0) { /* only an absurdly long label list gets here */
            sf_pipeline_dead_letter(p, m, SF_REJECT_TOO_LARGE,
                                    "prediction does not fit in an output message", f);
            continue;
        }
        rd_kafka_timestamp_type_t tstype;
        int64_t ts = rd_kafka_message_timestamp(m, &tstype);
        sf_out_ref *ref = sf_pipeline_out_ref(p, f, ts);
        if (ref && parts) {
            ref->taken_ms = p->taken_ms[p->row_msg[r]];
            ref->closed_ms = closed_ms;
            ref->inferred_ms = k->inferred_ms;
            ref->produced_ms = sf_clock_wall_ms();
        }
        sf_pipeline_produce_output(p, c->output_topic, m, sf_engine_id(p->eng, r),
                                   p->out + (r - k->row) * OUTPUT_MAX, (size_t)len,
                                   p->model_header, 0, ts, ref);
    }
    sf_pipeline_shadow_publish(p, f, k->row, k->rows);
    sf_pipeline_stage_mark(p, SF_STAGE_PUBLISH);
}

static size_t chunk_end(size_t from, size_t n) {
    return n - from < CHUNK_ROWS ? n : from + CHUNK_ROWS;
}

/* Scores and publishes the batch's n messages, a chunk at a time, as rows of
 * one engine batch, whose forward pass grows a chunk at a time. While chunk
 * k's rows are in the pass, this thread renders chunk k-1's outputs and
 * parses chunk k+1 (rows of the same batch that the pass does not touch),
 * sharing both with any inference thread that has no rows left; adds k+1's
 * rows to the pass; produces k-1's outputs; and waits for k's, taking rows
 * of the pass meanwhile. So neither the inference threads nor this one idle
 * while the other works, except at the batch's ends. The pass is finished
 * before this returns, so nothing is in flight across batches, reloads or
 * the drain. */
static void score_batch(pipeline *p, sf_delivery_batch *f, size_t n, double closed_ms) {
    sf_engine_clear(p->eng);
    chunk cur = {.from = 0, .to = chunk_end(0, n)}, prev = {0};
    run_tasks(p, &cur, NULL);
    parse_close(p, f, &cur);
    infer_start(p, &cur);
    for (;;) {
        int more = cur.to < n && !p->fatal;
        chunk next = {.from = cur.to, .to = more ? chunk_end(cur.to, n) : cur.to};
        if (cur.from > 0) {
            rd_kafka_poll(p->producer, 0); /* delivery reports between chunks */
            sf_pipeline_stage_mark(p, SF_STAGE_PUBLISH);
        }
        run_tasks(p, more ? &next : NULL, cur.from > 0 ? &prev : NULL);
        if (more) {
            parse_close(p, f, &next);
            infer_start(p, &next);
        }
        if (cur.from > 0)
            publish_chunk(p, f, &prev, closed_ms);
        infer_wait(p, &cur);
        prev = cur;
        if (!more)
            break;
        cur = next;
    }
    run_tasks(p, NULL, &prev);
    publish_chunk(p, f, &prev, closed_ms);
}

/* Closes the batch: assemble, normalize, infer, publish, a chunk at a time
 * (score_batch).
 *
 * A batch is one unit of bookkeeping (its offsets are stored, or its
 * transaction committed, once all of its outputs are acknowledged), but it
 * is scored and published CHUNK_ROWS events at a time, with the delivery
 * reports served in between. A whole fetch usually arrives at once; scored
 * whole, its first event would wait for its last one's forward pass, and
 * every acknowledgement for the next batch's. The forward pass costs the
 * same per row at 128 rows as at 512, and flat out 128 kept the throughput
 * where 64 lost a few percent (bench/README.md). */
static int process_batch(pipeline *p) {
    const sf_pipeline_conf *c = p->conf;
    size_t n = p->n_msgs;
    if (n == 0)
        return 0;
    sf_pipeline_stage_mark(p, SF_STAGE_OTHER);
    int parts = c->stats && c->stats->on_ack_parts;
    double closed_ms = parts ? sf_clock_wall_ms() : 0;
    if (c->exactly_once) {
        rd_kafka_error_t *err = rd_kafka_begin_transaction(p->producer);
        if (err) {
            sf_pipeline_fail(p, "cannot begin transaction: %s", rd_kafka_error_string(err));
            rd_kafka_error_destroy(err);
            return -1;
        }
    }
    /* An event's output or dead letter, and its shadow output. */
    sf_delivery_batch *f = sf_delivery_open(p->dlv, c->shadow_topic ? 2 * n : n);
    if (!f) {
        sf_pipeline_fail(p, "out of memory");
        return -1;
    }
    if (!p->fatal)
        score_batch(p, f, n, closed_ms);
    count_defaulted(p);
    if (c->metrics) {
        sf_metrics_add(c->metrics, SF_C_CONSUMED, n);
        sf_metrics_add(c->metrics, SF_C_BATCHES, 1);
        sf_metrics_observe(c->metrics, SF_H_BATCH_SIZE, (double)n);
    }

    for (size_t i = 0; i < n; i++)
        rd_kafka_message_destroy(p->msgs[i]);
    p->n_msgs = 0;
    sf_pipeline_stage_mark(p, SF_STAGE_CONSUME);
    if (c->stats) {
        atomic_fetch_add_explicit(&c->stats->events, n, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->stats->batches, 1, memory_order_relaxed);
    }
    sf_delivery_close(f);
    if (c->exactly_once)
        return sf_pipeline_transaction_commit(p, f);
    sf_delivery_advance(p->dlv);
    return p->fatal ? -1 : 0;
}

/* Finishes the batch in flight and waits until every output is acknowledged
 * and every completed offset stored. 0 when nothing is left in flight. */
static int drain(pipeline *p) {
    process_batch(p);
    int64_t deadline = sf_clock_ms() + DRAIN_TIMEOUT_MS;
    while ((sf_delivery_pending(p->dlv) || sf_delivery_has_redo(p->dlv)) && !p->fatal &&
           sf_clock_ms() < deadline) {
        sf_pipeline_send_redos(p);
        rd_kafka_flush(p->producer, 100);
        rd_kafka_poll(p->producer, 0);
        sf_delivery_advance(p->dlv);
    }
    size_t left = sf_delivery_pending(p->dlv);
    if (left) {
        sf_log(p->log, SF_LOG_ERROR,
               "batches still unacknowledged, their offsets are not committed batches=%zu", left);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ callbacks */

static void log_partitions(pipeline *p, const char *what, const rd_kafka_topic_partition_list_t *l) {
    char buf[1024];
    sf_kafka_partitions_format(buf, sizeof buf, l);
    sf_log(p->log, SF_LOG_INFO, "%s partitions count=%d partitions=\"%s\"", what, l->cnt, buf);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
    pipeline *p = opaque;
    int cooperative = !strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE");
    rd_kafka_error_t *e = NULL;
    rd_kafka_resp_err_t aerr = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        log_partitions(p, "assigned", parts);
        if (cooperative)
            e = rd_kafka_incremental_assign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, parts);
    } else {
        int lost = rd_kafka_assignment_lost(rk);
        log_partitions(p, lost ? "revoked (assignment lost)" : "revoked", parts);
        /* Everything read from these partitions is published and committed
         * before they go, so their next owner starts where we stopped. A lost
         * assignment already has another owner: publish what is in flight,
         * but commit nothing (the broker would refuse it, or worse, accept an
         * offset the new owner has passed). */
        if (drain(p) == 0 && !p->conf->exactly_once && !lost) {
            rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, NULL, 0);
            if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
                sf_log(p->log, SF_LOG_WARN, "commit on revoke failed error=\"%s\"", rd_kafka_err2str(cerr));
        }
        if (cooperative)
            e = rd_kafka_incremental_unassign(rk, parts);
        else
            aerr = rd_kafka_assign(rk, NULL);
    }
    int ok = !e && !aerr;
    if (e) {
        sf_log(p->log, SF_LOG_ERROR, "incremental assignment failed operation=%s error=\"%s\"",
               err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assign" : "unassign",
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    if (aerr)
        sf_log(p->log, SF_LOG_ERROR, "assignment failed operation=%s error=\"%s\"",
               err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assign" : "unassign",
               rd_kafka_err2str(aerr));
    /* Counted here rather than asked of rd_kafka_assignment(), which waits
     * on the group's thread and, called while the consumer closes, was seen
     * never to return (a demo hung at exit). */
    if (ok && err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
        p->assigned = (cooperative ? p->assigned : 0) + parts->cnt;
    else if (ok)
        p->assigned = cooperative && p->assigned > parts->cnt ? p->assigned - parts->cnt : 0;
    if (p->conf->metrics)
        sf_metrics_set(p->conf->metrics, SF_G_ASSIGNED_PARTITIONS, p->assigned);
    if (p->health)
        sf_health_set_assigned(p->health, p->assigned > 0);
}

/* Consumer lag: the sum of consumer_lag over the partitions we fetch. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
    (void)rk;
    pipeline *p = opaque;
    double lag = sf_kafka_stats_consumer_lag(json, len);
    if (lag >= 0 && p->conf->metrics)
        sf_metrics_set(p->conf->metrics, SF_G_CONSUMER_LAG, lag);
    return 0;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    pipeline *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char buf[512];
        rd_kafka_fatal_error(rk, buf, sizeof buf);
        sf_pipeline_fail(p, "kafka fatal error: %s", buf);
        return;
    }
    /* librdkafka logs the same event through on_kafka_log; repeat it only for
     * debugging. */
    sf_log(p->log, SF_LOG_DEBUG, "kafka error name=%s error=\"%s\"",
           rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* librdkafka's own log lines, in sigflow's format and under its --log-level. */
static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    const pipeline *p = rd_kafka_opaque(rk);
    sf_log(p->log, sf_kafka_log_level(level), "librdkafka client=%s facility=%s text=\"%s\"",
           rd_kafka_name(rk), fac, buf);
}

/* ------------------------------------------------------------ setup */

/* The daemon's clients: kafka.c's defaults and the user's properties, then
 * the pipeline's callbacks (served on the pipeline thread). */
static rd_kafka_t *make_client(pipeline *p, rd_kafka_type_t type, char *errstr, size_t n) {
    const sf_pipeline_conf *c = p->conf;
    sf_kafka_opts o = {.brokers = c->brokers, .props = c->kafka_props, .n_props = c->n_kafka_props,
                       .group = c->group, .exactly_once = c->exactly_once,
                       .transactional_id = c->transactional_id,
                       .max_message_bytes = c->max_event_bytes, .statistics = c->metrics != NULL};
    rd_kafka_conf_t *conf = type == RD_KAFKA_PRODUCER ? sf_kafka_producer_conf(&o, errstr, n)
                                                      : sf_kafka_consumer_conf(&o, errstr, n);
    if (!conf)
        return NULL;
    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set_dr_msg_cb(conf, sf_pipeline_on_delivery);
    } else {
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        if (c->metrics)
            rd_kafka_conf_set_stats_cb(conf, on_stats);
    }
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    rd_kafka_conf_set_opaque(conf, p);
    return sf_kafka_new(type, conf, errstr, n);
}

/* The input topics as configured: the list, or the one topic. */
static const char *const *input_topics(const sf_pipeline_conf *c, size_t *n) {
    *n = c->n_input_topics ? c->n_input_topics : 1;
    return c->n_input_topics ? c->input_topics : &c->input_topic;
}

/* Every topic name is legal before any client exists (patterns are
 * librdkafka's to judge when subscribing). */
static int check_topic_names(const sf_pipeline_conf *c, char *errstr, size_t n) {
    size_t n_in;
    const char *const *in = input_topics(c, &n_in);
    char why[512];
    for (size_t i = 0; i < n_in; i++) {
        if (!sf_topic_is_pattern(in[i]) && sf_topic_check(in[i], why, sizeof why)) {
            snprintf(errstr, n, "input topic: %s", why);
            return -1;
        }
    }
    if (sf_topic_check(c->output_topic, why, sizeof why)) {
        snprintf(errstr, n, "output topic: %s", why);
        return -1;
    }
    if (c->dlq_topic && sf_topic_check(c->dlq_topic, why, sizeof why)) {
        snprintf(errstr, n, "dead-letter topic: %s", why);
        return -1;
    }
    if (c->shadow_topic && sf_topic_check(c->shadow_topic, why, sizeof why)) {
        snprintf(errstr, n, "shadow topic: %s", why);
        return -1;
    }
    if (c->shadow_topic && !c->shadow.model_path) {
        snprintf(errstr, n, "shadow topic: '%s' needs a shadow model", c->shadow_topic);
        return -1;
    }
    if (c->shadow_topic && (!strcmp(c->shadow_topic, c->output_topic) ||
                            (c->dlq_topic && !strcmp(c->shadow_topic, c->dlq_topic)))) {
        snprintf(errstr, n, "shadow topic: '%s' is the %s topic; the shadow's outputs need "
                 "their own", c->shadow_topic,
                 !strcmp(c->shadow_topic, c->output_topic) ? "output" : "dead-letter");
        return -1;
    }
    return 0;
}

/* Fails fast when the brokers cannot be reached at start-up, or an output
 * topic is missing: without it every output would wait forever. An input
 * topic may come later. 1 when stopped meanwhile. */
static int check_brokers(pipeline *p, char *errstr, size_t n) {
    const sf_pipeline_conf *c = p->conf;
    size_t n_in;
    const char *const *in = input_topics(c, &n_in);
    for (size_t i = 0; i < n_in; i++) {
        int exists = 1;
        int rc = sf_kafka_check_brokers(p->producer, c->brokers, in[i], c->connect_timeout_ms,
                                        c->stop, &exists, errstr, n);
        if (rc)
            return rc;
        if (!exists && !sf_topic_is_pattern(in[i]))
            sf_log(p->log, SF_LOG_WARN, "input topic does not exist (yet), waiting for it topic=%s",
                   in[i]);
    }
    const char *outs[3] = {c->output_topic};
    size_t n_outs = 1;
    if (c->dlq_topic)
        outs[n_outs++] = c->dlq_topic;
    if (c->shadow_topic)
        outs[n_outs++] = c->shadow_topic;
    sf_topic_spec spec = {-1, -1}; /* the brokers' defaults */
    size_t created = 0;
    char why[512];
    if (sf_topics_ensure(p->producer, outs, n_outs, c->create_topics ? &spec : NULL,
                         c->connect_timeout_ms, &created, why, sizeof why)) {
        snprintf(errstr, n, "%s%s", why,
                 c->create_topics ? "" : " (create it, or run with --create-topics)");
        return -1;
    }
    if (created)
        sf_log(p->log, SF_LOG_INFO, "created missing topics count=%zu output_topic=%s dlq_topic=%s "
               "shadow_topic=%s", created, c->output_topic, c->dlq_topic ? c->dlq_topic : "none",
               c->shadow_topic ? c->shadow_topic : "none");
    return 0;
}

static void report(pipeline *p, int64_t now) {
    const sf_pipeline_conf *c = p->conf;
    if (!c->metrics)
        return;
    uint64_t consumed = sf_metrics_get(c->metrics, SF_C_CONSUMED);
    uint64_t predicted = sf_metrics_get(c->metrics, SF_C_PREDICTED);
    double secs = (double)(now - p->report_ms) / 1000.0;
    uint64_t rejected = sf_metrics_rejected_total(c->metrics);
    sf_log(p->log, SF_LOG_INFO,
           "throughput consumed_per_s=%.0f predicted_per_s=%.0f consumed=%" PRIu64 " predicted=%" PRIu64
           " signals=%" PRIu64 " dead_letters=%" PRIu64 " rejected=%" PRIu64 " rejects_not_logged=%" PRIu64,
           (double)(consumed - p->report_consumed) / secs, (double)(predicted - p->report_predicted) / secs,
           consumed, predicted, sf_metrics_get(c->metrics, SF_C_SIGNALS),
           sf_metrics_get(c->metrics, SF_C_DEAD_LETTERS), rejected, (uint64_t)p->rejects_suppressed);
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
        if (p->conf->metrics) { /* counted before the log line that tests wait for */
            sf_metrics_add(p->conf->metrics, SF_C_RELOAD_FAILURES, 1);
            sf_metrics_model_refused(p->conf->metrics, sf_model_refusal_of(err));
        }
        sf_log(p->log, SF_LOG_ERROR, "reload failed, still serving the previous model error=\"%s\"", err);
        return;
    }
    process_batch(p); /* events read under the old model are scored by it */
    sf_engine_free(p->eng);
    /* For a moment two engines lived side by side; give the old one's pages
     * back, or every reload would leave the daemon's RSS at that peak. */
    malloc_trim(0);
    p->eng = fresh;
    engine_announce(p);
    if (p->conf->metrics)
        sf_metrics_add(p->conf->metrics, SF_C_RELOADS, 1);
    const sf_model *m = sf_engine_model(p->eng);
    const sf_modelset *set = sf_engine_set(p->eng);
    if (set)
        sf_log(p->log, SF_LOG_INFO, "reloaded model=\"%s\" set=\"%s\" sha256=\"%.12s\" members=%zu",
               p->conf->engine.model_path, set->name, set->sha256, set->n_members);
    else
        sf_log(p->log, SF_LOG_INFO, "reloaded model=\"%s\" sha256=\"%.12s\" parameters=%zu",
               p->conf->engine.model_path, m->sha256, m->n_params);
}

/* ------------------------------------------------------------ main loop */

static void add_messages(pipeline *p, rd_kafka_message_t **ms, size_t n) {
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = ms[i];
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sf_log(p->log, SF_LOG_WARN, "consumer error=\"%s\"", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        if (p->n_msgs == 0)
            p->first_ms = sf_clock_ms();
        if (p->conf->stats && p->conf->stats->on_ack_parts)
            p->taken_ms[p->n_msgs] = sf_clock_wall_ms();
        p->msgs[p->n_msgs++] = m;
    }
}

static void loop(pipeline *p) {
    const sf_pipeline_conf *c = p->conf;
    const size_t batch_size = c->engine.batch_size;
    rd_kafka_message_t **got = malloc(batch_size * sizeof *got);
    if (!got) {
        sf_pipeline_fail(p, "out of memory");
        return;
    }
    p->report_ms = sf_clock_ms();
    p->cpu_mark_ns = sf_clock_thread_cpu_ns();
    while (!atomic_load(c->stop) && !p->fatal) {
        int64_t now = sf_clock_ms();
        if (p->health)
            sf_health_beat(p->health);
        int due = now - p->report_ms >= REPORT_INTERVAL_MS;
        if (due)
            report(p, now);
        sf_pipeline_monitor_tick(p, now, due);
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
        if (sf_delivery_pending(p->dlv) && timeout > 1)
            timeout = 1;
        size_t room = batch_size - p->n_msgs;
        ssize_t got_n;
        sf_pipeline_stage_mark(p, SF_STAGE_OTHER);
        if (p->n_msgs == 0) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(p->consumer, timeout);
            got[0] = m;
            got_n = m ? 1 : 0;
            /* and whatever arrived with it: with --batch-wait-ms 0 (the
             * default) that is the whole batch. Waiting for more would buy
             * nothing: the forward pass costs the same per row in small
             * batches, and under load the queue fills while a batch is
             * scored, so batches grow with the rate by themselves. */
            if (m && room > 1) {
                ssize_t more = rd_kafka_consume_batch_queue(p->queue, 0, got + 1, room - 1);
                got_n += more > 0 ? more : 0;
            }
        } else {
            got_n = rd_kafka_consume_batch_queue(p->queue, timeout, got, room);
        }
        if (got_n > 0)
            add_messages(p, got, (size_t)got_n);
        sf_pipeline_stage_mark(p, SF_STAGE_CONSUME);
        if (p->n_msgs > 0 &&
            (p->n_msgs == batch_size || sf_clock_ms() - p->first_ms >= c->batch_wait_ms))
            process_batch(p);
        sf_pipeline_send_redos(p);
        rd_kafka_poll(p->producer, 0);
        sf_delivery_advance(p->dlv);
        sf_pipeline_stage_mark(p, SF_STAGE_PUBLISH);
    }
    free(got);
}

static void log_startup(const pipeline *p) {
    const sf_pipeline_conf *c = p->conf;
    char model[1024], inputs[1024] = "";
    sf_engine_describe(p->eng, model, sizeof model);
    size_t n_in, len = 0;
    const char *const *in = input_topics(c, &n_in);
    for (size_t i = 0; i < n_in && len < sizeof inputs; i++) {
        int w = snprintf(inputs + len, sizeof inputs - len, "%s%s", i ? "," : "", in[i]);
        len = w < 0 ? sizeof inputs : len + (size_t)w;
    }
    sf_log(p->log, SF_LOG_INFO,
           "started %s brokers=%s input_topic=%s output_topic=%s dlq_topic=%s group=%s "
           "batch_size=%zu batch_wait_ms=%d delivery=%s", model, c->brokers, inputs, c->output_topic,
           c->dlq_topic ? c->dlq_topic : "none", c->group, c->engine.batch_size,
           c->batch_wait_ms, c->exactly_once ? "exactly-once" : "at-least-once");
}

int sf_pipeline_run(const sf_pipeline_conf *c, char *errstr, size_t n) {
    pipeline p;
    memset(&p, 0, sizeof p);
    p.conf = c;
    p.log = (sf_logger){c->log_level, c->log_format};
    sf_http *http = NULL;
    sf_health health;
    int rc = -1;

    p.eng = c->loaded;
    if (check_topic_names(c, errstr, n)) {
        sf_engine_free(p.eng);
        return -2;
    }
    if (c->engine.batch_size == 0 || c->batch_wait_ms < 0) {
        snprintf(errstr, n, "batch size must be positive and batch wait non-negative");
        sf_engine_free(p.eng);
        return -1;
    }
    if (!p.eng && sf_engine_load(&p.eng, &c->engine, errstr, n)) {
        if (!atomic_load(c->stop)) /* else the load was cut short by the stop */
            return -2;
        sf_log(p.log, SF_LOG_INFO, "stopped while starting");
        return 0;
    }
    p.msgs = calloc(c->engine.batch_size, sizeof *p.msgs);
    p.row_msg = calloc(c->engine.batch_size, sizeof *p.row_msg);
    p.taken_ms = calloc(c->engine.batch_size, sizeof *p.taken_ms);
    p.self = pthread_self();
    p.verdict = calloc(CHUNK_ROWS, sizeof *p.verdict);
    p.why = malloc(CHUNK_ROWS * WHY_MAX);
    p.out = malloc(CHUNK_ROWS * OUTPUT_MAX);
    p.out_len = calloc(CHUNK_ROWS, sizeof *p.out_len);
    p.dlv = sf_delivery_new(c->exactly_once ? NULL : sf_pipeline_store_offsets, &p);
    if (!p.msgs || !p.row_msg || !p.taken_ms || !p.verdict || !p.why || !p.out || !p.out_len ||
        !p.dlv) {
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
        sf_log(p.log, SF_LOG_INFO, "metrics on /metrics /healthz /readyz addr=%s port=%d", c->metrics_addr,
               sf_http_port(http));
    }
    engine_announce(&p);

    /* A stop during the model load or the broker check is a clean exit. */
    int checked = -1;
    if (atomic_load(c->stop) || ((p.producer = make_client(&p, RD_KAFKA_PRODUCER, errstr, n)) &&
                                 (checked = check_brokers(&p, errstr, n)) == 1)) {
        sf_log(p.log, SF_LOG_INFO, "stopped while starting");
        rc = 0;
        goto out;
    }
    if (checked)
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
    if (!(p.consumer = make_client(&p, RD_KAFKA_CONSUMER, errstr, n)))
        goto out;
    if (sf_pipeline_monitor_open(&p, errstr, n))
        goto out;
    rd_kafka_poll_set_consumer(p.consumer);
    p.queue = rd_kafka_queue_get_consumer(p.consumer);
    size_t n_in;
    const char *const *in = input_topics(c, &n_in);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new((int)n_in);
    for (size_t i = 0; i < n_in; i++)
        rd_kafka_topic_partition_list_add(topics, in[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t serr = rd_kafka_subscribe(p.consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (serr) {
        snprintf(errstr, n, "cannot subscribe to %s%s: %s", in[0], n_in > 1 ? ", ..." : "",
                 rd_kafka_err2str(serr));
        goto out;
    }
    log_startup(&p);

    loop(&p);

    /* Stop fetching, finish the batch in flight, flush, commit, leave the group. */
    if (!p.fatal) {
        sf_log(p.log, SF_LOG_INFO, "stopping, draining the batch in flight");
        if (drain(&p) == 0) {
            if (!c->exactly_once) {
                rd_kafka_resp_err_t cerr = rd_kafka_commit(p.consumer, NULL, 0);
                if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
                    sf_log(p.log, SF_LOG_WARN, "final commit failed error=\"%s\"", rd_kafka_err2str(cerr));
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
    sf_delivery_free(p.dlv);
    sf_http_stop(http);
    free(p.msgs);
    free(p.row_msg);
    free(p.taken_ms);
    free(p.verdict);
    free(p.why);
    free(p.out);
    free(p.out_len);
    sf_pipeline_monitor_stop(&p);
    sf_engine_free(p.eng);
    return rc;
}
