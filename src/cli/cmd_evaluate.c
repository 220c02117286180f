/* cmd_evaluate.c: `sigflow evaluate`, a model's (or a set's) quality on labeled
 * events: accuracy, ROC AUC for two classes, the confusion matrix, and each
 * member's figures for a set, the way dist-keras's AccuracyEvaluator scored a
 * prediction column.
 *
 * It scores through the engine, so the figures are those of what `predict`
 * and the daemon compute; the training script may use it to weigh members.
 * Events come as JSON lines on stdin (the label a field of the event, as a
 * name or an index), or from a sigflow-replay CSV with --csv, where the label
 * column is read the way replay reads its key column. */
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sigflow/args.h"
#include "sigflow/engine.h"
#include "sigflow/log.h"
#include "sigflow/replay.h"
#include "commands.h"

static const char usage[] =
    "usage: sigflow evaluate --model PATH [--variables PATH] [options] < labeled.jsonl\n"
    "       sigflow evaluate --model SET.json [options] --csv FILE\n"
    "\n"
    "Score labeled events and print accuracy, ROC AUC (two labels), the confusion\n"
    "matrix and, for a model set, each member's accuracy and AUC.\n"
    "\n"
    "  -m, --model PATH       Keras model: HDF5 (.h5; whole model, or weights with\n"
    "                         --architecture), a .keras archive or an ONNX model;\n"
    "                         or a model set (JSON)\n"
    "  --architecture PATH    model.to_json() file for a weights-only HDF5\n"
    "  --onnx-output NAME     ONNX: the graph output to serve (default: the only float\n"
    "                         output, or the one named like probabilities)\n"
    "  --variables PATH       lwtnn-style inputs file (not with a set)\n"
    "  --label-field F        the event field holding the true label, as a label name\n"
    "                         (e.g. s) or an output index (default Label)\n"
    "  --csv FILE             read a sigflow-replay CSV (plain or .gz) instead of stdin\n"
    "  --id-field F           event id field (default EventId; '' for none)\n"
    "  --normalize MODE       standard (default), l2 or none\n"
    "  --batch-size N         events per inference batch (default 512)\n"
    SF_ARGS_INFER_USAGE
    SF_ARGS_LOADER_USAGE
    "  --json                 one JSON object instead of text\n"
    "  --log-format F         stderr messages as text (default) or JSON lines\n"
    "\n"
    "Exit status: 0 figures printed, 1 no event could be evaluated or input error,\n"
    "2 usage or model error.\n";

/* What each scored event contributes: its true label, and per scorer (the
 * combined output, then each member of a set) the predicted label and the
 * probability of the positive label. */
typedef struct tally {
    size_t n_scorers, n_labels;
    size_t n, cap;
    int *truth;
    int *pred;      /* n x n_scorers */
    double *score;  /* n x n_scorers */
} tally;

typedef struct evaluator {
    sf_engine *e;
    const char *label_field;
    size_t batch;
    int positive;   /* the label whose probability ranks events for the AUC */
    int *pending;   /* true label of each row of the batch */
    tally t;
    uint64_t rejected, unlabeled;
    sf_log_format log_format;
} evaluator;

#define SAY(ev, level, ...) sf_log_cli((ev)->log_format, level, "sigflow evaluate", __VA_ARGS__)

static int tally_grow(tally *t) {
    if (t->n < t->cap)
        return 0;
    size_t cap = t->cap ? 2 * t->cap : 4096;
    int *truth = realloc(t->truth, cap * sizeof *truth);
    if (!truth)
        return -1;
    t->truth = truth;
    int *pred = realloc(t->pred, cap * t->n_scorers * sizeof *pred);
    if (!pred)
        return -1;
    t->pred = pred;
    double *score = realloc(t->score, cap * t->n_scorers * sizeof *score);
    if (!score)
        return -1;
    t->score = score;
    t->cap = cap;
    return 0;
}

static int flush(evaluator *ev) {
    sf_engine *e = ev->e;
    size_t rows = sf_engine_rows(e);
    if (!rows)
        return 0;
    sf_engine_score(e);
    for (size_t i = 0; i < rows; i++) {
        if (tally_grow(&ev->t))
            return -1;
        tally *t = &ev->t;
        t->truth[t->n] = ev->pending[i];
        for (size_t s = 0; s < t->n_scorers; s++) {
            const float *p = s == 0 ? sf_engine_probs(e, i) : sf_engine_member_probs(e, s - 1, i);
            t->pred[t->n * t->n_scorers + s] = (int)sf_engine_label_of(e, p);
            t->score[t->n * t->n_scorers + s] = p[ev->positive];
        }
        t->n++;
    }
    sf_engine_clear(e);
    return 0;
}

/* The true label of text (a label name or an index), or -1. */
static int label_of(const sf_vars *v, const char *text, size_t len) {
    for (size_t i = 0; i < v->n_labels; i++)
        if (strlen(v->labels[i]) == len && !memcmp(v->labels[i], text, len))
            return (int)i;
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *end;
    long k = strtol(buf, &end, 10);
    return *end == '\0' && k >= 0 && (size_t)k < v->n_labels ? (int)k : -1;
}

static void complain(evaluator *ev, const char *where, uint64_t line, const char *why) {
    if (ev->rejected + ev->unlabeled <= 10)
        SAY(ev, SF_LOG_WARN, "%s:%llu: %s", where, (unsigned long long)line, why);
}

static int take(evaluator *ev, const char *where, uint64_t line, const char *json, size_t len,
                int truth) {
    if (truth < 0) {
        ev->unlabeled++;
        complain(ev, where, line, "no usable label");
        return 0;
    }
    char why[512];
    if (sf_engine_add(ev->e, json, len, why, sizeof why) != SF_REJECT_NONE) {
        ev->rejected++;
        complain(ev, where, line, why);
        return 0;
    }
    ev->pending[sf_engine_rows(ev->e) - 1] = truth;
    return sf_engine_rows(ev->e) == ev->batch ? flush(ev) : 0;
}

static int read_jsonl(evaluator *ev, FILE *in) {
    const sf_vars *v = sf_engine_vars(ev->e);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t lineno = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        int truth = -1;
        json_t *doc = json_loadb(line, (size_t)len, 0, NULL);
        json_t *l = json_object_get(doc, ev->label_field);
        char num[32];
        if (json_is_string(l))
            truth = label_of(v, json_string_value(l), json_string_length(l));
        else if (json_is_integer(l))
            truth = label_of(v, num, (size_t)snprintf(num, sizeof num, "%lld",
                                                      (long long)json_integer_value(l)));
        json_decref(doc);
        rc = take(ev, "stdin", lineno, line, (size_t)len, truth);
    }
    free(line);
    if (rc == 0 && ferror(in)) {
        SAY(ev, SF_LOG_ERROR, "error reading stdin");
        rc = -1;
    }
    return rc;
}

static int read_csv(evaluator *ev, const char *path) {
    const sf_vars *v = sf_engine_vars(ev->e);
    char err[512];
    sf_replay *r;
    /* The label column is dropped from the JSON, as replay does, and read as
     * the message key would be. */
    if (sf_replay_open(&r, path, NULL, ev->label_field, err, sizeof err)) {
        SAY(ev, SF_LOG_ERROR, "%s", err);
        return -1;
    }
    if (!sf_replay_has_key(r)) {
        SAY(ev, SF_LOG_ERROR, "%s: no column '%s'", path, ev->label_field);
        sf_replay_close(r);
        return -1;
    }
    sf_replay_msg m;
    int st, rc = 0;
    while (rc == 0 && (st = sf_replay_next(r, &m, err, sizeof err)) != SF_REPLAY_EOF) {
        if (st == SF_REPLAY_ERROR) {
            SAY(ev, SF_LOG_ERROR, "%s", err);
            rc = -1;
        } else if (st == SF_REPLAY_BAD) {
            ev->rejected++;
            if (ev->rejected + ev->unlabeled <= 10)
                SAY(ev, SF_LOG_WARN, "%s", err);
        } else {
            rc = take(ev, path, m.line, m.value, m.value_len, label_of(v, m.key, m.key_len));
        }
    }
    sf_replay_close(r);
    return rc;
}

static int cmp_pair(const void *a, const void *b) {
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return (x > y) - (x < y);
}

/* ROC AUC of scorer s for the positive label: the Mann-Whitney statistic,
 * ties counted half. NAN when it is undefined (a class absent) or when out of
 * memory: a figure is never made up. */
static double auc(const tally *t, size_t s, int positive) {
    double *v = malloc(t->n * 2 * sizeof *v);
    if (!v)
        return NAN;
    for (size_t i = 0; i < t->n; i++) {
        v[2 * i] = t->score[i * t->n_scorers + s];
        v[2 * i + 1] = t->truth[i] == positive;
    }
    qsort(v, t->n, 2 * sizeof *v, cmp_pair);
    double pos = 0, rank_sum = 0;
    for (size_t i = 0; i < t->n;) {
        size_t j = i;
        double npos = 0;
        while (j < t->n && v[2 * j] == v[2 * i])
            npos += v[2 * j++ + 1];
        rank_sum += npos * (double)(i + j + 1) / 2.0; /* mean rank of the tie, 1-based */
        pos += npos;
        i = j;
    }
    free(v);
    double neg = (double)t->n - pos;
    if (pos == 0 || neg == 0)
        return NAN;
    return (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg);
}

static double accuracy(const tally *t, size_t s) {
    size_t ok = 0;
    for (size_t i = 0; i < t->n; i++)
        ok += t->pred[i * t->n_scorers + s] == t->truth[i];
    return t->n ? (double)ok / (double)t->n : 0;
}

static json_t *auc_json(double a) {
    return isnan(a) ? json_null() : json_real(a);
}

/* Text: "n/a" where auc() is NAN. */
static const char *auc_text(double a, char *buf, size_t n) {
    if (isnan(a))
        return "n/a (needs events of both labels)";
    snprintf(buf, n, "%.6f", a);
    return buf;
}

static int report(const evaluator *ev, int as_json) {
    char num[32];
    const tally *t = &ev->t;
    const sf_vars *v = sf_engine_vars(ev->e);
    size_t nl = v->n_labels;
    int binary = nl == 2;
    size_t *conf = calloc(nl * nl, sizeof *conf);
    if (!conf)
        return -1;
    for (size_t i = 0; i < t->n; i++)
        conf[(size_t)t->truth[i] * nl + (size_t)t->pred[i * t->n_scorers]]++;
    if (as_json) {
        json_t *labels = json_array(), *matrix = json_array(), *members = json_array();
        for (size_t i = 0; i < nl; i++) {
            json_array_append_new(labels, json_string(v->labels[i]));
            json_t *row = json_array();
            for (size_t j = 0; j < nl; j++)
                json_array_append_new(row, json_integer((json_int_t)conf[i * nl + j]));
            json_array_append_new(matrix, row);
        }
        json_t *root = json_pack("{s:I, s:I, s:I, s:f, s:o, s:o}", "events", (json_int_t)t->n,
                                 "rejected", (json_int_t)ev->rejected, "unlabeled",
                                 (json_int_t)ev->unlabeled, "accuracy", accuracy(t, 0), "labels",
                                 labels, "confusion", matrix);
        if (binary) {
            json_object_set_new(root, "positive_label", json_string(v->labels[ev->positive]));
            json_object_set_new(root, "auc", auc_json(auc(t, 0, ev->positive)));
        }
        for (size_t s = 1; s < t->n_scorers; s++) {
            sf_engine_member_info mi;
            sf_engine_member(ev->e, s - 1, &mi);
            json_t *o = json_pack("{s:s, s:f, s:f}", "name", mi.name, "weight", mi.weight,
                                  "accuracy", accuracy(t, s));
            if (binary)
                json_object_set_new(o, "auc", auc_json(auc(t, s, ev->positive)));
            json_array_append_new(members, o);
        }
        if (t->n_scorers > 1)
            json_object_set_new(root, "members", members);
        else
            json_decref(members);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        json_decref(root);
        if (!s) {
            free(conf);
            return -1;
        }
        puts(s);
        free(s);
    } else {
        printf("events      %zu (rejected %llu, unlabeled %llu)\n", t->n,
               (unsigned long long)ev->rejected, (unsigned long long)ev->unlabeled);
        printf("accuracy    %.6f\n", accuracy(t, 0));
        if (binary)
            printf("roc auc     %s (positive label %s)\n",
                   auc_text(auc(t, 0, ev->positive), num, sizeof num), v->labels[ev->positive]);
        printf("confusion   rows: true label, columns: predicted\n%12s", "");
        for (size_t j = 0; j < nl; j++)
            printf(" %10.10s", v->labels[j]);
        printf("\n");
        for (size_t i = 0; i < nl; i++) {
            printf("  %-10.10s", v->labels[i]);
            for (size_t j = 0; j < nl; j++)
                printf(" %10zu", conf[i * nl + j]);
            printf("\n");
        }
        if (t->n_scorers > 1)
            printf("members\n");
        for (size_t s = 1; s < t->n_scorers; s++) {
            sf_engine_member_info mi;
            sf_engine_member(ev->e, s - 1, &mi);
            printf("  %-16s weight %.6f  accuracy %.6f", mi.name, mi.weight, accuracy(t, s));
            if (binary)
                printf("  roc auc %s", auc_text(auc(t, s, ev->positive), num, sizeof num));
            printf("\n");
        }
    }
    free(conf);
    return 0;
}

int sf_cmd_evaluate(int argc, char **argv) {
    sf_engine_conf ec;
    sf_engine_conf_init(&ec);
    ec.emit = SF_EMIT_ALL;
    int as_json = 0;
    const char *csv = NULL, *label_field = "Label";
    sf_log_format log_format = SF_LOG_TEXT;
    enum { O_LABEL = 256, O_CSV, O_JSON, O_LOGF };
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"architecture", required_argument, NULL, SF_ARGS_O_ARCH},
        {"onnx-output", required_argument, NULL, SF_ARGS_O_ONNX_OUTPUT},
        {"variables", required_argument, NULL, SF_ARGS_O_VARS}, {"id-field", required_argument, NULL, SF_ARGS_O_ID},
        {"normalize", required_argument, NULL, SF_ARGS_O_NORM},
        {"batch-size", required_argument, NULL, SF_ARGS_O_BATCH},
        {"label-field", required_argument, NULL, O_LABEL}, {"csv", required_argument, NULL, O_CSV},
        {"json", no_argument, NULL, O_JSON}, {"help", no_argument, NULL, 'h'},
        {"backend", required_argument, NULL, SF_ARGS_O_BACKEND},
        {"precision", required_argument, NULL, SF_ARGS_O_PRECISION},
        {"unsafe-model-loader", no_argument, NULL, SF_ARGS_O_UNSAFE_LOADER},
        {"log-format", required_argument, NULL, O_LOGF},
        {NULL, 0, NULL, 0}};
    sf_cli cli = sf_args_cli("sigflow evaluate", argc, argv);
    log_format = cli.format;
    int opt, bad = 0;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":m:h", opts, NULL)) != -1) {
        if (sf_args_engine(&cli, opt, optarg, &ec, &bad))
            continue;
        switch (opt) {
        case O_LABEL:
            if (!*optarg)
                bad = sf_args_bad(&cli, "--label-field", optarg, "a field name");
            label_field = optarg;
            break;
        case O_CSV: csv = optarg; break;
        case O_JSON: as_json = 1; break;
        case O_LOGF: bad |= sf_args_log_format(&cli, optarg, &log_format); break;
        case 'h': fputs(usage, stdout); return 0;
        default: bad = sf_args_getopt_error(&cli, opt, argv);
        }
    }
    if (!bad)
        bad = sf_args_engine_check(&cli, &ec, argc, argv);
    if (bad)
        return sf_args_try(&cli);
    char err[1024];
    evaluator ev = {.label_field = label_field, .batch = ec.batch_size, .log_format = log_format};
    int rc = 2;
    ec.loader.log_format = log_format;
    if (sf_engine_load(&ev.e, &ec, err, sizeof err)) {
        SAY(&ev, SF_LOG_ERROR, "%s", err);
        goto out;
    }
    /* Never a silent kernel choice: one line on stderr, as predict. */
    char desc[512];
    sf_engine_describe_inference(ev.e, desc, sizeof desc);
    SAY(&ev, SF_LOG_INFO, "forward pass: %s", desc);
    rc = 1;
    int sig = sf_engine_signal_index(ev.e);
    ev.positive = sig >= 0 ? sig : sf_engine_n_outputs(ev.e) > 1 ? 1 : 0;
    ev.t.n_labels = sf_engine_vars(ev.e)->n_labels;
    ev.t.n_scorers = 1 + (sf_engine_set(ev.e) ? sf_engine_n_members(ev.e) : 0);
    if (!(ev.pending = malloc(ev.batch * sizeof *ev.pending))) {
        SAY(&ev, SF_LOG_ERROR, "out of memory");
        goto out;
    }
    if ((csv ? read_csv(&ev, csv) : read_jsonl(&ev, stdin)) || flush(&ev)) {
        goto out;
    }
    if (ev.t.n == 0) {
        SAY(&ev, SF_LOG_ERROR, "no event could be evaluated (%llu rejected, %llu without a usable '%s')",
            (unsigned long long)ev.rejected, (unsigned long long)ev.unlabeled, label_field);
        goto out;
    }
    if (report(&ev, as_json) == 0 && fflush(stdout) == 0)
        rc = 0;
out:
    free(ev.pending);
    free(ev.t.truth);
    free(ev.t.pred);
    free(ev.t.score);
    sf_engine_free(ev.e);
    return rc;
}
