/* test_drift_window.c: the drift monitor (drift.h) without a broker: its
 * windows in events and in seconds, the PSI and the other figures on numbers
 * worked out by hand, the fallback without a training block, and the gauge
 * families it exports through (metrics.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/drift.h"
#include "sigflow/metrics.h"

/* One input "x": training mean 0, std 1, one edge at 0 (half below, half at
 * or above), fill -1 for the missing value. */
static sf_vars *one_input(int with_bins) {
    sf_vars *v = calloc(1, sizeof *v);
    v->n_vars = 1;
    v->vars = calloc(1, sizeof *v->vars);
    v->vars[0].name = "x";
    v->vars[0].scale = 1;
    v->vars[0].has_fill = 1;
    v->vars[0].fill = -1;
    sf_var_training *t = &v->vars[0].training;
    t->mean = 0;
    t->std = 1;
    if (with_bins) {
        t->given = 1;
        t->bins.n_edges = 1;
        t->bins.edges[0] = 0;
        t->bins.fractions[0] = t->bins.fractions[1] = 0.5;
    }
    return v;
}

static void free_vars(sf_vars *v) {
    free(v->vars);
    free(v);
}

static void test_figures(void **state) {
    (void)state;
    sf_vars *v = one_input(1);
    sf_vars_bins score = {.n_edges = 1, .edges = {0.5}, .fractions = {0.7, 0.3}};
    sf_drift_conf c;
    sf_drift_conf_init(&c);
    assert_true(c.window_events == 50000 && c.window_s == 0 && c.warn_psi == 0.2);
    sf_drift *d = sf_drift_new(&c, v, 2, 1, &score);
    assert_non_null(d);
    const sf_drift_figures *f = sf_drift_compute(d, 0);
    assert_int_equal(f->events, 0);
    assert_true(isnan(f->inputs[0].psi) && isnan(f->signal_rate) && isnan(f->score_psi));

    /* 2, 4 present (mean 3, std 1 in training units), -1 missing. */
    float rows[] = {2, 4, -1};
    float probs[] = {0.2f, 0.8f, 0.9f, 0.1f, 0.4f, 0.6f};
    sf_drift_add_rows(d, rows, 3, 0);
    sf_drift_add_scores(d, probs, 3);
    f = sf_drift_compute(d, 0);
    assert_int_equal(f->events, 3);
    assert_true(fabs(f->inputs[0].mean_shift - 3) < 1e-12);
    assert_true(fabs(f->inputs[0].std_ratio - 1) < 1e-12);
    assert_true(fabs(f->inputs[0].missing_ratio - 1.0 / 3) < 1e-12);
    /* Every present value in the upper bin: live (1e-4 floor, 1), training (0.5, 0.5). */
    double want = (1e-4 - 0.5) * log(1e-4 / 0.5) + (1 - 0.5) * log(1 / 0.5);
    assert_true(fabs(f->inputs[0].psi - want) < 1e-12);
    assert_true(fabs(f->signal_rate - 2.0 / 3) < 1e-12);
    /* p(s) 0.8, 0.1, 0.6: 1/3 below the edge 0.5 against training's 0.7. */
    want = (1.0 / 3 - 0.7) * log((1.0 / 3) / 0.7) + (2.0 / 3 - 0.3) * log((2.0 / 3) / 0.3);
    assert_true(fabs(f->score_psi - want) < 1e-12);

    char line[512];
    assert_int_equal(sf_drift_summary(d, 0, line, sizeof line), 1);
    if (strcmp(line, "window_events=3 warn_psi=0.2 psi_x=4.604 score_psi=0.565 signal_rate=0.6667"))
        fail_msg("summary: %s", line);

    /* Exported as gauges; a NaN leaves its series out. */
    sf_metrics *m = sf_metrics_new();
    assert_int_equal(sf_drift_publish(d, m, 0), 0);
    assert_true(fabs(sf_metrics_gauge(m, "sigflow_input_mean_shift", "x") - 3) < 1e-12);
    assert_true(sf_metrics_gauge(m, "sigflow_drift_window_events", NULL) == 3);
    char *text = sf_metrics_render(m);
    assert_non_null(strstr(text, "# TYPE sigflow_input_psi gauge\nsigflow_input_psi{input=\"x\"} 4.60"));
    assert_non_null(strstr(text, "\nsigflow_signal_rate 0.666"));
    free(text);
    double nan = NAN;
    const char *lv[] = {"a\"b"};
    assert_int_equal(sf_metrics_set_gauges(m, "sigflow_test", "A test.", "input", 1, lv, &nan), 0);
    text = sf_metrics_render(m);
    assert_non_null(strstr(text, "# TYPE sigflow_test gauge\n"));
    assert_null(strstr(text, "sigflow_test{"));
    free(text);
    double one = 1;
    assert_int_equal(sf_metrics_set_gauges(m, "sigflow_test", "A test.", "input", 1, lv, &one), 0);
    text = sf_metrics_render(m);
    assert_non_null(strstr(text, "sigflow_test{input=\"a\\\"b\"} 1\n"));
    free(text);
    sf_metrics_free(m);
    sf_drift_free(d);
    free_vars(v);
}

static void test_windows(void **state) {
    (void)state;
    sf_vars *v = one_input(0); /* no training block: no PSI, std and mean as implied */
    sf_drift_conf c;
    sf_drift_conf_init(&c);
    c.window_events = 100; /* 10 slices of 10 */
    sf_drift *d = sf_drift_new(&c, v, 2, 1, NULL);
    float rows[250];
    for (size_t i = 0; i < 250; i++)
        rows[i] = (float)(i % 7);
    sf_drift_add_rows(d, rows, 250, 0);
    const sf_drift_figures *f = sf_drift_compute(d, 0);
    assert_true(f->events >= 90 && f->events <= 100);
    assert_true(isnan(f->inputs[0].psi) && isnan(f->score_psi));
    assert_false(isnan(f->inputs[0].mean_shift));
    char line[256];
    assert_int_equal(sf_drift_summary(d, 0, line, sizeof line), 0);
    sf_drift_free(d);

    c.window_s = 1; /* 10 slices of 100 ms */
    d = sf_drift_new(&c, v, 2, 1, NULL);
    sf_drift_add_rows(d, rows, 50, 1000);
    sf_drift_add_rows(d, rows, 30, 1550);
    assert_int_equal(sf_drift_compute(d, 1600)->events, 80);
    assert_int_equal(sf_drift_compute(d, 2050)->events, 30); /* the first slice aged out */
    assert_int_equal(sf_drift_compute(d, 60000)->events, 0); /* a quiet minute empties it */
    sf_drift_free(d);

    c.window_events = 0;
    c.window_s = 0;
    assert_false(sf_drift_enabled(&c));
    free_vars(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_figures),
        cmocka_unit_test(test_windows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
