/* cmd_predict.c: `sigflow predict`, the offline twin of the daemon: JSON events on
 * stdin, one prediction per line on stdout, in input order.
 *
 * It runs the same engine (engine.h) and output format as `sigflow run`, so a file of events can be scored without Kafka and the results
 * compared byte for byte with what the daemon publishes. Lines are read with
 * getline (no length limit) and grouped so each GEMM sees a whole batch. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/args.h"
#include "sigflow/engine.h"
#include "sigflow/log.h"
#include "sigflow/output.h"
#include "commands.h"

static const char usage[] =
    "usage: sigflow predict --model PATH --variables PATH [options] < events.jsonl\n"
    "       sigflow predict --model SET.json [options] < events.jsonl\n"
    "\n"
    "Classify JSON events read from stdin, one per line; write one JSON object per\n"
    "line to stdout, in input order: the prediction, or {\"line\": N, \"error\": ...}.\n"
    "\n"
    "  -m, --model PATH       Keras model: HDF5 (.h5; whole model, or weights with\n"
    "                         --architecture), a .keras archive or an ONNX model;\n"
    "                         or a model set (JSON: members with their own\n"
    "                         variables)\n"
    "  --architecture PATH    model.to_json() file for a weights-only HDF5\n"
    "  --onnx-output NAME     ONNX: the graph output to serve (default: the only float\n"
    "                         output, or the one named like probabilities)\n"
    "  --variables PATH       lwtnn-style inputs file (names, offset, scale, labels)\n"
    "  --id-field F           event field copied to each output (default EventId; '' for none)\n"
    "  --normalize MODE       standard (default), l2 or none\n"
    "  --batch-size N         events per inference batch (default 512)\n"
    "  --log-format F         stderr messages as text (default) or JSON lines\n"
    SF_ARGS_INFER_USAGE
    SF_ARGS_LOADER_USAGE
    "  --emit-members         a set: add each member's probabilities to the outputs\n"
    "\n"
    "Exit status: 0 every event predicted, 1 some lines rejected, 2 usage or model error.\n";

/* One input line awaiting output: a row of the batch, or a rejection. */
typedef struct slot {
    uint64_t line;
    long row;                   /* index into the batch, or -1 when rejected */
    char *error;
} slot;

typedef struct predictor {
    sf_engine *engine;
    int emit_members;
    size_t batch;               /* rows per inference */
    size_t slot_cap;            /* lines held before a flush, rejected ones included */
    slot *slots;
    size_t n_slots;
    char *out;
    size_t out_size;
    uint64_t rejected;
    sf_log_format log_format;
} predictor;

static int flush(predictor *p) {
    if (sf_engine_rows(p->engine))
        sf_engine_score(p->engine);
    for (size_t i = 0; i < p->n_slots; i++) {
        slot *s = &p->slots[i];
        if (s->row < 0) {
            int n = snprintf(p->out, p->out_size, "{\"line\": %llu, \"error\": ",
                             (unsigned long long)s->line);
            int e = sf_output_json_string(p->out + n, p->out_size - (size_t)n - 1, s->error);
            if (e < 0)                                /* cannot happen: sized for it */
                e = sf_output_json_string(p->out + n, p->out_size - (size_t)n - 1, "?");
            printf("%.*s}\n", n + e, p->out);
            free(s->error);
            continue;
        }
        size_t row = (size_t)s->row;
        int n = sf_engine_output(p->engine, row, p->emit_members, -1, 0, p->out, p->out_size);
        if (n < 0) {
            sf_log_cli(p->log_format, SF_LOG_ERROR, "sigflow predict", "line %llu: output too large",
                       (unsigned long long)s->line);
            return -1;
        }
        fwrite(p->out, 1, (size_t)n, stdout);
        fputc('\n', stdout);
    }
    sf_engine_clear(p->engine);
    p->n_slots = 0;
    return 0;
}

static int take_line(predictor *p, uint64_t lineno, const char *line, size_t len) {
    slot *s = &p->slots[p->n_slots++];
    s->line = lineno;
    s->row = -1;
    s->error = NULL;
    char err[512];
    if (sf_engine_add(p->engine, line, len, err, sizeof err) == SF_REJECT_NONE) {
        s->row = (long)sf_engine_rows(p->engine) - 1;
    } else {
        p->rejected++;
        if (!(s->error = strdup(err)))
            return -1;
    }
    if (sf_engine_rows(p->engine) == p->batch || p->n_slots == p->slot_cap)
        return flush(p);
    return 0;
}

static int predict_stream(predictor *p, FILE *in) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t lineno = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        rc = take_line(p, lineno, line, (size_t)len);
    }
    free(line);
    if (rc == 0 && ferror(in)) {
        sf_log_cli(p->log_format, SF_LOG_ERROR, "sigflow predict", "error reading stdin");
        rc = -1;
    }
    if (rc == 0)
        rc = flush(p);
    else
        for (size_t i = 0; i < p->n_slots; i++)
            free(p->slots[i].error);
    return rc;
}

/* Room for the longest output line: the id, the longest label, every
 * probability, or an escaped error message. */
static size_t output_size(const sf_engine *e, const char *id_field) {
    const sf_vars *v = sf_engine_vars(e);
    size_t members = 0;
    for (size_t k = 0; k < sf_engine_n_members(e); k++) {
        sf_engine_member_info mi;
        sf_engine_member(e, k, &mi);
        members += 16 + 6 * (mi.name ? strlen(mi.name) : 0) + 32 * v->n_labels;
    }
    size_t longest = 0;
    for (size_t i = 0; i < v->n_labels; i++) {
        size_t l = strlen(v->labels[i]);
        longest = l > longest ? l : longest;
    }
    return 4096 + 6 * (id_field ? strlen(id_field) : 0) + SF_ID_MAX + 6 * longest +
           32 * v->n_labels + members;
}

int sf_cmd_predict(int argc, char **argv) {
    sf_engine_conf ec;
    sf_engine_conf_init(&ec);
    ec.emit = SF_EMIT_ALL; /* every line gets its prediction */
    sf_log_format log_format = SF_LOG_TEXT;
    enum { O_LOGF = 256, O_MEMBERS };
    int emit_members = 0;
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"architecture", required_argument, NULL, SF_ARGS_O_ARCH},
        {"onnx-output", required_argument, NULL, SF_ARGS_O_ONNX_OUTPUT},
        {"variables", required_argument, NULL, SF_ARGS_O_VARS}, {"id-field", required_argument, NULL, SF_ARGS_O_ID},
        {"normalize", required_argument, NULL, SF_ARGS_O_NORM},
        {"batch-size", required_argument, NULL, SF_ARGS_O_BATCH}, {"help", no_argument, NULL, 'h'},
        {"backend", required_argument, NULL, SF_ARGS_O_BACKEND},
        {"precision", required_argument, NULL, SF_ARGS_O_PRECISION},
        {"unsafe-model-loader", no_argument, NULL, SF_ARGS_O_UNSAFE_LOADER},
        {"log-format", required_argument, NULL, O_LOGF},
        {"emit-members", no_argument, NULL, O_MEMBERS},
        {NULL, 0, NULL, 0}};
    sf_cli cli = sf_args_cli("sigflow predict", argc, argv);
    log_format = cli.format;
    int opt, bad = 0;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":m:h", opts, NULL)) != -1) {
        if (sf_args_engine(&cli, opt, optarg, &ec, &bad))
            continue;
        switch (opt) {
        case O_LOGF: bad |= sf_args_log_format(&cli, optarg, &log_format); break;
        case O_MEMBERS: emit_members = 1; break;
        case 'h': fputs(usage, stdout); return 0;
        default: bad = sf_args_getopt_error(&cli, opt, argv);
        }
    }
    if (!bad)
        bad = sf_args_engine_check(&cli, &ec, argc, argv);
    if (bad)
        return sf_args_try(&cli);

    char err[1024];
    predictor p = {.emit_members = emit_members, .batch = ec.batch_size,
                   .slot_cap = 2 * ec.batch_size, .log_format = log_format};
    int rc = 2;
    /* The engine applies the daemon's threading, so offline and online results
     * agree bit for bit. */
    ec.loader.log_format = log_format;
    if (sf_engine_load(&p.engine, &ec, err, sizeof err)) {
        sf_log_cli(log_format, SF_LOG_ERROR, "sigflow predict", "%s", err);
        goto out;
    }
    /* Never a silent kernel choice: one line on stderr, as the daemon logs it. */
    char desc[512];
    sf_engine_describe_inference(p.engine, desc, sizeof desc);
    sf_log_cli(log_format, SF_LOG_INFO, "sigflow predict", "forward pass: %s", desc);
    p.slots = malloc(p.slot_cap * sizeof *p.slots);
    p.out_size = output_size(p.engine, ec.id_field);
    p.out = malloc(p.out_size);
    if (!p.slots || !p.out) {
        sf_log_cli(log_format, SF_LOG_ERROR, "sigflow predict", "out of memory for a batch of %zu events",
                   ec.batch_size);
        goto out;
    }
    if (predict_stream(&p, stdin) == 0) {
        if (fflush(stdout) || ferror(stdout))
            sf_log_cli(log_format, SF_LOG_ERROR, "sigflow predict", "error writing stdout");
        else
            rc = p.rejected ? 1 : 0;
    }
out:
    fflush(stdout);
    free(p.slots);
    free(p.out);
    sf_engine_free(p.engine);
    return rc;
}
