/* test_daemon.c: `sigflow run` end to end against the embedded broker (issue #4);
 * its end to end, dead-letter and drain tests run on Apache Kafka too
 * (test_daemon_real in tests/CMakeLists.txt sets SF_TEST_KAFKA_DIR).
 *
 * The daemon runs as a real process, because exit codes, SIGTERM and start-up
 * failures are part of what is tested and because a sanitized build then checks
 * the daemon's own shutdown (leaks included). What it publishes is compared with
 * `sigflow predict` run offline on the same events: both print through
 * sf_output_format, so each published message must equal the offline line plus
 * the partition and offset of its input, byte for byte.
 *
 * Daemon starts are the expensive part (the embedded broker's group join takes
 * about 3 s), so each test starts as few as it can and runs independent daemons
 * side by side, each in its own consumer group. Every wait polls a condition
 * against a deadline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "sigflow/blas.h"
#include "sigflow/infer.h"
#include "support.h"

#define FIXTURES SF_SOURCE_DIR "/tests/fixtures/"
/* A random 30-input, 2-label ("b", "s") model; its variables leave some
 * features without a default, which the dead-letter test relies on. */
#define MLP_MODEL FIXTURES "model_mlp.h5"
#define MLP_VARS FIXTURES "vars_higgs.json"
/* Three labels, none called "s" or "signal" (make_daemon_fixtures.py). */
#define THREE_MODEL FIXTURES "model_three.h5"
#define THREE_VARS FIXTURES "vars_three.json"
/* A Keras 3 .keras model ending in Dense(1, sigmoid), made by real Keras
 * (make_keras_fixtures.py); 30 inputs, so the Higgs variables fit it. */
#define SIGMOID_MODEL FIXTURES "keras/k3_sigmoid.keras"
/* The end-to-end model: the shipped one (about a third of the events are "s"). */
#define E2E_MODEL SF_TEST_MODEL
#define E2E_VARS SF_TEST_VARS

#define DLQ "events.dlq"
#define JOIN_TIMEOUT_MS 30000  /* group join plus processing, sanitized build included */
/* SIGTERM to exit: a hang check. How long a drain takes is printed; 5 s was
 * too tight for real Kafka under ASan on a loaded machine. */
#define STOP_TIMEOUT_MS 30000

/* ------------------------------------------------------------ helpers */

/* Prints a file (a daemon's log) into the test output, to explain a failure. */
static void show_file(const char *what, const char *path) {
    char *s = sft_read_file(path, NULL);
    fprintf(stderr, "---- %s (%s) ----\n%s---- end ----\n", what, path, s ? s : "(unreadable)\n");
    free(s);
}

typedef struct sfrun { /* a `sigflow run` process */
    pid_t pid;
    char *log;
} sfrun;

/* Starts `sigflow run` on the MLP fixture unless extra args name another model:
 * extra is a NULL-terminated list appended after the common flags (getopt takes
 * the last --model/--variables). */
static sfrun daemon_start(const char *brokers, const char *group, const char *output,
                          const char *const *extra) {
    char *argv[64];
    int n = 0;
    const char *common[] = {SF_TEST_SIGFLOW, "run", "--brokers", brokers, "--group", group,
                            "--output-topic", output, "--dlq-topic", DLQ, "--model", MLP_MODEL,
                            "--variables", MLP_VARS, "--metrics-addr", "none", NULL};
    for (const char *const *a = common; *a; a++)
        argv[n++] = (char *)*a;
    for (const char *const *a = extra; a && *a; a++) {
        assert_true(n < 62);
        argv[n++] = (char *)*a;
    }
    argv[n] = NULL;
    sfrun d = {0, sft_temp_path(".log")};
    d.pid = sft_spawn_tied(argv, NULL, d.log); /* killed if the test dies */
    return d;
}

/* SIGTERM, then the daemon must drain and exit 0 within STOP_TIMEOUT_MS.
 * Returns the milliseconds it took. */
static int64_t daemon_stop(sfrun *d) {
    int64_t t0 = sft_now_ms();
    assert_int_equal(kill(d->pid, SIGTERM), 0);
    int rc = sft_wait(d->pid, STOP_TIMEOUT_MS);
    int64_t took = sft_now_ms() - t0;
    if (rc != 0) {
        show_file("daemon log", d->log);
        fail_msg("sigflow run exited with %d (-1: still running after %d ms) after SIGTERM", rc,
                 STOP_TIMEOUT_MS);
    }
    return took;
}

static void daemon_free(sfrun *d) {
    unlink(d->log);
    free(d->log);
}

/* Writes events (one per line) to a temporary file; caller frees the path. */
static char *write_lines(char *const *values, size_t n) {
    char *path = sft_temp_path(".jsonl");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", values[i]);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* What `sigflow predict` says about one event. */
typedef struct offline {
    char key[64];       /* the EventId as a message key */
    char *line;         /* the output line, without newline */
    char label[32];
    double p[8];        /* probabilities as printed */
    size_t n_p;
} offline;

/* Runs `sigflow predict` on the events file; one result per input line. */
static offline *predict(const char *model, const char *vars, const char *events, size_t n) {
    char *out = sft_temp_path(".out"), *err = sft_temp_path(".err");
    char *argv[] = {SF_TEST_SIGFLOW, "predict", "--model", (char *)model, "--variables",
                    (char *)vars, NULL};
    int rc = sft_wait(sft_spawn(argv, events, out, err), 60000);
    if (rc != 0) {
        show_file("sigflow predict stderr", err);
        fail_msg("sigflow predict exited with %d", rc);
    }
    char *text = sft_read_file(out, NULL);
    assert_non_null(text);
    offline *res = calloc(n, sizeof *res);
    assert_non_null(res);
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    for (size_t i = 0; i < n; i++, line = strtok_r(NULL, "\n", &save)) {
        if (!line)
            fail_msg("sigflow predict printed %zu lines for %zu events", i, n);
        json_error_t jerr;
        json_t *o = json_loads(line, 0, &jerr);
        if (!o)
            fail_msg("predict line %zu is not JSON: %s", i + 1, line);
        json_t *id = json_object_get(o, "EventId"), *probs = json_object_get(o, "probabilities");
        const char *label = json_string_value(json_object_get(o, "label"));
        if (!json_is_integer(id) || !label || !json_is_array(probs) ||
            json_array_size(probs) > 8)
            fail_msg("predict line %zu lacks EventId, label or probabilities: %s", i + 1, line);
        snprintf(res[i].key, sizeof res[i].key, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
        snprintf(res[i].label, sizeof res[i].label, "%s", label);
        res[i].n_p = json_array_size(probs);
        for (size_t j = 0; j < res[i].n_p; j++)
            res[i].p[j] = json_number_value(json_array_get(probs, j));
        res[i].line = strdup(line);
        json_decref(o);
    }
    assert_null(line);
    free(text);
    unlink(out);
    unlink(err);
    free(out);
    free(err);
    return res;
}

static void offline_free(offline *r, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(r[i].line);
    free(r);
}

/* Message keys to positions, for matching topics read back in any order. */
typedef struct kpos {
    const char *key;
    size_t i;
} kpos;

static int kpos_cmp(const void *a, const void *b) {
    return strcmp(((const kpos *)a)->key, ((const kpos *)b)->key);
}

typedef struct keyidx {
    kpos *v;
    size_t n;
} keyidx;

static keyidx index_msgs(const sft_msgs *m) {
    keyidx x = {calloc(m->n + 1, sizeof(kpos)), 0};
    assert_non_null(x.v);
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].key)
            x.v[x.n++] = (kpos){m->v[i].key, i};
    qsort(x.v, x.n, sizeof *x.v, kpos_cmp);
    return x;
}

/* Position of key, or -1; fails on a duplicate key. */
static long index_find(const keyidx *x, const char *key) {
    kpos k = {key, 0};
    kpos *hit = bsearch(&k, x->v, x->n, sizeof *x->v, kpos_cmp);
    if (!hit)
        return -1;
    if ((hit > x->v && !strcmp(hit[-1].key, key)) ||
        (hit + 1 < x->v + x->n && !strcmp(hit[1].key, key)))
        fail_msg("key %s appears more than once", key);
    return (long)hit->i;
}

/* The number of extra copies: messages whose key an earlier one had. */
static size_t count_duplicates(const keyidx *x) {
    size_t dup = 0;
    for (size_t i = 1; i < x->n; i++)
        dup += !strcmp(x->v[i].key, x->v[i - 1].key);
    return dup;
}

/* The output the daemon must publish for an event: the offline line with the
 * input's partition and offset appended (sf_output_format's layout). */
static char *expected_output(const offline *o, const sft_msg *in) {
    size_t len = strlen(o->line);
    assert_true(len > 1 && o->line[len - 1] == '}');
    char *s = malloc(len + 64);
    assert_non_null(s);
    snprintf(s, len + 64, "%.*s, \"partition\": %d, \"offset\": %lld}", (int)(len - 1), o->line,
             (int)in->partition, (long long)in->offset);
    return s;
}

/* Byte for byte where the kernel gives a row the same bits in any batch: the
 * oneDNN backend, which the daemon and predict take by default wherever it
 * has a JIT kernel (test_parity checks its batch independence), and
 * OpenBLAS's AVX-512 kernels (sigflow-bench checks it). Elsewhere (the
 * OpenBLAS backend on another kernel) the daemon's batches may round the last
 * float bit differently from predict's, so the probabilities must agree
 * within 1e-6 and everything else exactly, and the test says so. */
static int same_output(const char *published, const char *expected) {
    if (!strcmp(published, expected))
        return 1;
    sf_blas_info blas;
    sf_blas_info_get(&blas);
    if (blas.kernel_avx512 || sf_infer_backend_available(SF_BACKEND_ONEDNN))
        return 0;
    static int said;
    if (!said++)
        printf("relaxed: BLAS kernel %s is not AVX-512, so probabilities are compared within "
               "1e-6, not byte for byte\n", blas.corename);
    json_t *a = json_loads(published, 0, NULL), *b = json_loads(expected, 0, NULL);
    json_t *pa = json_object_get(a, "probabilities"), *pb = json_object_get(b, "probabilities");
    int same = a && b && json_array_size(pa) == json_array_size(pb) && json_array_size(pa) > 0;
    for (size_t i = 0; same && i < json_array_size(pa); i++) {
        double d = json_number_value(json_array_get(pa, i)) - json_number_value(json_array_get(pb, i));
        same = d < 1e-6 && d > -1e-6;
    }
    if (same) {
        json_object_del(a, "probabilities");
        json_object_del(b, "probabilities");
        same = json_equal(a, b);
    }
    json_decref(a);
    json_decref(b);
    return same;
}

/* Checks that `out` (read from an output topic) holds exactly one message per
 * selected event and nothing else, each byte for byte what the offline result
 * and the input's position say. Returns the number selected. */
static size_t check_outputs(const char *what, const sft_msgs *out, const sft_msgs *input,
                            const offline *off, const int *selected, size_t n) {
    keyidx in_ix = index_msgs(input), out_ix = index_msgs(out);
    assert_int_equal(out_ix.n, out->n); /* every output carries the EventId as key */
    size_t want = 0;
    for (size_t i = 0; i < n; i++) {
        long at = index_find(&out_ix, off[i].key);
        if (!selected[i]) {
            if (at >= 0)
                fail_msg("%s: event %s published but not selected offline: %s", what, off[i].key,
                         out->v[at].value);
            continue;
        }
        want++;
        if (at < 0)
            fail_msg("%s: event %s selected offline but not published: %s", what, off[i].key,
                     off[i].line);
        long src = index_find(&in_ix, off[i].key);
        assert_true(src >= 0);
        char *exp = expected_output(&off[i], &input->v[src]);
        if (!same_output(out->v[at].value, exp))
            fail_msg("%s: event %s\n published: %s\n expected:  %s", what, off[i].key,
                     out->v[at].value, exp);
        free(exp);
    }
    if (out->n != want)
        fail_msg("%s: %zu messages published, %zu events selected offline", what, out->n, want);
    free(in_ix.v);
    free(out_ix.v);
    return want;
}

/* Produces the first n bundled events, reads the topic back (for partitions
 * and offsets) and writes them to a file for `sigflow predict`. */
static sft_msgs load_events(const char *brokers, size_t n, char **events_path) {
    char **keys, **values;
    sft_atlas_events(n, &keys, &values);
    assert_int_equal(sft_produce(brokers, "events", (const char *const *)keys,
                                 (const char *const *)values, NULL, n),
                     n);
    *events_path = write_lines(values, n);
    sft_strings_free(keys, n);
    sft_strings_free(values, n);
    sft_msgs in = sft_consume_all(brokers, "events", n, 0, 20000, 0);
    assert_int_equal(in.n, n);
    return in;
}

/* ------------------------------------------------------------ tests */

/* K events replayed; the daemon publishes exactly what `sigflow predict`
 * selects (label "s"), each message as predict prints it plus the input's
 * partition and offset; nothing goes to the dead-letter topic. */
static void test_end_to_end(void **state) {
    (void)state;
    const size_t n = 3000;
    const char *topics[] = {"events", "signals", DLQ};
    sft_kafka *b = sft_kafka_open(8, topics, 3, NULL, 0);
    const char *bs = b->bootstrap;
    char *events;
    sft_msgs in = load_events(bs, n, &events);
    offline *off = predict(E2E_MODEL, E2E_VARS, events, n);
    int *sel = calloc(n, sizeof *sel);
    size_t want = 0;
    for (size_t i = 0; i < n; i++)
        want += sel[i] = !strcmp(off[i].label, "s");
    assert_true(want > 0);

    /* A prime batch size, so the daemon never groups events as predict does
     * (512): a prediction must not depend on its batch. Above the daemon's
     * 128-event chunks (311 = 128 + 128 + 55), so a batch's chunks are row
     * ranges whose forward passes overlap the next chunk's parsing. */
    const char *args[] = {"--model", E2E_MODEL, "--variables", E2E_VARS, "--batch-size", "311",
                          NULL};
    /* And with sigflow's own threading, as deployed: the tests' environment
     * sets OPENBLAS_NUM_THREADS, which leaves BLAS in charge and the daemon
     * without inference helpers (blas.h). */
    char *blas_env = getenv("OPENBLAS_NUM_THREADS") ? strdup(getenv("OPENBLAS_NUM_THREADS")) : NULL;
    unsetenv("OPENBLAS_NUM_THREADS");
    int64_t t0 = sft_now_ms();
    sfrun d = daemon_start(bs, "e2e", "signals", args);
    if (blas_env)
        setenv("OPENBLAS_NUM_THREADS", blas_env, 1);
    free(blas_env);
    sft_msgs out = sft_consume_all(bs, "signals", want, 1000, JOIN_TIMEOUT_MS, 0);
    if (out.n < want)
        show_file("daemon log", d.log);
    int64_t took = sft_now_ms() - t0;
    int64_t stop = daemon_stop(&d);
    check_outputs("e2e", &out, &in, off, sel, n);
    assert_int_equal(sft_topic_end(bs, DLQ), 0);
    assert_int_equal(sft_topic_end(bs, "signals"), want); /* nothing more came */
    print_message("e2e: %zu events, %zu signals published in %lld ms (join included), "
                  "stopped in %lld ms\n", n, want, (long long)took, (long long)stop);

    sft_msgs_free(&out);
    daemon_free(&d);
    free(sel);
    offline_free(off, n);
    sft_msgs_free(&in);
    unlink(events);
    free(events);
    sft_kafka_close(b);
}

/* Three daemons side by side on the same events, each in its own group:
 * --threshold publishes P(s) >= T whatever the argmax, --emit all publishes
 * every prediction, and a three-label model publishes the label named by
 * --signal-label. */
static void test_selection_modes(void **state) {
    (void)state;
    const size_t n = 2000;
    const double threshold = 0.3;
    const char *topics[] = {"events", "out.threshold", "out.all", "out.three", DLQ};
    sft_kafka *b = sft_kafka_open(8, topics, 5, NULL, 0);
    const char *bs = b->bootstrap;
    char *events;
    sft_msgs in = load_events(bs, n, &events);
    offline *two = predict(MLP_MODEL, MLP_VARS, events, n);
    offline *three = predict(THREE_MODEL, THREE_VARS, events, n);

    const char *thr_args[] = {"--threshold", "0.3", NULL};
    const char *all_args[] = {"--emit", "all", NULL};
    const char *three_args[] = {"--model", THREE_MODEL, "--variables", THREE_VARS,
                                "--signal-label", "higgs", NULL};
    sfrun dt = daemon_start(bs, "g-threshold", "out.threshold", thr_args);
    sfrun da = daemon_start(bs, "g-all", "out.all", all_args);
    sfrun d3 = daemon_start(bs, "g-three", "out.three", three_args);

    int *sel_thr = calloc(n, sizeof(int)), *sel_all = calloc(n, sizeof(int)),
        *sel_three = calloc(n, sizeof(int));
    size_t n_thr = 0, n_argmax = 0, n_three = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(two[i].n_p, 2);
        /* The daemon compares the float probability with the threshold; the
         * printed %.9g converts back to that float exactly. */
        n_thr += sel_thr[i] = (double)(float)two[i].p[1] >= threshold;
        n_argmax += !strcmp(two[i].label, "s");
        sel_all[i] = 1;
        n_three += sel_three[i] = !strcmp(three[i].label, "higgs");
    }
    /* The threshold must matter, and the three-label case must select some. */
    assert_true(n_thr > n_argmax && n_thr < n);
    assert_true(n_three > 0 && n_three < n);

    sft_msgs o_thr = sft_consume_all(bs, "out.threshold", n_thr, 1000, JOIN_TIMEOUT_MS, 0);
    sft_msgs o_all = sft_consume_all(bs, "out.all", n, 1000, JOIN_TIMEOUT_MS, 0);
    sft_msgs o_three = sft_consume_all(bs, "out.three", n_three, 1000, JOIN_TIMEOUT_MS, 0);
    daemon_stop(&dt);
    daemon_stop(&da);
    daemon_stop(&d3);
    /* The daemons are gone: what was read is all they ever published. */
    assert_int_equal(sft_topic_end(bs, "out.threshold"), o_thr.n);
    assert_int_equal(sft_topic_end(bs, "out.all"), o_all.n);
    assert_int_equal(sft_topic_end(bs, "out.three"), o_three.n);
    check_outputs("--threshold 0.3", &o_thr, &in, two, sel_thr, n);
    check_outputs("--emit all", &o_all, &in, two, sel_all, n);
    check_outputs("--signal-label higgs", &o_three, &in, three, sel_three, n);
    print_message("selection: %zu events; threshold %.2f: %zu (argmax: %zu), all: %zu, "
                  "higgs of three labels: %zu\n", n, threshold, n_thr, n_argmax, o_all.n, n_three);

    sft_msgs_free(&o_thr);
    sft_msgs_free(&o_all);
    sft_msgs_free(&o_three);
    daemon_free(&dt);
    daemon_free(&da);
    daemon_free(&d3);
    free(sel_thr);
    free(sel_all);
    free(sel_three);
    offline_free(two, n);
    offline_free(three, n);
    sft_msgs_free(&in);
    unlink(events);
    free(events);
    sft_kafka_close(b);
}

/* A malformed event of the dead-letter test: its key, its bytes, and what its
 * sigflow-error header must contain. */
typedef struct bad_event {
    const char *key;
    char *value;
    size_t len;
    const char *reason; /* substring of sigflow-error */
} bad_event;

/* Checks the dead letters against the malformed inputs: one each, found by
 * its sigflow-source, unchanged (same key or none, same bytes) with a
 * sigflow-error naming the problem. A payload over `kept_max` bytes must
 * arrive empty instead (its record kept, not its bytes). */
static void check_dead_letters(const char *what, const sft_msgs *dlq, const sft_msgs *in,
                               const bad_event *bad, size_t n_bad, size_t kept_max) {
    if (dlq->n != n_bad)
        fail_msg("%s: %zu dead letters for %zu malformed events", what, dlq->n, n_bad);
    int *seen = calloc(in->n, sizeof *seen);
    assert_non_null(seen);
    for (size_t i = 0; i < dlq->n; i++) {
        const sft_msg *m = &dlq->v[i];
        if (!m->source_header || !m->error_header)
            fail_msg("%s: dead letter %zu (key %s) lacks sigflow-source or sigflow-error", what, i,
                     m->key ? m->key : "(none)");
        size_t at = in->n;
        for (size_t j = 0; j < in->n && at == in->n; j++) {
            char pos[128];
            snprintf(pos, sizeof pos, "events/%d/%lld", (int)in->v[j].partition,
                     (long long)in->v[j].offset);
            if (!strcmp(pos, m->source_header))
                at = j;
        }
        if (at == in->n)
            fail_msg("%s: sigflow-source '%s' is no input position", what, m->source_header);
        assert_false(seen[at]);
        seen[at] = 1;
        const sft_msg *src = &in->v[at];
        const bad_event *e = NULL;
        for (size_t j = 0; j < n_bad; j++)
            if (bad[j].len == src->len && !memcmp(bad[j].value, src->value, src->len))
                e = &bad[j];
        if (!e)
            fail_msg("%s: a valid event went to the dead letters: %.200s (%s)", what, src->value,
                     m->error_header);
        if (e->key)
            assert_true(m->key && !strcmp(m->key, e->key));
        else
            assert_null(m->key);
        if (src->len > kept_max) {
            assert_int_equal(m->len, 0);
        } else {
            assert_int_equal(m->len, src->len);
            assert_memory_equal(m->value, src->value, src->len);
        }
        assert_true(strlen(m->error_header) > 0);
        if (!strstr(m->error_header, e->reason))
            fail_msg("%s: dead letter %s: sigflow-error '%s' does not mention %s", what,
                     e->key ? e->key : "(no key)", m->error_header, e->reason);
    }
    free(seen);
}

/* A binary sigmoid head, served from a .keras archive: the daemon publishes
 * [1 - p, p] with label "s" exactly when p >= 0.5, and --threshold applies to
 * p; both must be what `sigflow predict` says, byte for byte. */
static void test_sigmoid_head(void **state) {
    (void)state;
    const size_t n = 1000;
    const double threshold = 0.3;
    const char *topics[] = {"events", "out.argmax", "out.threshold", DLQ};
    sft_kafka *b = sft_kafka_open(8, topics, 4, NULL, 0);
    const char *bs = b->bootstrap;
    char *events;
    sft_msgs in = load_events(bs, n, &events);
    offline *off = predict(SIGMOID_MODEL, MLP_VARS, events, n);

    const char *argmax_args[] = {"--model", SIGMOID_MODEL, NULL};
    const char *thr_args[] = {"--model", SIGMOID_MODEL, "--threshold", "0.3", NULL};
    sfrun dm = daemon_start(bs, "g-sig-argmax", "out.argmax", argmax_args);
    sfrun dt = daemon_start(bs, "g-sig-threshold", "out.threshold", thr_args);

    int *sel_max = calloc(n, sizeof(int)), *sel_thr = calloc(n, sizeof(int));
    size_t n_max = 0, n_thr = 0;
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(off[i].n_p, 2);
        double p = off[i].p[1];
        if (!(fabs(off[i].p[0] - (1 - p)) <= 1e-6))
            fail_msg("event %s: probabilities are not [1 - p, p]: %s", off[i].key, off[i].line);
        /* label_index 1 exactly when p >= 0.5 */
        assert_string_equal(off[i].label, (double)(float)p >= 0.5 ? "s" : "b");
        n_max += sel_max[i] = !strcmp(off[i].label, "s");
        n_thr += sel_thr[i] = (double)(float)p >= threshold;
    }
    assert_true(n_max > 0 && n_max < n);
    assert_true(n_thr > n_max && n_thr < n);

    sft_msgs o_max = sft_consume_all(bs, "out.argmax", n_max, 1000, JOIN_TIMEOUT_MS, 0);
    sft_msgs o_thr = sft_consume_all(bs, "out.threshold", n_thr, 1000, JOIN_TIMEOUT_MS, 0);
    daemon_stop(&dm);
    daemon_stop(&dt);
    assert_int_equal(sft_topic_end(bs, "out.argmax"), o_max.n);
    assert_int_equal(sft_topic_end(bs, "out.threshold"), o_thr.n);
    assert_int_equal(sft_topic_end(bs, DLQ), 0);
    check_outputs("sigmoid head", &o_max, &in, off, sel_max, n);
    check_outputs("sigmoid head --threshold 0.3", &o_thr, &in, off, sel_thr, n);
    print_message("sigmoid head: %zu events; p >= 0.5: %zu, p >= %.2f: %zu\n", n, n_max,
                  threshold, n_thr);

    sft_msgs_free(&o_max);
    sft_msgs_free(&o_thr);
    daemon_free(&dm);
    daemon_free(&dt);
    free(sel_max);
    free(sel_thr);
    offline_free(off, n);
    sft_msgs_free(&in);
    unlink(events);
    free(events);
    sft_kafka_close(b);
}

/* Malformed events mixed into a valid stream each land in the dead-letter topic
 * unchanged (key and bytes) with sigflow-error (naming the field where there is
 * one) and sigflow-source (topic/partition/offset of the input); every valid
 * event is still published. A second daemon whose producer cannot send the
 * 2 MiB event (-X message.max.bytes) must still dead-letter it, without its
 * payload, and carry on. */
static void test_dead_letters(void **state) {
    (void)state;
    const size_t n_valid = 300;
    const char *topics[] = {"events", "signals", DLQ, "signals.small", "dlq.small"};
    /* Apache Kafka refuses messages over 1 MB unless the topic allows them. */
    const char *big[] = {"max.message.bytes", "8388608", NULL};
    sft_kafka *b = sft_kafka_open(4, topics, 5, big, 0);
    const char *bs = b->bootstrap;
    char **keys, **values;
    sft_atlas_events(n_valid, &keys, &values);

    size_t huge_len = 2u << 20; /* 2 MiB: valid JSON, over the default 1 MiB limit */
    char *huge = malloc(huge_len + 1);
    assert_non_null(huge);
    int head = snprintf(huge, huge_len, "{\"EventId\": 1, \"padding\": \"");
    memset(huge + head, 'x', huge_len - (size_t)head - 2);
    memcpy(huge + huge_len - 2, "\"}", 3);

    bad_event bad[] = {
        {"bad-not-json", strdup("this is {not json"), 0, "invalid JSON"},
        {"bad-array", strdup("[1, 2, 3]"), 0, "object"},
        {"bad-missing", sft_edit_field(values[1], "DER_mass_transverse_met_lep", NULL), 0,
         "'DER_mass_transverse_met_lep'"},
        {"bad-string", sft_edit_field(values[2], "PRI_met", "\"16.8\""), 0, "'PRI_met'"},
        {"bad-float-range", sft_edit_field(values[3], "DER_mass_vis", "3.5e38"), 0, "'DER_mass_vis'"},
        {"bad-empty", strdup(""), 0, ""},
        {NULL, strdup("not json and no key"), 0, "invalid JSON"},
        {"bad-huge", huge, huge_len, "1048576"},
    };
    const size_t n_bad = sizeof bad / sizeof bad[0];
    for (size_t j = 0; j < n_bad; j++)
        if (!bad[j].len)
            bad[j].len = strlen(bad[j].value);

    /* The stream: valid events with the malformed ones spread through it. One
     * valid event lacks a feature that has a default: it must be published. */
    size_t n = n_valid + n_bad;
    const char **k = calloc(n, sizeof *k), **v = calloc(n, sizeof *v);
    size_t *lens = calloc(n, sizeof *lens);
    char *defaulted = sft_edit_field(values[5], "DER_mass_MMC", NULL);
    for (size_t i = 0, j = 0, vi = 0; i < n; i++) {
        if (j < n_bad && i % (n / n_bad) == n / n_bad / 2) {
            k[i] = bad[j].key;
            v[i] = bad[j].value;
            lens[i] = bad[j].len;
            j++;
        } else {
            k[i] = keys[vi];
            v[i] = vi == 5 ? defaulted : values[vi];
            lens[i] = strlen(v[i]);
            vi++;
        }
    }
    assert_int_equal(sft_produce(bs, "events", k, v, lens, n), n);
    sft_msgs in = sft_consume_all(bs, "events", n, 0, 20000, 0);
    assert_int_equal(in.n, n);

    const char *args[] = {"--emit", "all", NULL};
    const char *small_args[] = {"--emit", "all", "--dlq-topic", "dlq.small",
                                "-X", "message.max.bytes=1000000", NULL};
    sfrun d = daemon_start(bs, "dlq", "signals", args);
    sfrun ds = daemon_start(bs, "dlq-small", "signals.small", small_args);
    sft_msgs out = sft_consume_all(bs, "signals", n_valid, 1000, JOIN_TIMEOUT_MS, 0);
    sft_msgs dlq = sft_consume_all(bs, DLQ, n_bad, 1000, 10000, 0);
    sft_msgs out_s = sft_consume_all(bs, "signals.small", n_valid, 1000, JOIN_TIMEOUT_MS, 0);
    sft_msgs dlq_s = sft_consume_all(bs, "dlq.small", n_bad, 1000, 10000, 0);
    if (out.n != n_valid || dlq.n != n_bad)
        show_file("daemon log", d.log);
    if (out_s.n != n_valid || dlq_s.n != n_bad)
        show_file("daemon log (message.max.bytes=1000000)", ds.log);
    daemon_stop(&d);
    daemon_stop(&ds);

    assert_int_equal(sft_topic_end(bs, "signals"), out.n);
    assert_int_equal(sft_topic_end(bs, DLQ), dlq.n);
    assert_int_equal(sft_topic_end(bs, "signals.small"), out_s.n);
    assert_int_equal(sft_topic_end(bs, "dlq.small"), dlq_s.n);
    /* Every valid event published once (--emit all), the defaulted one too. */
    const sft_msgs *outs[] = {&out, &out_s};
    for (size_t o = 0; o < 2; o++) {
        assert_int_equal(outs[o]->n, n_valid);
        keyidx out_ix = index_msgs(outs[o]);
        for (size_t i = 0; i < n_valid; i++)
            if (index_find(&out_ix, keys[i]) < 0)
                fail_msg("valid event %s was not published", keys[i]);
        free(out_ix.v);
    }
    check_dead_letters("dead letters", &dlq, &in, bad, n_bad, (size_t)-1);
    check_dead_letters("dead letters, message.max.bytes=1000000", &dlq_s, &in, bad, n_bad, 1000000);
    for (size_t i = 0; i < dlq.n; i++)
        print_message("dead letter %-15s %-14s %s\n", dlq.v[i].key ? dlq.v[i].key : "(no key)",
                      dlq.v[i].source_header, dlq.v[i].error_header);

    sft_msgs_free(&dlq);
    sft_msgs_free(&out);
    sft_msgs_free(&dlq_s);
    sft_msgs_free(&out_s);
    sft_msgs_free(&in);
    daemon_free(&d);
    daemon_free(&ds);
    free(defaulted);
    free(k);
    free(v);
    free(lens);
    for (size_t j = 0; j < n_bad; j++)
        free(bad[j].value);
    sft_strings_free(keys, n_valid);
    sft_strings_free(values, n_valid);
    sft_kafka_close(b);
}

/* Every key of `keys` present in `out`; the number missing. */
static size_t count_missing(const sft_msgs *out, char *const *keys, size_t n) {
    keyidx x = index_msgs(out);
    size_t missing = 0;
    for (size_t i = 0; i < n; i++) {
        kpos k = {keys[i], 0};
        missing += bsearch(&k, x.v, x.n, sizeof *x.v, kpos_cmp) == NULL;
    }
    free(x.v);
    return missing;
}

/* The sum over the partitions of topic of the offsets group committed
 * (partitions without a commit count 0). */
static int64_t group_committed(const char *brokers, const char *group, const char *topic,
                               int partitions) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) ||
        rd_kafka_conf_set(conf, "group.id", group, err, sizeof err))
        fail_msg("%s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk)
        fail_msg("%s", err);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(l, topic, i);
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, l, 10000);
    if (e)
        fail_msg("committed offsets of group %s: %s", group, rd_kafka_err2str(e));
    int64_t sum = 0;
    for (int i = 0; i < l->cnt; i++)
        sum += l->elems[i].offset > 0 ? l->elems[i].offset : 0;
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
    return sum;
}

/* SIGTERM while a paced stream is coming in: the daemon drains and exits 0
 * within seconds; a second daemon in the same group then picks up where it
 * stopped, and every event ends up published (at least once). */
static void test_drain_and_restart(void **state) {
    (void)state;
    const size_t n = 6000;
    const char *topics[] = {"events", "signals", DLQ};
    sft_kafka *b = sft_kafka_open(8, topics, 3, NULL, 0);
    const char *bs = b->bootstrap;
    char **keys, **values;
    sft_atlas_events(n, &keys, &values);
    /* The embedded broker, unlike Kafka, keeps a group "rebalancing" for
     * session.timeout.ms - 1 s after its last member leaves, and a member that
     * joins meanwhile waits for it: shorten the session so the restart joins in
     * seconds, not 44. */
    const char *args[] = {"--emit", "all", "-X", "session.timeout.ms=4000",
                          "-X", "heartbeat.interval.ms=500", NULL};

    sfrun d1 = daemon_start(bs, "drain", "signals", args);
    if (!sft_wait_for_text(d1.log, "assigned", JOIN_TIMEOUT_MS)) {
        show_file("daemon log", d1.log);
        fail_msg("the daemon never got its partitions");
    }
    /* The second half of the stream waits until the first daemon is gone, so
     * the stop lands mid-stream however the machine's load paces the two. */
    sft_feed *feed = sft_feed_start_held(bs, "events", n, 2000, 0, 0, n / 2);

    /* Stop it once it has published a good part of the stream. */
    sft_msgs part = sft_consume_all(bs, "signals", n / 5, 0, JOIN_TIMEOUT_MS, 0);
    assert_true(part.n >= n / 5);
    int64_t took = daemon_stop(&d1);
    sft_msgs_free(&part);
    size_t published1 = (size_t)sft_topic_end(bs, "signals");
    assert_true(published1 >= n / 5 && published1 <= n / 2);
    /* Drained: it committed exactly what it published (one output per event
     * with --emit all), no less (the restart would duplicate) and no more (the
     * restart would skip events). */
    int64_t committed1 = group_committed(bs, "drain", "events", 8);
    if (committed1 != (int64_t)published1) {
        /* The promise holds for a daemon that still owns its partitions when
         * it stops. One whose session expired first (heartbeats late on a
         * loaded machine) rightly commits nothing more: then the restart
         * redoes those events, at least once, which the rest checks. */
        char *log = sft_read_file(d1.log, NULL);
        int premise = log && !strstr(log, "assignment lost") && !strstr(log, "commit failed");
        free(log);
        show_file("first daemon log", d1.log);
        if (premise || committed1 > (int64_t)published1)
            fail_msg("the stopped daemon published %zu outputs but committed %lld input offsets",
                     published1, (long long)committed1);
        print_message("drain: the first daemon lost its partitions before the stop (see its "
                      "log): %zu published, %lld committed\n", published1, (long long)committed1);
    }

    sfrun d2 = daemon_start(bs, "drain", "signals", args);
    sft_feed_release(feed);
    assert_int_equal(sft_feed_join(feed), n);
    sft_msgs out = {0};
    size_t missing = n;
    int64_t deadline = sft_now_ms() + JOIN_TIMEOUT_MS;
    while (missing && sft_now_ms() < deadline) {
        sft_msgs_free(&out);
        out = sft_consume_all(bs, "signals", n, 500, 5000, 0);
        missing = count_missing(&out, keys, n);
    }
    if (missing)
        show_file("second daemon log", d2.log);
    daemon_stop(&d2);
    if (missing)
        fail_msg("%zu of %zu events never published after the restart", missing, n);
    keyidx x = index_msgs(&out);
    size_t dups = count_duplicates(&x);
    free(x.v);
    print_message("drain: first run published %zu of %zu and exited 0 %lld ms after SIGTERM; "
                  "after the restart %zu messages, %zu duplicates\n",
                  published1, n, (long long)took, out.n, dups);
    assert_int_equal(out.n, n + dups);

    sft_msgs_free(&out);
    daemon_free(&d1);
    daemon_free(&d2);
    sft_strings_free(keys, n);
    sft_strings_free(values, n);
    sft_kafka_close(b);
}

/* Runs `sigflow run` with args that must make it fail at start-up; returns
 * its stderr (caller frees) and how long it took. */
static char *run_failing(const char *const *args, int64_t *took) {
    char *argv[32];
    int n = 0;
    argv[n++] = SF_TEST_SIGFLOW;
    argv[n++] = "run";
    for (; *args; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    char *err = sft_temp_path(".err");
    int64_t t0 = sft_now_ms();
    int rc = sft_wait(sft_spawn(argv, NULL, NULL, err), 20000);
    *took = sft_now_ms() - t0;
    char *text = sft_read_file(err, NULL);
    assert_non_null(text);
    unlink(err);
    free(err);
    if (rc <= 0 || rc >= 128)
        fail_msg("sigflow run exited with %d (want a non-zero exit status): %s", rc, text);
    return text;
}

/* The last line of s (without its newline, if s ends with one). */
static const char *last_line(char *s) {
    size_t n = strlen(s);
    if (n && s[n - 1] == '\n')
        s[--n] = '\0';
    char *nl = strrchr(s, '\n');
    return nl ? nl + 1 : s;
}

/* A port on loopback that nothing listens on. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Start-up errors end the process with a non-zero status and one clear line:
 * a missing model file, brokers that cannot be reached (within the bound), a
 * model without an "s"/"signal" label and no --signal-label, and a
 * --signal-label the model does not have. */
static void test_startup_errors(void **state) {
    (void)state;
    char brokers[64];
    snprintf(brokers, sizeof brokers, "127.0.0.1:%d", closed_port());
    int64_t took;

    const char *missing[] = {"--brokers", brokers, "--model", FIXTURES "no_such_model.h5",
                             "--variables", MLP_VARS, "--metrics-addr", "none", NULL};
    char *err = run_failing(missing, &took);
    assert_int_equal(sft_count_lines(err), 1);
    assert_non_null(strstr(err, "no_such_model.h5"));
    print_message("missing model: %s", err);
    free(err);

    const char *unreachable[] = {"--brokers", brokers, "--model", MLP_MODEL, "--variables",
                                 MLP_VARS, "--metrics-addr", "none", "--connect-timeout-ms",
                                 "1000", NULL};
    err = run_failing(unreachable, &took);
    /* librdkafka logs the refused connections first; the verdict is the last line. */
    const char *last = last_line(err);
    print_message("unreachable brokers (%lld ms): %s\n", (long long)took, last);
    assert_non_null(strstr(last, "cannot reach brokers"));
    assert_non_null(strstr(last, brokers));
    /* It waited the bound and gave up, well before librdkafka's own 10 s
     * default would have (process start and teardown vary with the load). */
    assert_true(took >= 1000 && took < 10000);
    free(err);

    const char *no_label[] = {"--brokers", brokers, "--model", THREE_MODEL, "--variables",
                              THREE_VARS, "--metrics-addr", "none", NULL};
    err = run_failing(no_label, &took);
    assert_int_equal(sft_count_lines(err), 1);
    assert_non_null(strstr(err, "--signal-label"));
    print_message("no signal label: %s", err);
    free(err);

    const char *bad_label[] = {"--brokers", brokers, "--model", THREE_MODEL, "--variables",
                               THREE_VARS, "--metrics-addr", "none", "--signal-label", "s",
                               NULL};
    err = run_failing(bad_label, &took);
    assert_int_equal(sft_count_lines(err), 1);
    assert_non_null(strstr(err, "'s'"));
    print_message("unknown signal label: %s", err);
    free(err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_startup_errors),
        cmocka_unit_test(test_end_to_end),
        cmocka_unit_test(test_selection_modes),
        cmocka_unit_test(test_sigmoid_head),
        cmocka_unit_test(test_dead_letters),
        cmocka_unit_test(test_drain_and_restart),
    };
    const char *only = getenv("SF_TEST_FILTER"); /* e.g. SF_TEST_FILTER=test_drain* */
    if (only && *only)
        cmocka_set_test_filter(only);
    const char *skip = getenv("SF_TEST_SKIP"); /* e.g. SF_TEST_SKIP=test_s* */
    if (skip && *skip)
        cmocka_set_skip_filter(skip);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
