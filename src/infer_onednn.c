/* infer_onednn.c: the oneDNN backend, fp32, bf16 or int8.
 *
 * OpenBLAS's speed here depends on which kernel it recognises the CPU as, and
 * it has no bf16 GEMM; oneDNN JIT-compiles a kernel for the CPU it runs on
 * (AVX-512, AMX) and fuses bias and activation into the product. Each Dense
 * layer is one matmul primitive, built at load for every batch-size class
 * (16, 32, 64, ... rows up to max_batch) with the weights reordered once into
 * the layout the kernel prefers (format tag any). A call pads its rows to the
 * class, so the hot path only converts, executes and copies: no allocation,
 * no primitive creation. Scratchpads are ours (user mode) for the same reason.
 *
 * In bf16 the weights and the hidden activations are bf16 and products
 * accumulate in fp32; the output of the last Dense layer, and any activation
 * oneDNN cannot fuse, stay fp32. Activations are fused as eltwise post-ops
 * where oneDNN has the same function; the others run after, ours.
 *
 * In int8 the hidden Dense layers (all but the first and the last) run u8 (s8
 * where the input may be negative) x s8 with s32 accumulation, on oneDNN's
 * VNNI or AMX kernels; a CPU that has neither is refused rather than served by
 * a slow emulation. Weights are quantized per output column at load (127 /
 * the column's largest |w|); inputs with the model's static calibration
 * (codes / the layer's input range, from the variables file), so a row's
 * codes never depend on the batch it is in. A hidden layer feeding another
 * writes that layer's u8 codes itself: the output scale, bias and activation
 * are fused, and the next layer's input scale with them. The first layer
 * stays fp32 because the normalized inputs are heavy-tailed (a momentum 9
 * standard deviations out is real), and the last because its two logits
 * decide the label; together they are 1.6 % of the shipped network's products
 * (models/README.md, "int8", has the measurements behind both). oneDNN 2.x adds
 * the bias before the output scale, so the bias is given in the accumulator's
 * units. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>

#include "infer_impl.h"

#define MAX_CLASSES 24

/* One step of the forward pass. Buffers: 0 and 1 ping-pong, 2 the stage
 * (the caller's rows padded to the class). */
typedef enum { ST_DENSE, ST_TO_BF16, ST_TO_F32, ST_QUANT, ST_SCALE, ST_ACT } step_kind;

typedef struct step {
    step_kind kind;
    const sf_layer *l;
    int in, out;         /* buffers */
    size_t cols;         /* per row, for conversions and elementwise steps */
    int fused;           /* DENSE: activation fused as a post-op */
    dnnl_data_type_t src_dt, dst_dt;     /* QUANT: dst_dt is u8 or s8 */
    float qscale;        /* QUANT: codes per unit; int8 DENSE: its input's */
    float next_scale;    /* int8 DENSE writing u8/s8: the next layer's qscale */
    float *qbias;        /* int8 DENSE: the bias in accumulator units */
    float *oscale;       /* int8 DENSE: output scale per column */
    int8_t *qweights;    /* int8 DENSE: the quantized kernel, until built */
    dnnl_memory_t bias;                  /* DENSE: f32 1 x n_out, or NULL */
    dnnl_memory_t weights[MAX_CLASSES];  /* may be shared between classes */
    int weights_owner[MAX_CLASSES];
    dnnl_primitive_t prim[MAX_CLASSES];
    dnnl_memory_t src[MAX_CLASSES], dst[MAX_CLASSES], scratch[MAX_CLASSES];
    char impl[64];       /* DENSE: the implementation of the largest class */
} step;

typedef struct onednn_impl {
    const sf_model *m;
    sf_precision precision;
    size_t max_batch;
    size_t n_classes;
    size_t class_rows[MAX_CLASSES];
    int class_ok[MAX_CLASSES];  /* built with the largest class's kernels */
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    step *steps;
    size_t n_steps;
    void *buf[3];
    void *scratch;
    size_t scratch_size;
    int out_buf;         /* where the last step leaves the fp32 output */
    int omp_threads;     /* OpenMP threads per call from a thread, 0: untouched */
    char kernel[192];
    int generic;
} onednn_impl;

#define CHECK(call)                                                                  \
    do {                                                                             \
        dnnl_status_t st_ = (call);                                                  \
        if (st_ != dnnl_success) {                                                   \
            snprintf(errstr, n, "oneDNN: %s failed (status %d)", #call, (int)st_);   \
            goto fail;                                                               \
        }                                                                            \
    } while (0)

static void drop_class(onednn_impl *o, size_t c) {
    for (size_t s = 0; s < o->n_steps; s++) {
        step *st = &o->steps[s];
        if (st->prim[c]) dnnl_primitive_destroy(st->prim[c]);
        if (st->src[c]) dnnl_memory_destroy(st->src[c]);
        if (st->dst[c]) dnnl_memory_destroy(st->dst[c]);
        if (st->scratch[c]) dnnl_memory_destroy(st->scratch[c]);
        if (st->weights[c] && st->weights_owner[c]) dnnl_memory_destroy(st->weights[c]);
        st->prim[c] = NULL;
        st->src[c] = st->dst[c] = st->scratch[c] = st->weights[c] = NULL;
        st->weights_owner[c] = 0;
    }
    o->class_ok[c] = 0;
}

static void onednn_close(void *p) {
    onednn_impl *o = p;
    if (!o)
        return;
    for (size_t c = 0; c < MAX_CLASSES; c++)
        drop_class(o, c);
    for (size_t s = 0; s < o->n_steps; s++) {
        if (o->steps[s].bias) dnnl_memory_destroy(o->steps[s].bias);
        free(o->steps[s].qbias);
        free(o->steps[s].oscale);
        free(o->steps[s].qweights);
    }
    free(o->steps);
    if (o->stream) dnnl_stream_destroy(o->stream);
    if (o->eng) dnnl_engine_destroy(o->eng);
    for (int i = 0; i < 3; i++)
        free(o->buf[i]);
    free(o->scratch);
    free(o);
}

/* The oneDNN post-op computing the same function as Keras, or 0. */
static int post_op(const sf_layer *l, dnnl_alg_kind_t *alg, float *alpha) {
    *alpha = 0.0f;
    switch (l->activation) {
    case SF_ACT_RELU: *alg = dnnl_eltwise_relu; return 1;
    case SF_ACT_LEAKY_RELU: *alg = dnnl_eltwise_relu; *alpha = l->alpha; return 1;
    case SF_ACT_SIGMOID: *alg = dnnl_eltwise_logistic; return 1;
    case SF_ACT_TANH: *alg = dnnl_eltwise_tanh; return 1;
    case SF_ACT_ELU: *alg = dnnl_eltwise_elu; *alpha = l->alpha; return 1;
    case SF_ACT_EXPONENTIAL: *alg = dnnl_eltwise_exp; return 1;
    case SF_ACT_SWISH: *alg = dnnl_eltwise_swish; *alpha = 1.0f; return 1;
    default: return 0;
    }
}

/* ReLU and the identity commute with a positive scale. */
static int folds_scale(const sf_layer *l) {
    return l->activation == SF_ACT_LINEAR || l->activation == SF_ACT_RELU;
}

/* Round to nearest even, as oneDNN does; NaN stays NaN. */
static inline uint16_t to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static void *alloc64(size_t bytes) {
    bytes = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p)
        memset(p, 0, bytes ? bytes : 64);
    return p;
}

/* Appends the impl string to o->kernel unless it is there already. */
static void note_impl(onednn_impl *o, const char *impl) {
    if (!impl)
        return;
    if (!strncmp(impl, "ref", 3) || strstr(impl, ":ref"))
        o->generic = 1;
    size_t len = strlen(impl);
    for (const char *p = o->kernel; (p = strstr(p, impl)) != NULL; p += len)
        if ((p == o->kernel || p[-1] == '+') && (p[len] == '\0' || p[len] == '+'))
            return;
    size_t used = strlen(o->kernel);
    snprintf(o->kernel + used, sizeof o->kernel - used, "%s%s", used ? "+" : "", impl);
}

/* The primitive of DENSE step st for class c, and its memories. Classes are
 * built largest first; *same is cleared when this class's kernel differs from
 * the largest one's (then a row would get other bits in a small batch). */
static int build_dense(onednn_impl *o, step *st, size_t c, int *same, char *errstr, size_t n) {
    const sf_layer *l = st->l;
    dnnl_dims_t sd = {(dnnl_dim_t)o->class_rows[c], (dnnl_dim_t)l->n_in};
    dnnl_dims_t wd = {(dnnl_dim_t)l->n_in, (dnnl_dim_t)l->n_out};
    dnnl_dims_t bd = {1, (dnnl_dim_t)l->n_out};
    dnnl_dims_t dd = {(dnnl_dim_t)o->class_rows[c], (dnnl_dim_t)l->n_out};
    dnnl_memory_desc_t src_md, w_any, w_user, b_md, dst_md;
    dnnl_matmul_desc_t desc;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL, rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_memory_t w_src = NULL;
    int rc = -1;
    int q = st->qweights != NULL;
    dnnl_data_type_t wdt = q ? dnnl_s8 : st->src_dt;
    CHECK(dnnl_memory_desc_init_by_tag(&src_md, 2, sd, st->src_dt, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&w_any, 2, wd, wdt, dnnl_format_tag_any));
    CHECK(dnnl_memory_desc_init_by_tag(&w_user, 2, wd, q ? dnnl_s8 : dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&b_md, 2, bd, dnnl_f32, dnnl_ab));
    CHECK(dnnl_memory_desc_init_by_tag(&dst_md, 2, dd, st->dst_dt, dnnl_ab));
    CHECK(dnnl_matmul_desc_init(&desc, &src_md, &w_any, l->bias ? &b_md : NULL, &dst_md));
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (q)
        CHECK(dnnl_primitive_attr_set_output_scales(attr, (dnnl_dim_t)l->n_out, 1 << 1, st->oscale));
    dnnl_alg_kind_t alg;
    float alpha;
    /* An int8 output is the next layer's codes: ReLU and identity commute
     * with the scale (folded into oscale), other functions are scaled after. */
    float post = st->next_scale && !folds_scale(l) ? st->next_scale : 1.0f;
    if (st->fused && post_op(l, &alg, &alpha)) {
        CHECK(dnnl_post_ops_create(&po));
        CHECK(dnnl_post_ops_append_eltwise(po, post, alg, alpha, 0.0f));
        CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
    }
    CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, o->eng, NULL));
    CHECK(dnnl_primitive_create(&st->prim[c], pd));
    const char *impl = "";
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl)
        impl = "";
    if (c + 1 == o->n_classes) {
        note_impl(o, impl);
        snprintf(st->impl, sizeof st->impl, "%s", impl);
    } else if (strcmp(st->impl, impl)) {
        *same = 0;
    }

    const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    /* Weights in the layout of an earlier class are shared. */
    for (size_t k = c + 1; k < o->n_classes; k++) {
        const dnnl_memory_desc_t *prev;
        if (st->weights[k] && dnnl_memory_get_memory_desc(st->weights[k], &prev) == dnnl_success &&
            dnnl_memory_desc_equal(prev, w_md)) {
            st->weights[c] = st->weights[k];
            break;
        }
    }
    if (!st->weights[c]) {
        CHECK(dnnl_memory_create(&st->weights[c], w_md, o->eng, DNNL_MEMORY_ALLOCATE));
        st->weights_owner[c] = 1;
        CHECK(dnnl_memory_create(&w_src, &w_user, o->eng, q ? (void *)st->qweights : l->kernel));
        CHECK(dnnl_reorder_primitive_desc_create(&rpd, &w_user, o->eng, w_md, o->eng, NULL));
        CHECK(dnnl_primitive_create(&reorder, rpd));
        dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, w_src}, {DNNL_ARG_TO, st->weights[c]}};
        CHECK(dnnl_primitive_execute(reorder, o->stream, 2, ra));
        CHECK(dnnl_stream_wait(o->stream));
    }
    if (l->bias && !st->bias)
        CHECK(dnnl_memory_create(&st->bias, &b_md, o->eng, q ? st->qbias : l->bias));
    CHECK(dnnl_memory_create(&st->src[c], &src_md, o->eng, o->buf[st->in]));
    CHECK(dnnl_memory_create(&st->dst[c], &dst_md, o->eng, o->buf[st->out]));
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t sp_size = sp ? dnnl_memory_desc_get_size(sp) : 0;
    if (sp_size) {
        /* The shared scratchpad is allocated once all sizes are known. */
        CHECK(dnnl_memory_create(&st->scratch[c], sp, o->eng, DNNL_MEMORY_NONE));
        if (sp_size > o->scratch_size)
            o->scratch_size = sp_size;
    }
    rc = 0;
fail:
    if (reorder) dnnl_primitive_destroy(reorder);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (w_src) dnnl_memory_destroy(w_src);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (po) dnnl_post_ops_destroy(po);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return rc;
}

/* The activations whose output is never negative: what follows them can take
 * u8 codes. */
static int nonneg(sf_activation a) {
    return a == SF_ACT_RELU || a == SF_ACT_SIGMOID || a == SF_ACT_SOFTMAX ||
           a == SF_ACT_HARD_SIGMOID || a == SF_ACT_HARD_SIGMOID3 || a == SF_ACT_SOFTPLUS ||
           a == SF_ACT_EXPONENTIAL;
}

/* The next layer that is not an identity, or NULL. */
static const sf_layer *next_layer(const sf_model *m, size_t li) {
    for (size_t nx = li + 1; nx < m->n_layers; nx++)
        if (m->layers[nx].kind != SF_LAYER_IDENTITY)
            return &m->layers[nx];
    return NULL;
}

/* Codes per unit of an input of range r in type dt (u8: [0, r] onto 0..255;
 * s8: [-r, r] onto -127..127). */
static float codes_per_unit(dnnl_data_type_t dt, float r) {
    return (dt == dnnl_u8 ? 255.0f : 127.0f) / r;
}

/* The steps of the forward pass: which buffer, which type, where conversions
 * go. Returns the number of steps: at most 3 per layer (a conversion, the
 * layer, an activation oneDNN cannot fuse; bf16 and int8 alike). In int8, Dense
 * layer number d (0-based) is quantized when 0 < d < n_dense - 1; range[d] is
 * its input's range (checked by the caller). */
static size_t plan(onednn_impl *o, step *steps, size_t *width, const float *range) {
    const sf_model *m = o->m;
    int bf16 = o->precision == SF_PRECISION_BF16, int8 = o->precision == SF_PRECISION_INT8;
    int cur = 2;                  /* the stage holds fp32 input */
    int cur_bf16 = 0;
    dnnl_data_type_t cur_q = dnnl_f32; /* int8: the buffer holds codes of this type */
    int cur_nonneg = 0;           /* the buffer's values are never negative */
    size_t cur_cols = m->n_inputs, ns = 0, n_dense = sf_model_n_dense(m), d = 0;
    *width = m->n_inputs;
    for (size_t li = 0; li < m->n_layers; li++) {
        const sf_layer *l = &m->layers[li];
        if (l->kind == SF_LAYER_IDENTITY)
            continue;
        if (l->n_out > *width) *width = l->n_out;
        if (l->n_in > *width) *width = l->n_in;
        int q = int8 && l->kind == SF_LAYER_DENSE && d > 0 && d + 1 < n_dense;
        int want_bf16 = l->kind == SF_LAYER_DENSE && bf16;
        if (want_bf16 != cur_bf16) {
            int to = cur == 0 ? 1 : 0;
            steps[ns++] = (step){.kind = want_bf16 ? ST_TO_BF16 : ST_TO_F32, .in = cur, .out = to,
                                 .cols = cur_cols};
            cur = to;
            cur_bf16 = want_bf16;
        }
        float in_scale = 0;
        if (q && cur_q == dnnl_f32) {
            /* fp32 values in, this layer's codes out */
            dnnl_data_type_t qdt = cur_nonneg ? dnnl_u8 : dnnl_s8;
            int to = cur == 0 ? 1 : 0;
            steps[ns++] = (step){.kind = ST_QUANT, .in = cur, .out = to, .cols = cur_cols,
                                 .dst_dt = qdt, .qscale = codes_per_unit(qdt, range[d])};
            cur = to;
            cur_q = qdt;
        }
        if (q)
            in_scale = codes_per_unit(cur_q, range[d]);
        if (l->kind == SF_LAYER_DENSE) {
            /* bf16 out only when the next layer is Dense and nothing of ours
             * runs on this output in between; likewise int8 codes out only
             * into a quantized Dense layer. */
            const sf_layer *nx = next_layer(m, li);
            int next_dense = nx && nx->kind == SF_LAYER_DENSE;
            dnnl_alg_kind_t alg;
            float a;
            int fused = l->activation == SF_ACT_LINEAR || post_op(l, &alg, &a);
            int out_bf16 = bf16 && fused && next_dense;
            int out_q = q && fused && next_dense && d + 2 < n_dense;
            dnnl_data_type_t out_dt = out_bf16 ? dnnl_bf16 : dnnl_f32;
            float next_scale = 0;
            if (out_q) {
                out_dt = nonneg(l->activation) ? dnnl_u8 : dnnl_s8;
                next_scale = codes_per_unit(out_dt, range[d + 1]);
            }
            int to = cur == 0 ? 1 : 0;
            steps[ns++] = (step){.kind = ST_DENSE, .l = l, .in = cur, .out = to, .cols = l->n_out,
                                 .fused = fused,
                                 .src_dt = q ? cur_q : bf16 ? dnnl_bf16 : dnnl_f32,
                                 .dst_dt = out_dt, .qscale = in_scale, .next_scale = next_scale};
            cur = to;
            cur_bf16 = out_bf16;
            cur_q = out_q ? out_dt : dnnl_f32;
            cur_nonneg = nonneg(l->activation); /* fused or run after */
            if (!fused)
                steps[ns++] = (step){.kind = ST_ACT, .l = l, .in = cur, .out = cur, .cols = l->n_out};
            d++;
        } else {
            steps[ns++] = (step){.kind = l->kind == SF_LAYER_SCALE ? ST_SCALE : ST_ACT, .l = l,
                                 .in = cur, .out = cur, .cols = l->n_out};
            cur_nonneg = l->kind == SF_LAYER_ACTIVATION && nonneg(l->activation);
        }
        cur_cols = l->n_out;
    }
    o->out_buf = cur;
    return ns;
}

/* int8: refuses what cannot run (no VNNI/AMX here, no or mismatched
 * calibration, nothing to quantize), naming what is missing. */
static int int8_check(const sf_model *m, const sf_infer_conf *c, char *errstr, size_t n) {
    size_t n_dense = sf_model_n_dense(m);
    if (!sf_infer_cpu_int8()) {
        snprintf(errstr, n, "int8 needs a CPU with AVX512_VNNI or AMX-INT8, and this one has "
                 "neither (use --precision bf16 or fp32)");
        return -1;
    }
    if (n_dense < 3) {
        snprintf(errstr, n, "int8 quantizes the hidden Dense layers (all but the first and the "
                 "last), and this model has %zu Dense layer%s", n_dense, n_dense == 1 ? "" : "s");
        return -1;
    }
    if (c->n_int8 == 0 || !c->int8_inputs || !c->int8_range) {
        snprintf(errstr, n, "int8 needs the model's calibration, the input range of each of its "
                 "%zu Dense layers (training.calibration.dense_inputs in the variables file; "
                 "models/training_stats.py writes it), and none was given", n_dense);
        return -1;
    }
    if (c->n_int8 != n_dense) {
        snprintf(errstr, n, "int8: the variables file's training.calibration.dense_inputs has %zu "
                 "entr%s, and the model %zu Dense layers (is it the calibration of another model?)",
                 c->n_int8, c->n_int8 == 1 ? "y" : "ies", n_dense);
        return -1;
    }
    for (size_t li = 0, d = 0; li < m->n_layers; li++) {
        const sf_layer *l = &m->layers[li];
        if (l->kind != SF_LAYER_DENSE)
            continue;
        if (c->int8_inputs[d] != l->n_in) {
            snprintf(errstr, n, "int8: training.calibration.dense_inputs[%zu] is for a layer of %zu "
                     "inputs, and Dense layer %zu ('%s') has %zu", d, c->int8_inputs[d], d,
                     l->name ? l->name : "?", l->n_in);
            return -1;
        }
        if (!(c->int8_range[d] > 0) || !isfinite(c->int8_range[d])) {
            snprintf(errstr, n, "int8: training.calibration.dense_inputs[%zu]: the range must be "
                     "positive and finite", d);
            return -1;
        }
        d++;
    }
    return 0;
}

/* The quantized kernel (per output column: 127 / its largest |w|), the output
 * scales that undo both input and weight scales (and apply the next layer's
 * input scale where it folds), and the bias in accumulator units. */
static int quantize_dense(step *st) {
    const sf_layer *l = st->l;
    size_t k_n = l->n_in, n_n = l->n_out;
    st->qweights = malloc(k_n * n_n + 1);
    st->oscale = malloc(n_n * sizeof *st->oscale);
    st->qbias = malloc(n_n * sizeof *st->qbias);
    if (!st->qweights || !st->oscale || !st->qbias)
        return -1;
    for (size_t j = 0; j < n_n; j++) {
        float mx = 0;
        for (size_t k = 0; k < k_n; k++) {
            float a = fabsf(l->kernel[k * n_n + j]);
            mx = a > mx ? a : mx;
        }
        float ws = mx > 0 ? 127.0f / mx : 1.0f;
        for (size_t k = 0; k < k_n; k++) {
            long v = lrintf(l->kernel[k * n_n + j] * ws);
            st->qweights[k * n_n + j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        float acc_units = st->qscale * ws;  /* accumulator units per real unit */
        st->oscale[j] = 1.0f / acc_units;
        if (st->next_scale && folds_scale(l))
            st->oscale[j] *= st->next_scale;
        st->qbias[j] = l->bias ? l->bias[j] * acc_units : 0.0f;
    }
    return 0;
}

/* Whether oneDNN's kernel for an int8 layer is a VNNI or AMX one. */
static int int8_kernel(const char *impl) {
    return strstr(impl, "vnni") || strstr(impl, "amx");
}

static int onednn_open(void **out, const sf_model *m, size_t max_batch, const sf_infer_conf *conf,
                       char *errstr, size_t n) {
    if (conf->precision == SF_PRECISION_INT8 && int8_check(m, conf, errstr, n))
        return -1;
    onednn_impl *o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(errstr, n, "out of memory");
        return -1;
    }
    o->m = m;
    o->precision = conf->precision;
    o->max_batch = max_batch;
    o->omp_threads = 1;
    for (size_t r = SF_INFER_ROW_BLOCK; o->n_classes < MAX_CLASSES - 1; r *= 2) {
        if (r >= max_batch)
            break;
        o->class_rows[o->n_classes++] = r;
    }
    o->class_rows[o->n_classes++] = max_batch;
    if (!(o->steps = calloc(3 * m->n_layers + 1, sizeof *o->steps)))
        goto oom;
    size_t width;
    o->n_steps = plan(o, o->steps, &width, conf->int8_range);
    for (size_t s = 0; s < o->n_steps; s++)
        if (o->steps[s].kind == ST_DENSE && o->steps[s].qscale && quantize_dense(&o->steps[s]))
            goto oom;
    for (int i = 0; i < 3; i++)
        if (!(o->buf[i] = alloc64(max_batch * width * sizeof(float))))
            goto oom;
    CHECK(dnnl_engine_create(&o->eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&o->stream, o->eng, dnnl_stream_default_flags));
    /* Primitives are created for the team they will run with (one thread,
     * sigflow's policy); the caller's own setting is put back after. */
    int caller_threads = omp_get_max_threads();
    omp_set_num_threads(o->omp_threads);
    /* A class whose kernels differ from the largest class's (bf16 takes AVX-512
     * rather than AMX for a few rows) would round differently: such classes
     * are dropped, and their batches padded up to the next one that agrees. */
    for (size_t c = o->n_classes; c-- > 0;) {
        int same = 1;
        for (size_t s = 0; s < o->n_steps; s++)
            if (o->steps[s].kind == ST_DENSE && build_dense(o, &o->steps[s], c, &same, errstr, n)) {
                omp_set_num_threads(caller_threads);
                goto fail;
            }
        o->class_ok[c] = 1;
        if (!same)
            drop_class(o, c);
    }
    omp_set_num_threads(caller_threads);
    for (size_t s = 0; s < o->n_steps; s++) {
        step *st = &o->steps[s];
        if (st->kind != ST_DENSE || !st->qweights)
            continue;
        if (!int8_kernel(st->impl)) {
            snprintf(errstr, n, "int8: oneDNN offers only '%s' for Dense layer '%s' on this CPU, "
                     "not a VNNI or AMX kernel (is ONEDNN_MAX_CPU_ISA set below "
                     "AVX512_CORE_VNNI?); use --precision bf16 or fp32", st->impl,
                     st->l->name ? st->l->name : "?");
            goto fail;
        }
        free(st->qweights); /* reordered into oneDNN's layout */
        st->qweights = NULL;
    }
    if (o->scratch_size) {
        if (!(o->scratch = alloc64(o->scratch_size)))
            goto oom;
        for (size_t s = 0; s < o->n_steps; s++)
            for (size_t c = 0; c < o->n_classes; c++)
                if (o->steps[s].scratch[c])
                    CHECK(dnnl_memory_set_data_handle(o->steps[s].scratch[c], o->scratch));
    }
    if (!o->kernel[0])
        snprintf(o->kernel, sizeof o->kernel, "no Dense layer");
    *out = o;
    return 0;
oom:
    snprintf(errstr, n, "out of memory");
fail:
    onednn_close(o);
    return -1;
}

/* fp32 values to int8 codes, rounded to nearest (ties up) and saturated; NaN
 * becomes the lowest code. Written so that GCC vectorizes it at -O2 (scalar,
 * it was a quarter of the int8 forward pass): fixed blocks of 16 (count is a
 * multiple of the row block), the clamps before a truncating conversion of
 * values kept positive, s8 as u8 shifted by 128. */
static void quantize(const float *restrict in, void *restrict out, size_t count, float scale,
                     int u8) {
    if (u8) {
        uint8_t *q = out;
        for (size_t i = 0; i < count; i += 16)
            for (size_t k = 0; k < 16; k++) {
                float v = in[i + k] * scale + 0.5f;
                v = v > 0.5f ? v : 0.5f;          /* code 0 */
                v = v < 255.5f ? v : 255.0f;      /* code 255 */
                q[i + k] = (uint8_t)(int)v;
            }
        return;
    }
    int8_t *q = out;
    for (size_t i = 0; i < count; i += 16)
        for (size_t k = 0; k < 16; k++) {
            float v = in[i + k] * scale + 128.5f;
            v = v > 1.5f ? v : 1.5f;              /* code -127 */
            v = v < 255.5f ? v : 255.0f;          /* code 127 */
            q[i + k] = (int8_t)((int)v - 128);
        }
}

static void onednn_run(void *p, const float *x, size_t rows, float *y) {
    onednn_impl *o = p;
    size_t c = 0;
    while (o->class_rows[c] < rows || !o->class_ok[c])
        c++;
    size_t cr = o->class_rows[c], n_in = o->m->n_inputs;
    float *stage = o->buf[2];
    memcpy(stage, x, rows * n_in * sizeof(float));
    if (cr > rows)
        memset(stage + rows * n_in, 0, (cr - rows) * n_in * sizeof(float));
    if (o->omp_threads && omp_get_max_threads() != o->omp_threads)
        omp_set_num_threads(o->omp_threads);
    for (size_t s = 0; s < o->n_steps; s++) {
        step *st = &o->steps[s];
        size_t count = cr * st->cols;
        switch (st->kind) {
        case ST_DENSE: {
            dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, st->src[c]},
                                       {DNNL_ARG_WEIGHTS, st->weights[c]},
                                       {DNNL_ARG_DST, st->dst[c]}};
            int na = 3;
            if (st->bias)
                args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, st->bias};
            if (st->scratch[c])
                args[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, st->scratch[c]};
            /* Cannot fail once created with these memories (checked at load). */
            dnnl_primitive_execute(st->prim[c], o->stream, na, args);
            dnnl_stream_wait(o->stream);
            break;
        }
        case ST_TO_BF16: {
            const float *in = o->buf[st->in];
            uint16_t *out = o->buf[st->out];
            for (size_t i = 0; i < count; i++)
                out[i] = to_bf16(in[i]);
            break;
        }
        case ST_TO_F32: {
            const uint16_t *in = o->buf[st->in];
            float *out = o->buf[st->out];
            for (size_t i = 0; i < count; i++)
                out[i] = from_bf16(in[i]);
            break;
        }
        case ST_QUANT:
            quantize(o->buf[st->in], o->buf[st->out], count, st->qscale, st->dst_dt == dnnl_u8);
            break;
        case ST_SCALE:
            sf_infer_scale(st->l, o->buf[st->in], o->buf[st->out], cr);
            break;
        case ST_ACT:
            /* after a Dense layer: its bias was added by the primitive */
            sf_activation_apply_layer(st->l, o->buf[st->out], cr, st->cols);
            break;
        }
    }
    memcpy(y, o->buf[o->out_buf], rows * o->m->n_outputs * sizeof(float));
}

static void onednn_kernel(const void *p, char *buf, size_t size, int *generic) {
    const onednn_impl *o = p;
    snprintf(buf, size, "%s", o->kernel);
    *generic = o->generic;
}

static void onednn_library_threads(void *p, int n) {
    ((onednn_impl *)p)->omp_threads = n;
}

static int onednn_library_threads_get(const void *p) {
    const onednn_impl *o = p;
    return o->omp_threads ? o->omp_threads : omp_get_max_threads();
}

const sf_infer_backend sf_infer_onednn = {
    .id = SF_BACKEND_ONEDNN,
    .open = onednn_open,
    .close = onednn_close,
    .run = onednn_run,
    .kernel = onednn_kernel,
    .library_threads = onednn_library_threads,
    .library_threads_get = onednn_library_threads_get,
};

/* A small fp32 matmul: does oneDNN have a JIT kernel for this CPU? */
int sf_infer_backend_available(sf_backend b) {
    if (b != SF_BACKEND_ONEDNN)
        return 1;
    sf_layer l = {.kind = SF_LAYER_DENSE, .n_in = 32, .n_out = 32, .activation = SF_ACT_RELU};
    float w[32 * 32] = {0};
    l.kernel = w;
    sf_model m = {.n_inputs = 32, .n_outputs = 32, .n_layers = 1, .layers = &l};
    sf_infer_conf c = {.backend = SF_BACKEND_ONEDNN, .precision = SF_PRECISION_FP32};
    void *impl;
    char err[256];
    if (onednn_open(&impl, &m, SF_INFER_ROW_BLOCK, &c, err, sizeof err))
        return 0;
    int ok = !((onednn_impl *)impl)->generic;
    onednn_close(impl);
    return ok;
}
