/* engine.c: a model, its variables, the assembler and the forward pass put
 * together once, for every command (engine.h says why).
 *
 * The engine is made of members, each a model with its own variables,
 * assembler, rows and forward pass. Today there is exactly one; an ensemble
 * adds members and combines their probabilities in score(), and a backend
 * changes how a member's forward pass is built in member_load(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/engine.h"
#include "sigflow/infer.h"

typedef struct member {
    sf_model *model;
    sf_vars *vars;
    sf_assembler *assembler;
    sf_infer *infer;
    float *rows;  /* batch_size x n_inputs */
    float *probs; /* batch_size x n_outputs */
} member;

struct sf_engine {
    sf_engine_conf conf;
    member m;          /* the one member (an ensemble: an array of them) */
    int signal_index;  /* -1 when selection needs no label */
    int threads;
    sf_event_id *ids;  /* batch_size */
    size_t n_rows;
};

void sf_engine_conf_init(sf_engine_conf *c) {
    memset(c, 0, sizeof *c);
    c->id_field = "EventId";
    c->threshold = -1;
    c->emit = SF_EMIT_SIGNAL;
    c->norm = SF_NORM_STANDARD;
    c->batch_size = 512;
}

static void member_free(member *m) {
    sf_infer_free(m->infer);
    sf_assembler_free(m->assembler);
    sf_vars_free(m->vars);
    sf_model_free(m->model);
    free(m->rows);
    free(m->probs);
}

static int member_load(member *m, const sf_engine_conf *c, char *errstr, size_t n) {
    if (sf_model_load(&m->model, c->model_path, c->arch_path, errstr, n))
        return -1;
    /* The forward pass even for a model alone, so `inspect` says what run
     * and predict would run on. */
    if (sf_infer_open(&m->infer, m->model, c->batch_size, &c->infer, errstr, n)) {
        char why[512];
        snprintf(why, sizeof why, "%s", errstr);
        snprintf(errstr, n, "%s: inference engine: %s", c->model_path, why);
        return -1;
    }
    if (!c->vars_path)
        return 0;
    if (sf_vars_load(&m->vars, c->vars_path, errstr, n) || sf_vars_bind(m->vars, m->model, errstr, n))
        return -1;
    m->assembler = sf_assembler_new(m->vars, c->id_field);
    m->rows = malloc(c->batch_size * m->model->n_inputs * sizeof *m->rows);
    m->probs = malloc(c->batch_size * m->model->n_outputs * sizeof *m->probs);
    if (!m->assembler || !m->rows || !m->probs) {
        snprintf(errstr, n, "out of memory loading %s for batches of %zu events", c->model_path,
                 c->batch_size);
        return -1;
    }
    return 0;
}

/* The output that means signal, when the selection needs one. */
static int find_signal(sf_engine *e, char *errstr, size_t n) {
    const sf_engine_conf *c = &e->conf;
    const sf_vars *v = e->m.vars;
    e->signal_index = -1;
    if (!v)
        return 0;
    if (c->signal_label) {
        e->signal_index = sf_vars_label_index(v, c->signal_label);
        if (e->signal_index < 0) {
            snprintf(errstr, n, "%s: no output label '%s'", c->vars_path, c->signal_label);
            return -1;
        }
    } else if ((e->signal_index = sf_vars_label_index(v, "s")) < 0 &&
               (e->signal_index = sf_vars_label_index(v, "signal")) < 0 &&
               (c->emit != SF_EMIT_ALL || c->threshold >= 0)) {
        snprintf(errstr, n, "%s: no label named 's' or 'signal'; say which output is the signal "
                 "with --signal-label", c->vars_path);
        return -1;
    }
    return 0;
}

int sf_engine_load(sf_engine **out, const sf_engine_conf *c, char *errstr, size_t n) {
    *out = NULL;
    if (c->batch_size == 0) {
        snprintf(errstr, n, "batch size must be positive");
        return -1;
    }
    sf_engine *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    e->conf = *c;
    if (member_load(&e->m, c, errstr, n) || find_signal(e, errstr, n))
        goto fail;
    if (e->m.infer) {
        if (!(e->ids = malloc(c->batch_size * sizeof *e->ids))) {
            snprintf(errstr, n, "out of memory");
            goto fail;
        }
        if (c->threads > 0)
            e->threads = sf_infer_set_threads(e->m.infer, c->threads) ? 1 : c->threads;
        else
            e->threads = sf_infer_use_default_threads(e->m.infer);
    }
    *out = e;
    return 0;
fail:
    sf_engine_free(e);
    return -1;
}

int sf_engine_reload(const sf_engine *e, sf_engine **out, char *errstr, size_t n) {
    return sf_engine_load(out, &e->conf, errstr, n);
}

void sf_engine_free(sf_engine *e) {
    if (!e)
        return;
    member_free(&e->m);
    free(e->ids);
    free(e);
}

const sf_engine_conf *sf_engine_config(const sf_engine *e) { return &e->conf; }
const sf_model *sf_engine_model(const sf_engine *e) { return e->m.model; }
const sf_vars *sf_engine_vars(const sf_engine *e) { return e->m.vars; }
size_t sf_engine_n_outputs(const sf_engine *e) { return e->m.model->n_outputs; }
int sf_engine_signal_index(const sf_engine *e) { return e->signal_index; }
int sf_engine_threads(const sf_engine *e) { return e->threads; }

void sf_engine_inference(const sf_engine *e, sf_infer_info *out) {
    sf_infer_info_get(e->m.infer, out);
}

void sf_engine_describe_inference(const sf_engine *e, char *buf, size_t size) {
    sf_infer_describe(e->m.infer, buf, size);
}

void sf_engine_describe(const sf_engine *e, char *buf, size_t size) {
    const sf_engine_conf *c = &e->conf;
    const sf_model *m = e->m.model;
    sf_infer_info in;
    sf_infer_info_get(e->m.infer, &in);
    snprintf(buf, size,
             "model=\"%s\" inputs=%zu outputs=%zu layers=%zu parameters=%zu sha256=\"%.12s\" "
             "normalize=%s select=%s signal_label=%s backend=%s precision=%s kernel=\"%s\" threads=%d "
             "library_threads=%d%s%s",
             c->model_path, m->n_inputs, m->n_outputs, m->n_layers, m->n_params, m->sha256,
             c->norm == SF_NORM_L2 ? "l2" : c->norm == SF_NORM_NONE ? "none" : "standard",
             c->emit == SF_EMIT_ALL ? "all" : c->threshold >= 0 ? "threshold"
                                             : m->sigmoid_head ? "sigmoid_p>=0.5" : "argmax",
             e->signal_index < 0 ? "none" : e->m.vars->labels[e->signal_index],
             sf_backend_name(in.backend), sf_precision_name(in.precision), in.kernel, in.threads,
             in.library_threads,
             in.generic ? " warning=\"generic kernel on a CPU that has AVX2/AVX-512\"" : "",
             in.precision == SF_PRECISION_BF16 && !in.bf16_native
                 ? " bf16_warning=\"emulated: this CPU has neither AVX512_BF16 nor AMX, expect it slower than fp32\""
                 : "");
}

void sf_engine_clear(sf_engine *e) { e->n_rows = 0; }

size_t sf_engine_rows(const sf_engine *e) { return e->n_rows; }

sf_reject sf_engine_assemble(const sf_engine *e, const char *json, size_t len, float *row,
                             sf_event_id *id, char *why, size_t why_size) {
    return sf_assembler_run(e->m.assembler, json, len, row, id, why, why_size);
}

sf_reject sf_engine_add(sf_engine *e, const char *json, size_t len, char *why, size_t why_size) {
    size_t i = e->n_rows;
    if (i == e->conf.batch_size) { /* the caller's bug; refused, not overrun */
        snprintf(why, why_size, "batch of %zu events already full", i);
        return SF_REJECT_TOO_LARGE;
    }
    sf_reject r = sf_engine_assemble(e, json, len, e->m.rows + i * e->m.model->n_inputs, &e->ids[i],
                                     why, why_size);
    if (r == SF_REJECT_NONE)
        e->n_rows++;
    return r;
}

void sf_engine_normalize_rows(const sf_engine *e, float *rows, size_t n) {
    sf_features_normalize(e->m.vars, e->conf.norm, rows, n);
}

void sf_engine_infer_rows(sf_engine *e, const float *x, size_t n, float *y) {
    sf_infer_run(e->m.infer, x, n, y);
}

int sf_engine_set_threads(sf_engine *e, int n) {
    int rc = sf_infer_set_threads(e->m.infer, n);
    e->threads = rc ? 1 : n;
    return rc;
}

void sf_engine_set_library_threads(sf_engine *e, int n) {
    sf_infer_set_library_threads(e->m.infer, n);
}

void sf_engine_normalize(sf_engine *e) { sf_engine_normalize_rows(e, e->m.rows, e->n_rows); }

void sf_engine_infer(sf_engine *e) { sf_engine_infer_rows(e, e->m.rows, e->n_rows, e->m.probs); }

void sf_engine_score(sf_engine *e) {
    sf_engine_normalize(e);
    sf_engine_infer(e);
}

const float *sf_engine_probs(const sf_engine *e, size_t i) {
    return e->m.probs + i * e->m.model->n_outputs;
}

size_t sf_engine_label_of(const sf_engine *e, const float *probs) {
    if (e->m.model->sigmoid_head)
        return probs[1] >= 0.5f;
    return sf_argmax(probs, e->m.model->n_outputs);
}

size_t sf_engine_label(const sf_engine *e, size_t i) {
    return sf_engine_label_of(e, sf_engine_probs(e, i));
}

int sf_engine_is_selected(const sf_engine *e, const float *probs, size_t label) {
    if (e->conf.emit == SF_EMIT_ALL)
        return 1;
    if (e->conf.threshold >= 0)
        return probs[e->signal_index] >= e->conf.threshold;
    return (int)label == e->signal_index;
}

int sf_engine_selected(const sf_engine *e, size_t i) {
    return sf_engine_is_selected(e, sf_engine_probs(e, i), sf_engine_label(e, i));
}

const sf_event_id *sf_engine_id(const sf_engine *e, size_t i) { return &e->ids[i]; }
