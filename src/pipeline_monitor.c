/* pipeline_monitor.c: the daemon's model-health monitoring (drift.h) wired
 * into its loop, kept apart from the loop itself (pipeline.c) so that the
 * loop only says when: a batch's raw rows, its scores, a tick.
 *
 * The monitor follows the engine: a reload starts a fresh window against the
 * new variables file's training block. For a model set, the inputs are
 * member 0's and there is no score PSI (the members' held-out distributions
 * are not the set's).
 *
 * The truth store (truth.h) outlives reloads while the models it scores keep
 * their number, so its counters stay monotonic; a reload to a set of another
 * size starts it afresh. Its consumer is assigned every partition of the
 * truth topic from the end, outside the daemon's group: every instance must
 * see the truth of the events it scored, whichever instance that was.
 *
 * A shadow model parses each scored event again with its own variables and
 * runs its forward pass on this thread (its cost is the shadow stage's); an
 * event it refuses is counted, and enters its live quality with the serving
 * model's score. Its outputs, with --shadow-topic, are pipeline_shadow.c's. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline_impl.h"
#include "sigflow/clock.h"
#include "sigflow/drift.h"
#include "sigflow/kafka.h"

#define TRUTH_POLL_MAX 10000 /* truth messages read per tick, at most */
#define TRUTH_BATCH 512      /* ...taken from the consumer's queue at a time */

#define PUBLISH_INTERVAL_MS 1000 /* /metrics is as fresh as a second */

/* Column of p(signal): the training block's label, else the selection's,
 * else the label called "s" or "signal"; -1 when there is none. */
static int score_column(const sf_engine *e) {
    const sf_vars *v = sf_engine_vars(e);
    int k = v->score_label ? sf_vars_label_index(v, v->score_label) : -1;
    if (k < 0)
        k = sf_engine_signal_index(e);
    if (k < 0)
        k = sf_vars_label_index(v, "s");
    if (k < 0)
        k = sf_vars_label_index(v, "signal");
    return k;
}

static void truth_start(pipeline *p) {
    const sf_pipeline_conf *c = p->conf;
    const sf_engine *e = p->eng;
    size_t members = sf_engine_set(e) ? sf_engine_n_members(e) : 0;
    size_t n = 1 + members + (p->shadow != NULL);
    if (!c->truth_topic || (p->truth && n > SF_TRUTH_MAX_MODELS))
        return;
    const char *names[SF_TRUTH_MAX_MODELS] = {"serving"};
    for (size_t k = 0; k < members && k + 1 < SF_TRUTH_MAX_MODELS; k++) {
        sf_engine_member_info mi;
        sf_engine_member(e, k, &mi);
        names[k + 1] = mi.name;
    }
    if (p->shadow)
        names[n - 1] = "shadow";
    n = n > SF_TRUTH_MAX_MODELS ? SF_TRUTH_MAX_MODELS : n;
    if (p->truth && p->truth_models == n)
        return;
    sf_truth_conf tc = c->truth;
    tc.threshold = c->engine.threshold;
    sf_truth_free(p->truth);
    p->truth = sf_truth_new(&tc, n, names);
    p->truth_models = n;
    if (!p->truth)
        sf_log(p->log, SF_LOG_WARN, "live quality off: cannot hold a truth store of %zu events",
               tc.window_events);
}

/* The sigflow-model header of the shadow's outputs, as the serving one's. */
static void shadow_digest(pipeline *p) {
    const sf_engine *sh = p->shadow;
    if (sf_engine_digest(sh, p->shadow_header, sizeof p->shadow_header) < 0)
        snprintf(p->shadow_header, sizeof p->shadow_header, "%s",
                 sf_engine_set(sh) ? sf_engine_set(sh)->sha256 : sf_engine_model(sh)->sha256);
}

/* SIGHUP reloads the shadow too; a refused one leaves the old one scoring. */
static void shadow_reload(pipeline *p) {
    char err[1024];
    sf_engine *fresh;
    if (sf_engine_reload(p->shadow, &fresh, err, sizeof err)) {
        sf_log(p->log, SF_LOG_ERROR, "shadow reload failed, still scoring the previous shadow "
               "error=\"%s\"", err);
        return;
    }
    sf_engine_free(p->shadow);
    p->shadow = fresh;
    p->shadow_agree = p->shadow_compared = 0;
    shadow_digest(p);
    sf_log(p->log, SF_LOG_INFO, "reloaded shadow model=\"%s\"", p->conf->shadow.model_path);
}

void sf_pipeline_monitor_start(pipeline *p) {
    if (p->shadow)
        shadow_reload(p);
    truth_start(p);
    sf_drift_free(p->drift);
    p->drift = NULL;
    const sf_pipeline_conf *c = p->conf;
    if (!sf_drift_enabled(&c->drift))
        return;
    const sf_engine *e = p->eng;
    const sf_vars *v = sf_engine_vars(e);
    p->drift = sf_drift_new(&c->drift, v, sf_engine_n_outputs(e), score_column(e),
                            sf_engine_set(e) ? NULL : &v->score);
    if (!p->drift) {
        sf_log(p->log, SF_LOG_WARN, "drift monitoring off: out of memory");
        return;
    }
    p->monitor_ms = 0; /* publish at the first tick */
}

void sf_pipeline_monitor_rows(pipeline *p, size_t from, size_t n) {
    if (p->drift && n)
        sf_drift_add_rows(p->drift, sf_engine_row(p->eng, from), n, sf_clock_ms());
    sf_pipeline_stage_mark(p, SF_STAGE_MONITOR);
}

/* The shadow's p(signal) and label for serving row j (the serving model's
 * when the shadow refused the event). */
static float shadow_p(const pipeline *p, size_t j, int sig, unsigned char *labelled) {
    size_t k = p->shadow_row[j];
    const float *probs = k == SIZE_MAX ? sf_engine_probs(p->eng, j) : sf_engine_probs(p->shadow, k);
    const sf_engine *e = k == SIZE_MAX ? p->eng : p->shadow;
    int s = k == SIZE_MAX ? sig : score_column(p->shadow);
    *labelled = s >= 0 && sf_engine_label_of(e, probs) == (size_t)s;
    return s >= 0 ? probs[s] : 0;
}

/* Scores the chunk's n events (batch rows from on) with the shadow and
 * compares: the labels (by name, as the two variables files may order them
 * differently) and p(signal). */
static void shadow_scores(pipeline *p, size_t from, size_t n) {
    sf_engine *sh = p->shadow, *e = p->eng;
    sf_engine_clear(sh);
    char why[512];
    for (size_t j = from; j < from + n; j++) {
        const rd_kafka_message_t *m = p->msgs[p->row_msg[j]];
        p->shadow_row[j] = sf_engine_add(sh, m->payload ? m->payload : "", m->len, why,
                                         sizeof why) == SF_REJECT_NONE
                               ? sf_engine_rows(sh) - 1 : SIZE_MAX;
        p->shadow_refused += p->shadow_row[j] == SIZE_MAX;
    }
    sf_engine_score(sh);
    const sf_vars *v = sf_engine_vars(e), *vs = sf_engine_vars(sh);
    int sig = score_column(e), ssig = score_column(sh);
    for (size_t j = from; j < from + n; j++) {
        size_t k = p->shadow_row[j];
        if (k == SIZE_MAX)
            continue;
        const float *a = sf_engine_probs(e, j), *b = sf_engine_probs(sh, k);
        p->shadow_agree += !strcmp(v->labels[sf_engine_label_of(e, a)],
                                   vs->labels[sf_engine_label_of(sh, b)]);
        p->shadow_compared++;
        if (p->conf->metrics && sig >= 0 && ssig >= 0)
            sf_metrics_observe(p->conf->metrics, SF_H_SHADOW_ABS_DP, fabs(a[sig] - b[ssig]));
    }
}

/* Each scored event with an id goes to the truth store: p(signal) and the
 * label of the serving model, of each member, and of the shadow. */
static void truth_scores(pipeline *p, size_t from, size_t n) {
    const sf_engine *e = p->eng;
    int sig = score_column(e);
    if (sig < 0)
        return;
    size_t models = p->truth_models;
    int64_t now = sf_clock_ms();
    for (size_t i = from; i < from + n; i++) {
        const sf_event_id *id = sf_engine_id(e, i);
        if (!id->key_len)
            continue;
        float ps[SF_TRUTH_MAX_MODELS];
        unsigned char labelled[SF_TRUTH_MAX_MODELS];
        size_t scored = models - (p->shadow != NULL);
        for (size_t k = 0; k < scored; k++) {
            const float *probs = k ? sf_engine_member_probs(e, k - 1, i) : sf_engine_probs(e, i);
            ps[k] = probs[sig];
            labelled[k] = sf_engine_label_of(e, probs) == (size_t)sig;
        }
        if (p->shadow)
            ps[models - 1] = shadow_p(p, i, sig, &labelled[models - 1]);
        sf_truth_predicted(p->truth, id->key, id->key_len, ps, labelled, now);
    }
}

void sf_pipeline_monitor_scores(pipeline *p, size_t from, size_t n) {
    if (p->drift && n)
        sf_drift_add_scores(p->drift, sf_engine_probs(p->eng, from), n);
    sf_pipeline_stage_mark(p, SF_STAGE_MONITOR);
    if (p->shadow && n) {
        shadow_scores(p, from, n);
        sf_pipeline_stage_mark(p, SF_STAGE_SHADOW);
    }
    if (p->truth && n) {
        truth_scores(p, from, n);
        sf_pipeline_stage_mark(p, SF_STAGE_TRUTH);
    }
}

static int shadow_open(pipeline *p, char *errstr, size_t n) {
    const sf_pipeline_conf *c = p->conf;
    char why[1024];
    if (sf_engine_load(&p->shadow, &c->shadow, why, sizeof why)) {
        snprintf(errstr, n, "shadow model: %s", why);
        return -1;
    }
    if (!(p->shadow_row = malloc(c->engine.batch_size * sizeof *p->shadow_row))) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    shadow_digest(p);
    char model[1024];
    sf_engine_describe(p->shadow, model, sizeof model);
    sf_log(p->log, SF_LOG_INFO, "shadow %s topic=%s", model,
           c->shadow_topic ? c->shadow_topic : "none");
    truth_start(p); /* the shadow gets its own live quality */
    return 0;
}

int sf_pipeline_monitor_open(pipeline *p, char *errstr, size_t n) {
    const sf_pipeline_conf *c = p->conf;
    if (c->shadow.model_path && shadow_open(p, errstr, n))
        return -1;
    if (!c->truth_topic)
        return 0;
    if (!(p->truth_vars = calloc(1, sizeof *p->truth_vars)) ||
        !(p->truth_id = sf_assembler_new(p->truth_vars, c->truth_id_field)) ||
        !(p->truth_label = sf_assembler_new(p->truth_vars, c->truth_field))) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    char group[512];
    snprintf(group, sizeof group, "%s.truth", c->group);
    sf_kafka_opts o = {.brokers = c->brokers, .props = c->kafka_props, .n_props = c->n_kafka_props,
                       .group = group};
    rd_kafka_conf_t *conf = sf_kafka_consumer_conf(&o, errstr, n);
    if (!conf || sf_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, n))
        return -1;
    if (!(p->truth_consumer = sf_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, n)))
        return -1;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->truth_consumer, c->truth_topic, NULL);
    rd_kafka_resp_err_t err = rkt ? rd_kafka_metadata(p->truth_consumer, 0, rkt, &md,
                                                      c->connect_timeout_ms)
                                  : rd_kafka_last_error();
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (err || md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt < 1) {
        snprintf(errstr, n, "truth topic %s: %s", c->truth_topic,
                 err ? rd_kafka_err2str(err)
                     : md->topic_cnt == 1 && md->topics[0].err
                           ? rd_kafka_err2str(md->topics[0].err) : "no partitions");
        if (md)
            rd_kafka_metadata_destroy(md);
        return -1;
    }
    /* From each partition's end as of now, asked for explicitly: OFFSET_END
     * would be resolved whenever the fetcher starts, and truth produced in
     * between would be skipped. */
    int parts = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts);
    for (int i = 0; i < parts && !err; i++) {
        int32_t part = md->topics[0].partitions[i].id;
        int64_t lo, hi;
        err = rd_kafka_query_watermark_offsets(p->truth_consumer, c->truth_topic, part, &lo, &hi,
                                               c->connect_timeout_ms);
        rd_kafka_topic_partition_list_add(l, c->truth_topic, part)->offset = hi;
    }
    rd_kafka_metadata_destroy(md);
    if (err) {
        rd_kafka_topic_partition_list_destroy(l);
        snprintf(errstr, n, "truth topic %s: cannot read its end: %s", c->truth_topic,
                 rd_kafka_err2str(err));
        return -1;
    }
    err = rd_kafka_assign(p->truth_consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (err || !(p->truth_queue = rd_kafka_queue_get_consumer(p->truth_consumer))) {
        snprintf(errstr, n, "truth topic %s: cannot assign: %s", c->truth_topic,
                 err ? rd_kafka_err2str(err) : "no consumer queue");
        return -1;
    }
    sf_log(p->log, SF_LOG_INFO, "truth topic=%s partitions=%d from=end field=%s id_field=%s "
           "window_events=%zu window_s=%g store_bytes=%zu", c->truth_topic, parts,
           c->truth_field, c->truth_id_field, c->truth.window_events, c->truth.window_s,
           p->truth ? sf_truth_bytes(p->truth) : 0);
    return 0;
}

/* A field's value as the events' parser found it: a string or a number. */
static int plain_value(const sf_event_id *f) {
    char c = f->json[0];
    return f->key_len && (c == '"' || c == '-' || (c >= '0' && c <= '9'));
}

/* The truth message's id as the prediction's key (the events' parser's: a
 * string unquoted, a number as its text, as the prediction's own id was
 * read) and whether it says signal; -1 when it cannot say. Two runs of the
 * events' single-pass scanner over a message of some 30 bytes cost a
 * fraction of the jansson tree they replace (bench/README.md). */
static int read_truth(pipeline *p, const rd_kafka_message_t *m, char *id, size_t id_size,
                      size_t *id_len) {
    const char *json = m->payload ? m->payload : "";
    sf_event_id tid, lab;
    float no_inputs[1];
    int sig = score_column(p->eng);
    if (sig < 0 ||
        sf_assembler_run(p->truth_id, json, m->len, no_inputs, &tid, NULL, 0) ||
        sf_assembler_run(p->truth_label, json, m->len, no_inputs, &lab, NULL, 0) ||
        !plain_value(&tid) || !plain_value(&lab) || tid.key_len >= id_size)
        return -1;
    const sf_vars *v = sf_engine_vars(p->eng);
    int k = -1;
    if (lab.json[0] == '"') {
        k = sf_vars_label_index(v, lab.key);
    } else { /* a label's index */
        char *end;
        long x = strtol(lab.key, &end, 10);
        if (end != lab.key && !*end && x >= 0 && (size_t)x < v->n_labels)
            k = (int)x;
    }
    if (k < 0)
        return -1;
    memcpy(id, tid.key, tid.key_len + 1);
    *id_len = tid.key_len;
    return k == sig;
}

/* The truth that has arrived, a queue's batch at a time: a poll per message
 * cost more than the join itself. */
static void truth_poll(pipeline *p, int64_t now) {
    rd_kafka_message_t *ms[TRUTH_BATCH];
    for (size_t read = 0; read < TRUTH_POLL_MAX;) {
        ssize_t got = rd_kafka_consume_batch_queue(p->truth_queue, 0, ms, TRUTH_BATCH);
        if (got <= 0)
            break;
        read += (size_t)got;
        for (ssize_t i = 0; i < got; i++) {
            rd_kafka_message_t *m = ms[i];
            char id[SF_ID_MAX];
            size_t len = 0;
            int verdict = -1;
            if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sf_log(p->log, SF_LOG_WARN, "truth consumer error=\"%s\"",
                       rd_kafka_message_errstr(m));
            else if (!m->err && p->truth &&
                     (verdict = read_truth(p, m, id, sizeof id, &len)) < 0)
                sf_truth_malformed(p->truth);
            else if (!m->err && p->truth)
                sf_truth_observed(p->truth, id, len, verdict, now);
            rd_kafka_message_destroy(m);
        }
    }
    if (p->truth)
        sf_truth_expire(p->truth, now);
}

static int shadow_publish(const pipeline *p) {
    sf_metrics *m = p->conf->metrics;
    double agreement = p->shadow_compared ? (double)p->shadow_agree / (double)p->shadow_compared
                                          : NAN;
    double refused = (double)p->shadow_refused, published = (double)p->shadow_published;
    return sf_metrics_set_gauges(m, "sigflow_shadow_agreement", "Share of the events scored by "
                                 "both whose shadow label equals the serving label, since the "
                                 "shadow was (re)loaded.", NULL, 1, NULL, &agreement) |
           sf_metrics_set_counters(m, "sigflow_shadow_refused_total", "Events the serving model "
                                   "scored and the shadow refused (its variables).", NULL, 1,
                                   NULL, &refused) |
           sf_metrics_set_counters(m, "sigflow_shadow_published_total", "Shadow outputs "
                                   "acknowledged on --shadow-topic.", NULL, 1, NULL, &published);
}

void sf_pipeline_monitor_tick(pipeline *p, int64_t now, int report) {
    if (!p->drift && !p->truth_consumer && !p->shadow)
        return;
    sf_pipeline_stage_mark(p, SF_STAGE_OTHER);
    if (p->truth_consumer) {
        truth_poll(p, now);
        sf_pipeline_stage_mark(p, SF_STAGE_TRUTH);
    }
    if (p->conf->metrics && now - p->monitor_ms >= PUBLISH_INTERVAL_MS) {
        p->monitor_ms = now;
        if ((p->drift && sf_drift_publish(p->drift, p->conf->metrics, now)) ||
            (p->truth && sf_truth_publish(p->truth, p->conf->metrics)) ||
            (p->shadow && shadow_publish(p)))
            sf_log(p->log, SF_LOG_WARN, "model-health figures not exported: out of memory or "
                   "too many series");
    }
    char fields[1024];
    if (report && p->drift && sf_drift_summary(p->drift, now, fields, sizeof fields))
        sf_log(p->log, SF_LOG_WARN, "drift %s", fields);
    sf_pipeline_stage_mark(p, SF_STAGE_MONITOR);
}

void sf_pipeline_monitor_stop(pipeline *p) {
    sf_drift_free(p->drift);
    p->drift = NULL;
    if (p->truth_queue) {
        rd_kafka_queue_destroy(p->truth_queue);
        p->truth_queue = NULL;
    }
    if (p->truth_consumer) {
        rd_kafka_consumer_close(p->truth_consumer);
        rd_kafka_destroy(p->truth_consumer);
        p->truth_consumer = NULL;
    }
    sf_truth_free(p->truth);
    p->truth = NULL;
    sf_assembler_free(p->truth_id);
    sf_assembler_free(p->truth_label);
    free(p->truth_vars);
    p->truth_id = p->truth_label = NULL;
    p->truth_vars = NULL;
    sf_engine_free(p->shadow);
    p->shadow = NULL;
    free(p->shadow_row);
    p->shadow_row = NULL;
}
