/* vars.c: read the lwtnn-style variables file that says which event field feeds
 * which network input, how to standardize it, and what the outputs are called.
 *
 * The file is the contract between the physicist who trained the model and the
 * service, so it is checked strictly: every error names the file and the entry,
 * a duplicate name is refused (it would silently feed one field twice), and the
 * widths must match the model before anything is served. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "sigflow/vars.h"

void sf_vars_free(sf_vars *v) {
    if (!v)
        return;
    for (size_t i = 0; i < v->n_vars; i++)
        free(v->vars[i].name);
    free(v->vars);
    for (size_t i = 0; i < v->n_labels; i++)
        free(v->labels[i]);
    free(v->labels);
    free(v->score_label);
    free(v->calibration_inputs);
    free(v->calibration_range);
    free(v->path);
    free(v);
}

static const char *json_type_name(const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A number that must also fit a float, since the network computes in float. */
static int get_number(const char *path, const char *where, const json_t *obj, const char *key,
                      int required, double *out, int *present, char *errstr, size_t errstr_size) {
    const json_t *j = json_object_get(obj, key);
    if (present)
        *present = 0;
    if (!j || (!required && json_is_null(j))) {
        if (!required)
            return 0;
        snprintf(errstr, errstr_size, "%s: %s: '%s' is missing", path, where, key);
        return -1;
    }
    if (!json_is_number(j)) {
        snprintf(errstr, errstr_size, "%s: %s: '%s' must be a number, got %s", path, where, key,
                 json_type_name(j));
        return -1;
    }
    double d = json_number_value(j);
    if (!isfinite(d) || fabs(d) > FLT_MAX) {
        snprintf(errstr, errstr_size, "%s: %s: '%s' (%g) is outside the float range", path, where,
                 key, d);
        return -1;
    }
    *out = d;
    if (present)
        *present = 1;
    return 0;
}

static int load_inputs(sf_vars *v, const json_t *inputs, const char *where,
                       char *errstr, size_t errstr_size) {
    size_t n = json_array_size(inputs);
    if (n == 0) {
        snprintf(errstr, errstr_size, "%s: %s: no input variables", v->path, where);
        return -1;
    }
    v->vars = calloc(n, sizeof *v->vars);
    if (!v->vars) {
        snprintf(errstr, errstr_size, "%s: out of memory", v->path);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(inputs, i);
        char at[128];
        snprintf(at, sizeof at, "%s[%zu]", where, i);
        if (!json_is_object(e)) {
            snprintf(errstr, errstr_size, "%s: %s: must be an object, got %s", v->path, at,
                     json_type_name(e));
            return -1;
        }
        const json_t *name = json_object_get(e, "name");
        if (!name) {
            snprintf(errstr, errstr_size, "%s: %s: 'name' is missing", v->path, at);
            return -1;
        }
        if (!json_is_string(name) || json_string_length(name) == 0 ||
            strlen(json_string_value(name)) != json_string_length(name)) {
            snprintf(errstr, errstr_size, "%s: %s: 'name' must be a non-empty string", v->path, at);
            return -1;
        }
        sf_var *var = &v->vars[i];
        for (size_t k = 0; k < i; k++) {
            if (!strcmp(v->vars[k].name, json_string_value(name))) {
                snprintf(errstr, errstr_size, "%s: %s: duplicate variable '%s' (also %s[%zu])",
                         v->path, at, json_string_value(name), where, k);
                return -1;
            }
        }
        var->name = strdup(json_string_value(name));
        if (!var->name) {
            snprintf(errstr, errstr_size, "%s: out of memory", v->path);
            return -1;
        }
        v->n_vars = i + 1;
        snprintf(at, sizeof at, "%s[%zu] '%.64s'", where, i, var->name);
        if (get_number(v->path, at, e, "offset", 1, &var->offset, NULL, errstr, errstr_size) ||
            get_number(v->path, at, e, "scale", 1, &var->scale, NULL, errstr, errstr_size) ||
            get_number(v->path, at, e, "default", 0, &var->default_value, &var->has_default,
                       errstr, errstr_size) ||
            get_number(v->path, at, e, "fill", 0, &var->fill, &var->has_fill, errstr,
                       errstr_size))
            return -1;
        /* (value + offset) * 0 feeds the network a constant: a typo, not a choice. */
        if (var->scale == 0) {
            snprintf(errstr, errstr_size, "%s: %s: 'scale' is 0, which erases the variable",
                     v->path, at);
            return -1;
        }
    }
    return 0;
}

static int load_labels(sf_vars *v, const json_t *labels, const char *where,
                       char *errstr, size_t errstr_size) {
    if (!json_is_array(labels)) {
        snprintf(errstr, errstr_size, "%s: %s: must be an array of strings, got %s", v->path,
                 where, json_type_name(labels));
        return -1;
    }
    size_t n = json_array_size(labels);
    if (n == 0) { /* a label would print as "0": say so rather than guess */
        snprintf(errstr, errstr_size, "%s: %s: empty; name every output, or leave the labels out "
                 "to have them numbered", v->path, where);
        return -1;
    }
    v->labels = calloc(n, sizeof *v->labels);
    if (!v->labels) {
        snprintf(errstr, errstr_size, "%s: out of memory", v->path);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *l = json_array_get(labels, i);
        if (!json_is_string(l) || strlen(json_string_value(l)) != json_string_length(l) ||
            json_string_length(l) == 0) {
            snprintf(errstr, errstr_size, "%s: %s[%zu]: must be a non-empty string, got %s",
                     v->path, where, i, json_is_string(l) ? "\"\"" : json_type_name(l));
            return -1;
        }
        for (size_t k = 0; k < i; k++) {
            if (!strcmp(v->labels[k], json_string_value(l))) {
                snprintf(errstr, errstr_size, "%s: %s[%zu]: duplicate label '%s'", v->path, where,
                         i, json_string_value(l));
                return -1;
            }
        }
        v->labels[i] = strdup(json_string_value(l));
        if (!v->labels[i]) {
            snprintf(errstr, errstr_size, "%s: out of memory", v->path);
            return -1;
        }
        v->n_labels = i + 1;
    }
    return 0;
}

/* The graph style wraps the variables in exactly one input node and the labels
 * in exactly one output node; several nodes mean a multi-input or multi-output
 * network, which a single feature row cannot feed. */
static int load_graph(sf_vars *v, const json_t *root, const json_t *inputs,
                      char *errstr, size_t errstr_size) {
    if (json_array_size(inputs) != 1) {
        snprintf(errstr, errstr_size,
                 "%s: inputs: %zu input nodes; sigflow serves networks with exactly one",
                 v->path, json_array_size(inputs));
        return -1;
    }
    const json_t *node = json_array_get(inputs, 0);
    const json_t *vars = json_object_get(node, "variables");
    if (!json_is_array(vars)) {
        snprintf(errstr, errstr_size, "%s: inputs[0]: 'variables' must be an array", v->path);
        return -1;
    }
    if (load_inputs(v, vars, "inputs[0].variables", errstr, errstr_size))
        return -1;
    const json_t *seq = json_object_get(root, "input_sequences");
    if (seq && !(json_is_array(seq) && json_array_size(seq) == 0)) {
        snprintf(errstr, errstr_size,
                 "%s: input_sequences: sequence inputs are not supported (must be empty)", v->path);
        return -1;
    }
    const json_t *outputs = json_object_get(root, "outputs");
    if (!outputs)
        return 0;
    if (!json_is_array(outputs)) {
        snprintf(errstr, errstr_size, "%s: outputs: must be an array, got %s", v->path,
                 json_type_name(outputs));
        return -1;
    }
    if (json_array_size(outputs) != 1) {
        snprintf(errstr, errstr_size,
                 "%s: outputs: %zu output nodes; sigflow serves networks with exactly one",
                 v->path, json_array_size(outputs));
        return -1;
    }
    const json_t *onode = json_array_get(outputs, 0);
    if (!json_is_object(onode)) {
        snprintf(errstr, errstr_size, "%s: outputs[0]: must be an object", v->path);
        return -1;
    }
    const json_t *labels = json_object_get(onode, "labels");
    if (!labels)
        return 0;
    return load_labels(v, labels, "outputs[0].labels", errstr, errstr_size);
}

/* quantiles + fractions: ascending edges, one more fraction than edges, the
 * fractions a distribution (each in [0, 1], summing to 1 within rounding). */
static int load_bins(const char *path, const char *at, const json_t *o, sf_vars_bins *b,
                     char *errstr, size_t errstr_size) {
    const json_t *q = json_object_get(o, "quantiles"), *f = json_object_get(o, "fractions");
    b->n_edges = 0;
    if (!q && !f)
        return 0;
    if (!json_is_array(q) || json_array_size(q) == 0 || json_array_size(q) > SF_VARS_MAX_EDGES) {
        snprintf(errstr, errstr_size, "%s: %s: 'quantiles' must be an array of 1 to %d numbers",
                 path, at, SF_VARS_MAX_EDGES);
        return -1;
    }
    size_t n = json_array_size(q);
    if (!json_is_array(f) || json_array_size(f) != n + 1) {
        snprintf(errstr, errstr_size, "%s: %s: 'fractions' must be an array of %zu numbers "
                 "(one per bin: one more than the %zu quantiles)", path, at, n + 1, n);
        return -1;
    }
    double sum = 0;
    for (size_t k = 0; k <= n; k++) {
        const json_t *e = k < n ? json_array_get(q, k) : NULL, *fr = json_array_get(f, k);
        if (e && (!json_is_number(e) || !isfinite(json_number_value(e)) ||
                  (k && json_number_value(e) < b->edges[k - 1]))) {
            snprintf(errstr, errstr_size, "%s: %s: quantiles[%zu] must be a finite number not "
                     "below the one before it", path, at, k);
            return -1;
        }
        if (!json_is_number(fr) || !(json_number_value(fr) >= 0 && json_number_value(fr) <= 1)) {
            snprintf(errstr, errstr_size, "%s: %s: fractions[%zu] must be a number in [0, 1]",
                     path, at, k);
            return -1;
        }
        if (e)
            b->edges[k] = json_number_value(e);
        b->fractions[k] = json_number_value(fr);
        sum += b->fractions[k];
    }
    if (fabs(sum - 1) > 1e-3) {
        snprintf(errstr, errstr_size, "%s: %s: 'fractions' sum to %.6g, not 1", path, at, sum);
        return -1;
    }
    b->n_edges = n;
    return 0;
}

static int get_fraction(const char *path, const char *at, const json_t *o, const char *key,
                        double *out, char *errstr, size_t errstr_size) {
    int present;
    if (get_number(path, at, o, key, 0, out, &present, errstr, errstr_size))
        return -1;
    if (present && !(*out >= 0 && *out <= 1)) {
        snprintf(errstr, errstr_size, "%s: %s: '%s' (%g) must be in [0, 1]", path, at, key, *out);
        return -1;
    }
    return 0;
}

static int load_count(const char *path, const char *at, const json_t *o, const char *key,
                      long long *out, char *errstr, size_t errstr_size) {
    const json_t *j = json_object_get(o, key);
    *out = -1;
    if (!j)
        return 0;
    if (!json_is_integer(j) || json_integer_value(j) < 0) {
        snprintf(errstr, errstr_size, "%s: %s: '%s' must be a non-negative integer", path, at,
                 key);
        return -1;
    }
    *out = json_integer_value(j);
    return 0;
}

/* training.calibration (vars.h): an array of {inputs, range} per Dense layer. */
static int load_calibration(sf_vars *v, const json_t *tr, char *errstr, size_t errstr_size) {
    const json_t *cal = json_object_get(tr, "calibration");
    if (!cal)
        return 0;
    const json_t *di = json_object_get(cal, "dense_inputs");
    if (!json_is_object(cal) || !json_is_array(di) || json_array_size(di) == 0) {
        snprintf(errstr, errstr_size, "%s: training.calibration: must be an object with "
                 "'dense_inputs', a non-empty array", v->path);
        return -1;
    }
    size_t n = json_array_size(di);
    v->calibration_inputs = malloc(n * sizeof *v->calibration_inputs);
    v->calibration_range = malloc(n * sizeof *v->calibration_range);
    if (!v->calibration_inputs || !v->calibration_range) {
        snprintf(errstr, errstr_size, "%s: out of memory", v->path);
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        const json_t *e = json_array_get(di, k);
        char at[64];
        snprintf(at, sizeof at, "training.calibration.dense_inputs[%zu]", k);
        long long inputs;
        double range;
        if (!json_is_object(e)) {
            snprintf(errstr, errstr_size, "%s: %s: must be an object", v->path, at);
            return -1;
        }
        if (load_count(v->path, at, e, "inputs", &inputs, errstr, errstr_size) ||
            get_number(v->path, at, e, "range", 1, &range, NULL, errstr, errstr_size))
            return -1;
        if (inputs <= 0 || !(range > 0)) {
            snprintf(errstr, errstr_size, "%s: %s: 'inputs' must be given and positive, and "
                     "'range' positive", v->path, at);
            return -1;
        }
        v->calibration_inputs[k] = (size_t)inputs;
        v->calibration_range[k] = (float)range;
    }
    v->n_calibration = n;
    return 0;
}

/* The optional `training` block (vars.h); the fallback first, so an input the
 * block leaves out keeps it. */
static int load_training(sf_vars *v, const json_t *root, char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < v->n_vars; i++) {
        sf_var_training *t = &v->vars[i].training;
        memset(t, 0, sizeof *t);
        t->mean = -v->vars[i].offset;
        t->std = 1 / fabs(v->vars[i].scale);
    }
    v->training_rows = v->score_events = -1;
    v->signal_rate = -1;
    const json_t *tr = json_object_get(root, "training");
    if (!tr)
        return 0;
    if (!json_is_object(tr)) {
        snprintf(errstr, errstr_size, "%s: training: must be an object, got %s", v->path,
                 json_type_name(tr));
        return -1;
    }
    v->has_training = 1;
    if (load_count(v->path, "training", tr, "rows", &v->training_rows, errstr, errstr_size) ||
        load_calibration(v, tr, errstr, errstr_size))
        return -1;
    const json_t *inputs = json_object_get(tr, "inputs");
    if (inputs && !json_is_array(inputs)) {
        snprintf(errstr, errstr_size, "%s: training.inputs: must be an array, got %s", v->path,
                 json_type_name(inputs));
        return -1;
    }
    for (size_t k = 0; k < json_array_size(inputs); k++) {
        const json_t *e = json_array_get(inputs, k);
        const char *name = json_string_value(json_object_get(e, "name"));
        char at[160];
        snprintf(at, sizeof at, "training.inputs[%zu]", k);
        if (!json_is_object(e) || !name) {
            snprintf(errstr, errstr_size, "%s: %s: must be an object with a 'name'", v->path, at);
            return -1;
        }
        size_t i = 0;
        while (i < v->n_vars && strcmp(v->vars[i].name, name))
            i++;
        if (i == v->n_vars) {
            snprintf(errstr, errstr_size, "%s: %s: '%.64s' is not one of the inputs", v->path, at,
                     name);
            return -1;
        }
        snprintf(at, sizeof at, "training.inputs[%zu] '%.64s'", k, name);
        sf_var_training *t = &v->vars[i].training;
        if (t->given) {
            snprintf(errstr, errstr_size, "%s: %s: the input is described twice", v->path, at);
            return -1;
        }
        if (get_number(v->path, at, e, "mean", 1, &t->mean, NULL, errstr, errstr_size) ||
            get_number(v->path, at, e, "std", 1, &t->std, NULL, errstr, errstr_size) ||
            get_fraction(v->path, at, e, "missing_fraction", &t->missing_fraction, errstr,
                         errstr_size) ||
            load_bins(v->path, at, e, &t->bins, errstr, errstr_size))
            return -1;
        if (!(t->std > 0)) {
            snprintf(errstr, errstr_size, "%s: %s: 'std' must be positive", v->path, at);
            return -1;
        }
        t->given = 1;
    }
    const json_t *sc = json_object_get(tr, "score");
    if (!sc)
        return 0;
    if (!json_is_object(sc)) {
        snprintf(errstr, errstr_size, "%s: training.score: must be an object, got %s", v->path,
                 json_type_name(sc));
        return -1;
    }
    const json_t *label = json_object_get(sc, "label");
    if (label && (!json_is_string(label) || !(v->score_label = strdup(json_string_value(label))))) {
        snprintf(errstr, errstr_size, "%s: training.score: 'label' must be a string", v->path);
        return -1;
    }
    if (load_count(v->path, "training.score", sc, "events", &v->score_events, errstr,
                   errstr_size) ||
        get_fraction(v->path, "training.score", sc, "signal_rate", &v->signal_rate, errstr,
                     errstr_size) ||
        load_bins(v->path, "training.score", sc, &v->score, errstr, errstr_size))
        return -1;
    v->has_score = 1;
    return 0;
}

int sf_vars_load(sf_vars **out, const char *path, char *errstr, size_t errstr_size) {
    *out = NULL;
    json_error_t jerr;
    /* Opened here so a directory or an unreadable path says so, rather than
     * jansson's "'[' or '{' expected" about the bytes it could not read. */
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || S_ISDIR(st.st_mode)) {
        snprintf(errstr, errstr_size, "%s: cannot read: %s", path,
                 f && S_ISDIR(st.st_mode) ? "it is a directory" : strerror(errno));
        if (f)
            fclose(f);
        return -1;
    }
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    int read_error = ferror(f) ? errno : 0;
    fclose(f);
    if (read_error) {
        json_decref(root);
        snprintf(errstr, errstr_size, "%s: cannot read: %s", path, strerror(read_error));
        return -1;
    }
    if (!root) {
        if (jerr.line > 0)
            snprintf(errstr, errstr_size, "%s: line %d column %d: %s", path, jerr.line,
                     jerr.column, jerr.text);
        else
            snprintf(errstr, errstr_size, "%s: %s", path, jerr.text);
        return -1;
    }
    sf_vars *v = calloc(1, sizeof *v);
    if (!v || !(v->path = strdup(path))) {
        free(v);
        json_decref(root);
        snprintf(errstr, errstr_size, "%s: out of memory", path);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        snprintf(errstr, errstr_size, "%s: expected a JSON object at the top level", path);
        goto done;
    }
    const json_t *inputs = json_object_get(root, "inputs");
    if (!inputs) {
        snprintf(errstr, errstr_size, "%s: 'inputs' is missing", path);
        goto done;
    }
    if (!json_is_array(inputs) || json_array_size(inputs) == 0) {
        snprintf(errstr, errstr_size, "%s: 'inputs' must be a non-empty array", path);
        goto done;
    }
    const json_t *mv = json_object_get(root, "missing_value");
    if (mv) {
        if (!json_is_number(mv)) {
            snprintf(errstr, errstr_size, "%s: 'missing_value' must be a number, got %s", path,
                     json_type_name(mv));
            goto done;
        }
        v->has_missing_value = 1;
        v->missing_value = json_number_value(mv);
    }
    const json_t *first = json_array_get(inputs, 0);
    if (json_is_object(first) && json_object_get(first, "variables")) {
        if (load_graph(v, root, inputs, errstr, errstr_size))
            goto done;
    } else {
        if (load_inputs(v, inputs, "inputs", errstr, errstr_size))
            goto done;
        const json_t *labels = json_object_get(root, "class_labels");
        if (labels && load_labels(v, labels, "class_labels", errstr, errstr_size))
            goto done;
    }
    for (size_t i = 0; i < v->n_vars; i++) {
        if (v->vars[i].has_fill && !v->has_missing_value) {
            /* A fill that can never apply is a mistake about the data. */
            snprintf(errstr, errstr_size, "%s: input '%s': 'fill' replaces the missing value, but "
                     "the file has no 'missing_value'", path, v->vars[i].name);
            goto done;
        }
    }
    if (load_training(v, root, errstr, errstr_size))
        goto done;
    rc = 0;
done:
    json_decref(root);
    if (rc)
        sf_vars_free(v);
    else
        *out = v;
    return rc;
}

int sf_vars_bind(sf_vars *v, const sf_model *m, char *errstr, size_t errstr_size) {
    if (m->n_outputs == 1) {
        static const sf_layer none = {.name = "?", .kind = SF_LAYER_IDENTITY};
        const sf_layer *last = m->n_layers ? &m->layers[m->n_layers - 1] : &none;
        snprintf(errstr, errstr_size, "model %s has one output (last layer '%s', %s) that is not "
                 "a sigmoid: it cannot be used as a classifier (a binary classifier ends in "
                 "one sigmoid unit or in two softmax units)", m->path ? m->path : "(model)",
                 last->name, last->kind == SF_LAYER_IDENTITY ? "no activation"
                                                             : sf_activation_name(last->activation));
        return -1;
    }
    if (v->n_vars != m->n_inputs) {
        snprintf(errstr, errstr_size, "%s: %zu input variables but model %s takes %zu inputs",
                 v->path, v->n_vars, m->path ? m->path : "(model)", m->n_inputs);
        return -1;
    }
    if (v->n_labels && v->n_labels != m->n_outputs) {
        snprintf(errstr, errstr_size, "%s: %zu labels (%s%s) but model %s has %zu outputs%s",
                 v->path, v->n_labels, v->labels[0], v->n_labels > 1 ? ", ..." : "",
                 m->path ? m->path : "(model)", m->n_outputs,
                 m->sigmoid_head ? " (a binary sigmoid head: name two labels, negative first)"
                                 : "");
        return -1;
    }
    if (v->n_labels)
        return 0;
    char **labels = calloc(m->n_outputs ? m->n_outputs : 1, sizeof *labels);
    if (!labels) {
        snprintf(errstr, errstr_size, "%s: out of memory", v->path);
        return -1;
    }
    for (size_t i = 0; i < m->n_outputs; i++) {
        char num[32];
        snprintf(num, sizeof num, "%zu", i);
        if (!(labels[i] = strdup(num))) {
            for (size_t k = 0; k < i; k++)
                free(labels[k]);
            free(labels);
            snprintf(errstr, errstr_size, "%s: out of memory", v->path);
            return -1;
        }
    }
    free(v->labels);
    v->labels = labels;
    v->n_labels = m->n_outputs;
    return 0;
}

int sf_vars_label_index(const sf_vars *v, const char *name) {
    for (size_t i = 0; i < v->n_labels; i++)
        if (!strcmp(v->labels[i], name))
            return (int)i;
    return -1;
}
