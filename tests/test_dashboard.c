/* test_dashboard.c: the Grafana dashboard (contrib/grafana/sigflow.json) only
 * queries series that /metrics serves, with rate() only over counters and
 * histogram parts, and covers what an operator looks for. The served names come
 * from rendering the metrics registry, so renaming a metric without updating
 * the dashboard fails here, in a unit test, without a broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/drift.h"
#include "sigflow/metrics.h"
#include "sigflow/truth.h"

#define MAX_NAMES 128

typedef struct {
    char name[MAX_NAMES][128];
    char type[MAX_NAMES][16]; /* of the family the series belongs to */
    char labels[MAX_NAMES][256];
    int n;
} served;

static int served_find(const served *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->name[i], name))
            return i;
    return -1;
}

/* Series names of the exposition, with their family's TYPE and label names. */
static void load_served(served *s) {
    sf_metrics *m = sf_metrics_new();
    assert_non_null(m);
    /* the info series exist once the daemon has set them */
    sf_metrics_set_model(m, "0123abcd", 30, 2);
    sf_metrics_set_inference(m, "openblas", "fp32", "Haswell", 2, 1);
    /* and the model-health families once there is something to say */
    sf_var var = {.name = "x", .scale = 1,
                  .training = {.given = 1, .std = 1, .bins = {.n_edges = 1, .fractions = {.5, .5}}}};
    sf_vars vars = {.n_vars = 1, .vars = &var};
    sf_vars_bins score = {.n_edges = 1, .edges = {0.5}, .fractions = {0.5, 0.5}};
    sf_drift_conf dc;
    sf_drift_conf_init(&dc);
    sf_drift *drift = sf_drift_new(&dc, &vars, 2, 1, &score);
    float rows[] = {1, -1}, probs[] = {0.2f, 0.8f, 0.7f, 0.3f};
    sf_drift_add_rows(drift, rows, 2, 0);
    sf_drift_add_scores(drift, probs, 2);
    assert_int_equal(sf_drift_publish(drift, m, 0), 0);
    sf_drift_free(drift);
    sf_truth_conf tc;
    sf_truth_conf_init(&tc);
    const char *const models[] = {"serving"};
    sf_truth *truth = sf_truth_new(&tc, 1, models);
    unsigned char yes = 1, no = 0;
    sf_truth_predicted(truth, "1", 1, &probs[1], &yes, 0);
    sf_truth_predicted(truth, "2", 1, &probs[3], &no, 0);
    sf_truth_observed(truth, "1", 1, 1, 0);
    sf_truth_observed(truth, "2", 1, 0, 0);
    assert_int_equal(sf_truth_publish(truth, m), 0);
    sf_truth_free(truth);
    /* set by pipeline_monitor.c's shadow, which needs a running pipeline */
    double agreement = 1;
    sf_metrics_set_gauges(m, "sigflow_shadow_agreement", "-", NULL, 1, NULL, &agreement);
    char *text = sf_metrics_render(m);
    assert_non_null(text);
    memset(s, 0, sizeof *s);
    char family_type[16] = "";
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[128];
        if (!strncmp(line, "# TYPE ", 7)) {
            assert_int_equal(sscanf(line + 7, "%127s %15s", name, family_type), 2);
            continue;
        }
        if (line[0] == '#')
            continue;
        size_t len = strcspn(line, "{ ");
        assert_true(len > 0 && len < sizeof name);
        memcpy(name, line, len);
        name[len] = '\0';
        int i = served_find(s, name);
        if (i < 0) {
            assert_true(s->n < MAX_NAMES);
            i = s->n++;
            snprintf(s->name[i], sizeof s->name[i], "%s", name);
            snprintf(s->type[i], sizeof s->type[i], "%s", family_type);
        }
        /* label names: every NAME=" inside the braces */
        if (line[len] == '{')
            for (const char *p = line + len + 1; *p && *p != '}';) {
                size_t k = strcspn(p, "=");
                char lab[64];
                snprintf(lab, sizeof lab, "%.*s,", (int)k, p);
                if (!strstr(s->labels[i], lab))
                    strncat(s->labels[i], lab, sizeof s->labels[i] - strlen(s->labels[i]) - 1);
                p += k + 2; /* past =" */
                while (*p && *p != '"')
                    p += *p == '\\' ? 2 : 1;
                if (*p)
                    p++;
                if (*p == ',')
                    p++;
            }
    }
    free(text);
    sf_metrics_free(m);
}

static json_t *load_dashboard(void) {
    json_error_t e;
    json_t *d = json_load_file(SF_SOURCE_DIR "/contrib/grafana/sigflow.json", 0, &e);
    if (!d)
        fail_msg("contrib/grafana/sigflow.json line %d: %s", e.line, e.text);
    return d;
}

/* Calls fn on every target expression of every panel (rows' nested panels too). */
static void each_expr(json_t *panels, void (*fn)(const char *expr, const char *title, void *), void *ctx) {
    size_t i;
    json_t *p;
    json_array_foreach(panels, i, p) {
        json_t *nested = json_object_get(p, "panels");
        if (nested)
            each_expr(nested, fn, ctx);
        const char *title = json_string_value(json_object_get(p, "title"));
        size_t j;
        json_t *t;
        json_array_foreach(json_object_get(p, "targets"), j, t) {
            const char *expr = json_string_value(json_object_get(t, "expr"));
            if (!expr)
                fail_msg("panel '%s': a target without expr", title ? title : "?");
            fn(expr, title ? title : "?", ctx);
        }
    }
}

typedef struct {
    const served *s;
    int n_refs;
    char seen[1024];
} check_ctx;

/* Every sigflow_* name in the expression is served; one under rate() is a
 * counter or a histogram part, one outside is a gauge. by (...) labels exist. */
static void check_expr(const char *expr, const char *title, void *arg) {
    check_ctx *c = arg;
    for (const char *p = expr; (p = strstr(p, "sigflow_"));) {
        if (p > expr && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) {
            p++;
            continue;
        }
        char name[128];
        size_t k = 0;
        while ((isalnum((unsigned char)p[k]) || p[k] == '_') && k < sizeof name - 1) {
            name[k] = p[k];
            k++;
        }
        name[k] = '\0';
        int i = served_find(c->s, name);
        if (i < 0)
            fail_msg("panel '%s' queries %s, which /metrics does not serve", title, name);
        c->n_refs++;
        char key[130];
        snprintf(key, sizeof key, "%s,", name);
        if (!strstr(c->seen, key))
            strncat(c->seen, key, sizeof c->seen - strlen(c->seen) - 1);
        /* the innermost function around the name */
        const char *open = p;
        while (open > expr && open[-1] != '(')
            open--;
        int in_rate = open - expr >= 5 && !strncmp(open - 5, "rate(", 5);
        int counterish = !strcmp(c->s->type[i], "counter") || !strcmp(c->s->type[i], "histogram");
        if (in_rate && !counterish)
            fail_msg("panel '%s': rate() over %s, a %s", title, name, c->s->type[i]);
        if (!in_rate && counterish)
            fail_msg("panel '%s': %s (a %s) used without rate()", title, name, c->s->type[i]);
        p += k;
    }
    for (const char *b = expr; (b = strstr(b, "by (")); b += 4) {
        char lab[64];
        if (sscanf(b + 4, "%63[a-z_]", lab) != 1)
            fail_msg("panel '%s': unreadable by (...) in %s", title, expr);
        if (!strcmp(lab, "le") ? !strstr(expr, "_bucket") : 0)
            fail_msg("panel '%s': by (le) outside a histogram", title);
        /* instance and job: what Prometheus adds to every scraped series */
        if (strcmp(lab, "le") && strcmp(lab, "instance") && strcmp(lab, "job")) {
            int found = 0;
            char want[70];
            snprintf(want, sizeof want, "%s,", lab);
            for (int i = 0; i < c->s->n; i++)
                if (strstr(expr, c->s->name[i]) && strstr(c->s->labels[i], want))
                    found = 1;
            if (!found)
                fail_msg("panel '%s': by (%s), a label no queried series has", title, lab);
        }
    }
}

/* Fails unless every one of names was queried ("WHAT NAME" otherwise). */
static void require_seen(const check_ctx *c, const char *const *names, size_t n,
                         const char *what) {
    for (size_t i = 0; i < n; i++) {
        char key[130];
        snprintf(key, sizeof key, "%s,", names[i]);
        if (!strstr(c->seen, key))
            fail_msg("%s %s", what, names[i]);
    }
}

static void test_every_queried_metric_is_served(void **state) {
    (void)state;
    served s;
    load_served(&s);
    assert_true(served_find(&s, "sigflow_events_consumed_total") >= 0);
    json_t *d = load_dashboard();
    check_ctx c = {.s = &s};
    each_expr(json_object_get(d, "panels"), check_expr, &c);
    assert_true(c.n_refs > 10);
    /* What the issue asks the dashboard to show. */
    static const char *const wanted[] = {
        "sigflow_events_consumed_total", "sigflow_events_predicted_total",
        "sigflow_signals_published_total", "sigflow_dead_letters_total",
        "sigflow_events_rejected_total", "sigflow_batch_size_bucket",
        "sigflow_inference_seconds_bucket", "sigflow_end_to_end_seconds_bucket",
        "sigflow_consumer_lag", "sigflow_assigned_partitions", "sigflow_model_info",
        "sigflow_inference_info", "sigflow_input_psi", "sigflow_score_psi", "sigflow_signal_rate",
        "sigflow_live_auc", "sigflow_live_accuracy", "sigflow_truth_joined_total",
        "sigflow_truth_unmatched_total"};
    require_seen(&c, wanted, sizeof wanted / sizeof wanted[0], "the dashboard does not show");
    json_decref(d);
}

/* The alert rules (contrib/prometheus/sigflow-rules.yml) query served series
 * too, with rate() only over counters; promtool checks the rest
 * (test_prom_rules). An expression is the rest of an `expr:` line, or the
 * indented lines after `expr: >`. */
static void test_alert_rules(void **state) {
    (void)state;
    served s;
    load_served(&s);
    FILE *f = fopen(SF_SOURCE_DIR "/contrib/prometheus/sigflow-rules.yml", "r");
    assert_non_null(f);
    check_ctx c = {.s = &s};
    char line[1024], expr[2048] = "";
    int folded = 0, n = 0;
    while (fgets(line, sizeof line, f)) {
        const char *e = strstr(line, "expr:");
        if (folded && (strstr(line, "for:") || strstr(line, "labels:"))) {
            check_expr(expr, "alert rules", &c);
            n++;
            folded = 0;
        }
        if (folded) {
            strncat(expr, line, sizeof expr - strlen(expr) - 1);
        } else if (e) {
            e += 5;
            while (*e == ' ')
                e++;
            if (*e == '>') {
                folded = 1;
                expr[0] = '\0';
            } else {
                check_expr(e, "alert rules", &c);
                n++;
            }
        }
    }
    fclose(f);
    assert_int_equal(n, 6);
    static const char *const wanted[] = {"sigflow_input_psi", "sigflow_live_auc",
                                         "sigflow_truth_joined_total", "sigflow_shadow_agreement"};
    require_seen(&c, wanted, sizeof wanted / sizeof wanted[0], "the alert rules do not watch");
}

typedef struct {
    int quantiles;
} quantile_ctx;

static void count_quantiles(const char *expr, const char *title, void *arg) {
    (void)title;
    if (strstr(expr, "histogram_quantile(") && strstr(expr, "_bucket"))
        ((quantile_ctx *)arg)->quantiles++;
}

/* Grafana 10 model, the Prometheus data source a variable every query uses. */
static void test_grafana_model(void **state) {
    (void)state;
    json_t *d = load_dashboard();
    assert_true(json_integer_value(json_object_get(d, "schemaVersion")) >= 36);
    assert_non_null(json_string_value(json_object_get(d, "uid")));
    assert_true(json_is_null(json_object_get(d, "id")));
    int has_ds = 0;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(json_object_get(d, "templating"), "list"), i, v) {
        const char *type = json_string_value(json_object_get(v, "type"));
        const char *query = json_string_value(json_object_get(v, "query"));
        if (type && !strcmp(type, "datasource") && query && !strcmp(query, "prometheus") &&
            !strcmp(json_string_value(json_object_get(v, "name")), "datasource"))
            has_ds = 1;
    }
    assert_true(has_ds);
    json_t *p;
    json_array_foreach(json_object_get(d, "panels"), i, p) {
        const char *uid = json_string_value(json_object_get(json_object_get(p, "datasource"), "uid"));
        if (!uid || strcmp(uid, "${datasource}"))
            fail_msg("panel '%s' does not use the datasource variable",
                     json_string_value(json_object_get(p, "title")));
        json_t *grid = json_object_get(p, "gridPos");
        assert_true(json_integer_value(json_object_get(grid, "w")) > 0);
    }
    quantile_ctx q = {0};
    each_expr(json_object_get(d, "panels"), count_quantiles, &q);
    assert_true(q.quantiles >= 9); /* p50, p90, p99 of three histograms */
    json_decref(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_queried_metric_is_served),
        cmocka_unit_test(test_alert_rules),
        cmocka_unit_test(test_grafana_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
