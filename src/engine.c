/* engine.c: a model, its variables, the assembler and the forward pass put
 * together once, for every command (engine.h says why).
 *
 * The engine is made of members, each a model with its own variables, rows and
 * forward pass. A single model is one member whose assembler fills its rows
 * directly. A model set (modelset.h) has several: the event is parsed once by
 * an assembler over the union of the members' variables, into a raw row in
 * which NaN marks "absent or equal to the missing value" (a JSON number is
 * never NaN), and each member gathers its own columns from it, applying its
 * own defaults; then each member normalizes and runs its forward pass over the
 * whole batch, and score() combines the probabilities, weighted. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/engine.h"
#include "sigflow/sniff.h"
#include "sigflow/infer.h"
#include "sigflow/modelset.h"
#include "sigflow/output.h"

typedef struct member {
    const char *name;      /* the set's member name; NULL for a single model */
    double weight;         /* normalized: the weights of a set sum to 1 */
    sf_model *model;
    sf_vars *vars;
    sf_assembler *assembler; /* single model only */
    size_t *column;        /* set only: the union column of each variable */
    sf_infer *infer;
    float *rows;  /* batch_size x n_inputs */
    float *probs; /* batch_size x n_outputs */
} member;

struct sf_engine {
    sf_engine_conf conf;
    sf_modelset *set;  /* NULL: a single model */
    member *m;
    size_t n_members;
    sf_vars *uvars;    /* set: the union of the members' variables */
    sf_assembler *uassembler;
    float *urows;      /* set: a raw union row per slot (sf_engine_assemble_slot) */
    float *probs;      /* set: the combined probabilities; else the member's */
    int signal_index;  /* -1 when selection needs no label */
    int threads;
    sf_event_id *ids;  /* batch_size */
    size_t n_rows;
    size_t pass_from, pass_n; /* the rows of the forward pass in flight */
    size_t pass_done;         /* how many of them were waited for */
    _Atomic uint64_t *defaulted; /* per input (sf_engine_n_inputs): events that lacked it, since taken */
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
    free(m->column);
    free(m->rows);
    free(m->probs);
}

/* Adds to a refusal what the file looks like when that is not what was
 * wanted (a model: HDF5, .keras or ONNX, whose own reader's message says
 * what is wrong; variables: a variables JSON file), and what would do. */
static void explain(char *why, size_t n, const char *path, int model) {
    sf_sniff_kind k = sf_sniff(path);
    size_t len = strlen(why);
    if (k == SF_SNIFF_UNREADABLE ||
        (model ? k == SF_SNIFF_HDF5 || k == SF_SNIFF_KERAS || k == SF_SNIFF_ONNX
               : k == SF_SNIFF_VARIABLES))
        return;
    snprintf(why + len, n - len, " (it looks like %s; %s)", sf_sniff_name(k),
             model ? SF_SNIFF_MODEL_FORMATS : "--variables wants a variables JSON file, with inputs");
}

/* Loads one member; a set's member names itself in errstr. The single
 * model's assembler is built here, a set's union one by the caller. */
static int member_load(member *m, const sf_engine_conf *c, const char *model_path,
                       const char *arch_path, const char *onnx_output, const char *vars_path,
                       char *errstr, size_t n) {
    char why[1024];
    if (sf_model_load_conf(&m->model, model_path, arch_path, onnx_output, &c->loader, why, sizeof why)) {
        explain(why, sizeof why, model_path, 1);
        goto fail;
    }
    if (vars_path && sf_vars_load(&m->vars, vars_path, why, sizeof why)) {
        explain(why, sizeof why, vars_path, 0);
        goto fail;
    }
    if (m->vars && sf_vars_bind(m->vars, m->model, why, sizeof why))
        goto fail;
    /* The forward pass even for a model alone, so `inspect` says what run
     * and predict would run on; a set's members share the engine's backend
     * and precision, each with its own int8 calibration. */
    sf_infer_conf ic = c->infer;
    if (m->vars) {
        ic.n_int8 = m->vars->n_calibration;
        ic.int8_inputs = m->vars->calibration_inputs;
        ic.int8_range = m->vars->calibration_range;
    }
    if (sf_infer_open(&m->infer, m->model, c->batch_size, &ic, errstr, n)) {
        char inner[512];
        snprintf(inner, sizeof inner, "%s", errstr);
        snprintf(why, sizeof why, "%s: inference engine: %s", model_path, inner);
        goto fail;
    }
    if (!vars_path)
        return 0;
    if (!m->name && !(m->assembler = sf_assembler_new(m->vars, c->id_field)))
        goto oom;
    m->rows = malloc(c->batch_size * m->model->n_inputs * sizeof *m->rows);
    m->probs = malloc(c->batch_size * m->model->n_outputs * sizeof *m->probs);
    if (!m->rows || !m->probs)
        goto oom;
    return 0;
oom:
    snprintf(why, sizeof why, "out of memory loading %s for batches of %zu events", model_path,
             c->batch_size);
fail:
    if (m->name)
        snprintf(errstr, n, "member '%s': %s", m->name, why);
    else
        snprintf(errstr, n, "%s", why);
    return -1;
}

/* The union of the members' variables, every one defaulting to NaN and
 * filling the missing value with +inf (a JSON number is never either), so the
 * union assembler never rejects a field for lacking and each member decides.
 * One parse serves every member only if they agree on the missing value. */
static int build_union(sf_engine *e, char *errstr, size_t n) {
    size_t cap = 0;
    for (size_t k = 0; k < e->n_members; k++)
        cap += e->m[k].vars->n_vars;
    sf_vars *u = calloc(1, sizeof *u);
    if (!u || !(u->vars = calloc(cap ? cap : 1, sizeof *u->vars))) {
        free(u);
        goto oom;
    }
    e->uvars = u;
    const sf_vars *v0 = e->m[0].vars;
    u->has_missing_value = v0->has_missing_value;
    u->missing_value = v0->missing_value;
    for (size_t k = 0; k < e->n_members; k++) {
        member *m = &e->m[k];
        const sf_vars *v = m->vars;
        if (v->has_missing_value != u->has_missing_value ||
            (v->has_missing_value && v->missing_value != u->missing_value)) {
            snprintf(errstr, n, "member '%s': %s: missing_value differs from member '%s' (the "
                     "members of a set share one)", m->name, v->path ? v->path : "variables",
                     e->m[0].name);
            return -1;
        }
        if (!(m->column = malloc((v->n_vars ? v->n_vars : 1) * sizeof *m->column)))
            goto oom;
        for (size_t i = 0; i < v->n_vars; i++) {
            size_t j = 0;
            while (j < u->n_vars && strcmp(u->vars[j].name, v->vars[i].name))
                j++;
            if (j == u->n_vars) {
                if (!(u->vars[j].name = strdup(v->vars[i].name)))
                    goto oom;
                u->vars[j].scale = 1;
                u->vars[j].has_default = 1;
                u->vars[j].default_value = NAN;
                u->vars[j].has_fill = u->has_missing_value;
                u->vars[j].fill = INFINITY;
                u->n_vars++;
            }
            m->column[i] = j;
        }
    }
    if (!(e->uassembler = sf_assembler_new(u, e->conf.id_field)) ||
        !(e->urows = malloc(e->conf.batch_size * (u->n_vars ? u->n_vars : 1) * sizeof *e->urows)))
        goto oom;
    return 0;
oom:
    snprintf(errstr, n, "out of memory");
    return -1;
}

static int load_set(sf_engine *e, char *errstr, size_t n) {
    const sf_engine_conf *c = &e->conf;
    if (c->arch_path || c->onnx_output || c->vars_path) {
        snprintf(errstr, n, "%s is a model set: its members name their own %s", c->model_path,
                 c->arch_path ? "architecture" : c->onnx_output ? "ONNX output" : "variables");
        return -1;
    }
    if (sf_modelset_load(&e->set, c->model_path, errstr, n))
        return -1;
    if (!(e->m = calloc(e->set->n_members, sizeof *e->m))) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    double total = 0;
    for (size_t k = 0; k < e->set->n_members; k++)
        total += e->set->members[k].weight;
    for (size_t k = 0; k < e->set->n_members; k++) {
        const sf_modelset_member *d = &e->set->members[k];
        member *m = &e->m[e->n_members++];
        m->name = d->name;
        m->weight = d->weight / total;
        if (member_load(m, c, d->model_path, NULL, NULL, d->vars_path, errstr, n))
            return -1;
        const sf_vars *v = m->vars, *v0 = e->m[0].vars;
        int same = v->n_labels == v0->n_labels;
        for (size_t i = 0; same && i < v->n_labels; i++)
            same = !strcmp(v->labels[i], v0->labels[i]);
        if (!same) {
            char l[256] = "", l0[256] = "";
            for (size_t i = 0; i < v->n_labels; i++)
                snprintf(l + strlen(l), sizeof l - strlen(l), "%s%s", i ? "," : "", v->labels[i]);
            for (size_t i = 0; i < v0->n_labels; i++)
                snprintf(l0 + strlen(l0), sizeof l0 - strlen(l0), "%s%s", i ? "," : "",
                         v0->labels[i]);
            snprintf(errstr, n, "member '%s': labels [%s] differ from member '%s' [%s] (members "
                     "must have the same labels in the same order)", m->name, l, e->m[0].name, l0);
            return -1;
        }
    }
    if (build_union(e, errstr, n))
        return -1;
    if (!(e->probs = malloc(c->batch_size * e->m[0].model->n_outputs * sizeof *e->probs))) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    return 0;
}

/* The output that means signal, when the selection needs one. */
static int find_signal(sf_engine *e, char *errstr, size_t n) {
    const sf_engine_conf *c = &e->conf;
    const sf_vars *v = e->m[0].vars;
    const char *where = e->set ? c->model_path : c->vars_path;
    e->signal_index = -1;
    if (!v)
        return 0;
    if (c->signal_label) {
        e->signal_index = sf_vars_label_index(v, c->signal_label);
        if (e->signal_index < 0) {
            snprintf(errstr, n, "%s: no output label '%s'", where, c->signal_label);
            return -1;
        }
    } else if ((e->signal_index = sf_vars_label_index(v, "s")) < 0 &&
               (e->signal_index = sf_vars_label_index(v, "signal")) < 0 &&
               (c->emit != SF_EMIT_ALL || c->threshold >= 0)) {
        snprintf(errstr, n, "%s: no label named 's' or 'signal'; say which output is the signal "
                 "with --signal-label", where);
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
    if (sf_modelset_is_set(c->model_path)) {
        if (load_set(e, errstr, n))
            goto fail;
    } else {
        if (!(e->m = calloc(1, sizeof *e->m))) {
            snprintf(errstr, n, "out of memory");
            goto fail;
        }
        e->n_members = 1;
        e->m[0].weight = 1;
        if (member_load(&e->m[0], c, c->model_path, c->arch_path, c->onnx_output, c->vars_path,
                        errstr, n))
            goto fail;
        e->probs = e->m[0].probs;
    }
    if (find_signal(e, errstr, n))
        goto fail;
    if (e->m[0].vars) {
        e->defaulted = calloc(sf_engine_n_inputs(e), sizeof *e->defaulted);
        if (!(e->ids = malloc(c->batch_size * sizeof *e->ids)) || !e->defaulted) {
            snprintf(errstr, n, "out of memory");
            goto fail;
        }
    }
    if (e->m[0].infer) {
        /* Members run one after another, so each may use every thread. */
        for (size_t k = 0; k < e->n_members; k++) {
            if (c->threads > 0)
                e->threads = sf_infer_set_threads(e->m[k].infer, c->threads) ? 1 : c->threads;
            else
                e->threads = sf_infer_use_default_threads(e->m[k].infer);
        }
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
    for (size_t k = 0; k < e->n_members; k++)
        member_free(&e->m[k]);
    if (e->set)
        free(e->probs);
    free(e->m);
    sf_assembler_free(e->uassembler);
    sf_vars_free(e->uvars);
    free(e->urows);
    sf_modelset_free(e->set);
    free(e->ids);
    free(e->defaulted);
    free(e);
}

const sf_engine_conf *sf_engine_config(const sf_engine *e) { return &e->conf; }
const sf_model *sf_engine_model(const sf_engine *e) { return e->m[0].model; }
const sf_vars *sf_engine_vars(const sf_engine *e) { return e->m[0].vars; }
size_t sf_engine_n_outputs(const sf_engine *e) { return e->m[0].model->n_outputs; }
int sf_engine_signal_index(const sf_engine *e) { return e->signal_index; }
int sf_engine_threads(const sf_engine *e) { return e->threads; }

/* Every member runs on the same backend and precision (the engine's
 * configuration): member 0 speaks for them. */
void sf_engine_inference(const sf_engine *e, sf_infer_info *out) {
    sf_infer_info_get(e->m[0].infer, out);
}

void sf_engine_describe_inference(const sf_engine *e, char *buf, size_t size) {
    sf_infer_describe(e->m[0].infer, buf, size);
}

size_t sf_engine_n_inputs(const sf_engine *e) {
    return e->set ? e->uvars->n_vars : e->m[0].model->n_inputs;
}

const char *sf_engine_input_name(const sf_engine *e, size_t i) {
    const sf_vars *v = e->set ? e->uvars : e->m[0].vars;
    return v && i < v->n_vars ? v->vars[i].name : NULL;
}

uint64_t sf_engine_take_defaulted(sf_engine *e, size_t i) {
    if (!e->defaulted || i >= sf_engine_n_inputs(e))
        return 0;
    uint64_t n = atomic_exchange_explicit(&e->defaulted[i], 0, memory_order_relaxed);
    return n;
}

int sf_engine_digest(const sf_engine *e, char *buf, size_t size) {
    int w = snprintf(buf, size, "%s", e->set ? e->set->sha256 : e->m[0].model->sha256);
    size_t len = w < 0 ? size : (size_t)w;
    for (size_t k = 0; e->set && len < size && k < e->n_members; k++) {
        w = snprintf(buf + len, size - len, " %s=%s", e->m[k].name, e->m[k].model->sha256);
        len = w < 0 ? size : len + (size_t)w;
    }
    return len >= size ? -1 : (int)len;
}

const sf_modelset *sf_engine_set(const sf_engine *e) { return e->set; }
size_t sf_engine_n_members(const sf_engine *e) { return e->n_members; }

int sf_engine_member(const sf_engine *e, size_t k, sf_engine_member_info *out) {
    if (k >= e->n_members)
        return -1;
    const member *m = &e->m[k];
    out->name = m->name;
    out->path = e->set ? e->set->members[k].model_path : e->conf.model_path;
    out->vars_path = e->set ? e->set->members[k].vars_path : e->conf.vars_path;
    out->weight = m->weight;
    out->model = m->model;
    out->vars = m->vars;
    return 0;
}

/* A binary sigmoid head ([1 - p, p]) labels by p >= 0.5; a set does when
 * every member has one (its p is then their weighted mean). */
static int sigmoid(const sf_engine *e) {
    for (size_t k = 0; k < e->n_members; k++)
        if (!e->m[k].model->sigmoid_head)
            return 0;
    return 1;
}

void sf_engine_describe(const sf_engine *e, char *buf, size_t size) {
    const sf_engine_conf *c = &e->conf;
    const sf_model *m = e->m[0].model;
    sf_infer_info in;
    sf_infer_info_get(e->m[0].infer, &in); /* every member runs on the same backend */
    char what[512];
    if (e->set) {
        size_t params = 0;
        for (size_t k = 0; k < e->n_members; k++)
            params += e->m[k].model->n_params;
        int w = snprintf(what, sizeof what, "model=\"%s\" set=\"%s\" members=\"", c->model_path,
                         e->set->name);
        for (size_t k = 0; k < e->n_members && w > 0 && (size_t)w < sizeof what; k++)
            w += snprintf(what + w, sizeof what - (size_t)w, "%s%s:%.3f", k ? " " : "",
                          e->m[k].name, e->m[k].weight);
        if (w > 0 && (size_t)w < sizeof what)
            snprintf(what + w, sizeof what - (size_t)w,
                     "\" inputs=%zu outputs=%zu parameters=%zu sha256=\"%.12s\"", e->uvars->n_vars,
                     m->n_outputs, params, e->set->sha256);
    } else {
        snprintf(what, sizeof what,
                 "model=\"%s\" inputs=%zu outputs=%zu layers=%zu parameters=%zu sha256=\"%.12s\"",
                 c->model_path, m->n_inputs, m->n_outputs, m->n_layers, m->n_params, m->sha256);
    }
    snprintf(buf, size,
             "%s normalize=%s select=%s signal_label=%s backend=%s precision=%s kernel=\"%s\" "
             "threads=%d library_threads=%d%s%s",
             what, c->norm == SF_NORM_L2 ? "l2" : c->norm == SF_NORM_NONE ? "none" : "standard",
             c->emit == SF_EMIT_ALL ? "all" : c->threshold >= 0 ? "threshold"
                                             : sigmoid(e) ? "sigmoid_p>=0.5" : "argmax",
             e->signal_index < 0 ? "none" : e->m[0].vars->labels[e->signal_index],
             sf_backend_name(in.backend), sf_precision_name(in.precision), in.kernel, in.threads,
             in.library_threads,
             in.generic ? " warning=\"generic kernel on a CPU that has AVX2/AVX-512\"" : "",
             in.precision == SF_PRECISION_BF16 && !in.bf16_native
                 ? " bf16_warning=\"emulated: this CPU has neither AVX512_BF16 nor AMX, expect it slower than fp32\""
                 : "");
}

void sf_engine_clear(sf_engine *e) { e->n_rows = 0; }

size_t sf_engine_rows(const sf_engine *e) { return e->n_rows; }

/* The member's missing_field rejection, from its first unfillable input i. */
static sf_reject refuse(const member *m, const float *u, size_t first, char *why,
                        size_t why_size) {
    const sf_vars *v = m->vars;
    unsigned char *lack = calloc(v->n_vars, 1);
    int head = snprintf(why, why_size, "member '%s': ", m->name);
    if (!lack || head < 0 || (size_t)head >= why_size) {
        free(lack);
        return SF_REJECT_MISSING_FIELD;
    }
    for (size_t i = first; i < v->n_vars; i++) {
        float x = u[m->column[i]];
        if (x == x && !isinf(x))
            continue;
        if (isinf(x) && !v->vars[i].has_fill && !v->vars[i].has_default)
            lack[i] = SF_LACK_MISSING_VALUE;
        else if (!isinf(x) && !v->vars[i].has_default)
            lack[i] = SF_LACK_ABSENT;
    }
    sf_reject r = sf_features_missing(v, lack, why + head, why_size - (size_t)head);
    free(lack);
    return r;
}

/* Member m's row from a raw union row; dst NULL only checks. A NaN is an
 * absent field: the member's default; +inf is the missing value: the
 * member's fill or default. Else a rejection naming the member and every
 * input of it the event lacks. */
static sf_reject gather(const member *m, const float *u, float *dst, char *why, size_t why_size) {
    const sf_vars *v = m->vars;
    for (size_t i = 0; i < v->n_vars; i++) {
        float x = u[m->column[i]];
        if (x != x || isinf(x)) {
            const sf_var *var = &v->vars[i];
            if (isinf(x) && var->has_fill)
                x = (float)var->fill;
            else if (var->has_default)
                x = (float)var->default_value;
            else
                return refuse(m, u, i, why, why_size);
        }
        if (dst)
            dst[i] = x;
    }
    return SF_REJECT_NONE;
}

/* A bad value of a variable fails the members that read it: the message
 * ("field 'NAME': ...") gets the first such member's name in front, like a
 * member's own missing field. Rejections of the whole event stay as they are. */
static void name_member(const sf_engine *e, sf_reject r, char *why, size_t why_size) {
    if ((r != SF_REJECT_NOT_NUMBER && r != SF_REJECT_NOT_FINITE) || strncmp(why, "field '", 7))
        return;
    const char *name = why + 7, *end = strchr(name, '\'');
    if (!end)
        return;
    for (size_t k = 0; k < e->n_members; k++) {
        const sf_vars *v = e->m[k].vars;
        for (size_t i = 0; i < v->n_vars; i++) {
            if (strlen(v->vars[i].name) != (size_t)(end - name) ||
                memcmp(v->vars[i].name, name, (size_t)(end - name)))
                continue;
            char msg[512];
            snprintf(msg, sizeof msg, "%s", why);
            snprintf(why, why_size, "member '%s': %s", e->m[k].name, msg);
            return;
        }
    }
}

/* One parse over the union of the members' variables, then every member's
 * gather: into row dst_row of its rows when write, else only checked). */
static sf_reject assemble_set(const sf_engine *e, const char *json, size_t len, float *urow,
                              size_t dst_row, int write, sf_event_id *id, char *why,
                              size_t why_size) {
    sf_reject r = sf_assembler_run(e->uassembler, json, len, urow, id, why, why_size);
    if (r != SF_REJECT_NONE) {
        name_member(e, r, why, why_size);
        return r;
    }
    for (size_t k = 0; r == SF_REJECT_NONE && k < e->n_members; k++) {
        const member *m = &e->m[k];
        r = gather(m, urow, write ? m->rows + dst_row * m->model->n_inputs : NULL, why, why_size);
    }
    return r;
}

sf_reject sf_engine_assemble(const sf_engine *e, const char *json, size_t len, float *row,
                             sf_event_id *id, char *why, size_t why_size) {
    if (!e->set)
        return sf_assembler_run(e->m[0].assembler, json, len, row, id, why, why_size);
    return assemble_set(e, json, len, row, 0, 0, id, why, why_size);
}

sf_reject sf_engine_assemble_slot(sf_engine *e, size_t slot, const char *json, size_t len,
                                  char *why, size_t why_size) {
    size_t i = e->n_rows + slot;
    if (i >= e->conf.batch_size) { /* the caller's bug; refused, not overrun */
        snprintf(why, why_size, "batch of %zu events already full", e->conf.batch_size);
        return SF_REJECT_TOO_LARGE;
    }
    if (!e->set)
        return sf_assembler_run_counted(e->m[0].assembler, json, len,
                                        e->m[0].rows + i * e->m[0].model->n_inputs, &e->ids[i],
                                        e->defaulted, why, why_size);
    float *urow = e->urows + i * e->uvars->n_vars;
    sf_reject r = assemble_set(e, json, len, urow, i, 1, &e->ids[i], why, why_size);
    /* Every member that reads an absent input took its default. */
    for (size_t j = 0; r == SF_REJECT_NONE && j < e->uvars->n_vars; j++)
        if (urow[j] != urow[j])
            atomic_fetch_add_explicit(&e->defaulted[j], 1, memory_order_relaxed);
    return r;
}

void sf_engine_append_slots(sf_engine *e, const unsigned char *keep, size_t n) {
    size_t to = e->n_rows;
    for (size_t from = e->n_rows; from < e->n_rows + n; from++) {
        if (!keep[from - e->n_rows])
            continue;
        if (to != from) {
            for (size_t k = 0; k < e->n_members; k++) {
                member *m = &e->m[k];
                size_t w = m->model->n_inputs;
                memcpy(m->rows + to * w, m->rows + from * w, w * sizeof *m->rows);
            }
            e->ids[to] = e->ids[from];
        }
        to++;
    }
    e->n_rows = to;
}

sf_reject sf_engine_add(sf_engine *e, const char *json, size_t len, char *why, size_t why_size) {
    sf_reject r = sf_engine_assemble_slot(e, 0, json, len, why, why_size);
    unsigned char keep = r == SF_REJECT_NONE;
    sf_engine_append_slots(e, &keep, 1);
    return r;
}

/* For a set, rows are raw union rows: normalization belongs to each member
 * and happens in sf_engine_infer_rows after the gather. */
void sf_engine_normalize_rows(const sf_engine *e, float *rows, size_t n) {
    if (!e->set)
        sf_features_normalize(e->m[0].vars, e->conf.norm, rows, n);
}

/* y = sum of w_k * p_k over the members, in double, for their rows
 * [from, from + n) (y points at the first). */
static void combine(const sf_engine *e, size_t from, size_t n, float *y) {
    size_t no = e->m[0].model->n_outputs;
    for (size_t i = 0; i < n * no; i++) {
        double s = 0;
        for (size_t k = 0; k < e->n_members; k++)
            s += e->m[k].weight * e->m[k].probs[from * no + i];
        y[i] = (float)s;
    }
}

void sf_engine_infer_rows(sf_engine *e, const float *x, size_t n, float *y) {
    if (!e->set) {
        sf_infer_run(e->m[0].infer, x, n, y);
        return;
    }
    size_t w = e->uvars->n_vars, bs = e->conf.batch_size, no = e->m[0].model->n_outputs;
    for (size_t start = 0; start < n; start += bs) {
        size_t rows = n - start < bs ? n - start : bs;
        for (size_t k = 0; k < e->n_members; k++) {
            member *m = &e->m[k];
            size_t ni = m->model->n_inputs;
            char why[8];
            for (size_t r = 0; r < rows; r++)
                gather(m, x + (start + r) * w, m->rows + r * ni, why, sizeof why);
            sf_features_normalize(m->vars, e->conf.norm, m->rows, rows);
            sf_infer_run(m->infer, m->rows, rows, m->probs);
        }
        combine(e, 0, rows, y + start * no);
    }
}

int sf_engine_set_threads(sf_engine *e, int n) {
    int rc = 0;
    for (size_t k = 0; k < e->n_members; k++)
        rc |= sf_infer_set_threads(e->m[k].infer, n);
    e->threads = rc ? 1 : n;
    return rc;
}

void sf_engine_set_library_threads(sf_engine *e, int n) {
    for (size_t k = 0; k < e->n_members; k++)
        sf_infer_set_library_threads(e->m[k].infer, n);
}

void sf_engine_normalize_range(sf_engine *e, size_t from, size_t n) {
    for (size_t k = 0; k < e->n_members; k++) {
        member *m = &e->m[k];
        sf_features_normalize(m->vars, e->conf.norm, m->rows + from * m->model->n_inputs, n);
    }
}

void sf_engine_infer_start(sf_engine *e, size_t from, size_t n) {
    if (e->pass_n) { /* the rows right after the pass's: it grows */
        e->pass_n += n;
        for (size_t k = 0; k < e->n_members; k++)
            sf_infer_more(e->m[k].infer, e->pass_n);
        return;
    }
    e->pass_from = from;
    e->pass_n = n;
    e->pass_done = 0;
    for (size_t k = 0; k < e->n_members; k++) {
        member *m = &e->m[k];
        sf_infer_start(m->infer, m->rows + from * m->model->n_inputs, n,
                       m->probs + from * m->model->n_outputs);
    }
}

void sf_engine_infer_wait(sf_engine *e, size_t from, size_t n) {
    if (!n || !e->pass_n || from < e->pass_from) /* nothing of the pass in flight */
        return;
    size_t upto = from + n - e->pass_from;
    for (size_t k = 0; k < e->n_members; k++)
        sf_infer_wait(e->m[k].infer, upto);
    if (e->set)
        combine(e, from, n, e->probs + from * e->m[0].model->n_outputs);
    e->pass_done = upto;
    if (e->pass_done == e->pass_n)
        e->pass_n = 0;
}

void sf_engine_infer_finish(sf_engine *e) {
    if (e->pass_n)
        sf_engine_infer_wait(e, e->pass_from + e->pass_done, e->pass_n - e->pass_done);
}

void sf_engine_tasks_start(sf_engine *e, sf_infer_task *fn, void *arg, size_t n) {
    sf_infer_tasks_start(e->m[0].infer, fn, arg, n);
}

void sf_engine_tasks_finish(sf_engine *e) { sf_infer_tasks_finish(e->m[0].infer); }

void sf_engine_score(sf_engine *e) {
    sf_engine_normalize_range(e, 0, e->n_rows);
    for (size_t k = 0; k < e->n_members; k++)
        sf_infer_run(e->m[k].infer, e->m[k].rows, e->n_rows, e->m[k].probs);
    if (e->set)
        combine(e, 0, e->n_rows, e->probs);
}

const float *sf_engine_probs(const sf_engine *e, size_t i) {
    return e->probs + i * e->m[0].model->n_outputs;
}

const float *sf_engine_row(const sf_engine *e, size_t i) {
    return e->m[0].rows + i * e->m[0].model->n_inputs;
}

const float *sf_engine_member_probs(const sf_engine *e, size_t k, size_t i) {
    return e->m[k].probs + i * e->m[k].model->n_outputs;
}

size_t sf_engine_label_of(const sf_engine *e, const float *probs) {
    if (sigmoid(e))
        return probs[1] >= 0.5f;
    return sf_argmax(probs, e->m[0].model->n_outputs);
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

int sf_engine_output(const sf_engine *e, size_t i, int with_members, int32_t partition,
                     int64_t offset, char *buf, size_t size) {
    int len = sf_output_format(buf, size, e->conf.id_field, &e->ids[i], e->m[0].vars,
                               sf_engine_probs(e, i), sf_engine_label(e, i), partition, offset);
    if (len < 0 || !with_members || !e->set)
        return len;
    const char *names[64];
    const float *probs[64];
    if (e->n_members > 64)
        return -1;
    for (size_t k = 0; k < e->n_members; k++) {
        names[k] = e->m[k].name;
        probs[k] = sf_engine_member_probs(e, k, i);
    }
    return sf_output_add_members(buf, size, (size_t)len, e->n_members, names, probs,
                                 e->m[0].model->n_outputs);
}
