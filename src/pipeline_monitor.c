/* pipeline_monitor.c: the daemon's model-health monitoring (drift.h) wired
 * into its loop, kept apart from the loop itself (pipeline.c) so that the
 * loop only says when: a batch's raw rows, its scores, a tick.
 *
 * The monitor follows the engine: a reload starts a fresh window against the
 * new variables file's training block. For a model set, the inputs are
 * member 0's and there is no score PSI (the members' held-out distributions
 * are not the set's). */
#include <stdio.h>

#include "pipeline_impl.h"
#include "sigflow/clock.h"
#include "sigflow/drift.h"

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

void sf_pipeline_monitor_start(pipeline *p) {
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

void sf_pipeline_monitor_rows(pipeline *p, size_t n) {
    if (p->drift && n)
        sf_drift_add_rows(p->drift, sf_engine_row(p->eng, 0), n, sf_clock_ms());
    sf_pipeline_stage_mark(p, SF_STAGE_MONITOR);
}

void sf_pipeline_monitor_scores(pipeline *p, size_t n) {
    if (p->drift && n)
        sf_drift_add_scores(p->drift, sf_engine_probs(p->eng, 0), n);
    sf_pipeline_stage_mark(p, SF_STAGE_MONITOR);
}

void sf_pipeline_monitor_tick(pipeline *p, int64_t now, int report) {
    if (!p->drift)
        return;
    sf_pipeline_stage_mark(p, SF_STAGE_OTHER);
    if (p->conf->metrics && now - p->monitor_ms >= PUBLISH_INTERVAL_MS) {
        p->monitor_ms = now;
        if (sf_drift_publish(p->drift, p->conf->metrics, now))
            sf_log(p->log, SF_LOG_WARN, "drift figures not exported: out of memory or too "
                   "many series");
    }
    char fields[1024];
    if (report && sf_drift_summary(p->drift, now, fields, sizeof fields))
        sf_log(p->log, SF_LOG_WARN, "drift %s", fields);
    sf_pipeline_stage_mark(p, SF_STAGE_MONITOR);
}

void sf_pipeline_monitor_stop(pipeline *p) {
    sf_drift_free(p->drift);
    p->drift = NULL;
}
