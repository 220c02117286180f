/* cmd_inspect.c: `sigflow inspect`, the network and its variables exactly as the
 * loader understood them.
 *
 * Before serving a model one wants to see what will run: the layers after
 * BatchNormalization folding, the activations, the widths, the parameter count
 * to compare with Keras' model.summary(), and the digest to compare with what a
 * running daemon reports. --json gives the same for scripts. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sigflow/args.h"
#include "sigflow/engine.h"
#include "sigflow/infer.h"
#include "sigflow/log.h"
#include "commands.h"

static const char usage[] =
    "usage: sigflow inspect --model PATH [--architecture PATH] [--variables PATH] [--json]\n"
    "       sigflow inspect --model SET.json [--json]\n"
    "\n"
    "Print a model (and its input variables) as loaded: layers, shapes, activations,\n"
    "parameter counts, input and output widths, sha256.\n"
    "\n"
    "  -m, --model PATH       Keras model: HDF5 (.h5; whole model, or weights with\n"
    "                         --architecture), a .keras archive or an ONNX model;\n"
    "                         or a model set (its members, weights (normalized),\n"
    "                         inputs, labels)\n"
    "  --architecture PATH    model.to_json() file for a weights-only HDF5\n"
    "  --onnx-output NAME     ONNX: the graph output to serve (default: the only float\n"
    "                         output, or the one named like probabilities)\n"
    "  --variables PATH       lwtnn-style inputs file, checked against the model\n"
    "  --json                 one JSON object instead of text\n"
    "  --log-format F         stderr messages as text (default) or JSON lines\n"
    SF_ARGS_INFER_USAGE
    SF_ARGS_LOADER_USAGE
    "\n"
    "It also builds the inference engine `run` and `predict` would use with the same\n"
    "--backend/--precision and says what it runs on (backend, kernel, threads).\n";

static const char *kind_name(sf_layer_kind k) {
    switch (k) {
    case SF_LAYER_IDENTITY: return "identity";
    case SF_LAYER_DENSE: return "dense";
    case SF_LAYER_SCALE: return "scale";
    case SF_LAYER_ACTIVATION: return "activation";
    }
    return "?";
}

static int has_activation(const sf_layer *l) {
    return l->kind == SF_LAYER_DENSE || l->kind == SF_LAYER_ACTIVATION;
}

static int has_alpha(const sf_layer *l) {
    return has_activation(l) && (l->activation == SF_ACT_ELU || l->activation == SF_ACT_LEAKY_RELU);
}

/* A float alpha as the decimal it was written as (0.1, not 0.100000001). */
static double float_as_written(float f) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f)
            return d;
    }
    return f;
}

/* The layer that a sigmoid head rewrote (see sf_model.sigmoid_head), shown as
 * Keras has it: one unit through a sigmoid. */
static int is_sigmoid_head(const sf_model *m, size_t i) {
    if (!m->sigmoid_head)
        return 0;
    size_t k = m->n_layers;
    while (k > 0 && m->layers[k - 1].kind == SF_LAYER_IDENTITY)
        k--;
    return i + 1 == k;
}

static const char *head_name(const sf_model *m) {
    return m->sigmoid_head ? "binary (sigmoid)" : m->n_outputs == 1 ? "single output" : "argmax";
}

/* "relu(max_value=6, threshold=0.3)": the options that differ from plain relu. */
static void relu_options(const sf_layer *l, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "relu(");
    const char *sep = "";
    if (!isinf(l->max_value) && n < size) {
        n += (size_t)snprintf(buf + n, size - n, "max_value=%.9g", float_as_written(l->max_value));
        sep = ", ";
    }
    if (l->threshold != 0 && n < size) {
        n += (size_t)snprintf(buf + n, size - n, "%sthreshold=%.9g", sep,
                              float_as_written(l->threshold));
        sep = ", ";
    }
    if (l->alpha != 0 && n < size)
        n += (size_t)snprintf(buf + n, size - n, "%snegative_slope=%.9g", sep,
                              float_as_written(l->alpha));
    if (n < size)
        snprintf(buf + n, size - n, ")");
}

/* The training block (vars.h), or what drift falls back to without it. */
static void print_training(const sf_vars *v) {
    if (!v->has_training) {
        printf("\ntraining      none: drift compares inputs with the mean -offset and std "
               "1/scale, and has no bins\n");
        return;
    }
    printf("\ntraining      ");
    if (v->training_rows >= 0)
        printf("%lld rows", v->training_rows);
    printf("\n\n  #  %-32s %13s %13s %8s %5s  %s\n", "input", "mean", "std", "missing", "bins",
           "quantile edges");
    for (size_t i = 0; i < v->n_vars; i++) {
        const sf_var_training *t = &v->vars[i].training;
        printf("%3zu  %-32s %13.6g %13.6g %8.4f %5zu ", i, v->vars[i].name, t->mean, t->std,
               t->missing_fraction, t->bins.n_edges ? t->bins.n_edges + 1 : 0);
        for (size_t k = 0; k < t->bins.n_edges; k++)
            printf(" %.4g", t->bins.edges[k]);
        printf("%s\n", t->given ? "" : " (implied by offset and scale)");
    }
    if (!v->has_score)
        return;
    printf("\nscore         p(%s)", v->score_label ? v->score_label : "signal");
    if (v->score_events >= 0)
        printf(" on %lld events", v->score_events);
    if (v->signal_rate >= 0)
        printf(", signal rate %.4f", v->signal_rate);
    printf(", %zu bins:", v->score.n_edges ? v->score.n_edges + 1 : 0);
    for (size_t k = 0; k < v->score.n_edges; k++)
        printf(" %.4g", v->score.edges[k]);
    printf("\n");
}

static json_t *bins_to_json(const sf_vars_bins *b, json_t *o) {
    if (!b->n_edges)
        return o;
    json_t *q = json_array(), *f = json_array();
    for (size_t k = 0; k <= b->n_edges; k++) {
        if (k < b->n_edges)
            json_array_append_new(q, json_real(b->edges[k]));
        json_array_append_new(f, json_real(b->fractions[k]));
    }
    json_object_set_new(o, "quantiles", q);
    json_object_set_new(o, "fractions", f);
    return o;
}

static json_t *training_to_json(const sf_vars *v) {
    if (!v->has_training)
        return json_null();
    json_t *inputs = json_array();
    for (size_t i = 0; i < v->n_vars; i++) {
        const sf_var_training *t = &v->vars[i].training;
        json_array_append_new(inputs, bins_to_json(&t->bins, json_pack(
            "{s:s, s:f, s:f, s:f, s:b}", "name", v->vars[i].name, "mean", t->mean, "std", t->std,
            "missing_fraction", t->missing_fraction, "given", t->given)));
    }
    json_t *o = json_pack("{s:o}", "inputs", inputs);
    if (v->training_rows >= 0)
        json_object_set_new(o, "rows", json_integer(v->training_rows));
    if (v->has_score) {
        json_t *sc = bins_to_json(&v->score, json_object());
        if (v->score_label)
            json_object_set_new(sc, "label", json_string(v->score_label));
        if (v->score_events >= 0)
            json_object_set_new(sc, "events", json_integer(v->score_events));
        if (v->signal_rate >= 0)
            json_object_set_new(sc, "signal_rate", json_real(v->signal_rate));
        json_object_set_new(o, "score", sc);
    }
    return o;
}

static void print_text(const sf_model *m, const char *arch, const sf_vars *v, const char *inference) {
    printf("model         %s\n", m->path);
    printf("inference     %s\n", inference);
    if (arch)
        printf("architecture  %s\n", arch);
    printf("sha256        %s\n", m->sha256);
    printf("inputs        %zu\n", m->n_inputs);
    printf("outputs       %zu\n", m->n_outputs);
    printf("classifier    %s%s\n", head_name(m),
           m->sigmoid_head ? ": probabilities [1 - p, p], label 1 when p >= 0.5" : "");
    printf("parameters    %zu\n\n", m->n_params);
    printf("  #  %-24s %-20s %-10s %-13s %-22s %s\n", "layer", "class", "kind", "shape",
           "activation", "params");
    for (size_t i = 0; i < m->n_layers; i++) {
        const sf_layer *l = &m->layers[i];
        char shape[48], act[96] = "-";
        snprintf(shape, sizeof shape, "%zu -> %zu", l->n_in, is_sigmoid_head(m, i) ? 1 : l->n_out);
        if (is_sigmoid_head(m, i))
            snprintf(act, sizeof act, "sigmoid");
        else if (has_activation(l) && l->activation == SF_ACT_RELU_FULL)
            relu_options(l, act, sizeof act);
        else if (has_alpha(l))
            snprintf(act, sizeof act, "%s(alpha=%.9g)", sf_activation_name(l->activation),
                     float_as_written(l->alpha));
        else if (has_activation(l))
            snprintf(act, sizeof act, "%s", sf_activation_name(l->activation));
        printf("%3zu  %-24s %-20s %-10s %-13s %-22s %zu%s\n", i, l->name, l->keras_class,
               kind_name(l->kind), shape, act, l->n_params,
               l->kind == SF_LAYER_DENSE && !l->bias ? " (no bias)" : "");
    }
    if (!v)
        return;
    printf("\nvariables     %s (%zu)\n", v->path, v->n_vars);
    if (v->has_missing_value)
        printf("missing value %.17g\n", v->missing_value);
    else
        printf("missing value none\n");
    printf("\n  #  %-32s %15s %15s %15s\n", "name", "offset", "scale", "default");
    for (size_t i = 0; i < v->n_vars; i++) {
        const sf_var *x = &v->vars[i];
        char def[32] = "-";
        if (x->has_default)
            snprintf(def, sizeof def, "%.9g", x->default_value);
        printf("%3zu  %-32s %15.9g %15.9g %15s\n", i, x->name, x->offset, x->scale, def);
    }
    printf("\nlabels       ");
    for (size_t i = 0; i < v->n_labels; i++)
        printf(" %zu:%s", i, v->labels[i]);
    printf("\n");
    print_training(v);
}

static json_t *to_json(const sf_model *m, const char *arch, const sf_vars *v, const sf_engine *e) {
    json_t *layers = json_array();
    for (size_t i = 0; i < m->n_layers; i++) {
        const sf_layer *l = &m->layers[i];
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "name", l->name, "class",
                              l->keras_class, "kind", kind_name(l->kind), "n_in",
                              (json_int_t)l->n_in, "n_out",
                              (json_int_t)(is_sigmoid_head(m, i) ? 1 : l->n_out), "params",
                              (json_int_t)l->n_params);
        if (has_activation(l))
            json_object_set_new(o, "activation", json_string(is_sigmoid_head(m, i) ? "sigmoid"
                                                             : sf_activation_name(l->activation)));
        if (has_alpha(l))
            json_object_set_new(o, "alpha", json_real(float_as_written(l->alpha)));
        if (has_activation(l) && l->activation == SF_ACT_RELU_FULL) {
            json_object_set_new(o, "activation", json_string("relu"));
            json_object_set_new(o, "max_value", isinf(l->max_value) ? json_null()
                                                : json_real(float_as_written(l->max_value)));
            json_object_set_new(o, "threshold", json_real(float_as_written(l->threshold)));
            json_object_set_new(o, "negative_slope", json_real(float_as_written(l->alpha)));
        }
        if (l->kind == SF_LAYER_DENSE)
            json_object_set_new(o, "use_bias", json_boolean(l->bias != NULL));
        json_array_append_new(layers, o);
    }
    json_t *root = json_pack("{s:s, s:s?, s:s, s:I, s:I, s:I, s:o}", "model", m->path,
                             "architecture", arch, "sha256", m->sha256, "inputs",
                             (json_int_t)m->n_inputs, "outputs", (json_int_t)m->n_outputs,
                             "params", (json_int_t)m->n_params, "layers", layers);
    sf_infer_info in;
    sf_engine_inference(e, &in);
    json_object_set_new(root, "inference",
                        json_pack("{s:s, s:s, s:s, s:i, s:i, s:b, s:b, s:b}", "backend",
                                  sf_backend_name(in.backend), "precision",
                                  sf_precision_name(in.precision), "kernel", in.kernel, "threads",
                                  in.threads, "library_threads", in.library_threads, "generic",
                                  in.generic, "bf16_native", in.bf16_native, "int8_native",
                                  in.int8_native));
    json_object_set_new(root, "classifier", json_string(head_name(m)));
    if (!v)
        return root;
    json_t *inputs = json_array();
    for (size_t i = 0; i < v->n_vars; i++) {
        const sf_var *x = &v->vars[i];
        json_t *o = json_pack("{s:s, s:f, s:f}", "name", x->name, "offset", x->offset, "scale",
                              x->scale);
        if (x->has_default)
            json_object_set_new(o, "default", json_real(x->default_value));
        json_array_append_new(inputs, o);
    }
    json_t *labels = json_array();
    for (size_t i = 0; i < v->n_labels; i++)
        json_array_append_new(labels, json_string(v->labels[i]));
    json_t *vj = json_pack("{s:s, s:o, s:o, s:o}", "path", v->path, "missing_value",
                           v->has_missing_value ? json_real(v->missing_value) : json_null(),
                           "inputs", inputs, "labels", labels);
    json_object_set_new(vj, "training", training_to_json(v));
    json_object_set_new(root, "variables", vj);
    return root;
}

/* A set: the members at a glance, then each member as a single model prints. */
static void print_set(const sf_engine *e, const char *inference) {
    const sf_modelset *s = sf_engine_set(e);
    const sf_vars *v = sf_engine_vars(e);
    printf("model set     %s\n", s->path);
    printf("name          %s\n", s->name);
    printf("sha256        %s\n", s->sha256);
    printf("members       %zu\n", s->n_members);
    printf("inputs        %zu (union of the members' variables, one parse per event)\n",
           sf_engine_n_inputs(e));
    printf("labels       ");
    for (size_t i = 0; i < v->n_labels; i++)
        printf(" %zu:%s", i, v->labels[i]);
    printf("\n\n  #  %-16s %8s %10s %6s %10s  %-12s %s\n", "member", "weight", "as written",
           "inputs", "params", "sha256", "model / variables");
    for (size_t k = 0; k < sf_engine_n_members(e); k++) {
        sf_engine_member_info mi;
        sf_engine_member(e, k, &mi);
        printf("%3zu  %-16s %8.6f %10.6g %6zu %10zu  %.12s %s\n%70s %s\n", k, mi.name, mi.weight,
               s->members[k].weight, mi.model->n_inputs, mi.model->n_params, mi.model->sha256,
               mi.path, "", mi.vars_path);
    }
    for (size_t k = 0; k < sf_engine_n_members(e); k++) {
        sf_engine_member_info mi;
        sf_engine_member(e, k, &mi);
        printf("\n==== member %s (weight %.6f)\n", mi.name, mi.weight);
        print_text(mi.model, NULL, mi.vars, inference);
    }
}

static json_t *set_to_json(const sf_engine *e) {
    const sf_modelset *s = sf_engine_set(e);
    const sf_vars *v = sf_engine_vars(e);
    json_t *labels = json_array(), *members = json_array();
    for (size_t i = 0; i < v->n_labels; i++)
        json_array_append_new(labels, json_string(v->labels[i]));
    for (size_t k = 0; k < sf_engine_n_members(e); k++) {
        sf_engine_member_info mi;
        sf_engine_member(e, k, &mi);
        json_t *o = to_json(mi.model, NULL, mi.vars, e);
        json_object_set_new(o, "name", json_string(mi.name));
        json_object_set_new(o, "weight", json_real(mi.weight));
        json_object_set_new(o, "weight_as_written", json_real(s->members[k].weight));
        json_array_append_new(members, o);
    }
    return json_pack("{s:s, s:s, s:s, s:I, s:o, s:o}", "set", s->path, "name", s->name, "sha256",
                     s->sha256, "inputs", (json_int_t)sf_engine_n_inputs(e), "labels", labels,
                     "members", members);
}

int sf_cmd_inspect(int argc, char **argv) {
    sf_engine_conf ec;
    sf_engine_conf_init(&ec);
    ec.emit = SF_EMIT_ALL; /* shown as loaded: no signal label needed */
    /* ec.threads stays 0, sigflow's policy, so the "inference" line says what
     * run and predict would use (nothing runs on those threads). */
    int as_json = 0;
    sf_log_format log_format = SF_LOG_TEXT;
    enum { O_JSON = 256, O_LOGF };
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"architecture", required_argument, NULL, SF_ARGS_O_ARCH},
        {"onnx-output", required_argument, NULL, SF_ARGS_O_ONNX_OUTPUT},
        {"variables", required_argument, NULL, SF_ARGS_O_VARS}, {"json", no_argument, NULL, O_JSON},
        {"backend", required_argument, NULL, SF_ARGS_O_BACKEND},
        {"precision", required_argument, NULL, SF_ARGS_O_PRECISION},
        {"unsafe-model-loader", no_argument, NULL, SF_ARGS_O_UNSAFE_LOADER},
        {"log-format", required_argument, NULL, O_LOGF},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    sf_cli cli = sf_args_cli("sigflow inspect", argc, argv);
    log_format = cli.format;
    int opt, bad = 0;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":m:h", opts, NULL)) != -1) {
        if (sf_args_engine(&cli, opt, optarg, &ec, &bad))
            continue;
        switch (opt) {
        case O_JSON: as_json = 1; break;
        case O_LOGF: bad |= sf_args_log_format(&cli, optarg, &log_format); break;
        case 'h': fputs(usage, stdout); return 0;
        default: bad = sf_args_getopt_error(&cli, opt, argv);
        }
    }
    if (!bad && (optind < argc || !ec.model_path)) {
        if (optind < argc)
            bad = sf_args_usage(&cli, "unexpected argument '%s'", argv[optind]);
        else
            bad = sf_args_usage(&cli, "--model is required");
    }
    if (bad)
        return sf_args_try(&cli);
    char err[1024];
    sf_engine *e = NULL;
    int rc = 2;
    ec.loader.log_format = log_format;
    if (sf_engine_load(&e, &ec, err, sizeof err)) {
        sf_log_cli(log_format, SF_LOG_ERROR, "sigflow inspect", "%s", err);
        goto out;
    }
    const sf_model *m = sf_engine_model(e);
    const sf_vars *v = sf_engine_vars(e);
    const char *arch_path = ec.arch_path;
    /* What run and predict would run on: the engine's forward pass. */
    char desc[512];
    sf_engine_describe_inference(e, desc, sizeof desc);
    if (as_json) {
        json_t *j = sf_engine_set(e) ? set_to_json(e) : to_json(m, arch_path, v, e);
        char *s = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))
                    : NULL;
        json_decref(j);
        if (!s) {
            sf_log_cli(log_format, SF_LOG_ERROR, "sigflow inspect", "out of memory");
            goto out;
        }
        puts(s);
        free(s);
    } else if (sf_engine_set(e)) {
        print_set(e, desc);
    } else {
        print_text(m, arch_path, v, desc);
    }
    rc = fflush(stdout) == 0 ? 0 : 2;
out:
    sf_engine_free(e);
    return rc;
}
