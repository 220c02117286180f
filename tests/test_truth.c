/* test_truth.c: the truth store and live quality (truth.h) without a broker:
 * the store stays within its bound when truth never arrives, truth joins
 * whichever side comes first, duplicates and late truth are counted, and the
 * figures equal the exact ones computed here (the AUC within its bound). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/truth.h"
#include "support.h"

static const char *const one[] = {"serving"};

static int id_of(char *buf, size_t size, int i) { return snprintf(buf, size, "%d", 100000 + i); }

static void test_bound(void **state) {
    (void)state;
    sf_truth_conf c;
    sf_truth_conf_init(&c);
    assert_true(c.window_events == 100000 && c.window_s == 0 && c.threshold < 0);
    c.window_events = 100;
    sf_truth *t = sf_truth_new(&c, 1, one);
    float p = 0.7f;
    unsigned char l = 1;
    char id[32];
    size_t bytes = sf_truth_bytes(t);
    for (int i = 0; i < 1000; i++) {
        int n = id_of(id, sizeof id, i);
        sf_truth_predicted(t, id, (size_t)n, &p, &l, i);
        assert_true(sf_truth_stored(t) <= 100);
    }
    assert_int_equal(sf_truth_stored(t), 100);
    assert_int_equal(sf_truth_expired_predictions(t), 900);
    /* 100 entries of 53 bytes and 256 index slots, besides the quality
     * window; nothing grew with the traffic. */
    assert_int_equal(sf_truth_bytes(t), bytes);
    assert_true(bytes >= 100 * 53 + 256 * 4 && bytes < 100 * 53 + 256 * 4 + 100000);
    /* Late truth (its prediction gone) waits, then leaves unjoined. */
    int n = id_of(id, sizeof id, 0);
    sf_truth_observed(t, id, (size_t)n, 1, 1000);
    n = id_of(id, sizeof id, 999);
    assert_int_equal(sf_truth_observed(t, id, (size_t)n, 1, 1000), SF_TRUTH_JOINED);
    assert_int_equal(sf_truth_observed(t, id, (size_t)n, 1, 1000), SF_TRUTH_DUPLICATE);
    for (int i = 1000; i < 1200; i++) {
        n = id_of(id, sizeof id, i);
        sf_truth_predicted(t, id, (size_t)n, &p, &l, i);
    }
    assert_int_equal(sf_truth_count(t, SF_TRUTH_NO_PREDICTION), 1);
    assert_int_equal(sf_truth_count(t, SF_TRUTH_JOINED), 1);
    assert_int_equal(sf_truth_count(t, SF_TRUTH_DUPLICATE), 1);
    sf_truth_free(t);

    c.window_s = 2; /* and by age */
    t = sf_truth_new(&c, 1, one);
    for (int i = 0; i < 50; i++) {
        n = id_of(id, sizeof id, i);
        sf_truth_predicted(t, id, (size_t)n, &p, &l, i * 100);
    }
    sf_truth_expire(t, 4900 + 2000); /* older than 2 s at 6.9 s: those before 4.9 s */
    assert_int_equal(sf_truth_stored(t), 1);
    /* Early truth joins its prediction when it comes. */
    n = id_of(id, sizeof id, 77);
    assert_int_equal(sf_truth_observed(t, id, (size_t)n, 0, 7000), SF_TRUTH_NO_PREDICTION);
    sf_truth_predicted(t, id, (size_t)n, &p, &l, 7001);
    assert_int_equal(sf_truth_count(t, SF_TRUTH_JOINED), 1);
    assert_int_equal(sf_truth_count(t, SF_TRUTH_NO_PREDICTION), 0);
    sf_truth_free(t);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Exact AUC with ties as 1/2, by ranks. */
static double exact_auc(const float *p, const int *y, int n) {
    double *s = malloc(n * sizeof *s), *b = malloc(n * sizeof *b);
    int ns = 0, nb = 0;
    for (int i = 0; i < n; i++) {
        if (y[i])
            s[ns++] = p[i];
        else
            b[nb++] = p[i];
    }
    qsort(b, nb, sizeof *b, cmp_double);
    double sum = 0;
    for (int i = 0; i < ns; i++) {
        int lo = 0, hi = nb; /* backgrounds below s[i], and equal */
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (b[mid] < s[i]) lo = mid + 1; else hi = mid;
        }
        int lt = lo;
        hi = nb;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (b[mid] <= s[i]) lo = mid + 1; else hi = mid;
        }
        sum += lt + 0.5 * (lo - lt);
    }
    free(s);
    free(b);
    return sum / ((double)ns * nb);
}

static void test_figures(void **state) {
    (void)state;
    const char *const names[] = {"serving", "m1"};
    sf_truth_conf c;
    sf_truth_conf_init(&c);
    sf_truth *t = sf_truth_new(&c, 2, names);
    enum { N = 5000 };
    static float p[N];
    static int y[N];
    srand(sft_seed());
    double correct = 0, ll = 0, sig = 0, sig_sel = 0, bkg = 0, bkg_rej = 0;
    char id[32];
    for (int i = 0; i < N; i++) {
        y[i] = rand() % 3 == 0;
        double u = (double)rand() / RAND_MAX;
        p[i] = (float)(y[i] ? sqrt(u) : u * u); /* signal leans high */
        float ps[2] = {p[i], 1 - p[i]};
        unsigned char l[2] = {p[i] >= 0.5f, ps[1] >= 0.5f};
        int n = id_of(id, sizeof id, i);
        sf_truth_predicted(t, id, (size_t)n, ps, l, i);
        if (i % 2) /* half the truth before a later event's prediction, all after its own */
            assert_int_equal(sf_truth_observed(t, id, (size_t)n, y[i], i), SF_TRUTH_JOINED);
        correct += l[0] == y[i];
        double pt = y[i] ? p[i] : 1 - p[i];
        ll -= log(pt > 1e-7 ? pt : 1e-7);
        sig += y[i];
        sig_sel += y[i] && l[0];
        bkg += !y[i];
        bkg_rej += !y[i] && !l[0];
    }
    for (int i = 0; i < N; i += 2) {
        int n = id_of(id, sizeof id, i);
        assert_int_equal(sf_truth_observed(t, id, (size_t)n, y[i], N), SF_TRUTH_JOINED);
    }
    sf_truth_model_figures f = sf_truth_figures(t, 0);
    assert_int_equal(f.events, N);
    assert_true(fabs(f.accuracy - correct / N) < 1e-12);
    assert_true(fabs(f.log_loss - ll / N) < 1e-9);
    assert_true(fabs(f.signal_efficiency - sig_sel / sig) < 1e-12);
    assert_true(fabs(f.background_rejection - bkg_rej / bkg) < 1e-12);
    double exact = exact_auc(p, y, N);
    printf("test_truth: AUC %.6f from histograms, %.6f exact, |diff| %.2g <= bound %.2g\n", f.auc,
           exact, fabs(f.auc - exact), f.auc_error_bound);
    assert_true(fabs(f.auc - exact) <= f.auc_error_bound + 1e-12);
    assert_true(f.auc_error_bound < 1e-3);
    double ece_p[10] = {0}, ece_y[10] = {0}, ece = 0;
    for (int i = 0; i < N; i++) {
        int b = (int)(p[i] * 10) > 9 ? 9 : (int)(p[i] * 10);
        ece_p[b] += p[i];
        ece_y[b] += y[i];
    }
    for (int b = 0; b < 10; b++)
        ece += fabs(ece_p[b] - ece_y[b]) / N;
    assert_true(fabs(f.ece - ece) < 1e-9);
    /* Model 1 scored 1 - p: its AUC mirrors model 0's. */
    sf_truth_model_figures g = sf_truth_figures(t, 1);
    assert_true(fabs(g.auc - (1 - f.auc)) < 2 * f.auc_error_bound + 1e-9);

    sf_metrics *m = sf_metrics_new();
    assert_int_equal(sf_truth_publish(t, m), 0);
    assert_true(sf_metrics_gauge(m, "sigflow_truth_joined_total", NULL) == N);
    assert_true(fabs(sf_metrics_gauge(m, "sigflow_live_auc", "serving") - f.auc) < 1e-12);
    char *text = sf_metrics_render(m);
    if (!strstr(text, "# TYPE sigflow_truth_joined_total counter\nsigflow_truth_joined_total 5000\n"))
        fail_msg("%s", strstr(text, "# HELP sigflow_truth"));
    assert_non_null(strstr(text, "sigflow_truth_unmatched_total{reason=\"no_prediction\"} 0\n"));
    assert_non_null(strstr(text, "sigflow_live_accuracy{model=\"m1\"} "));
    free(text);
    sf_metrics_free(m);
    sf_truth_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound),
        cmocka_unit_test(test_figures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
