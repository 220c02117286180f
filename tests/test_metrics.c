/* test_metrics.c: the Prometheus exposition is parsed back line by line, so a
 * malformed line, a missing HELP/TYPE, a non-cumulative bucket or a lost
 * concurrent increment fails here rather than in somebody's scraper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/metrics.h"

/* ---- a strict little parser for the text format 0.0.4 ------------------- */

#define MAX_SAMPLES 512
#define MAX_FAMILIES 64

typedef struct sample {
    char name[128];
    char labels[512]; /* raw text between the braces, "" when none */
    double value;
} sample;

typedef struct family {
    char name[128];
    char type[512];
    int has_help;
    int has_type;
    int n_samples;
} family;

typedef struct exposition {
    sample samples[MAX_SAMPLES];
    int n_samples;
    family families[MAX_FAMILIES];
    int n_families;
} exposition;

static int is_name_start(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static int is_name_char(char c) {
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static family *find_family(exposition *e, const char *name) {
    for (int i = 0; i < e->n_families; i++)
        if (strcmp(e->families[i].name, name) == 0) return &e->families[i];
    return NULL;
}

/* The family a sample belongs to: histogram samples drop their suffix. */
static family *family_of(exposition *e, const char *sample_name) {
    family *f = find_family(e, sample_name);
    if (f) return f;
    static const char *suffixes[] = {"_bucket", "_sum", "_count"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(sample_name), sl = strlen(suffixes[i]);
        if (n > sl && strcmp(sample_name + n - sl, suffixes[i]) == 0) {
            char base[128];
            snprintf(base, sizeof base, "%.*s", (int)(n - sl), sample_name);
            f = find_family(e, base);
            if (f && strcmp(f->type, "histogram") == 0) return f;
        }
    }
    return NULL;
}

static double parse_value(const char *s) {
    if (strcmp(s, "+Inf") == 0) return INFINITY;
    if (strcmp(s, "-Inf") == 0) return -INFINITY;
    if (strcmp(s, "NaN") == 0) return NAN;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0') fail_msg("bad sample value '%s'", s);
    return v;
}

/* Checks the label set {name="value",...}; returns a pointer past the '}'. */
static const char *parse_labels(const char *p, const char *line) {
    assert_true(*p == '{');
    p++;
    while (*p != '}') {
        if (!is_name_start(*p)) fail_msg("bad label name in '%s'", line);
        while (is_name_char(*p)) p++;
        if (p[0] != '=' || p[1] != '"') fail_msg("expected =\" in '%s'", line);
        p += 2;
        while (*p != '"') {
            if (*p == '\0' || *p == '\n') fail_msg("unterminated label value in '%s'", line);
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n')
                    fail_msg("bad escape in '%s'", line);
                p++;
            }
            p++;
        }
        p++;
        if (*p == ',') p++;
        else if (*p != '}') fail_msg("expected , or } in '%s'", line);
    }
    return p + 1;
}

static void parse_exposition(const char *text, exposition *e) {
    memset(e, 0, sizeof *e);
    size_t total = strlen(text);
    assert_true(total > 0);
    assert_int_equal(text[total - 1], '\n');
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        char line[1024];
        assert_true((size_t)(nl - p) < sizeof line);
        memcpy(line, p, (size_t)(nl - p));
        line[nl - p] = '\0';
        p = nl + 1;
        assert_true(line[0] != '\0'); /* no blank lines */

        if (line[0] == '#') {
            char name[128], rest[512];
            if (sscanf(line, "# HELP %127s %511[^\n]", name, rest) == 2) {
                family *f = find_family(e, name);
                if (!f) {
                    assert_true(e->n_families < MAX_FAMILIES);
                    f = &e->families[e->n_families++];
                    snprintf(f->name, sizeof f->name, "%s", name);
                }
                assert_false(f->has_help);
                assert_int_equal(f->n_samples, 0);
                f->has_help = 1;
            } else if (sscanf(line, "# TYPE %127s %511s", name, rest) == 2) {
                family *f = find_family(e, name);
                assert_non_null(f); /* we always write HELP first */
                assert_false(f->has_type);
                assert_int_equal(f->n_samples, 0);
                assert_true(strcmp(rest, "counter") == 0 || strcmp(rest, "gauge") == 0 ||
                            strcmp(rest, "histogram") == 0);
                snprintf(f->type, sizeof f->type, "%s", rest);
                f->has_type = 1;
            } else {
                fail_msg("unexpected comment line '%s'", line);
            }
            continue;
        }

        assert_true(e->n_samples < MAX_SAMPLES);
        sample *s = &e->samples[e->n_samples++];
        const char *q = line;
        if (!is_name_start(*q)) fail_msg("bad metric name in '%s'", line);
        while (is_name_char(*q)) q++;
        snprintf(s->name, sizeof s->name, "%.*s", (int)(q - line), line);
        if (*q == '{') {
            const char *after = parse_labels(q, line);
            snprintf(s->labels, sizeof s->labels, "%.*s", (int)(after - q - 2), q + 1);
            q = after;
        }
        if (*q != ' ') fail_msg("expected one space before the value in '%s'", line);
        q++;
        if (strchr(q, ' ')) fail_msg("trailing text (timestamp?) in '%s'", line);
        s->value = parse_value(q);

        family *f = family_of(e, s->name);
        if (!f) fail_msg("sample '%s' has no HELP/TYPE family", s->name);
        assert_true(f->has_help && f->has_type);
        if (strcmp(f->type, "counter") == 0) {
            size_t n = strlen(f->name);
            assert_true(n > 6 && strcmp(f->name + n - 6, "_total") == 0);
            assert_true(s->value >= 0);
        }
        f->n_samples++;
    }
}

static const sample *get_sample(const exposition *e, const char *name, const char *labels) {
    for (int i = 0; i < e->n_samples; i++)
        if (strcmp(e->samples[i].name, name) == 0 && strcmp(e->samples[i].labels, labels) == 0)
            return &e->samples[i];
    return NULL;
}

static double value_of(const exposition *e, const char *name, const char *labels) {
    const sample *s = get_sample(e, name, labels);
    if (!s) fail_msg("no sample %s{%s}", name, labels);
    return s->value;
}

static int count_samples(const exposition *e, const char *name) {
    int n = 0;
    for (int i = 0; i < e->n_samples; i++)
        if (strcmp(e->samples[i].name, name) == 0) n++;
    return n;
}

static exposition *render_parse(const sf_metrics *m) {
    char *text = sf_metrics_render(m);
    assert_non_null(text);
    exposition *e = malloc(sizeof *e);
    assert_non_null(e);
    parse_exposition(text, e);
    free(text);
    return e;
}

/* Checks one histogram family: buckets ascending in le and cumulative,
 * +Inf last and equal to _count. Returns the number of finite buckets and
 * fills bounds[]/counts[] (cumulative). */
static int check_histogram(const exposition *e, const char *name, double *bounds,
                           double *counts, int max) {
    char bucket[160], sum[160], cnt[160];
    snprintf(bucket, sizeof bucket, "%s_bucket", name);
    snprintf(sum, sizeof sum, "%s_sum", name);
    snprintf(cnt, sizeof cnt, "%s_count", name);
    int n = 0;
    double prev_le = -INFINITY, prev_count = 0;
    int saw_inf = 0;
    for (int i = 0; i < e->n_samples; i++) {
        const sample *s = &e->samples[i];
        if (strcmp(s->name, bucket) != 0) continue;
        assert_false(saw_inf); /* +Inf is the last bucket */
        char le[64];
        assert_int_equal(sscanf(s->labels, "le=\"%63[^\"]\"", le), 1);
        double b = parse_value(le);
        assert_true(b > prev_le);
        assert_true(s->value >= prev_count);
        prev_le = b;
        prev_count = s->value;
        if (isinf(b)) {
            saw_inf = 1;
        } else {
            assert_true(n < max);
            bounds[n] = b;
            counts[n] = s->value;
            n++;
        }
    }
    assert_true(saw_inf);
    assert_true(prev_count == value_of(e, cnt, ""));
    assert_non_null(get_sample(e, sum, ""));
    return n;
}

/* ---- tests -------------------------------------------------------------- */

static void test_format_every_family(void **state) {
    (void)state;
    sf_metrics *m = sf_metrics_new();
    assert_non_null(m);
    exposition *e = render_parse(m);

    static const struct {
        const char *name, *type;
    } want[] = {
        {"sigflow_events_consumed_total", "counter"},
        {"sigflow_events_predicted_total", "counter"},
        {"sigflow_signals_published_total", "counter"},
        {"sigflow_dead_letters_total", "counter"},
        {"sigflow_batches_total", "counter"},
        {"sigflow_model_reloads_total", "counter"},
        {"sigflow_model_reload_failures_total", "counter"},
        {"sigflow_events_rejected_total", "counter"},
        {"sigflow_model_refusals_total", "counter"},
        {"sigflow_consumer_lag", "gauge"},
        {"sigflow_assigned_partitions", "gauge"},
        {"sigflow_defaulted_inputs_total", "counter"},
        {"sigflow_model_info", "gauge"},
        {"sigflow_inference_info", "gauge"},
        {"sigflow_build_info", "gauge"},
        {"sigflow_batch_size", "histogram"},
        {"sigflow_inference_seconds", "histogram"},
        {"sigflow_end_to_end_seconds", "histogram"},
        {"sigflow_shadow_abs_dp", "histogram"}, /* empty without --shadow-model */
    };
    assert_int_equal(e->n_families, (int)(sizeof want / sizeof want[0]));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        family *f = find_family(e, want[i].name);
        if (!f) fail_msg("family %s missing", want[i].name);
        assert_true(f->has_help && f->has_type);
        assert_string_equal(f->type, want[i].type);
    }
    /* No model yet: the family is declared but has no sample. */
    assert_int_equal(find_family(e, "sigflow_model_info")->n_samples, 0);
    /* All zero but the build, which is 1, with the versions as labels. */
    int build = 0;
    for (int i = 0; i < e->n_samples; i++) {
        if (!strncmp(e->samples[i].name, "sigflow_build_info", 18)) {
            build++;
            assert_true(e->samples[i].value == 1);
            assert_non_null(strstr(e->samples[i].labels, "version=\""));
            assert_non_null(strstr(e->samples[i].labels, "librdkafka=\"2."));
            assert_non_null(strstr(e->samples[i].labels, "openblas=\"0."));
            assert_non_null(strstr(e->samples[i].labels, "hdf5=\"1."));
            assert_non_null(strstr(e->samples[i].labels, "onednn=\""));
            continue;
        }
        assert_true(e->samples[i].value == 0);
    }
    assert_int_equal(build, 1);
    free(e);
    sf_metrics_free(m);
}

static void test_counters(void **state) {
    (void)state;
    sf_metrics *m = sf_metrics_new();
    sf_metrics_add(m, SF_C_CONSUMED, 1000);
    sf_metrics_add(m, SF_C_CONSUMED, 24);
    sf_metrics_add(m, SF_C_PREDICTED, 990);
    sf_metrics_add(m, SF_C_SIGNALS, 321);
    sf_metrics_add(m, SF_C_DEAD_LETTERS, 10);
    sf_metrics_add(m, SF_C_BATCHES, 2);
    sf_metrics_add(m, SF_C__COUNT, 5); /* out of range: ignored */
    assert_int_equal(sf_metrics_get(m, SF_C_CONSUMED), 1024);
    assert_int_equal(sf_metrics_get(m, SF_C__COUNT), 0);

    /* Beyond 2^53, where a double-based counter would start to round. */
    sf_metrics_add(m, SF_C_BATCHES, (UINT64_C(1) << 60));
    char *text = sf_metrics_render(m);
    assert_non_null(strstr(text, "\nsigflow_batches_total 1152921504606846978\n"));
    free(text);

    exposition *e = render_parse(m);
    assert_true(value_of(e, "sigflow_events_consumed_total", "") == 1024);
    assert_true(value_of(e, "sigflow_events_predicted_total", "") == 990);
    assert_true(value_of(e, "sigflow_signals_published_total", "") == 321);
    assert_true(value_of(e, "sigflow_dead_letters_total", "") == 10);
    free(e);
    sf_metrics_free(m);
}

static void test_rejected_lists_every_reason(void **state) {
    (void)state;
    sf_metrics *m = sf_metrics_new();
    sf_metrics_reject(m, SF_REJECT_NOT_JSON);
    sf_metrics_reject(m, SF_REJECT_NOT_JSON);
    sf_metrics_model_refused(m, SF_MODEL_REFUSED_SANDBOX);
    sf_metrics_model_refused(m, SF_MODEL_REFUSED_SANDBOX);
    sf_metrics_model_refused(m, SF_MODEL_REFUSED__COUNT); /* out of range */
    assert_int_equal(sf_metrics_model_refusals(m, SF_MODEL_REFUSED_SANDBOX), 2);
    assert_int_equal(sf_metrics_model_refusals(m, SF_MODEL_REFUSED_CRASH), 0);
    sf_metrics_reject(m, SF_REJECT_MISSING_FIELD);
    sf_metrics_reject(m, SF_REJECT_NONE);     /* not a rejection */
    sf_metrics_reject(m, SF_REJECT__COUNT);   /* out of range */
    assert_int_equal(sf_metrics_rejected(m, SF_REJECT_NOT_JSON), 2);
    assert_int_equal(sf_metrics_rejected(m, SF_REJECT_NONE), 0);

    exposition *e = render_parse(m);
    assert_int_equal(count_samples(e, "sigflow_events_rejected_total"), SF_REJECT__COUNT - 1);
    for (int r = SF_REJECT_NONE + 1; r < SF_REJECT__COUNT; r++) {
        char labels[128];
        snprintf(labels, sizeof labels, "reason=\"%s\"", sf_reject_name((sf_reject)r));
        double want = r == SF_REJECT_NOT_JSON ? 2 : r == SF_REJECT_MISSING_FIELD ? 1 : 0;
        assert_true(value_of(e, "sigflow_events_rejected_total", labels) == want);
    }
    /* Model refusals, every cause listed, the sandbox's counted. */
    assert_int_equal(count_samples(e, "sigflow_model_refusals_total"), SF_MODEL_REFUSED__COUNT);
    assert_true(value_of(e, "sigflow_model_refusals_total", "cause=\"sandbox\"") == 2);
    assert_true(value_of(e, "sigflow_model_refusals_total", "cause=\"crash\"") == 0);
    /* The names are the documented ones, not e.g. the enum spelled differently. */
    assert_non_null(get_sample(e, "sigflow_events_rejected_total", "reason=\"not_json\""));
    assert_non_null(get_sample(e, "sigflow_events_rejected_total", "reason=\"missing_field\""));
    free(e);
    sf_metrics_free(m);
}

static void test_gauges(void **state) {
    (void)state;
    sf_metrics *m = sf_metrics_new();
    sf_metrics_set(m, SF_G_CONSUMER_LAG, 123456789.0);
    sf_metrics_set(m, SF_G_ASSIGNED_PARTITIONS, 3);
    exposition *e = render_parse(m);
    assert_true(value_of(e, "sigflow_consumer_lag", "") == 123456789.0);
    assert_true(value_of(e, "sigflow_assigned_partitions", "") == 3);
    free(e);

    /* Gauges go down, and take fractional values that must round-trip. */
    sf_metrics_set(m, SF_G_CONSUMER_LAG, 0.1);
    sf_metrics_set(m, SF_G_ASSIGNED_PARTITIONS, 0);
    e = render_parse(m);
    assert_true(value_of(e, "sigflow_consumer_lag", "") == 0.1);
    assert_true(value_of(e, "sigflow_assigned_partitions", "") == 0);
    free(e);
    sf_metrics_free(m);
}

static void test_histogram_buckets(void **state) {
    (void)state;
    static const struct {
        sf_histogram h;
        const char *name;
        double first, last;
        int n_bounds;
    } hs[] = {
        {SF_H_BATCH_SIZE, "sigflow_batch_size", 1, 4096, 13},
        {SF_H_INFERENCE, "sigflow_inference_seconds", 0.00001, 1, 16},
        {SF_H_END_TO_END, "sigflow_end_to_end_seconds", 0.0005, 30, 15},
    };
    sf_metrics *m = sf_metrics_new();
    double bounds[32], counts[32];

    /* Learn each family's bounds from an empty render, then observe values on,
     * between, below and above them, and recount independently. */
    for (size_t k = 0; k < sizeof hs / sizeof hs[0]; k++) {
        exposition *e = render_parse(m);
        int n = check_histogram(e, hs[k].name, bounds, counts, 32);
        free(e);
        assert_int_equal(n, hs[k].n_bounds);
        assert_true(bounds[0] == hs[k].first);
        assert_true(bounds[n - 1] == hs[k].last);

        double values[128];
        int nv = 0;
        for (int i = 0; i < n; i++) {
            values[nv++] = bounds[i];                 /* le is inclusive */
            values[nv++] = bounds[i] * 1.0000001;     /* just above: next bucket */
            if (i > 0) values[nv++] = (bounds[i - 1] + bounds[i]) / 2;
        }
        values[nv++] = 0;
        values[nv++] = bounds[n - 1] * 10; /* only in +Inf */
        values[nv++] = INFINITY;           /* only in +Inf */
        double sum = 0;
        for (int i = 0; i < nv - 1; i++) {
            sf_metrics_observe(m, hs[k].h, values[i]);
            sum += values[i];
        }
        sf_metrics_observe(m, hs[k].h, NAN); /* ignored: would poison _sum */

        e = render_parse(m);
        n = check_histogram(e, hs[k].name, bounds, counts, 32);
        for (int b = 0; b < n; b++) {
            int want = 0;
            for (int i = 0; i < nv - 1; i++) want += values[i] <= bounds[b];
            if (counts[b] != want)
                fail_msg("%s le=%g: %g, want %d", hs[k].name, bounds[b], counts[b], want);
        }
        char name[160];
        snprintf(name, sizeof name, "%s_count", hs[k].name);
        assert_true(value_of(e, name, "") == nv - 1);
        snprintf(name, sizeof name, "%s_sum", hs[k].name);
        double got = value_of(e, name, "");
        assert_true(fabs(got - sum) <= 1e-12 * fabs(sum));
        free(e);

        /* One +Inf observation makes the sum +Inf, spelled the Prometheus way. */
        sf_metrics_observe(m, hs[k].h, values[nv - 1]);
        char *text = sf_metrics_render(m);
        char want_line[200];
        snprintf(want_line, sizeof want_line, "\n%s_sum +Inf\n", hs[k].name);
        assert_non_null(strstr(text, want_line));
        free(text);
    }
    sf_metrics_free(m);
}

static void test_bucket_labels_are_short(void **state) {
    (void)state;
    sf_metrics *m = sf_metrics_new();
    char *text = sf_metrics_render(m);
    assert_non_null(strstr(text, "\nsigflow_inference_seconds_bucket{le=\"1e-05\"} 0\n"));
    assert_non_null(strstr(text, "\nsigflow_inference_seconds_bucket{le=\"2.5e-05\"} 0\n"));
    assert_non_null(strstr(text, "\nsigflow_batch_size_bucket{le=\"4096\"} 0\n"));
    assert_non_null(strstr(text, "\nsigflow_end_to_end_seconds_bucket{le=\"0.0005\"} 0\n"));
    assert_non_null(strstr(text, "\nsigflow_end_to_end_seconds_bucket{le=\"+Inf\"} 0\n"));
    free(text);
    sf_metrics_free(m);
}

typedef struct hammer_arg {
    sf_metrics *m;
    int n;
} hammer_arg;

static void *hammer(void *p) {
    hammer_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        sf_metrics_add(a->m, SF_C_CONSUMED, 1);
        sf_metrics_reject(a->m, SF_REJECT_NOT_NUMBER);
        if (i % 4 == 0) sf_metrics_observe(a->m, SF_H_INFERENCE, 0.25);
    }
    return NULL;
}

static void test_concurrent_updates_sum_exactly(void **state) {
    (void)state;
    sf_metrics *m = sf_metrics_new();
    hammer_arg a = {m, 200000};
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, hammer, &a), 0);
    assert_int_equal(pthread_create(&t2, NULL, hammer, &a), 0);
    /* Scrapes while the writers run must always parse and stay consistent. */
    for (int i = 0; i < 20; i++) {
        exposition *e = render_parse(m);
        double bounds[32], counts[32];
        check_histogram(e, "sigflow_inference_seconds", bounds, counts, 32);
        free(e);
    }
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    assert_int_equal(sf_metrics_get(m, SF_C_CONSUMED), 400000);
    assert_int_equal(sf_metrics_rejected(m, SF_REJECT_NOT_NUMBER), 400000);
    exposition *e = render_parse(m);
    assert_true(value_of(e, "sigflow_inference_seconds_count", "") == 100000);
    /* 0.25 is exact in binary, so a lost CAS update would show. */
    assert_true(value_of(e, "sigflow_inference_seconds_sum", "") == 25000.0);
    assert_true(value_of(e, "sigflow_inference_seconds_bucket", "le=\"0.25\"") == 100000);
    assert_true(value_of(e, "sigflow_inference_seconds_bucket", "le=\"0.1\"") == 0);
    free(e);
    sf_metrics_free(m);
}

/* Undoes the label escaping, to compare with what was set. */
static void unescape(const char *in, size_t len, char *out) {
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\\') {
            i++;
            *out++ = in[i] == 'n' ? '\n' : in[i];
        } else {
            *out++ = in[i];
        }
    }
    *out = '\0';
}

static void test_model_info_escaping(void **state) {
    (void)state;
    sf_metrics *m = sf_metrics_new();
    const char *nasty = "ab\"c\\d\ne}f,g=\"";
    sf_metrics_set_model(m, nasty, 30, 2);
    char *text = sf_metrics_render(m);
    assert_non_null(strstr(
        text,
        "\nsigflow_model_info{sha256=\"ab\\\"c\\\\d\\ne}f,g=\\\"\",inputs=\"30\",outputs=\"2\"} 1\n"));
    free(text);

    exposition *e = render_parse(m);
    assert_int_equal(count_samples(e, "sigflow_model_info"), 1);
    const sample *s = NULL;
    for (int i = 0; i < e->n_samples; i++)
        if (strcmp(e->samples[i].name, "sigflow_model_info") == 0) s = &e->samples[i];
    assert_true(s->value == 1);
    const char *v = s->labels + strlen("sha256=\"");
    const char *end = strstr(v, "\",inputs=");
    assert_non_null(end);
    char back[64];
    unescape(v, (size_t)(end - v), back);
    assert_string_equal(back, nasty);
    free(e);

    /* A reload replaces the info; NULL removes it. */
    const char *sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    sf_metrics_set_model(m, sha, 28, 3);
    e = render_parse(m);
    char labels[160];
    snprintf(labels, sizeof labels, "sha256=\"%s\",inputs=\"28\",outputs=\"3\"", sha);
    assert_true(value_of(e, "sigflow_model_info", labels) == 1);
    assert_int_equal(count_samples(e, "sigflow_model_info"), 1);
    free(e);
    sf_metrics_set_model(m, NULL, 0, 0);
    e = render_parse(m);
    assert_int_equal(count_samples(e, "sigflow_model_info"), 0);
    assert_int_equal(count_samples(e, "sigflow_inference_info"), 0);
    free(e);

    /* What the forward pass runs on (issue 11), escaped like any label. */
    sf_metrics_set_inference(m, "onednn", "bf16", "brg:avx512_core_amx\"x", 2, 1);
    e = render_parse(m);
    assert_true(value_of(e, "sigflow_inference_info",
                         "backend=\"onednn\",precision=\"bf16\",kernel=\"brg:avx512_core_amx\\\"x\","
                         "threads=\"2\",library_threads=\"1\"") == 1);
    free(e);
    char got[256];
    sf_metrics_get_inference(m, got, sizeof got);
    assert_non_null(strstr(got, "backend=\"onednn\""));
    sf_metrics_free(m);
}

typedef struct reload_arg {
    sf_metrics *m;
    atomic_int stop;
} reload_arg;

static void *reloader(void *p) {
    reload_arg *a = p;
    for (unsigned i = 0; !atomic_load(&a->stop); i++)
        sf_metrics_set_model(a->m, i % 2 ? "odd" : "even", 30, 2);
    return NULL;
}

static void test_model_reload_during_scrapes(void **state) {
    (void)state;
    reload_arg a = {.m = sf_metrics_new()};
    atomic_init(&a.stop, 0);
    sf_metrics_set_model(a.m, "even", 30, 2);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, reloader, &a), 0);
    for (int i = 0; i < 2000; i++) {
        char *text = sf_metrics_render(a.m);
        assert_non_null(text);
        int odd = strstr(text, "sha256=\"odd\",inputs=\"30\",outputs=\"2\"} 1\n") != NULL;
        int even = strstr(text, "sha256=\"even\",inputs=\"30\",outputs=\"2\"} 1\n") != NULL;
        assert_int_equal(odd + even, 1);
        free(text);
    }
    atomic_store(&a.stop, 1);
    pthread_join(t, NULL);
    sf_metrics_free(a.m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_every_family),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_rejected_lists_every_reason),
        cmocka_unit_test(test_gauges),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_bucket_labels_are_short),
        cmocka_unit_test(test_concurrent_updates_sum_exactly),
        cmocka_unit_test(test_model_info_escaping),
        cmocka_unit_test(test_model_reload_during_scrapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
