/* bench_bare.c: the bare oneDNN loop sigflow's own oneDNN backend is measured
 * against (issue 11's inference_vs_bare_onednn).
 *
 * The same Dense layers, one matmul primitive each with bias and ReLU fused,
 * weights reordered once, one batch size, one thread, nothing else: no
 * padding, no class lookup, no input copy or bf16 conversion, no softmax. What
 * the backend adds on top of this is its overhead. In int8 the hidden layers
 * are u8 x s8 with per-column output scales, u8 between them, and the first
 * and last fp32, as the backend runs them; the one fp32-to-u8 conversion is
 * left out like bf16's (the first hidden layer reads codes of its own). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>

#include "sigflow/clock.h"
#include "bench.h"

#define MAX_DENSE 64

typedef struct bare_layer {
    dnnl_primitive_t prim;
    dnnl_memory_t src, w, b, dst, sp;
    int own_src;
} bare_layer;

struct bench_bare {
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    bare_layer layers[MAX_DENSE];
    size_t n, batch;
};

bench_bare *bench_bare_new(const sf_model *m, sf_precision precision, size_t batch, char *impl_out,
                           size_t impl_size) {
    int bf16 = precision == SF_PRECISION_BF16, int8 = precision == SF_PRECISION_INT8;
    size_t n_dense = sf_model_n_dense(m);
    bench_bare *bb = calloc(1, sizeof *bb);
    if (!bb)
        return NULL;
    bare_layer *layers = bb->layers;
    size_t n = 0;
    bb->batch = batch;
    impl_out[0] = '\0';
    dnnl_engine_t eng = NULL;
    dnnl_stream_t stream = NULL;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) || dnnl_stream_create(&stream, eng, dnnl_stream_default_flags))
        goto fail;
    bb->eng = eng;
    bb->stream = stream;
    dnnl_memory_t prev = NULL;
    for (size_t i = 0; i < m->n_layers && n < MAX_DENSE; i++) {
        const sf_layer *l = &m->layers[i];
        if (l->kind != SF_LAYER_DENSE)
            continue;
        size_t d = n;
        bare_layer *b = &layers[n++];
        bb->n = n;
        int last = d + 1 == n_dense;
        int q = int8 && d > 0 && !last, next_q = int8 && d + 2 < n_dense;
        dnnl_data_type_t dt = bf16 ? dnnl_bf16 : dnnl_f32;
        dnnl_data_type_t sdt = q ? dnnl_u8 : dt, wdt = q ? dnnl_s8 : dt;
        dnnl_data_type_t ddt = last ? dnnl_f32 : q && next_q ? dnnl_u8 : q ? dnnl_f32 : dt;
        dnnl_dims_t sd = {(dnnl_dim_t)batch, (dnnl_dim_t)l->n_in}, wd = {(dnnl_dim_t)l->n_in, (dnnl_dim_t)l->n_out};
        dnnl_dims_t bd = {1, (dnnl_dim_t)l->n_out}, dd = {(dnnl_dim_t)batch, (dnnl_dim_t)l->n_out};
        dnnl_memory_desc_t smd, wany, wuser, bmd, dmd;
        dnnl_memory_desc_init_by_tag(&smd, 2, sd, sdt, dnnl_ab);
        dnnl_memory_desc_init_by_tag(&wany, 2, wd, wdt, dnnl_format_tag_any);
        dnnl_memory_desc_init_by_tag(&wuser, 2, wd, dnnl_f32, dnnl_ab);
        dnnl_memory_desc_init_by_tag(&bmd, 2, bd, dnnl_f32, dnnl_ab);
        dnnl_memory_desc_init_by_tag(&dmd, 2, dd, ddt, dnnl_ab);
        dnnl_matmul_desc_t desc;
        dnnl_primitive_attr_t attr;
        dnnl_post_ops_t po;
        dnnl_primitive_desc_t pd;
        dnnl_matmul_desc_init(&desc, &smd, &wany, l->bias ? &bmd : NULL, &dmd);
        dnnl_primitive_attr_create(&attr);
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
        if (q) {
            float *ones = malloc(l->n_out * sizeof *ones);
            for (size_t k = 0; ones && k < l->n_out; k++)
                ones[k] = 1.0f;
            if (ones)
                dnnl_primitive_attr_set_output_scales(attr, (dnnl_dim_t)l->n_out, 1 << 1, ones);
            free(ones); /* the attribute keeps a copy */
        }
        dnnl_post_ops_create(&po);
        if (l->activation == SF_ACT_RELU)
            dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
        dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL);
        dnnl_post_ops_destroy(po);
        dnnl_primitive_attr_destroy(attr);
        if (st)
            goto fail;
        const char *impl = NULL;
        if (!dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) && impl &&
            !strstr(impl_out, impl))
            snprintf(impl_out + strlen(impl_out), impl_size - strlen(impl_out), "%s%s",
                     impl_out[0] ? "+" : "", impl);
        const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const dnnl_memory_desc_t *spmd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        dnnl_primitive_create(&b->prim, pd);
        dnnl_memory_create(&b->w, wmd, eng, DNNL_MEMORY_ALLOCATE);
        dnnl_memory_create(&b->sp, spmd, eng, DNNL_MEMORY_ALLOCATE);
        dnnl_primitive_desc_destroy(pd);
        /* Weights reordered from the model's layout, once. */
        dnnl_memory_t wsrc;
        dnnl_primitive_desc_t rpd;
        dnnl_primitive_t r;
        dnnl_memory_create(&wsrc, &wuser, eng, l->kernel);
        if (dnnl_reorder_primitive_desc_create(&rpd, &wuser, eng, wmd, eng, NULL) == dnnl_success) {
            dnnl_primitive_create(&r, rpd);
            dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, wsrc}, {DNNL_ARG_TO, b->w}};
            dnnl_primitive_execute(r, stream, 2, ra);
            dnnl_stream_wait(stream);
            dnnl_primitive_destroy(r);
            dnnl_primitive_desc_destroy(rpd);
        }
        dnnl_memory_destroy(wsrc);
        if (l->bias)
            dnnl_memory_create(&b->b, &bmd, eng, l->bias);
        /* Each layer reads the previous one's output (the first int8 one reads
         * codes of its own); the input stays zeros. */
        b->own_src = !prev || (q && d == 1);
        if (!b->own_src)
            b->src = prev;
        else
            dnnl_memory_create(&b->src, &smd, eng, DNNL_MEMORY_ALLOCATE);
        dnnl_memory_create(&b->dst, &dmd, eng, DNNL_MEMORY_ALLOCATE);
        prev = b->dst;
    }
    if (n == 0)
        goto fail;
    return bb;
fail:
    bench_bare_free(bb);
    return NULL;
}

double bench_bare_rate(bench_bare *bb, double seconds) {
    omp_set_num_threads(1);
    size_t calls = 0;
    double t0 = bench_thread_cpu_s(), t;
    do {
        for (size_t i = 0; i < bb->n; i++) {
            bare_layer *b = &bb->layers[i];
            dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, b->src}, {DNNL_ARG_WEIGHTS, b->w},
                                       {DNNL_ARG_DST, b->dst}, {DNNL_ARG_SCRATCHPAD, b->sp}};
            int na = 4;
            if (b->b)
                args[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, b->b};
            dnnl_primitive_execute(b->prim, bb->stream, na, args);
        }
        dnnl_stream_wait(bb->stream);
        calls++;
        t = bench_thread_cpu_s();
    } while (t - t0 < seconds);
    return (double)calls * (double)bb->batch / (t - t0);
}

void bench_bare_free(bench_bare *bb) {
    if (!bb)
        return;
    for (size_t i = 0; i < bb->n; i++) {
        bare_layer *b = &bb->layers[i];
        if (b->prim) dnnl_primitive_destroy(b->prim);
        if (b->w) dnnl_memory_destroy(b->w);
        if (b->b) dnnl_memory_destroy(b->b);
        if (b->sp) dnnl_memory_destroy(b->sp);
        if (b->dst) dnnl_memory_destroy(b->dst);
        if (b->own_src && b->src) dnnl_memory_destroy(b->src);
    }
    if (bb->stream) dnnl_stream_destroy(bb->stream);
    if (bb->eng) dnnl_engine_destroy(bb->eng);
    free(bb);
}
