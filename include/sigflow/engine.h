/* engine.h: the one place a model is put together and run.
 *
 * An engine loads a model and its variables file, builds the feature assembler
 * and the forward pass, owns the inference threads (sigflow's threading
 * policy, blas.h), and turns a batch of raw JSON events into rows,
 * probabilities, labels and the selection verdict. `sigflow run`, `predict`,
 * `demo`, `inspect` and sigflow-bench all use it, so `predict` computes what the
 * daemon publishes by construction.
 *
 * Later features plug in here, not in the callers: an inference backend or a
 * reduced precision is a field of sf_engine_conf read by sf_engine_load; an
 * ensemble is several members (model + variables each) whose probabilities
 * the engine combines, behind the same batch calls.
 *
 * Conventions: CONTRIBUTING.md (0 or -1 with errstr; free(NULL) is a no-op). */
#ifndef SIGFLOW_ENGINE_H
#define SIGFLOW_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "sigflow/features.h"
#include "sigflow/infer.h"
#include "sigflow/model.h"
#include "sigflow/modelset.h"
#include "sigflow/vars.h"

/* What counts as selected (published by the daemon). */
typedef enum { SF_EMIT_SIGNAL = 0, SF_EMIT_ALL } sf_emit;

/* How to build an engine. The strings are borrowed: they must outlive every
 * engine loaded from the configuration (sf_engine_reload reads them again). */
typedef struct sf_engine_conf {
    /* A model file, or a model set (modelset.h): then arch_path and vars_path
     * must be NULL, each member naming its own variables. */
    const char *model_path;
    const char *arch_path;    /* NULL for a whole-model file */
    const char *onnx_output;  /* ONNX: the graph output to serve; NULL: the default */
    const char *vars_path;    /* NULL: model only (inspect); no batch calls then */
    const char *id_field;     /* NULL: events have no id */
    const char *signal_label; /* NULL: the label named "s" or "signal" */
    double threshold;         /* < 0: argmax selection */
    sf_emit emit;
    sf_norm norm;
    size_t batch_size;        /* rows per batch, > 0 */
    /* Inference threads: 0 applies sigflow's policy (sf_infer_use_default_threads:
     * one BLAS thread, batches split over the cores, unless the user chose
     * BLAS's threading); n > 0 runs the engine on n threads as is. */
    int threads;
    /* Backend and precision of the forward pass (infer.h); all zero: auto,
     * fp32. */
    sf_infer_conf infer;
    /* The model loader's sandbox (model.h); all zero: the defaults. */
    sf_model_loader_conf loader;
} sf_engine_conf;

/* Defaults: id field "EventId", argmax on "s"/"signal", batch 512, standard
 * normalization, sigflow's threading policy. */
void sf_engine_conf_init(sf_engine_conf *conf);

typedef struct sf_engine sf_engine;

/* Loads the model and variables of conf (every member of a set, all or
 * nothing; an error about a member names it), checks them against each other and
 * finds the signal label (needed unless conf->emit is SF_EMIT_ALL without a
 * threshold), then starts the inference threads. 0 and *out, or -1 with
 * errstr naming the file and what is wrong; nothing is allocated then. */
int sf_engine_load(sf_engine **out, const sf_engine_conf *conf, char *errstr, size_t errstr_size);

/* A fresh engine from e's configuration (the files as they are now), for a
 * reload: e is left untouched either way. 0 and *out, or -1 with errstr. */
int sf_engine_reload(const sf_engine *e, sf_engine **out, char *errstr, size_t errstr_size);

/* Stops the threads and frees everything; NULL is a no-op. */
void sf_engine_free(sf_engine *e);

/* What was loaded, for logs, metrics and `inspect`. vars is NULL when the
 * configuration named no variables file. */
const sf_engine_conf *sf_engine_config(const sf_engine *e);
const sf_model *sf_engine_model(const sf_engine *e);
const sf_vars *sf_engine_vars(const sf_engine *e);
size_t sf_engine_n_outputs(const sf_engine *e);
int sf_engine_signal_index(const sf_engine *e); /* -1 when selection needs none */
int sf_engine_threads(const sf_engine *e);      /* threads in use; 0: BLAS's own */
/* The width of the rows of sf_engine_assemble and sf_engine_infer_rows: the
 * model's inputs, or for a set the union of its members' variables. */
size_t sf_engine_n_inputs(const sf_engine *e);
/* Input i's name (i < sf_engine_n_inputs), or NULL without variables. */
const char *sf_engine_input_name(const sf_engine *e, size_t i);
/* Events sf_engine_add accepted without optional input i (which took its
 * default) since the previous call for i, which restarts the count. */
uint64_t sf_engine_take_defaulted(sf_engine *e, size_t i);

/* The members: one for a single model (name NULL, weight 1), or a set's, in
 * file order. sf_engine_model and sf_engine_vars are member 0's; every member
 * has the same labels. */
typedef struct sf_engine_member_info {
    const char *name;      /* NULL for a single model */
    const char *path;      /* model file */
    const char *vars_path;
    double weight;         /* normalized: a set's weights sum to 1 */
    const sf_model *model;
    const sf_vars *vars;
} sf_engine_member_info;

const sf_modelset *sf_engine_set(const sf_engine *e); /* NULL: a single model */
/* What is being served, as the sigflow-model header says it: the model
 * file's sha256, or the set file's followed by " NAME=SHA256" per member.
 * The length, or -1 when buf is too small. */
int sf_engine_digest(const sf_engine *e, char *buf, size_t size);
size_t sf_engine_n_members(const sf_engine *e);
/* 0 and *out, or -1 when k is out of range. */
int sf_engine_member(const sf_engine *e, size_t k, sf_engine_member_info *out);

/* The start-up log's key=value fields (log.h) of the engine: the model, its
 * shape, the normalization, the selection rule, the threads and the BLAS kernel. */
void sf_engine_describe(const sf_engine *e, char *buf, size_t size);

/* What the forward pass runs on (backend, precision, kernel, threads), and
 * the same as infer.h's one-line description (a model-only engine has its
 * forward pass too, for `inspect`). */
void sf_engine_inference(const sf_engine *e, sf_infer_info *out);
void sf_engine_describe_inference(const sf_engine *e, char *buf, size_t size);

/* ---- the batch: clear, add events, score, read the rows back ---- */

/* Forgets the rows of the previous batch. */
void sf_engine_clear(sf_engine *e);

/* Assembles the event json[0..len) as the next row. SF_REJECT_NONE, or the
 * reason with a message naming the field in why (the batch is unchanged then).
 * The batch holds conf->batch_size rows; a full one refuses the event
 * (SF_REJECT_TOO_LARGE). */
sf_reject sf_engine_add(sf_engine *e, const char *json, size_t len, char *why, size_t why_size);

/* Rows added since the last clear. */
size_t sf_engine_rows(const sf_engine *e);

/* sf_engine_add in two halves, so several threads can assemble a chunk of
 * events at once (the daemon's inference threads share its parsing).
 * sf_engine_assemble_slot assembles an event into slot `slot`, the row
 * sf_engine_rows() + slot, from any thread, each slot by one thread, and
 * returns as sf_engine_add does; sf_engine_append_slots, on one thread once
 * they are done, appends slots [0, n) to the batch, those whose keep[j] is
 * set, in order. Meanwhile the rows before sf_engine_rows() may be in a
 * forward pass (sf_engine_infer_start) or read. */
sf_reject sf_engine_assemble_slot(sf_engine *e, size_t slot, const char *json, size_t len,
                                  char *why, size_t why_size);
void sf_engine_append_slots(sf_engine *e, const unsigned char *keep, size_t n);

/* Normalizes and scores every row added since the last clear. */
void sf_engine_score(sf_engine *e);

/* The same in steps over rows [from, from + n) of the batch, for the daemon,
 * which times the steps apart (its stage costs) and overlaps the forward pass
 * of one chunk of a batch with the parsing of the next and the publishing of
 * the previous (pipeline.c). sf_engine_normalize_range normalizes the rows
 * in place. sf_engine_infer_start starts their forward pass on the inference
 * threads and returns; while a pass is in flight, it adds them to it (they
 * must be the rows right after its own). sf_engine_infer_wait returns once
 * rows [from, from + n) of the pass, the next ones not yet waited for, have
 * their probabilities, taking rows of the pass on the calling thread
 * meanwhile; sf_engine_infer_finish, once all of them have (infer.h's
 * sf_infer_start, sf_infer_more and sf_infer_wait; a set's members run side
 * by side and are combined as they are waited for). Meanwhile the caller may
 * add and normalize rows after the pass's and read the rows and
 * probabilities waited for, but must not touch the rows in flight, nor
 * clear, score or free the engine. The bits are those of sf_engine_score. */
void sf_engine_normalize_range(sf_engine *e, size_t from, size_t n);
void sf_engine_infer_start(sf_engine *e, size_t from, size_t n);
void sf_engine_infer_wait(sf_engine *e, size_t from, size_t n);
void sf_engine_infer_finish(sf_engine *e);

/* Other work shared by the inference threads (member 0's), as infer.h's
 * sf_infer_tasks_start and sf_infer_tasks_finish: fn(arg, unit) for units
 * 0..n-1, taken by a helper with no rows of the pass left, and by the
 * caller in sf_engine_tasks_finish, sf_engine_infer_wait and
 * sf_engine_infer_finish. The daemon parses and renders its chunks so. */
void sf_engine_tasks_start(sf_engine *e, sf_infer_task *fn, void *arg, size_t n);
void sf_engine_tasks_finish(sf_engine *e);

/* Row i of the batch as member 0's network sees it (sf_engine_vars order):
 * raw, with fills and defaults applied, until sf_engine_normalize_range (or
 * sf_engine_score) normalizes it in place (drift monitoring reads it in
 * between). */
const float *sf_engine_row(const sf_engine *e, size_t i);

/* Row i of the scored batch: its probabilities (n_outputs; a set's are the
 * weighted mean of its members', p = sum w_k p_k / sum w_k), its label
 * (sf_engine_label_of), whether it is selected, its id as found in the event. */
const float *sf_engine_probs(const sf_engine *e, size_t i);
size_t sf_engine_label(const sf_engine *e, size_t i);
int sf_engine_selected(const sf_engine *e, size_t i);
const sf_event_id *sf_engine_id(const sf_engine *e, size_t i);
/* Row i as the output line both `predict` and the daemon write
 * (sf_output_format), with the members' own probabilities when with_members
 * and the engine is a set. The length, or -1 when buf is too small. */
int sf_engine_output(const sf_engine *e, size_t i, int with_members, int32_t partition,
                     int64_t offset, char *buf, size_t size);
/* Member k's own probabilities for row i (`--emit-members`, evaluate). */
const float *sf_engine_member_probs(const sf_engine *e, size_t k, size_t i);

/* The label a row of probabilities names: the argmax (the first on ties), or
 * for a binary sigmoid head ([1 - p, p], sf_model.sigmoid_head) 1 exactly
 * when p >= 0.5, as Keras users threshold their sigmoid. */
size_t sf_engine_label_of(const sf_engine *e, const float *probs);

/* The selection rule on its own: emit all, P(signal) >= threshold, or the
 * label is the signal label. With a sigmoid head P(signal) is p. */
int sf_engine_is_selected(const sf_engine *e, const float *probs, size_t label);

/* ---- the stages one at a time, on caller buffers (sigflow-bench) ---- */

/* Assembles one event into row (sf_engine_n_inputs floats), raw. For a set,
 * a raw union row, checked against every member. */
sf_reject sf_engine_assemble(const sf_engine *e, const char *json, size_t len, float *row,
                             sf_event_id *id, char *why, size_t why_size);
/* Normalizes n rows in place with the configured normalization (a set's rows
 * stay raw: each member normalizes its own in sf_engine_infer_rows). */
void sf_engine_normalize_rows(const sf_engine *e, float *rows, size_t n);
/* Forward pass of n rows x (sf_engine_n_inputs) into y (n x n_outputs); for a
 * set, each member's gather, normalization and forward pass, combined. */
void sf_engine_infer_rows(sf_engine *e, const float *x, size_t n, float *y);
/* Runs the forward pass on n threads from now on (1: the calling thread only).
 * 0, or -1 when a helper cannot start (the engine then runs on one thread). */
int sf_engine_set_threads(sf_engine *e, int n);
/* Threads the backend library may use inside each of those (infer.h's
 * sf_infer_set_library_threads): sigflow-bench's "library threads" figure. */
void sf_engine_set_library_threads(sf_engine *e, int n);

#endif
