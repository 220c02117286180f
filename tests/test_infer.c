/* test_infer.c: the forward pass against hand-computed values and against an
 * independent float64 reference, so a wrong activation, a transposed kernel or a
 * chunking slip cannot hide behind a self-consistent implementation. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigflow/infer.h"

static const float xs[7] = {-3.0f, -1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 3.0f};

/* Expected values computed in float64 by hand-written formulas outside this
 * code base, printed to 10 significant digits. */
static void check_act(sf_activation a, float alpha, const double expect[7]) {
    float v[7];
    memcpy(v, xs, sizeof v);
    sf_activation_apply(a, alpha, v, 1, 7);
    for (int i = 0; i < 7; i++) {
        double tol = 2e-6 * fmax(1.0, fabs(expect[i]));
        if (fabs(v[i] - expect[i]) > tol)
            fail_msg("activation %d at x=%g: got %.9g, expected %.9g", (int)a, xs[i], v[i],
                     expect[i]);
    }
}

static void test_activations(void **state) {
    (void)state;
    check_act(SF_ACT_LINEAR, 0, (const double[]){-3, -1, -0.5, 0, 0.5, 1, 3});
    check_act(SF_ACT_RELU, 0, (const double[]){0, 0, 0, 0, 0.5, 1, 3});
    check_act(SF_ACT_SIGMOID, 0, (const double[]){0.04742587318, 0.2689414214, 0.3775406688, 0.5,
                                                  0.6224593312, 0.7310585786, 0.9525741268});
    check_act(SF_ACT_TANH, 0, (const double[]){-0.9950547537, -0.761594156, -0.4621171573, 0,
                                               0.4621171573, 0.761594156, 0.9950547537});
    check_act(SF_ACT_ELU, 0.7f, (const double[]){-0.6651490521, -0.4424843912, -0.2754285382, 0,
                                                 0.5, 1, 3});
    check_act(SF_ACT_SELU, 0, (const double[]){-1.670568729, -1.111330738, -0.6917581878, 0,
                                               0.5253504937, 1.050700987, 3.152102962});
    check_act(SF_ACT_SOFTPLUS, 0, (const double[]){0.04858735157, 0.3132616875, 0.4740769842,
                                                   0.6931471806, 0.9740769842, 1.313261688,
                                                   3.048587352});
    check_act(SF_ACT_SOFTSIGN, 0, (const double[]){-0.75, -0.5, -0.3333333333, 0, 0.3333333333,
                                                   0.5, 0.75});
    check_act(SF_ACT_HARD_SIGMOID, 0, (const double[]){0, 0.3, 0.4, 0.5, 0.6, 0.7, 1});
    check_act(SF_ACT_SWISH, 0, (const double[]){-0.1422776195, -0.2689414214, -0.1887703344, 0,
                                                0.3112296656, 0.7310585786, 2.85772238});
    check_act(SF_ACT_EXPONENTIAL, 0, (const double[]){0.04978706837, 0.3678794412, 0.6065306597,
                                                      1, 1.648721271, 2.718281828, 20.08553692});
    check_act(SF_ACT_LEAKY_RELU, 0.3f, (const double[]){-0.9, -0.3, -0.15, 0, 0.5, 1, 3});
    check_act(SF_ACT_HARD_SIGMOID3, 0, (const double[]){0, 0.3333333333, 0.4166666667, 0.5,
                                                        0.5833333333, 0.6666666667, 1});
    check_act(SF_ACT_GELU, 0, (const double[]){-0.004049694095, -0.1586552539, -0.1542687694, 0,
                                               0.3457312306, 0.8413447461, 2.995950306});
}

/* ReLU with Keras' options: zero at or below the threshold, clipped to
 * max_value, minus negative_slope times the distance below the threshold. */
static void check_relu(float max_value, float threshold, float slope, const double expect[7]) {
    sf_layer l = {.kind = SF_LAYER_ACTIVATION, .activation = SF_ACT_RELU_FULL, .alpha = slope,
                  .max_value = max_value, .threshold = threshold};
    float v[7];
    memcpy(v, xs, sizeof v);
    sf_activation_apply_layer(&l, v, 1, 7);
    for (int i = 0; i < 7; i++)
        if (fabs(v[i] - expect[i]) > 1e-6)
            fail_msg("relu(max %g, threshold %g, slope %g) at x=%g: got %.9g, expected %.9g",
                     max_value, threshold, slope, xs[i], v[i], expect[i]);
}

static void test_relu_options(void **state) {
    (void)state;
    check_relu(INFINITY, 0, 0, (const double[]){0, 0, 0, 0, 0.5, 1, 3});
    check_relu(1, 0, 0, (const double[]){0, 0, 0, 0, 0.5, 1, 1});
    check_relu(INFINITY, 0.5f, 0, (const double[]){0, 0, 0, 0, 0, 1, 3});
    check_relu(INFINITY, 0, 0.1f, (const double[]){-0.3, -0.1, -0.05, 0, 0.5, 1, 3});
    /* threshold 0.5, slope 0.1: x - (0.1 * (0.5 - x)) below; max 2 above */
    check_relu(2, 0.5f, 0.1f, (const double[]){-0.35, -0.15, -0.1, -0.05, 0, 1, 2});
}

static void test_softmax(void **state) {
    (void)state;
    float v[7] = {1, 2, 3, -1, 0, 0.5f, -2};
    sf_activation_apply(SF_ACT_SOFTMAX, 0, v, 1, 3);
    sf_activation_apply(SF_ACT_SOFTMAX, 0, v + 3, 1, 4);
    const double e[7] = {0.09003057317, 0.2447284711, 0.6652409558, 0.1167153907,
                         0.3172653257, 0.5230820909, 0.04293719271};
    for (int i = 0; i < 7; i++)
        assert_true(fabs(v[i] - e[i]) < 1e-6);
    /* two rows in one call are independent */
    float r[6] = {1, 2, 3, 1, 2, 3};
    sf_activation_apply(SF_ACT_SOFTMAX, 0, r, 2, 3);
    for (int i = 0; i < 3; i++) {
        assert_true(fabs(r[i] - e[i]) < 1e-6);
        assert_true(r[i] == r[i + 3]);
    }
}

static void test_stability(void **state) {
    (void)state;
    float s[4] = {1000, -1000, 0, 0};
    sf_activation_apply(SF_ACT_SOFTMAX, 0, s, 1, 2);
    assert_true(s[0] == 1.0f && s[1] == 0.0f);
    float t[3] = {-1000, -1000, -999};
    sf_activation_apply(SF_ACT_SOFTMAX, 0, t, 1, 3);
    assert_true(fabs(t[2] - 0.5761168847658291) < 1e-6);
    assert_true(fabs(t[0] - 0.21194155761708544) < 1e-6);

    float g[2] = {1000, -1000};
    sf_activation_apply(SF_ACT_SIGMOID, 0, g, 1, 2);
    assert_true(g[0] == 1.0f && g[1] == 0.0f);
    float sw[2] = {1000, -1000};
    sf_activation_apply(SF_ACT_SWISH, 0, sw, 1, 2);
    assert_true(sw[0] == 1000.0f && sw[1] == 0.0f);
    float sp[2] = {1000, -1000};
    sf_activation_apply(SF_ACT_SOFTPLUS, 0, sp, 1, 2);
    assert_true(sp[0] == 1000.0f && sp[1] >= 0.0f && sp[1] < 1e-30f);
    float th[2] = {1000, -1000};
    sf_activation_apply(SF_ACT_TANH, 0, th, 1, 2);
    assert_true(th[0] == 1.0f && th[1] == -1.0f);
    float el[1] = {-1000};
    sf_activation_apply(SF_ACT_SELU, 0, el, 1, 1);
    assert_true(fabs(el[0] + 1.7580993408473766) < 1e-6);
}

static void test_argmax(void **state) {
    (void)state;
    assert_int_equal(sf_argmax((const float[]){0.2f, 0.7f, 0.1f}, 3), 1);
    assert_int_equal(sf_argmax((const float[]){0.5f, 0.5f}, 2), 0);
    assert_int_equal(sf_argmax((const float[]){0.1f, 0.4f, 0.4f}, 3), 1);
    assert_int_equal(sf_argmax((const float[]){-3.0f}, 1), 0);
}

/* --- hand-built models ------------------------------------------------------ */

typedef struct rng {
    uint64_t s;
} rng;

static double rnd(rng *r) { /* uniform in [-1, 1) */
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (double)(r->s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static float *rnd_array(rng *r, size_t n, double scale) {
    float *a = malloc(n * sizeof *a);
    assert_non_null(a);
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(rnd(r) * scale);
    return a;
}

static sf_layer dense(rng *r, size_t n_in, size_t n_out, sf_activation act, int bias) {
    sf_layer l = {.name = "dense", .keras_class = "Dense", .kind = SF_LAYER_DENSE,
                  .n_in = n_in, .n_out = n_out, .activation = act};
    l.kernel = rnd_array(r, n_in * n_out, 1.0 / sqrt((double)n_in));
    l.bias = bias ? rnd_array(r, n_out, 0.5) : NULL;
    return l;
}

static void free_model(sf_model *m) {
    for (size_t i = 0; i < m->n_layers; i++) {
        free(m->layers[i].kernel);
        free(m->layers[i].bias);
        free(m->layers[i].scale);
    }
    free(m->layers);
}

/* 30 -> 64 relu -> BatchNorm -> 32 tanh (no bias) -> ELU layer -> Dropout
 *    -> 16 selu -> LeakyReLU -> 3 softmax, around the layer kinds the loader makes. */
static void build_net(sf_model *m, uint64_t seed) {
    rng r = {seed};
    memset(m, 0, sizeof *m);
    m->layers = calloc(10, sizeof *m->layers);
    assert_non_null(m->layers);
    size_t k = 0;
    m->layers[k++] = (sf_layer){.name = "input", .keras_class = "InputLayer",
                                .kind = SF_LAYER_IDENTITY, .n_in = 30, .n_out = 30};
    m->layers[k++] = dense(&r, 30, 64, SF_ACT_RELU, 1);
    sf_layer bn = {.name = "bn", .keras_class = "BatchNormalization", .kind = SF_LAYER_SCALE,
                   .n_in = 64, .n_out = 64};
    bn.scale = rnd_array(&r, 64, 2.0);
    bn.bias = rnd_array(&r, 64, 1.0);
    m->layers[k++] = bn;
    m->layers[k++] = dense(&r, 64, 32, SF_ACT_TANH, 0);
    m->layers[k++] = (sf_layer){.name = "elu", .keras_class = "ELU", .kind = SF_LAYER_ACTIVATION,
                                .n_in = 32, .n_out = 32, .activation = SF_ACT_ELU, .alpha = 0.8f};
    m->layers[k++] = (sf_layer){.name = "drop", .keras_class = "Dropout",
                                .kind = SF_LAYER_IDENTITY, .n_in = 32, .n_out = 32};
    m->layers[k++] = dense(&r, 32, 16, SF_ACT_SELU, 1);
    m->layers[k++] = (sf_layer){.name = "leaky", .keras_class = "LeakyReLU",
                                .kind = SF_LAYER_ACTIVATION, .n_in = 16, .n_out = 16,
                                .activation = SF_ACT_LEAKY_RELU, .alpha = 0.1f};
    m->layers[k++] = dense(&r, 16, 3, SF_ACT_SOFTMAX, 1);
    m->n_layers = k;
    m->n_inputs = 30;
    m->n_outputs = 3;
}

/* The reference: plain float64 loops with activations written out again. */
static void ref_act(sf_activation a, double alpha, double *v, size_t n) {
    if (a == SF_ACT_SOFTMAX) {
        double mx = v[0], s = 0;
        for (size_t i = 1; i < n; i++)
            mx = v[i] > mx ? v[i] : mx;
        for (size_t i = 0; i < n; i++)
            s += exp(v[i] - mx);
        for (size_t i = 0; i < n; i++)
            v[i] = exp(v[i] - mx) / s;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        double x = v[i];
        switch (a) {
        case SF_ACT_RELU: v[i] = x < 0 ? 0 : x; break;
        case SF_ACT_TANH: v[i] = tanh(x); break;
        case SF_ACT_ELU: v[i] = x > 0 ? x : alpha * (exp(x) - 1); break;
        case SF_ACT_SELU:
            v[i] = 1.0507009873554805 * (x > 0 ? x : 1.6732632423543772 * (exp(x) - 1));
            break;
        case SF_ACT_LEAKY_RELU: v[i] = x < 0 ? alpha * x : x; break;
        default: fail_msg("reference lacks activation %d", (int)a);
        }
    }
}

/* range: NULL, or per Dense layer the largest |input| seen so far, updated. */
static void reference_ranges(const sf_model *m, const float *x, double *y, float *range) {
    double a[128], b[128];
    size_t d = 0;
    for (size_t i = 0; i < m->n_inputs; i++)
        a[i] = x[i];
    for (size_t li = 0; li < m->n_layers; li++) {
        const sf_layer *l = &m->layers[li];
        if (l->kind == SF_LAYER_DENSE) {
            for (size_t i = 0; range && i < l->n_in; i++)
                range[d] = fmaxf(range[d], (float)fabs(a[i]));
            d++;
            for (size_t j = 0; j < l->n_out; j++) {
                double s = l->bias ? l->bias[j] : 0.0;
                for (size_t i = 0; i < l->n_in; i++)
                    s += a[i] * (double)l->kernel[i * l->n_out + j];
                b[j] = s;
            }
            ref_act(l->activation, l->alpha, b, l->n_out);
            memcpy(a, b, l->n_out * sizeof *a);
        } else if (l->kind == SF_LAYER_SCALE) {
            for (size_t j = 0; j < l->n_out; j++)
                a[j] = a[j] * l->scale[j] + l->bias[j];
        } else if (l->kind == SF_LAYER_ACTIVATION) {
            ref_act(l->activation, l->alpha, a, l->n_out);
        }
    }
    for (size_t i = 0; i < m->n_outputs; i++)
        y[i] = a[i];
}

static void reference(const sf_model *m, const float *x, double *y) {
    reference_ranges(m, x, y, NULL);
}

static const sf_infer_conf conf_openblas = {.backend = SF_BACKEND_OPENBLAS, .precision = SF_PRECISION_FP32};
static const sf_infer_conf conf_onednn = {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_FP32};
static const sf_infer_conf conf_bf16 = {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_BF16};
/* build_net's Dense layers, with ranges that fit its inputs well enough for
 * the tests that compare an engine with itself. */
static const size_t net_widths[] = {30, 64, 32, 16};
static const float net_ranges[] = {6, 8, 4, 4};
static const sf_infer_conf conf_int8 = {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_INT8,
                                        .n_int8 = 4, .int8_inputs = net_widths,
                                        .int8_range = net_ranges};

static sf_infer *open_engine(const sf_model *m, size_t max_batch, const sf_infer_conf *c) {
    sf_infer *e;
    char err[512];
    if (c->precision == SF_PRECISION_INT8 && !sf_infer_cpu_int8()) {
        print_message("SKIPPED: int8 needs a CPU with AVX512_VNNI or AMX-INT8\n");
        skip();
    }
    if (sf_infer_open(&e, m, max_batch, c, err, sizeof err))
        fail_msg("sf_infer_open(%s, %s, %zu): %s", sf_backend_name(c->backend),
                 sf_precision_name(c->precision), max_batch, err);
    return e;
}

/* Every backend in fp32 within 1e-5 of float64; bf16 within 0.02 (8 bits of
 * mantissa on weights and activations). */
static void test_random_network(void **state) {
    const sf_infer_conf *c = *state;
    double tol = c->precision == SF_PRECISION_BF16 ? 2e-2 : 1e-5;
    sf_model m;
    build_net(&m, 0x9e3779b97f4a7c15ull);
    rng r = {42};
    const size_t n = 200;
    float *x = rnd_array(&r, n * 30, 3.0);
    float *y = malloc(n * 3 * sizeof *y);
    sf_infer *e = open_engine(&m, 64, c);
    sf_infer_run(e, x, n, y);
    double worst = 0;
    for (size_t k = 0; k < n; k++) {
        double ref[3];
        reference(&m, x + k * 30, ref);
        double sum = 0;
        for (size_t j = 0; j < 3; j++) {
            worst = fmax(worst, fabs(y[k * 3 + j] - ref[j]));
            sum += y[k * 3 + j];
        }
        assert_true(fabs(sum - 1.0) < 1e-5);
    }
    print_message("%s %s: max deviation from float64 %.3g\n", sf_backend_name(c->backend),
                  sf_precision_name(c->precision), worst);
    if (worst > tol)
        fail_msg("max deviation from the float64 reference: %g", worst);
    /* the input is never written */
    rng r2 = {42};
    float *x2 = rnd_array(&r2, n * 30, 3.0);
    assert_memory_equal(x, x2, n * 30 * sizeof *x);
    free(x2);
    sf_infer_free(e);
    free(x);
    free(y);
    free_model(&m);
}

static void test_batch_equals_single(void **state) {
    const sf_infer_conf *c = *state;
    sf_model m;
    build_net(&m, 7);
    rng r = {99};
    const size_t n = 150;
    float *x = rnd_array(&r, n * 30, 2.0);
    float *batch = malloc(n * 3 * sizeof *batch);
    float *single = malloc(n * 3 * sizeof *single);
    float *chunked = malloc(n * 3 * sizeof *chunked);
    sf_infer *big = open_engine(&m, 512, c), *one = open_engine(&m, 1, c),
             *small = open_engine(&m, 7, c);
    sf_infer_run(big, x, n, batch);
    for (size_t k = 0; k < n; k++)
        sf_infer_run(big, x + k * 30, 1, single + k * 3);
    sf_infer_run(small, x, n, chunked);      /* 150 = 21 chunks of 7 + 3 */
    for (size_t i = 0; i < n * 3; i++) {
        assert_true(fabs(batch[i] - single[i]) <= 1e-6);
        assert_true(fabs(batch[i] - chunked[i]) <= 1e-6);
    }
    float *one_by_one = malloc(n * 3 * sizeof *one_by_one);
    sf_infer_run(one, x, n, one_by_one);     /* max_batch 1: n chunks */
    for (size_t i = 0; i < n * 3; i++)
        assert_true(fabs(single[i] - one_by_one[i]) <= 1e-6);
    sf_infer_run(big, x, 0, batch);          /* nothing to do is fine */
    sf_infer_free(big);
    sf_infer_free(one);
    sf_infer_free(small);
    free(one_by_one);
    free(x);
    free(batch);
    free(single);
    free(chunked);
    free_model(&m);
}

/* sf_infer_start/sf_infer_finish give sf_infer_run's bits over any row range
 * of a batch, on one thread and on two, while the caller overwrites the rows
 * after the range (as the daemon parses the next chunk during a pass), and
 * write nothing outside the range. */
static void test_start_finish(void **state) {
    const sf_infer_conf *c = *state;
    sf_model m;
    build_net(&m, 11);
    rng r = {5};
    const size_t n = 512, ni = 30, no = 3;
    float *x = rnd_array(&r, n * ni, 2.0), *other = rnd_array(&r, n * ni, 2.0);
    float *work = malloc(n * ni * sizeof *work), *want = malloc(n * no * sizeof *want),
          *got = malloc(n * no * sizeof *got);
    assert_true(work && want && got);
    static const size_t fixed[][2] = {{0, 512}, {0, 0}, {3, 1}, {100, 33}, {480, 32}, {31, 97}};
    for (int threads = 1; threads <= 2; threads++) {
        sf_infer *e = open_engine(&m, n, c);
        assert_int_equal(sf_infer_set_threads(e, threads), 0);
        for (size_t rep = 0; rep < 40; rep++) {
            size_t from, len;
            if (rep < sizeof fixed / sizeof fixed[0]) {
                from = fixed[rep][0];
                len = fixed[rep][1];
            } else {
                from = (size_t)((rnd(&r) + 1) / 2 * n);
                len = (size_t)((rnd(&r) + 1) / 2 * (double)(n - from + 1));
                len = len > n - from ? n - from : len;
            }
            sf_infer_run(e, x + from * ni, len, want);
            memcpy(work, x, n * ni * sizeof *work);
            memset(got, 0xff, n * no * sizeof *got); /* NaNs: untouched rows stay so */
            sf_infer_start(e, work + from * ni, len, got + from * no);
            size_t after = from + len;
            memcpy(work + after * ni, other + after * ni, (n - after) * ni * sizeof *work);
            sf_infer_finish(e);
            if (len && memcmp(want, got + from * no, len * no * sizeof *got))
                fail_msg("%s %s, %d thread(s): rows [%zu, %zu) started and finished differ from "
                         "sf_infer_run", sf_backend_name(c->backend), sf_precision_name(c->precision),
                         threads, from, after);
            for (size_t i = 0; i < n * no; i++)
                if ((i < from * no || i >= after * no) && got[i] == got[i])
                    fail_msg("rows [%zu, %zu): value %zu outside them written", from, after, i);
        }
        sf_infer_free(e);
    }
    free(x);
    free(other);
    free(work);
    free(want);
    free(got);
    free_model(&m);
}

/* sf_infer_tasks: counts each unit's runs. */
typedef struct task_count {
    _Atomic unsigned *runs;
} task_count;

static void count_task(void *arg, size_t unit) {
    task_count *t = arg;
    atomic_fetch_add(&t->runs[unit], 1);
}

/* A pass that grows a chunk at a time, as the daemon runs it: after each
 * sf_infer_more, the previous chunk's rows must be final when sf_infer_wait
 * returns (compared at once, while later rows still compute), with the bits
 * of sf_infer_run; task units posted meanwhile each run exactly once,
 * whoever takes them (sf_infer_wait may). */
static void test_grow_and_tasks(void **state) {
    const sf_infer_conf *c = *state;
    sf_model m;
    build_net(&m, 11);
    rng r = {9};
    const size_t n = 512, ni = 30, no = 3;
    float *x = rnd_array(&r, n * ni, 2.0);
    float *want = malloc(n * no * sizeof *want), *got = malloc(n * no * sizeof *got);
    _Atomic unsigned runs[64];
    task_count tc = {runs};
    assert_true(want && got);
    for (int threads = 1; threads <= 2; threads++) {
        sf_infer *e = open_engine(&m, n, c);
        assert_int_equal(sf_infer_set_threads(e, threads), 0);
        sf_infer_run(e, x, n, want);
        for (size_t rep = 0; rep < 20; rep++) {
            memset(got, 0xff, n * no * sizeof *got); /* NaNs until written */
            size_t done = 0, upto = 1 + (size_t)((rnd(&r) + 1) / 2 * 150);
            sf_infer_start(e, x, upto, got);
            while (done < n) {
                size_t grow = upto < n ? 1 + (size_t)((rnd(&r) + 1) / 2 * 150) : 0;
                grow = grow > n - upto ? n - upto : grow;
                size_t tasks = (size_t)((rnd(&r) + 1) / 2 * 64);
                for (size_t u = 0; u < 64; u++)
                    runs[u] = 0;
                sf_infer_tasks_start(e, count_task, &tc, tasks);
                int grow_first = rep % 2; /* the daemon's order, or wait first */
                if (grow && grow_first)
                    sf_infer_more(e, upto + grow);
                sf_infer_wait(e, upto);
                if (memcmp(want + done * no, got + done * no, (upto - done) * no * sizeof *got))
                    fail_msg("%s %s, %d thread(s): rows [%zu, %zu) not final when waited for",
                             sf_backend_name(c->backend), sf_precision_name(c->precision), threads,
                             done, upto);
                sf_infer_tasks_finish(e);
                if (grow && !grow_first)
                    sf_infer_more(e, upto + grow);
                for (size_t u = 0; u < 64; u++)
                    if (runs[u] != (u < tasks))
                        fail_msg("task unit %zu of %zu ran %u times", u, tasks, runs[u]);
                done = upto;
                upto += grow;
            }
            sf_infer_finish(e);
        }
        sf_infer_free(e);
    }
    free(x);
    free(want);
    free(got);
    free_model(&m);
}

/* Hand-checkable numbers through Dense, BatchNorm-as-SCALE and Activation. */
static void test_small_by_hand(void **state) {
    (void)state;
    float kernel[6] = {1, -1, 0.5f,   /* x0 -> (o0, o1, o2) */
                       2, 0, -1};     /* x1 -> ... */
    float bias[3] = {0.5f, 1, 0};
    /* BatchNorm gamma=(2,1,4) beta=(0.5,0,-1) mean=(1,0,2) var=(4,1,16) eps=0:
     * scale = gamma/sqrt(var) = (1,1,1), bias = beta - mean*scale = (-0.5,0,-3) */
    float bn_scale[3] = {1, 1, 1}, bn_bias[3] = {-0.5f, 0, -3};
    float k2[3] = {1, 2, -1};
    sf_layer layers[4] = {
        {.name = "d1", .keras_class = "Dense", .kind = SF_LAYER_DENSE, .n_in = 2, .n_out = 3,
         .kernel = kernel, .bias = bias, .activation = SF_ACT_LINEAR},
        {.name = "bn", .keras_class = "BatchNormalization", .kind = SF_LAYER_SCALE, .n_in = 3,
         .n_out = 3, .scale = bn_scale, .bias = bn_bias},
        {.name = "act", .keras_class = "Activation", .kind = SF_LAYER_ACTIVATION, .n_in = 3,
         .n_out = 3, .activation = SF_ACT_RELU},
        {.name = "d2", .keras_class = "Dense", .kind = SF_LAYER_DENSE, .n_in = 3, .n_out = 1,
         .kernel = k2, .bias = NULL, .activation = SF_ACT_LINEAR},
    };
    sf_model m = {.n_inputs = 2, .n_outputs = 1, .n_layers = 4, .layers = layers};
    /* x = (1, 2): d1 = (1+4+0.5, -1+0+1, 0.5-2+0) = (5.5, 0, -1.5)
     * bn = (5.0, 0, -4.5); relu = (5, 0, 0); d2 = 5*1 + 0*2 + 0*-1 = 5
     * x = (-1, 3): d1 = (-1+6+0.5, 1+0+1, -0.5-3) = (5.5, 2, -3.5)
     * bn = (5, 2, -6.5); relu = (5, 2, 0); d2 = 5 + 4 = 9 */
    float x[4] = {1, 2, -1, 3}, y[2];
    sf_infer *e = sf_infer_new(&m, 4);
    assert_non_null(e);
    sf_infer_run(e, x, 2, y);
    assert_float_equal(y[0], 5.0f, 1e-6);
    assert_float_equal(y[1], 9.0f, 1e-6);
    /* the BatchNorm layer on its own, straight from the caller's input */
    sf_model bn_only = {.n_inputs = 3, .n_outputs = 3, .n_layers = 1, .layers = &layers[1]};
    sf_infer *b = sf_infer_new(&bn_only, 2);
    float in[3] = {1, 2, 3}, out[3];
    sf_infer_run(b, in, 1, out);
    assert_float_equal(out[0], 0.5f, 1e-7);
    assert_float_equal(out[1], 2.0f, 1e-7);
    assert_float_equal(out[2], 0.0f, 1e-7);
    float scale2[3] = {0.5f, -2, 10};
    sf_layer bn2 = {.name = "bn2", .keras_class = "BatchNormalization", .kind = SF_LAYER_SCALE,
                    .n_in = 3, .n_out = 3, .scale = scale2, .bias = NULL};
    sf_model bn2m = {.n_inputs = 3, .n_outputs = 3, .n_layers = 1, .layers = &bn2};
    sf_infer *b2 = sf_infer_new(&bn2m, 1);
    sf_infer_run(b2, in, 1, out);
    assert_float_equal(out[0], 0.5f, 1e-7);
    assert_float_equal(out[1], -4.0f, 1e-7);
    assert_float_equal(out[2], 30.0f, 1e-6);
    sf_infer_free(e);
    sf_infer_free(b);
    sf_infer_free(b2);
    assert_null(sf_infer_new(&m, 0));
}

/* Names round-trip, bf16 is refused on OpenBLAS with a reason, AUTO resolves
 * to a real backend and every engine says what it runs on. */
static void test_conf(void **state) {
    (void)state;
    sf_backend b;
    sf_precision p;
    assert_int_equal(sf_backend_parse("onednn", &b), 0);
    assert_int_equal(b, SF_BACKEND_ONEDNN);
    assert_int_equal(sf_backend_parse("openblas", &b), 0);
    assert_int_equal(b, SF_BACKEND_OPENBLAS);
    assert_int_equal(sf_backend_parse("auto", &b), 0);
    assert_int_equal(b, SF_BACKEND_AUTO);
    assert_int_equal(sf_backend_parse("mkl", &b), -1);
    assert_int_equal(sf_precision_parse("bf16", &p), 0);
    assert_int_equal(p, SF_PRECISION_BF16);
    assert_int_equal(sf_precision_parse("int8", &p), 0);
    assert_int_equal(p, SF_PRECISION_INT8);
    assert_int_equal(sf_precision_parse("fp16", &p), -1);

    sf_model m;
    build_net(&m, 3);
    sf_infer *e;
    char err[512] = "";
    sf_infer_conf bad = {.backend = SF_BACKEND_OPENBLAS, .precision = SF_PRECISION_BF16};
    assert_int_equal(sf_infer_open(&e, &m, 16, &bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "fp32 only"));
    assert_int_equal(sf_infer_open(&e, &m, 0, &conf_onednn, err, sizeof err), -1);

    sf_infer_conf autoc = {0};
    e = open_engine(&m, 64, &autoc);
    sf_infer_info in;
    sf_infer_info_get(e, &in);
    assert_true(in.backend == SF_BACKEND_OPENBLAS || in.backend == SF_BACKEND_ONEDNN);
    if (sf_infer_backend_available(SF_BACKEND_ONEDNN))
        assert_int_equal(in.backend, SF_BACKEND_ONEDNN);
    assert_true(in.kernel[0] != '\0');
    assert_int_equal(in.threads, 1);
    char desc[512];
    sf_infer_describe(e, desc, sizeof desc);
    print_message("auto: %s\n", desc);
    assert_non_null(strstr(desc, sf_backend_name(in.backend)));
    assert_non_null(strstr(desc, in.kernel));
    assert_int_equal(sf_infer_set_threads(e, 2), 0);
    sf_infer_info_get(e, &in);
    assert_int_equal(in.threads, 2);
    sf_infer_free(e);

    e = open_engine(&m, 64, &conf_bf16);
    sf_infer_info_get(e, &in);
    assert_int_equal(in.precision, SF_PRECISION_BF16);
    sf_infer_describe(e, desc, sizeof desc);
    print_message("bf16: %s\n", desc);
    assert_true(in.bf16_native || strstr(desc, "EMULATED") != NULL);
    sf_infer_free(e);
    free_model(&m);
}

/* A plain ReLU network (its hidden layers hand each other u8 codes). */
static void build_relu_net(sf_model *m, uint64_t seed) {
    rng r = {seed};
    memset(m, 0, sizeof *m);
    m->layers = calloc(4, sizeof *m->layers);
    assert_non_null(m->layers);
    m->layers[0] = dense(&r, 30, 96, SF_ACT_RELU, 1);
    m->layers[1] = dense(&r, 96, 128, SF_ACT_RELU, 1);
    m->layers[2] = dense(&r, 128, 64, SF_ACT_RELU, 1);
    m->layers[3] = dense(&r, 64, 3, SF_ACT_SOFTMAX, 1);
    m->n_layers = 4;
    m->n_inputs = 30;
    m->n_outputs = 3;
}

/* int8 against float64 on two networks calibrated on their own inputs: the
 * mixed one (s8 inputs after BatchNormalization and ELU, activations oneDNN
 * cannot fuse) and a ReLU MLP (u8 all the way); the labels mostly agree and
 * the probabilities stay close. Then what int8 refuses, by name. */
static void test_int8(void **state) {
    (void)state;
    if (!sf_infer_cpu_int8() || !sf_infer_backend_available(SF_BACKEND_ONEDNN)) {
        print_message("SKIPPED: int8 needs oneDNN and a CPU with AVX512_VNNI or AMX-INT8\n");
        skip();
    }
    for (int net = 0; net < 2; net++) {
        sf_model m;
        if (net == 0)
            build_net(&m, 0x9e3779b97f4a7c15ull);
        else
            build_relu_net(&m, 11);
        rng r = {42};
        const size_t n = 400;
        float *x = rnd_array(&r, n * 30, 3.0), *y = malloc(n * 3 * sizeof *y);
        double *ref = malloc(n * 3 * sizeof *ref);
        float range[4] = {0};
        size_t widths[4], nd = 0;
        for (size_t li = 0; li < m.n_layers; li++)
            if (m.layers[li].kind == SF_LAYER_DENSE)
                widths[nd++] = m.layers[li].n_in;
        assert_int_equal(nd, 4);
        for (size_t k = 0; k < n; k++)
            reference_ranges(&m, x + k * 30, ref + k * 3, range);
        sf_infer_conf c = {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_INT8,
                           .n_int8 = nd, .int8_inputs = widths, .int8_range = range};
        sf_infer *e = open_engine(&m, 64, &c);
        sf_infer_run(e, x, n, y);
        double worst = 0;
        size_t agree = 0;
        for (size_t k = 0; k < n; k++) {
            size_t best = 0;
            for (size_t j = 0; j < 3; j++) {
                worst = fmax(worst, fabs(y[k * 3 + j] - ref[k * 3 + j]));
                best = ref[k * 3 + j] > ref[k * 3 + best] ? j : best;
            }
            agree += sf_argmax(y + k * 3, 3) == best;
        }
        char desc[512];
        sf_infer_describe(e, desc, sizeof desc);
        print_message("int8 %s: max deviation from float64 %.3g, labels agree %.1f%%; %s\n",
                      net ? "relu mlp" : "mixed net", worst, 100.0 * (double)agree / (double)n, desc);
        assert_true(strstr(desc, "vnni") || strstr(desc, "amx"));
        assert_true(worst < 0.02);  /* measured 0.0023 and 0.0008 */
        assert_true(agree >= n * 99 / 100);
        sf_infer_free(e);

        /* refusals: no calibration, another model's, a layer of another width */
        char err[512] = "";
        sf_infer_conf none = {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_INT8};
        assert_int_equal(sf_infer_open(&e, &m, 16, &none, err, sizeof err), -1);
        assert_non_null(strstr(err, "training.calibration.dense_inputs"));
        sf_infer_conf few = c;
        few.n_int8 = 3;
        assert_int_equal(sf_infer_open(&e, &m, 16, &few, err, sizeof err), -1);
        assert_non_null(strstr(err, "has 3 entries"));
        size_t wrong[4] = {widths[0], widths[1] + 1, widths[2], widths[3]};
        sf_infer_conf bad = c;
        bad.int8_inputs = wrong;
        assert_int_equal(sf_infer_open(&e, &m, 16, &bad, err, sizeof err), -1);
        assert_non_null(strstr(err, "dense_inputs[1]"));
        bad = c;
        bad.backend = SF_BACKEND_OPENBLAS;
        assert_int_equal(sf_infer_open(&e, &m, 16, &bad, err, sizeof err), -1);
        assert_non_null(strstr(err, "int8 needs --backend onednn"));
        free(x);
        free(y);
        free(ref);
        free_model(&m);
    }
    /* two Dense layers: nothing hidden to quantize */
    rng r = {5};
    sf_layer pair[2] = {dense(&r, 30, 8, SF_ACT_RELU, 1), dense(&r, 8, 3, SF_ACT_SOFTMAX, 1)};
    sf_model two = {.n_inputs = 30, .n_outputs = 3, .n_layers = 2, .layers = pair};
    size_t w2[2] = {30, 8};
    float r2[2] = {1, 1};
    sf_infer_conf c2 = {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_INT8,
                        .n_int8 = 2, .int8_inputs = w2, .int8_range = r2};
    sf_infer *e;
    char err[512] = "";
    assert_int_equal(sf_infer_open(&e, &two, 16, &c2, err, sizeof err), -1);
    assert_non_null(strstr(err, "has 2 Dense layers"));
    for (int i = 0; i < 2; i++) {
        free(pair[i].kernel);
        free(pair[i].bias);
    }
}

/* Dense layers whose activation oneDNN cannot fuse, one after another: each
 * takes three steps in bf16 (conversion, product, activation) and in int8
 * (quantization, product, activation), the most a plan holds per layer. */
static void test_unfused_chain(void **state) {
    (void)state;
    rng r = {77};
    sf_layer l[4] = {dense(&r, 30, 40, SF_ACT_SELU, 1), dense(&r, 40, 40, SF_ACT_SELU, 1),
                     dense(&r, 40, 40, SF_ACT_SELU, 1), dense(&r, 40, 3, SF_ACT_SOFTMAX, 1)};
    sf_model m = {.n_inputs = 30, .n_outputs = 3, .n_layers = 4, .layers = l};
    const size_t n = 64;
    float *x = rnd_array(&r, n * 30, 1.0), *y = malloc(n * 3 * sizeof *y);
    double ref[3], worst_bf16 = 0, worst_int8 = 0;
    float range[4] = {0};
    size_t widths[4] = {30, 40, 40, 40};
    for (size_t k = 0; k < n; k++)
        reference_ranges(&m, x + k * 30, ref, range);
    sf_infer_conf c8 = {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_INT8,
                        .n_int8 = 4, .int8_inputs = widths, .int8_range = range};
    const sf_infer_conf *confs[2] = {&conf_bf16, &c8};
    double *worst[2] = {&worst_bf16, &worst_int8};
    for (int i = 0; i < 2; i++) {
        if (i == 1 && !sf_infer_cpu_int8()) {
            print_message("int8 part skipped: no AVX512_VNNI or AMX-INT8 here\n");
            break;
        }
        sf_infer *e = open_engine(&m, 32, confs[i]);
        sf_infer_run(e, x, n, y);
        for (size_t k = 0; k < n; k++) {
            reference(&m, x + k * 30, ref);
            for (size_t j = 0; j < 3; j++)
                *worst[i] = fmax(*worst[i], fabs(y[k * 3 + j] - ref[j]));
        }
        sf_infer_free(e);
    }
    print_message("unfused chain: bf16 %.3g, int8 %.3g from float64\n", worst_bf16, worst_int8);
    assert_true(worst_bf16 < 2e-2 && worst_int8 < 2e-2);
    for (int i = 0; i < 4; i++) {
        free(l[i].kernel);
        free(l[i].bias);
    }
    free(x);
    free(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_relu_options),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_stability),
        cmocka_unit_test(test_argmax),
        cmocka_unit_test(test_small_by_hand),
        cmocka_unit_test_prestate(test_random_network, (void *)&conf_openblas),
        cmocka_unit_test_prestate(test_random_network, (void *)&conf_onednn),
        cmocka_unit_test_prestate(test_random_network, (void *)&conf_bf16),
        cmocka_unit_test_prestate(test_batch_equals_single, (void *)&conf_openblas),
        cmocka_unit_test_prestate(test_batch_equals_single, (void *)&conf_onednn),
        cmocka_unit_test_prestate(test_start_finish, (void *)&conf_onednn),
        cmocka_unit_test_prestate(test_start_finish, (void *)&conf_bf16),
        cmocka_unit_test_prestate(test_start_finish, (void *)&conf_int8),
        cmocka_unit_test_prestate(test_grow_and_tasks, (void *)&conf_openblas),
        cmocka_unit_test_prestate(test_grow_and_tasks, (void *)&conf_onednn),
        cmocka_unit_test_prestate(test_grow_and_tasks, (void *)&conf_int8),
        cmocka_unit_test_prestate(test_batch_equals_single, (void *)&conf_int8),
        cmocka_unit_test(test_conf),
        cmocka_unit_test(test_int8),
        cmocka_unit_test(test_unfused_chain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
