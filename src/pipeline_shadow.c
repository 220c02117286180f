/* pipeline_shadow.c: the shadow model's outputs on --shadow-topic, so a
 * candidate's selection can be read on real traffic, event by event, before
 * the SIGHUP that promotes it.
 *
 * Kept apart from the serving publish (pipeline.c) and from the shadow's
 * scoring (pipeline_monitor.c): the loop makes one call per chunk
 * (batch rows [from, from + n)), while the shadow engine still holds that
 * chunk's scores. A shadow
 * output is rendered as the serving one is, so it reads as `sigflow predict`
 * of the shadow model would (same JSON, key, timestamp and input headers),
 * with the shadow's digest in sigflow-model and sigflow-shadow: 1 saying what
 * it is; the JSON itself carries no marker, so it stays byte for byte
 * comparable with predict. It is an output of the chunk's batch like any
 * other (delivery.c): its transaction under --exactly-once, its
 * acknowledgement before the batch's offsets otherwise. */
#include <inttypes.h>
#include <stdint.h>

#include "pipeline_impl.h"

void sf_pipeline_shadow_publish(pipeline *p, sf_delivery_batch *f, size_t from, size_t n) {
    const sf_pipeline_conf *c = p->conf;
    const sf_engine *sh = p->shadow;
    if (!sh || !c->shadow_topic)
        return;
    sf_pipeline_stage_mark(p, SF_STAGE_PUBLISH); /* the serving outputs' so far */
    char out[OUTPUT_MAX];
    for (size_t j = from; j < from + n && !p->fatal; j++) {
        size_t k = p->shadow_row[j];
        if (k == SIZE_MAX || !sf_engine_selected(sh, k)) /* refused, or not selected */
            continue;
        const rd_kafka_message_t *m = p->msgs[p->row_msg[j]];
        const sf_event_id *id = sf_engine_id(sh, k);
        int len = sf_engine_output(sh, k, c->emit_members, m->partition, m->offset, out,
                                   sizeof out);
        if (len < 0) { /* only an absurdly long label list; logged as rejects are */
            if (p->rejects_logged < MAX_LOGGED_REJECTS) {
                p->rejects_logged++;
                sf_log(p->log, SF_LOG_WARN, "shadow output not published: it does not fit in "
                       "an output message topic=%s partition=%d offset=%" PRId64,
                       c->shadow_topic, (int)m->partition, m->offset);
            } else {
                p->rejects_suppressed++;
            }
            continue;
        }
        rd_kafka_timestamp_type_t tstype;
        int64_t ts = rd_kafka_message_timestamp(m, &tstype);
        sf_pipeline_produce_output(p, c->shadow_topic, m, id, out, (size_t)len, p->shadow_header,
                                   1, ts, sf_pipeline_out_ref(p, f, ts));
    }
    sf_pipeline_stage_mark(p, SF_STAGE_SHADOW_PUBLISH);
}
