/* test_onnx_daemon.c: every ONNX fixture (tests/fixtures/onnx/models.txt)
 * served by `sigflow run` on the embedded broker, and by `sigflow predict` on
 * the same events, matches ONNX Runtime's committed outputs (<name>.ref.json)
 * within 1e-5 in fp32 on each backend and within the bf16 bound; and a model
 * set mixing the shipped .h5 and its tf2onnx .onnx gives the same
 * probabilities from both members. A daemon serving an ONNX model whose file
 * is then damaged refuses the SIGHUP reload and keeps serving it. test_onnx
 * checks the engine alone; this checks what the pipeline publishes: the
 * event's fields assembled by name, the variables, batching, and the %.9g of
 * the output.
 *
 * Each fixture's reference inputs become the fields "<name>_<j>" of nine
 * events, with variables of offset 0 and scale 1, so the model sees exactly
 * ORT's inputs. Fixtures with the same number of outputs are served together
 * as one model set whose members' probabilities come with every output
 * (--emit-members); tf2onnx_keras and skl_scaler_multiclass, and a fixture
 * alone with its width, are also served as single models. Daemon starts are
 * the cost (the embedded broker holds a group's first join for 3 s), so all
 * daemons run side by side, each in its own group, on one input topic. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "sigflow/infer.h"
#include "support.h"

#define DIR SF_SOURCE_DIR "/tests/fixtures/onnx/"
#define TOLERANCE 1e-5
/* bf16: issue 11's bound (README "Performance"), relative for raw outputs above
 * 1, as in test_onnx. */
#define BF16_TOLERANCE 0.02
/* The .h5 and the .onnx of the shipped model (issue 27: within 1e-6). */
#define MIXED_TOLERANCE 1e-6
#define MIXED_EVENTS 64
#define WAIT_MS 60000
#define MAX_FIXTURES 32
#define MAX_SERVED 24
#define MAX_ROWS 16

typedef struct ref {
    char name[64];    /* the file's stem: member name and field prefix */
    char model[512];
    char vars[512];
    json_t *json;     /* {"inputs": [[...]], "outputs": [[...]]} */
    size_t n_in, n_out, rows;
} ref;

typedef struct config {
    const char *backend, *precision;
    double tolerance;
    int relative;
} config;

static const config configs[] = {
    {"openblas", "fp32", TOLERANCE, 0},
    {"onednn", "fp32", TOLERANCE, 0},
    {"onednn", "bf16", BF16_TOLERANCE, 1},
};
#define N_CONFIGS (sizeof configs / sizeof configs[0])

/* One daemon (and one predict run): a single fixture, a set of fixtures
 * (members), or the mixed Higgs set. */
typedef struct served {
    char label[96];     /* output topic and group */
    char model[512];
    const char *vars;   /* NULL for a set */
    const config *conf;
    size_t members[MAX_FIXTURES], n_members; /* indexes into refs */
    int set, mixed;
    int reload;         /* serves a copy that gets damaged, then SIGHUP */
    sft_daemon d;
} served;

typedef struct state {
    char dir[512];
    ref refs[MAX_FIXTURES];
    size_t n_refs;
    served s[MAX_SERVED];
    size_t n_served;
    sf_broker *broker;
    const char *brokers;
} state;

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* dst (512 bytes) = dir/name suffix; by way of a copy, as dst and dir may
 * both live in the state. */
static void temp_file(char *dst, const char *dir, const char *name, const char *suffix) {
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s/%s%s", dir, name, suffix);
    assert_true(strlen(tmp) < 512);
    memcpy(dst, tmp, strlen(tmp) + 1);
}

static double ref_value(const ref *r, const char *what, size_t row, size_t j) {
    json_t *rows = json_object_get(r->json, what);
    return json_number_value(json_array_get(json_array_get(rows, row), j));
}

/* Labels for a width: b/s for two (the usual binary pair), c0.. otherwise. */
static void labels_json(char *buf, size_t size, size_t n) {
    if (n == 2) {
        snprintf(buf, size, "\"b\", \"s\"");
        return;
    }
    size_t len = 0;
    for (size_t k = 0; k < n && len < size; k++)
        len += (size_t)snprintf(buf + len, size - len, "%s\"c%zu\"", k ? ", " : "", k);
}

static void load_refs(state *st) {
    char *list = sft_read_file(DIR "models.txt", NULL), *save = NULL;
    assert_non_null(list);
    for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        assert_true(st->n_refs < MAX_FIXTURES);
        ref *r = &st->refs[st->n_refs++];
        snprintf(r->model, sizeof r->model, "%s%s", DIR, line);
        snprintf(r->name, sizeof r->name, "%.*s", (int)strcspn(line, "."), line);
        char path[600];
        snprintf(path, sizeof path, "%s%s.ref.json", DIR, r->name);
        json_error_t jerr;
        if (!(r->json = json_load_file(path, 0, &jerr)))
            fail_msg("%s: %s", path, jerr.text);
        json_t *in = json_object_get(r->json, "inputs"), *out = json_object_get(r->json, "outputs");
        r->rows = json_array_size(in);
        r->n_in = json_array_size(json_array_get(in, 0));
        r->n_out = json_array_size(json_array_get(out, 0));
        assert_true(r->rows > 0 && r->rows <= MAX_ROWS && json_array_size(out) == r->rows);
        /* Variables that hand the model the event's fields unchanged. */
        char *text = malloc(64 * r->n_in + 512), labels[256];
        assert_non_null(text);
        size_t len = (size_t)sprintf(text, "{\"inputs\": [");
        for (size_t j = 0; j < r->n_in; j++)
            len += (size_t)sprintf(text + len,
                                   "%s{\"name\": \"%s_%zu\", \"offset\": 0, \"scale\": 1}",
                                   j ? ", " : "", r->name, j);
        labels_json(labels, sizeof labels, r->n_out);
        sprintf(text + len, "],\n \"class_labels\": [%s]}\n", labels);
        temp_file(r->vars, st->dir, r->name, ".vars.json");
        write_file(r->vars, text);
        free(text);
    }
    free(list);
    assert_true(st->n_refs >= 15);
}

/* Produces each line of path to "events", keyed by its line number. */
static void produce_file(const state *st, const char *path) {
    char *text = sft_read_file(path, NULL), *save = NULL;
    assert_non_null(text);
    size_t row = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char key[24];
        snprintf(key, sizeof key, "%zu", row++);
        const char *k = key, *v = line;
        assert_int_equal(sft_produce(st->brokers, "events", &k, &v, NULL, 1), 1);
    }
    free(text);
}

/* Events 0..rows-1: event r carries every fixture's reference input row r
 * (%.17g gives back the double, which is the float ORT was given). */
static void produce_events(const state *st, const char *path) {
    size_t rows = st->refs[0].rows;
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t row = 0; row < rows; row++) {
        size_t cap = 65536, len = 0;
        char *ev = malloc(cap);
        assert_non_null(ev);
        len += (size_t)snprintf(ev, cap, "{\"EventId\": %zu", row);
        for (size_t i = 0; i < st->n_refs; i++) {
            assert_int_equal(st->refs[i].rows, rows);
            for (size_t j = 0; j < st->refs[i].n_in; j++)
                len += (size_t)snprintf(ev + len, cap - len, ", \"%s_%zu\": %.17g",
                                        st->refs[i].name, j,
                                        ref_value(&st->refs[i], "inputs", row, j));
        }
        snprintf(ev + len, cap - len, "}");
        assert_true(len + 2 < cap);
        fprintf(f, "%s\n", ev);
        free(ev);
    }
    assert_int_equal(fclose(f), 0);
    produce_file(st, path);
}

static served *add_served(state *st, const char *label, const config *c) {
    assert_true(st->n_served < MAX_SERVED);
    served *s = &st->s[st->n_served++];
    snprintf(s->label, sizeof s->label, "%s", label);
    s->conf = c;
    return s;
}

/* What to serve: per configuration, a set per output width (a single model
 * when a width has one fixture), and two single models; the mixed set on
 * each fp32 backend. */
static void plan(state *st) {
    static const char *const singles[] = {"tf2onnx_keras", "skl_scaler_multiclass"};
    for (size_t c = 0; c < N_CONFIGS; c++) {
        if (!strcmp(configs[c].backend, "onednn") &&
            !sf_infer_backend_available(SF_BACKEND_ONEDNN)) {
            printf("# no oneDNN backend in this build: %s %s not served\n", configs[c].backend,
                   configs[c].precision);
            continue;
        }
        for (size_t width = 1; width <= 64; width++) {
            size_t idx[MAX_FIXTURES], n = 0;
            for (size_t i = 0; i < st->n_refs; i++)
                if (st->refs[i].n_out == width)
                    idx[n++] = i;
            if (!n)
                continue;
            char label[64];
            snprintf(label, sizeof label, "w%zu_%s_%s", width, configs[c].backend,
                     configs[c].precision);
            served *s = add_served(st, label, &configs[c]);
            memcpy(s->members, idx, n * sizeof *idx);
            s->n_members = n;
            if (n == 1) {
                memcpy(s->model, st->refs[idx[0]].model, sizeof s->model);
                s->vars = st->refs[idx[0]].vars;
                continue;
            }
            s->set = 1;
            temp_file(s->model, st->dir, label, ".set.json");
            char text[8192];
            size_t len =
                (size_t)snprintf(text, sizeof text, "{\"name\": \"%s\", \"members\": [", label);
            for (size_t k = 0; k < n; k++)
                len += (size_t)snprintf(text + len, sizeof text - len,
                                        "%s\n {\"name\": \"%s\", \"model\": \"%s\", "
                                        "\"variables\": \"%s\", \"weight\": 1}",
                                        k ? "," : "", st->refs[idx[k]].name, st->refs[idx[k]].model,
                                        st->refs[idx[k]].vars);
            assert_true(len + 8 < sizeof text);
            snprintf(text + len, sizeof text - len, "]}\n");
            write_file(s->model, text);
        }
        for (size_t k = 0; k < sizeof singles / sizeof *singles; k++) {
            size_t i = 0;
            while (i < st->n_refs && strcmp(st->refs[i].name, singles[k]))
                i++;
            assert_true(i < st->n_refs);
            char label[96];
            snprintf(label, sizeof label, "%s_%s_%s", singles[k], configs[c].backend,
                     configs[c].precision);
            served *s = add_served(st, label, &configs[c]);
            memcpy(s->model, st->refs[i].model, sizeof s->model);
            s->vars = st->refs[i].vars;
            if (c == 0 && k == 0) { /* served from a copy that the reload check damages */
                temp_file(s->model, st->dir, singles[k], ".onnx");
                sft_install_copy(s->model, st->refs[i].model);
                s->reload = 1;
            }
            s->members[0] = i;
            s->n_members = 1;
        }
        if (!strcmp(configs[c].precision, "fp32")) {
            char label[64];
            snprintf(label, sizeof label, "mixed_%s", configs[c].backend);
            served *s = add_served(st, label, &configs[c]);
            snprintf(s->model, sizeof s->model, "%sset_mixed.json", DIR);
            s->set = s->mixed = 1;
        }
    }
}

/* The arguments shared by `run` and `predict`, NULL-terminated, into argv
 * from index n; returns the new count. */
static size_t model_args(const served *s, const char **argv, size_t n) {
    argv[n++] = "--model";
    argv[n++] = s->model;
    if (s->vars) {
        argv[n++] = "--variables";
        argv[n++] = s->vars;
    }
    if (s->set)
        argv[n++] = "--emit-members";
    argv[n++] = "--backend";
    argv[n++] = s->conf->backend;
    argv[n++] = "--precision";
    argv[n++] = s->conf->precision;
    argv[n] = NULL;
    return n;
}

static double diff(double got, double want, int relative) {
    double d = fabs(got - want);
    return relative ? d / fmax(1.0, fabs(want)) : d;
}

/* Checks one output object of s against the references, raising worst[k]
 * to member k's largest difference. */
static void check_output(const state *st, const served *s, const char *text, const char *where,
                         double *worst) {
    json_error_t jerr;
    json_t *o = json_loads(text, 0, &jerr);
    if (!o)
        fail_msg("%s %s: not JSON (%s): %s", s->label, where, jerr.text, text);
    json_t *id = json_object_get(o, "EventId");
    if (!json_is_integer(id))
        fail_msg("%s %s: no EventId: %s", s->label, where, text);
    size_t row = (size_t)json_integer_value(id);
    json_t *members = json_object_get(o, "members");
    if (s->mixed) {
        json_t *h5 = json_object_get(members, "h5"), *onnx = json_object_get(members, "onnx");
        if (json_array_size(h5) != 2 || json_array_size(onnx) != 2)
            fail_msg("%s %s: members h5 and onnx with 2 values each expected: %s", s->label, where,
                     text);
        for (size_t j = 0; j < 2; j++) {
            double d = diff(json_number_value(json_array_get(onnx, j)),
                            json_number_value(json_array_get(h5, j)), 0);
            worst[0] = fmax(worst[0], d);
        }
        json_decref(o);
        return;
    }
    for (size_t k = 0; k < s->n_members; k++) {
        const ref *r = &st->refs[s->members[k]];
        json_t *probs = s->set ? json_object_get(members, r->name)
                               : json_object_get(o, "probabilities");
        if (row >= r->rows || json_array_size(probs) != r->n_out)
            fail_msg("%s %s: %s: row %zu, %zu values expected: %s", s->label, where, r->name, row,
                     r->n_out, text);
        for (size_t j = 0; j < r->n_out; j++) {
            json_t *v = json_array_get(probs, j);
            if (!json_is_number(v))
                fail_msg("%s %s: %s: value %zu is not a number: %s", s->label, where, r->name, j,
                         text);
            double d =
                diff(json_number_value(v), ref_value(r, "outputs", row, j), s->conf->relative);
            worst[k] = fmax(worst[k], d);
        }
    }
    json_decref(o);
}

static size_t events_of(const state *st, const served *s) {
    return s->mixed ? MIXED_EVENTS : st->refs[s->members[0]].rows;
}

static void report(const state *st, const served *s, const char *where, const double *worst,
                   size_t n_outputs, size_t n_rows) {
    if (n_outputs != n_rows)
        fail_msg("%s %s: %zu outputs, %zu expected", s->label, where, n_outputs, n_rows);
    double bound = s->mixed ? MIXED_TOLERANCE : s->conf->tolerance;
    for (size_t k = 0; k < (s->mixed ? 1 : s->n_members); k++) {
        const char *name = s->mixed ? "|onnx - h5|" : st->refs[s->members[k]].name;
        printf("# %-8s %-40s %-22s %.3g\n", where, s->label, name, worst[k]);
        if (!(worst[k] <= bound))
            fail_msg("%s %s: %s differs by %.3g (bound %g)", s->label, where, name, worst[k],
                     bound);
    }
}

static void check_predict(const state *st, const served *s, const char *events) {
    char out[600], err[600];
    snprintf(out, sizeof out, "%s/%s.predict.out", st->dir, s->label);
    snprintf(err, sizeof err, "%s/%s.predict.err", st->dir, s->label);
    const char *argv[32] = {SF_TEST_SIGFLOW, "predict"};
    model_args(s, argv, 2);
    int rc = sft_wait(sft_spawn((char *const *)argv, events, out, err), WAIT_MS);
    if (rc != 0) {
        char *e = sft_read_file(err, NULL);
        fail_msg("%s: predict exited %d: %s", s->label, rc, e ? e : "");
    }
    char *text = sft_read_file(out, NULL), *save = NULL;
    assert_non_null(text);
    double worst[MAX_FIXTURES] = {0};
    size_t n = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++)
        check_output(st, s, line, "predict", worst);
    free(text);
    report(st, s, "predict", worst, n, events_of(st, s));
}

/* rounds: how often the events were produced. */
static void check_daemon(const state *st, const served *s, size_t rounds) {
    size_t expect = rounds * events_of(st, s);
    sft_msgs out = sft_consume_all(st->brokers, s->label, expect, 200, WAIT_MS, 0);
    double worst[MAX_FIXTURES] = {0};
    for (size_t i = 0; i < out.n; i++)
        check_output(st, s, out.v[i].value, "run", worst);
    report(st, s, "run", worst, out.n, expect);
    sft_msgs_free(&out);
}

/* A damaged ONNX file in place of the served one (issue 27: as for HDF5):
 * SIGHUP's reload fails naming the file and why, and the old model keeps
 * serving, still equal to ORT. */
static void check_reload_refused(const state *st, served *s, const char *events) {
    sft_install_copy(s->model, DIR "refuse_truncated.onnx");
    assert_int_equal(kill(s->d.pid, SIGHUP), 0);
    assert_true(sft_wait_for_text(s->d.log, "reload failed", WAIT_MS));
    char *log = sft_read_file(s->d.log, NULL);
    assert_non_null(log);
    const char *failed = strstr(log, "reload failed");
    int len = (int)strcspn(failed, "\n");
    printf("# log: %.*s\n", len, failed);
    char *line = strndup(failed, (size_t)len);
    if (!strstr(line, s->model) || !strstr(line, "not a valid ONNX file"))
        fail_msg("the failed reload does not name the file and why: %s", line);
    free(line);
    free(log);
    assert_true(sft_scrape(s->d.port, "sigflow_model_reload_failures_total") == 1);
    assert_true(sft_scrape(s->d.port, "sigflow_model_reloads_total") == 0);
    produce_file(st, events);
    check_daemon(st, s, 2);
    assert_true(sft_daemon_running(&s->d));
}

static void test_fixtures_served_match_onnxruntime(void **unused) {
    (void)unused;
    state *st = calloc(1, sizeof *st);
    assert_non_null(st);
    char *dir = sft_temp_dir();
    snprintf(st->dir, sizeof st->dir, "%s", dir);
    free(dir);
    load_refs(st);
    plan(st);

    const char *topics[2 + MAX_SERVED] = {"events", "atlas"};
    for (size_t i = 0; i < st->n_served; i++)
        topics[2 + i] = st->s[i].label;
    st->broker = sft_broker(1, topics, 2 + st->n_served);
    st->brokers = sf_broker_bootstrap(st->broker);

    /* The events first: a new group reads from the earliest offset. */
    char events[600], atlas[600];
    snprintf(events, sizeof events, "%s/events.jsonl", st->dir);
    snprintf(atlas, sizeof atlas, "%s/atlas.jsonl", st->dir);
    produce_events(st, events);
    char **keys, **values;
    sft_atlas_events(MIXED_EVENTS, &keys, &values);
    assert_int_equal(sft_produce(st->brokers, "atlas", (const char *const *)keys,
                                 (const char *const *)values, NULL, MIXED_EVENTS),
                     MIXED_EVENTS);
    FILE *f = fopen(atlas, "w");
    assert_non_null(f);
    for (size_t i = 0; i < MIXED_EVENTS; i++)
        fprintf(f, "%s\n", values[i]);
    assert_int_equal(fclose(f), 0);
    sft_strings_free(keys, MIXED_EVENTS);
    sft_strings_free(values, MIXED_EVENTS);

    for (size_t i = 0; i < st->n_served; i++) {
        served *s = &st->s[i];
        const char *args[32] = {"--brokers", st->brokers, "--input-topic",
                                s->mixed ? "atlas" : "events", "--output-topic", s->label,
                                "--group", s->label, "--emit", "all"};
        model_args(s, args, 10);
        sft_daemon_start(&s->d, args, WAIT_MS);
    }
    /* While the daemons join their groups: the same events through predict. */
    for (size_t i = 0; i < st->n_served; i++)
        check_predict(st, &st->s[i], st->s[i].mixed ? atlas : events);
    for (size_t i = 0; i < st->n_served; i++)
        check_daemon(st, &st->s[i], 1);
    for (size_t i = 0; i < st->n_served; i++)
        if (st->s[i].reload)
            check_reload_refused(st, &st->s[i], events);
    for (size_t i = 0; i < st->n_served; i++) {
        assert_int_equal(sft_daemon_stop(&st->s[i].d, SIGTERM, WAIT_MS), 0);
        sft_daemon_free(&st->s[i].d);
    }

    sf_broker_stop(st->broker);
    for (size_t i = 0; i < st->n_refs; i++)
        json_decref(st->refs[i].json);
    sft_remove_tree(st->dir);
    free(st);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_served_match_onnxruntime),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
