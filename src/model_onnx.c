/* model_onnx.c: the MLP subset of ONNX, mapped onto sigflow's own layers.
 *
 * ONNX is how PyTorch, scikit-learn and tf2onnx users hand over a network,
 * but sigflow is not a second runtime: it serves the feed-forward chain that
 * its engine computes exactly, and refuses the rest by name. The graph is
 * walked forward from its one input to the chosen output; each step must be
 * the tensor's only consumer (or one of the few multi-consumer patterns
 * exporters emit: the erf form of GELU, skl2onnx's [1 - p, p] head), and
 * every other input of a step must be a constant. The result is the same
 * sf_layer list a Keras file gives, so inference, bf16, the ensemble and the
 * loader's isolation treat both alike. */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model_onnx.h"
#include "model_onnx_pb.h"

#define MAX_NODES 4096 /* an MLP has tens; the walk is quadratic in them */

typedef struct mapper {
    const char *path;
    sf_onnx_model g;
    sf_model *m;
    size_t cap_layers;
    const char *cur;          /* the chain's tensor so far */
    size_t width;             /* its values per row */
    size_t rank;              /* its rank; shape[0] is the batch */
    int64_t shape[SF_ONNX_MAX_RANK];
    int64_t batch;            /* the input's fixed batch, -1 when symbolic */
    int dense_seen;           /* a Dense or BatchNormalization is on the chain */
    int head;                 /* Softmax/LogSoftmax/binary head reached */
    unsigned char *used;      /* per node: on the chain */
    sf_sha256 *hash;          /* the model's digest, fed the external data read */
    sf_onnx_fetch fetch;      /* external data from elsewhere than the folder (NULL: read) */
    void *fetch_ctx;
    char *errstr;
    size_t errstr_size;
} mapper;

/* ---- messages ------------------------------------------------------------------- */

static const char *node_name(const sf_onnx_node *n) {
    if (n->name && *n->name)
        return n->name;
    return n->n_outputs && n->outputs[0] && *n->outputs[0] ? n->outputs[0] : "(unnamed)";
}

static const char *op_of(const sf_onnx_node *n) { return n->op_type ? n->op_type : "(no op_type)"; }

static const char *tname(const sf_onnx_tensor *t) { return t->name ? t->name : "(unnamed)"; }

/* "<file>: node '<name>' (<op>): <why>", or "<file>: <why>". */
__attribute__((format(printf, 3, 4)))
static int fail(mapper *mp, const sf_onnx_node *n, const char *fmt, ...) {
    char why[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (n)
        snprintf(mp->errstr, mp->errstr_size, "%s: node '%s' (%s): %s", mp->path, node_name(n),
                 op_of(n), why);
    else
        snprintf(mp->errstr, mp->errstr_size, "%s: %s", mp->path, why);
    return -1;
}

/* ---- graph lookups ------------------------------------------------------------- */

static const char *input_at(const sf_onnx_node *n, size_t i) {
    return i < n->n_inputs && n->inputs[i] && *n->inputs[i] ? n->inputs[i] : NULL;
}

static const sf_onnx_attr *attr(const sf_onnx_node *n, const char *name) {
    for (size_t i = n->n_attrs; i-- > 0;)
        if (n->attrs[i].name && !strcmp(n->attrs[i].name, name))
            return &n->attrs[i];
    return NULL;
}

static int64_t attr_int(const sf_onnx_node *n, const char *name, int64_t def) {
    const sf_onnx_attr *a = attr(n, name);
    return a ? a->i : def;
}

static double attr_float(const sf_onnx_node *n, const char *name, double def) {
    const sf_onnx_attr *a = attr(n, name);
    return a ? a->f : def;
}

static int is_output(const mapper *mp, const char *name) {
    for (size_t i = 0; i < mp->g.n_outputs; i++)
        if (mp->g.outputs[i].name && !strcmp(mp->g.outputs[i].name, name))
            return 1;
    return 0;
}

/* The nodes that read `name`, up to `max` of them, by index; returns the count. */
static size_t consumers(const mapper *mp, const char *name, size_t *idx, size_t max) {
    size_t k = 0;
    for (size_t i = 0; i < mp->g.n_nodes; i++) {
        const sf_onnx_node *n = &mp->g.nodes[i];
        for (size_t j = 0; j < n->n_inputs; j++) {
            if (n->inputs[j] && !strcmp(n->inputs[j], name)) {
                if (k < max)
                    idx[k] = i;
                k++;
                break;
            }
        }
    }
    return k;
}

static const sf_onnx_node *producer(const mapper *mp, const char *name) {
    for (size_t i = 0; i < mp->g.n_nodes; i++) {
        const sf_onnx_node *n = &mp->g.nodes[i];
        for (size_t j = 0; j < n->n_outputs; j++)
            if (n->outputs[j] && !strcmp(n->outputs[j], name))
                return n;
    }
    return NULL;
}

/* An initializer, or the value of a Constant node. NULL: not a constant. */
static sf_onnx_tensor *constant(const mapper *mp, const char *name) {
    if (!name)
        return NULL;
    for (size_t i = mp->g.n_inits; i-- > 0;)
        if (mp->g.inits[i].name && !strcmp(mp->g.inits[i].name, name))
            return &mp->g.inits[i];
    const sf_onnx_node *p = producer(mp, name);
    if (p && p->op_type && !strcmp(p->op_type, "Constant") && (!p->domain || !*p->domain)) {
        const sf_onnx_attr *a = attr(p, "value");
        return a ? a->t : NULL;
    }
    return NULL;
}

/* ---- tensor values ---------------------------------------------------------------- */

/* External data: the one place a file other than the model is opened, so it
 * is kept small and strict. The location is relative to the model's folder
 * and must stay inside it, links included (both sides resolved). The parent
 * runs this for the sandboxed loader (model_guard.c), on a location the
 * loader sent: it trusts nothing it is given. */
int sf_onnx_external_read(const char *model_path, const char *loc, int64_t offset,
                          size_t nbytes, unsigned char **out, char *why, size_t why_size) {
    *out = NULL;
    if (!*loc || loc[0] == '/' || strstr(loc, "..")) {
        snprintf(why, why_size, "external data location '%s' leaves the model's folder", loc);
        return -1;
    }
    if (offset < 0 || (int64_t)nbytes > SF_ONNX_MAX_EXTERNAL) {
        snprintf(why, why_size, "external data of %zu bytes at offset %lld is out of bounds",
                 nbytes, (long long)offset);
        return -1;
    }
    char dir[PATH_MAX], file[PATH_MAX], real_dir[PATH_MAX], real_file[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", model_path);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[slash == dir ? 1 : 0] = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    if ((size_t)snprintf(file, sizeof file, "%s/%s", dir, loc) >= sizeof file) {
        snprintf(why, why_size, "external data path too long");
        return -1;
    }
    if (!realpath(dir, real_dir) || !realpath(file, real_file)) {
        snprintf(why, why_size, "external data file '%s': %s", loc, strerror(errno));
        return -1;
    }
    size_t dl = strlen(real_dir);
    if (strncmp(real_file, real_dir, dl) != 0 || (real_file[dl] != '/' && dl != 1)) {
        snprintf(why, why_size, "external data location '%s' leaves the model's folder", loc);
        return -1;
    }
    int fd = open(real_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        snprintf(why, why_size, "external data file '%s' is not a readable regular file", loc);
        return -1;
    }
    if ((uint64_t)offset > (uint64_t)st.st_size ||
        nbytes > (uint64_t)st.st_size - (uint64_t)offset) {
        close(fd);
        snprintf(why, why_size, "external data file '%s' holds %lld bytes, not %zu at offset %lld",
                 loc, (long long)st.st_size, nbytes, (long long)offset);
        return -1;
    }
    unsigned char *buf = malloc(nbytes ? nbytes : 1);
    size_t got = 0;
    while (buf && got < nbytes) {
        ssize_t r = pread(fd, buf + got, nbytes - got, (off_t)(offset + (int64_t)got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (!buf || got < nbytes) {
        free(buf);
        snprintf(why, why_size, "cannot read external data file '%s'", loc);
        return -1;
    }
    *out = buf;
    return 0;
}

/* A tensor's external bytes, from the model's folder or, in the sandboxed
 * loader, from the parent (o->fetch); they go into the model's digest. */
static int read_external(mapper *mp, const sf_onnx_node *n, const sf_onnx_tensor *t,
                         size_t nbytes, unsigned char **out) {
    const char *loc = t->ext_location;
    *out = NULL;
    if (!loc || !*loc)
        return fail(mp, n, "tensor '%s' is stored externally without a location", tname(t));
    if (loc[0] == '/' || strstr(loc, ".."))
        return fail(mp, n, "tensor '%s': external data location '%s' leaves the model's "
                    "folder", tname(t), loc);
    if (t->ext_length >= 0 && (uint64_t)t->ext_length != nbytes)
        return fail(mp, n, "tensor '%s': external data length %lld, expected %zu bytes",
                    tname(t), (long long)t->ext_length, nbytes);
    if ((int64_t)nbytes > SF_ONNX_MAX_EXTERNAL)
        return fail(mp, n, "tensor '%s': external data of %zu bytes is too large", tname(t),
                    nbytes);
    char why[512];
    int rc = mp->fetch ? mp->fetch(mp->fetch_ctx, loc, t->ext_offset, nbytes, out, why, sizeof why)
                       : sf_onnx_external_read(mp->path, loc, t->ext_offset, nbytes, out, why,
                                               sizeof why);
    if (rc < 0)
        return fail(mp, n, "tensor '%s': %s", tname(t), why);
    sf_sha256_update(mp->hash, *out, nbytes);
    return 0;
}

static size_t elem_size(int type) {
    switch (type) {
    case SF_ONNX_FLOAT: case SF_ONNX_INT32: return 4;
    case SF_ONNX_DOUBLE: case SF_ONNX_INT64: return 8;
    default: return 0;
    }
}

static const char *type_name(int type) {
    switch (type) {
    case SF_ONNX_FLOAT: return "float";
    case SF_ONNX_DOUBLE: return "double";
    case SF_ONNX_INT32: return "int32";
    case SF_ONNX_INT64: return "int64";
    case SF_ONNX_FLOAT16: return "float16";
    case SF_ONNX_BFLOAT16: return "bfloat16";
    case SF_ONNX_STRING: return "string";
    default: return "an unsupported type";
    }
}

/* A constant's values as doubles, after checking that the stored data holds
 * exactly the elements its dims promise. want_float: float or double (a
 * weight), else int32 or int64 (a shape or axes). */
static int values(mapper *mp, const sf_onnx_node *n, const sf_onnx_tensor *t, int want_float,
                  double **out, size_t *count) {
    *out = NULL;
    size_t total = 1;
    for (size_t k = 0; k < t->rank; k++) {
        if (t->dims[k] < 0 || (t->dims[k] > 0 && total > SF_ONNX_MAX_ELEMENTS / (size_t)t->dims[k]))
            return fail(mp, n, "tensor '%s' has an invalid or too large shape", tname(t));
        total *= (size_t)t->dims[k];
    }
    int fl = t->data_type == SF_ONNX_FLOAT || t->data_type == SF_ONNX_DOUBLE;
    int in = t->data_type == SF_ONNX_INT32 || t->data_type == SF_ONNX_INT64;
    if (want_float ? !fl : !in)
        return fail(mp, n, "tensor '%s' is %s; %s", tname(t), type_name(t->data_type),
                    want_float ? "weights must be float or double" : "expected int64 values");
    double *v = malloc((total ? total : 1) * sizeof *v);
    if (!v)
        return fail(mp, n, "out of memory");
    size_t es = elem_size(t->data_type);
    unsigned char *ext = NULL;
    const unsigned char *raw = t->raw;
    size_t raw_len = t->raw_len;
    if (t->external) {
        if (read_external(mp, n, t, total * es, &ext) < 0) {
            free(v);
            return -1;
        }
        raw = ext;
        raw_len = total * es;
    }
    if (t->external || t->has_raw) {
        if (raw_len != total * es) {
            free(v);
            return fail(mp, n, "tensor '%s' holds %zu bytes of raw data, its shape needs %zu",
                        tname(t), raw_len, total * es);
        }
        for (size_t i = 0; i < total; i++) {
            const unsigned char *p = raw + i * es;
            float f;
            double d;
            int32_t i32;
            int64_t i64;
            switch (t->data_type) {
            case SF_ONNX_FLOAT: memcpy(&f, p, 4); v[i] = f; break;
            case SF_ONNX_DOUBLE: memcpy(&d, p, 8); v[i] = d; break;
            case SF_ONNX_INT32: memcpy(&i32, p, 4); v[i] = i32; break;
            default: memcpy(&i64, p, 8); v[i] = (double)i64; break;
            }
        }
    } else {
        if (t->n_typed != total) {
            free(v);
            return fail(mp, n, "tensor '%s' holds %zu values, its shape needs %zu", tname(t),
                        t->n_typed, total);
        }
        if (total)
            memcpy(v, t->typed, total * sizeof *v);
    }
    free(ext);
    *out = v;
    *count = total;
    return 0;
}

/* The values of the constant input `i` of node n. */
static int const_input(mapper *mp, const sf_onnx_node *n, size_t i, int want_float,
                       const sf_onnx_tensor **t, double **out, size_t *count) {
    const char *name = input_at(n, i);
    *t = constant(mp, name);
    *out = NULL;
    if (!name)
        return fail(mp, n, "input %zu is missing", i);
    if (!*t)
        return fail(mp, n, "input '%s' is not a constant: only the chain's tensor may vary",
                    name);
    return values(mp, n, *t, want_float, out, count);
}

static int to_float(mapper *mp, const sf_onnx_node *n, double v, float *out) {
    if (fabs(v) > FLT_MAX)
        return fail(mp, n, "value %g does not fit in float32", v);
    *out = (float)v;
    return 0;
}

/* ---- layers --------------------------------------------------------------------- */

static sf_layer *add_layer(mapper *mp, const sf_onnx_node *n, const char *cls,
                           sf_layer_kind kind) {
    sf_model *m = mp->m;
    if (m->n_layers == mp->cap_layers) {
        size_t cap = mp->cap_layers ? mp->cap_layers * 2 : 8;
        sf_layer *bigger = realloc(m->layers, cap * sizeof *bigger);
        if (!bigger) {
            fail(mp, n, "out of memory");
            return NULL;
        }
        m->layers = bigger;
        mp->cap_layers = cap;
    }
    sf_layer *l = &m->layers[m->n_layers];
    memset(l, 0, sizeof *l);
    l->name = strdup(n ? node_name(n) : mp->cur);
    l->keras_class = strdup(cls);
    m->n_layers++;
    if (!l->name || !l->keras_class) {
        fail(mp, n, "out of memory");
        return NULL;
    }
    l->kind = kind;
    l->n_in = l->n_out = mp->width;
    l->max_value = INFINITY;
    return l;
}

static sf_layer *last_layer(mapper *mp) {
    return mp->m->n_layers ? &mp->m->layers[mp->m->n_layers - 1] : NULL;
}

/* Appends " + <op>" to a layer's class, to show what was fused into it. */
static int fuse_class(mapper *mp, const sf_onnx_node *n, sf_layer *l, const char *what) {
    size_t len = strlen(l->keras_class) + strlen(what) + 4;
    char *c = malloc(len);
    if (!c)
        return fail(mp, n, "out of memory");
    snprintf(c, len, "%s+%s", l->keras_class, what);
    free(l->keras_class);
    l->keras_class = c;
    return 0;
}

static int need_matrix(mapper *mp, const sf_onnx_node *n) {
    if (mp->rank != 2)
        return fail(mp, n, "its input has rank %zu here; only [batch, features] is supported",
                    mp->rank);
    return 0;
}

/* A bias-like constant: one value per unit, or one for all (broadcast), in
 * a shape that broadcasts along the features only. */
static int vector_const(mapper *mp, const sf_onnx_node *n, size_t i, size_t units,
                        double **v, int *scalar) {
    const sf_onnx_tensor *t;
    size_t count;
    if (const_input(mp, n, i, 1, &t, v, &count) < 0)
        return -1;
    for (size_t k = 0; k + 1 < t->rank; k++)
        if (t->dims[k] != 1)
            goto bad;
    if (t->rank > mp->rank && t->rank > 1)
        goto bad;
    if (count == units || count == 1) {
        *scalar = count == 1 && units != 1;
        return 0;
    }
bad:
    free(*v);
    *v = NULL;
    return fail(mp, n, "constant '%s' does not broadcast over %zu features", tname(t), units);
}

/* Gemm (alpha, beta, transB) or MatMul: y = x @ W (+ C). */
static int do_dense(mapper *mp, const sf_onnx_node *n, int gemm) {
    if (need_matrix(mp, n) < 0)
        return -1;
    double alpha = 1, beta = 1;
    int trans_b = 0;
    if (gemm) {
        if (attr_int(n, "transA", 0) != 0)
            return fail(mp, n, "transA=1 is not supported");
        trans_b = attr_int(n, "transB", 0) != 0;
        alpha = attr_float(n, "alpha", 1.0);
        beta = attr_float(n, "beta", 1.0);
    }
    const sf_onnx_tensor *wt;
    double *w = NULL, *c = NULL;
    size_t count;
    int rc = -1;
    if (const_input(mp, n, 1, 1, &wt, &w, &count) < 0)
        goto done;
    if (wt->rank != 2)
        return free(w), fail(mp, n, "weight '%s' has rank %zu, expected 2", tname(wt), wt->rank);
    size_t k_in = (size_t)wt->dims[trans_b ? 1 : 0], units = (size_t)wt->dims[trans_b ? 0 : 1];
    if (k_in != mp->width || units == 0) {
        fail(mp, n, "weight '%s' is [%lld, %lld]%s; the input has %zu features", tname(wt),
             (long long)wt->dims[0], (long long)wt->dims[1], trans_b ? " (transB)" : "",
             mp->width);
        goto done;
    }
    int scalar = 0;
    if (gemm && input_at(n, 2) && vector_const(mp, n, 2, units, &c, &scalar) < 0)
        goto done;
    sf_layer *l = add_layer(mp, n, gemm ? "Gemm" : "MatMul", SF_LAYER_DENSE);
    if (!l)
        goto done;
    l->n_in = k_in;
    l->n_out = units;
    l->activation = SF_ACT_LINEAR;
    l->n_params = k_in * units + (c ? (scalar ? 1 : units) : 0);
    l->kernel = malloc(k_in * units * sizeof *l->kernel);
    if (!l->kernel) {
        fail(mp, n, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < k_in; i++)
        for (size_t j = 0; j < units; j++)
            if (to_float(mp, n, alpha * w[trans_b ? j * k_in + i : i * units + j],
                         &l->kernel[i * units + j]) < 0)
                goto done;
    if (c) {
        if (!(l->bias = malloc(units * sizeof *l->bias))) {
            fail(mp, n, "out of memory");
            goto done;
        }
        for (size_t j = 0; j < units; j++)
            if (to_float(mp, n, beta * c[scalar ? 0 : j], &l->bias[j]) < 0)
                goto done;
    }
    mp->width = units;
    mp->shape[1] = (int64_t)units;
    mp->dense_seen = 1;
    rc = 0;
done:
    free(w);
    free(c);
    return rc;
}

/* y = x * s + b, per feature, composed in double into one scale layer:
 * on the input, the graph's own preprocessing (after the engine's
 * normalization from the variables file, as exported); after a layer, an
 * elementwise affine step (tf2onnx writes Keras's BatchNormalization as Mul
 * then Add). */
static int fold_affine(mapper *mp, const sf_onnx_node *n, const double *s, int s_scalar,
                       const double *b, int b_scalar, const char *what) {
    sf_layer *l = last_layer(mp);
    if (!l || l->kind != SF_LAYER_SCALE) {
        if (!(l = add_layer(mp, n, mp->dense_seen ? "affine" : "preprocessing", SF_LAYER_SCALE)))
            return -1;
        l->scale = malloc(mp->width * sizeof *l->scale);
        l->bias = malloc(mp->width * sizeof *l->bias);
        if (!l->scale || !l->bias)
            return fail(mp, n, "out of memory");
        for (size_t i = 0; i < mp->width; i++) {
            l->scale[i] = 1.0f;
            l->bias[i] = 0.0f;
        }
    }
    for (size_t i = 0; i < mp->width; i++) {
        double si = s ? s[s_scalar ? 0 : i] : 1.0, bi = b ? b[b_scalar ? 0 : i] : 0.0;
        double ns = (double)l->scale[i] * si, nb = (double)l->bias[i] * si + bi;
        if (to_float(mp, n, ns, &l->scale[i]) < 0 || to_float(mp, n, nb, &l->bias[i]) < 0)
            return -1;
    }
    l->n_params += mp->width * 2;
    char label[128];
    snprintf(label, sizeof label, "%s '%s'", what, node_name(n));
    return fuse_class(mp, n, l, label);
}

/* Add/Sub/Mul/Div with one constant operand. */
static int do_arith(mapper *mp, const sf_onnx_node *n, const char *op) {
    int x_first = input_at(n, 0) && !strcmp(n->inputs[0], mp->cur);
    size_t ci = x_first ? 1 : 0;
    if (n->n_inputs != 2 || (input_at(n, ci) && !strcmp(n->inputs[ci], mp->cur)))
        return fail(mp, n, "needs the chain's tensor and one constant");
    sf_layer *l = last_layer(mp);
    double *c = NULL;
    int scalar = 0;
    if (vector_const(mp, n, ci, mp->width, &c, &scalar) < 0)
        return -1;
    int rc;
    /* After a Dense layer, an Add of a vector is its bias (MatMul then Add). */
    if (mp->dense_seen && !strcmp(op, "Add") && l && l->kind == SF_LAYER_DENSE &&
        l->activation == SF_ACT_LINEAR && l->n_out == mp->width) {
        rc = 0;
        if (!l->bias && !(l->bias = calloc(l->n_out, sizeof *l->bias)))
            rc = fail(mp, n, "out of memory");
        for (size_t j = 0; rc == 0 && j < l->n_out; j++)
            rc = to_float(mp, n, (double)l->bias[j] + c[scalar ? 0 : j], &l->bias[j]);
        l->n_params += scalar ? 1 : l->n_out;
        if (rc == 0)
            rc = fuse_class(mp, n, l, "Add");
    } else if (!strcmp(op, "Add")) {
        rc = fold_affine(mp, n, NULL, 0, c, scalar, op);
    } else if (!strcmp(op, "Mul")) {
        rc = fold_affine(mp, n, c, scalar, NULL, 0, op);
    } else if (!strcmp(op, "Div")) {
        if (!x_first)
            return free(c), fail(mp, n, "a constant divided by the input is not affine");
        size_t nc = scalar ? 1 : mp->width;
        for (size_t i = 0; i < nc; i++)
            if (c[i] == 0)
                return free(c), fail(mp, n, "divides by zero at index %zu", i);
        for (size_t i = 0; i < nc; i++)
            c[i] = 1.0 / c[i];
        rc = fold_affine(mp, n, c, scalar, NULL, 0, op);
    } else { /* Sub: x - c, or c - x */
        size_t nc = scalar ? 1 : mp->width;
        double minus_one = -1;
        if (x_first) {
            for (size_t i = 0; i < nc; i++)
                c[i] = -c[i];
            rc = fold_affine(mp, n, NULL, 0, c, scalar, op);
        } else {
            rc = fold_affine(mp, n, &minus_one, 1, c, scalar, op);
        }
    }
    free(c);
    return rc;
}

/* scikit-learn's Scaler (ai.onnx.ml): y = (x - offset) * scale. */
static int do_scaler(mapper *mp, const sf_onnx_node *n) {
    if (mp->dense_seen)
        return fail(mp, n, "a Scaler is supported on the input only");
    const sf_onnx_attr *off = attr(n, "offset"), *sc = attr(n, "scale");
    size_t no = off ? off->n_floats : 0, ns = sc ? sc->n_floats : 0;
    if ((no != 1 && no != mp->width && no != 0) || (ns != 1 && ns != mp->width && ns != 0))
        return fail(mp, n, "offset and scale must have 1 or %zu values (have %zu, %zu)",
                    mp->width, no, ns);
    double *s = malloc(mp->width * sizeof *s), *b = malloc(mp->width * sizeof *b);
    int rc = -1;
    if (!s || !b) {
        fail(mp, n, "out of memory");
    } else {
        for (size_t i = 0; i < mp->width; i++) {
            s[i] = ns ? sc->floats[ns == 1 ? 0 : i] : 1.0;
            b[i] = -(no ? off->floats[no == 1 ? 0 : i] : 0.0) * s[i];
        }
        rc = fold_affine(mp, n, s, 0, b, 0, "Scaler");
    }
    free(s);
    free(b);
    return rc;
}

static int do_batchnorm(mapper *mp, const sf_onnx_node *n) {
    if (need_matrix(mp, n) < 0)
        return -1;
    if (attr_int(n, "training_mode", 0) != 0)
        return fail(mp, n, "training_mode=1 is not inference");
    double eps = attr_float(n, "epsilon", 1e-5);
    double *v[4] = {NULL, NULL, NULL, NULL};
    int scalar = 0, rc = -1;
    for (size_t i = 0; i < 4; i++) {
        if (vector_const(mp, n, i + 1, mp->width, &v[i], &scalar) < 0)
            goto done;
        if (scalar) {
            fail(mp, n, "its parameters must have one value per feature");
            goto done;
        }
    }
    sf_layer *l = add_layer(mp, n, "BatchNormalization", SF_LAYER_SCALE);
    if (!l)
        goto done;
    l->scale = malloc(mp->width * sizeof *l->scale);
    l->bias = malloc(mp->width * sizeof *l->bias);
    if (!l->scale || !l->bias) {
        fail(mp, n, "out of memory");
        goto done;
    }
    l->n_params = 4 * mp->width;
    for (size_t i = 0; i < mp->width; i++) {
        double var = v[3][i] + eps;
        if (!(var > 0)) {
            fail(mp, n, "var + epsilon is not positive at index %zu", i);
            goto done;
        }
        double s = v[0][i] / sqrt(var);
        if (to_float(mp, n, s, &l->scale[i]) < 0 ||
            to_float(mp, n, v[1][i] - v[2][i] * s, &l->bias[i]) < 0)
            goto done;
    }
    mp->dense_seen = 1;
    rc = 0;
done:
    for (size_t i = 0; i < 4; i++)
        free(v[i]);
    return rc;
}

/* An activation fuses into the Dense layer right before it, as Keras's do. */
static int activation_as(mapper *mp, const sf_onnx_node *n, sf_activation a, float alpha,
                         const char *label) {
    sf_layer *l = last_layer(mp);
    if (l && l->kind == SF_LAYER_DENSE && l->activation == SF_ACT_LINEAR) {
        l->activation = a;
        l->alpha = alpha;
        return fuse_class(mp, n, l, label);
    }
    if (!(l = add_layer(mp, n, label, SF_LAYER_ACTIVATION)))
        return -1;
    l->activation = a;
    l->alpha = alpha;
    return 0;
}

static int do_activation(mapper *mp, const sf_onnx_node *n, sf_activation a, float alpha) {
    return activation_as(mp, n, a, alpha, op_of(n));
}

static int near(double a, double b) { return fabs(a - b) <= 1e-6 * fabs(b); }

static int map_activation(mapper *mp, const sf_onnx_node *n, const char *op) {
    if (!strcmp(op, "Relu"))
        return do_activation(mp, n, SF_ACT_RELU, 0);
    if (!strcmp(op, "Sigmoid"))
        return do_activation(mp, n, SF_ACT_SIGMOID, 0);
    if (!strcmp(op, "Tanh"))
        return do_activation(mp, n, SF_ACT_TANH, 0);
    if (!strcmp(op, "Softplus"))
        return do_activation(mp, n, SF_ACT_SOFTPLUS, 0);
    if (!strcmp(op, "Softsign"))
        return do_activation(mp, n, SF_ACT_SOFTSIGN, 0);
    if (!strcmp(op, "LeakyRelu"))
        return do_activation(mp, n, SF_ACT_LEAKY_RELU, (float)attr_float(n, "alpha", 0.01));
    if (!strcmp(op, "Elu"))
        return do_activation(mp, n, SF_ACT_ELU, (float)attr_float(n, "alpha", 1.0));
    if (!strcmp(op, "Selu")) {
        double a = attr_float(n, "alpha", 1.67326319217681884765625);
        double g = attr_float(n, "gamma", 1.05070102214813232421875);
        if (!near(a, 1.6732632423543772) || !near(g, 1.0507009873554805))
            return fail(mp, n, "Selu with alpha=%g, gamma=%g; only the standard constants are "
                        "supported", a, g);
        return do_activation(mp, n, SF_ACT_SELU, 0);
    }
    if (!strcmp(op, "HardSigmoid")) {
        double a = attr_float(n, "alpha", 0.2), b = attr_float(n, "beta", 0.5);
        if (near(a, 0.2) && near(b, 0.5))
            return do_activation(mp, n, SF_ACT_HARD_SIGMOID, 0);
        if (near(a, 1.0 / 6) && near(b, 0.5))
            return do_activation(mp, n, SF_ACT_HARD_SIGMOID3, 0);
        return fail(mp, n, "HardSigmoid with alpha=%g, beta=%g; supported: (0.2, 0.5) and "
                    "(1/6, 0.5)", a, b);
    }
    if (!strcmp(op, "Gelu")) {
        const sf_onnx_attr *ap = attr(n, "approximate");
        if (ap && ap->s && strcmp(ap->s, "none") != 0)
            return fail(mp, n, "approximate='%s' is not supported (only the exact form)", ap->s);
        return do_activation(mp, n, SF_ACT_GELU, 0);
    }
    return 1; /* not an activation */
}

/* ---- no-ops and shapes ---------------------------------------------------------- */

/* The int64 values of an axes/shape constant input or attribute. */
static int int_list(mapper *mp, const sf_onnx_node *n, size_t input, const char *attr_name,
                    int64_t *out, size_t *count, int *given) {
    *given = 0;
    *count = 0;
    const sf_onnx_attr *a = attr(n, attr_name);
    if (a && a->n_ints) {
        if (a->n_ints > SF_ONNX_MAX_RANK)
            return fail(mp, n, "'%s' has %zu values", attr_name, a->n_ints);
        memcpy(out, a->ints, a->n_ints * sizeof *out);
        *count = a->n_ints;
        *given = 1;
        return 0;
    }
    if (!input_at(n, input))
        return 0;
    const sf_onnx_tensor *t;
    double *v;
    size_t c;
    if (const_input(mp, n, input, 0, &t, &v, &c) < 0)
        return -1;
    if (c > SF_ONNX_MAX_RANK) {
        free(v);
        return fail(mp, n, "'%s' has %zu values", tname(t), c);
    }
    for (size_t i = 0; i < c; i++)
        out[i] = (int64_t)v[i];
    free(v);
    *count = c;
    *given = 1;
    return 0;
}

/* The features of every row stay where they are when all non-batch
 * dimensions but at most one are 1; such a shape is what the no-ops may
 * produce. */
static int layout_ok(const int64_t *shape, size_t rank, size_t width) {
    size_t prod = 1, big = 0;
    for (size_t k = 1; k < rank; k++) {
        if (shape[k] <= 0)
            return 0;
        prod *= (size_t)shape[k];
        big += shape[k] != 1;
    }
    return prod == width && big <= 1;
}

static int set_shape(mapper *mp, const sf_onnx_node *n, const int64_t *shape, size_t rank) {
    if (rank < 1 || !layout_ok(shape, rank, mp->width))
        return fail(mp, n, "changes more than the unit dimensions of [batch, %zu]", mp->width);
    memcpy(mp->shape, shape, rank * sizeof *shape);
    mp->rank = rank;
    return 0;
}

static int do_reshape(mapper *mp, const sf_onnx_node *n) {
    int64_t s[SF_ONNX_MAX_RANK];
    size_t c;
    int given;
    if (int_list(mp, n, 1, "shape", s, &c, &given) < 0)
        return -1;
    if (!given || c == 0)
        return fail(mp, n, "needs a constant shape");
    if (attr_int(n, "allowzero", 0) != 0)
        return fail(mp, n, "allowzero=1 is not supported");
    /* The first entry keeps the batch: -1, 0 (copy), or the fixed batch. */
    if (!(s[0] == -1 || s[0] == 0 || (mp->batch > 0 && s[0] == mp->batch)))
        return fail(mp, n, "shape[0]=%lld does not keep the batch dimension", (long long)s[0]);
    for (size_t k = 1; k < c; k++) {
        if (s[k] == 0 && k < mp->rank)
            s[k] = mp->shape[k];
        else if (s[k] == -1 && s[0] != -1) /* the one inferred entry: the rest of the row */
            s[k] = (int64_t)mp->width;
    }
    s[0] = -1;
    return set_shape(mp, n, s, c);
}

static int do_squeeze(mapper *mp, const sf_onnx_node *n, int unsqueeze) {
    int64_t axes[SF_ONNX_MAX_RANK], s[SF_ONNX_MAX_RANK];
    size_t c, rank = 0;
    int given;
    if (int_list(mp, n, 1, "axes", axes, &c, &given) < 0)
        return -1;
    size_t out_rank = unsqueeze ? mp->rank + c : mp->rank;
    if (unsqueeze && (!given || out_rank > SF_ONNX_MAX_RANK))
        return fail(mp, n, "needs constant axes");
    unsigned mask = 0;
    for (size_t i = 0; i < c; i++) {
        int64_t a = axes[i] < 0 ? axes[i] + (int64_t)out_rank : axes[i];
        if (a <= 0 || a >= (int64_t)out_rank)
            return fail(mp, n, "axis %lld would move the batch dimension or is out of range",
                        (long long)axes[i]);
        if (mask & (1u << a))
            return fail(mp, n, "axis %lld is given twice", (long long)axes[i]);
        mask |= 1u << a;
    }
    if (unsqueeze) {
        for (size_t k = 0, j = 0; k < out_rank; k++)
            s[rank++] = (mask >> k) & 1 ? 1 : mp->shape[j++];
    } else {
        for (size_t k = 0; k < mp->rank; k++) {
            int drop = given ? (mask >> k) & 1 : k > 0 && mp->shape[k] == 1;
            if (drop && mp->shape[k] != 1)
                return fail(mp, n, "axis %zu has size %lld, not 1", k, (long long)mp->shape[k]);
            if (!drop)
                s[rank++] = mp->shape[k];
        }
    }
    return set_shape(mp, n, s, rank);
}

/* 0 when n is a no-op here (shape tracked), 1 when n is not a no-op kind. */
static int map_noop(mapper *mp, const sf_onnx_node *n, const char *op) {
    int rc;
    if (!strcmp(op, "Identity")) {
        rc = 0;
    } else if (!strcmp(op, "Dropout")) {
        const char *tm = input_at(n, 2);
        const sf_onnx_tensor *t;
        double *v = NULL;
        size_t c;
        if (tm && (const_input(mp, n, 2, 0, &t, &v, &c) < 0 || (c >= 1 && v[0] != 0))) {
            if (v) {
                free(v);
                return fail(mp, n, "training_mode is true");
            }
            return -1;
        }
        free(v);
        rc = 0;
    } else if (!strcmp(op, "Cast")) {
        int64_t to = attr_int(n, "to", 0);
        if (to != SF_ONNX_FLOAT)
            return fail(mp, n, "a cast to %s is not supported (float only)", type_name((int)to));
        rc = 0;
    } else if (!strcmp(op, "Flatten")) {
        int64_t axis = attr_int(n, "axis", 1);
        if (axis < 0)
            axis += (int64_t)mp->rank;
        if (axis != 1)
            return fail(mp, n, "axis %lld would merge the batch dimension", (long long)axis);
        int64_t s[2] = {-1, (int64_t)mp->width};
        rc = set_shape(mp, n, s, 2);
    } else if (!strcmp(op, "Reshape")) {
        rc = do_reshape(mp, n);
    } else if (!strcmp(op, "Squeeze")) {
        rc = do_squeeze(mp, n, 0);
    } else if (!strcmp(op, "Unsqueeze")) {
        rc = do_squeeze(mp, n, 1);
    } else {
        return 1;
    }
    if (rc < 0)
        return -1;
    /* Shown by inspect, computed as nothing. */
    char cls[96];
    snprintf(cls, sizeof cls, "%s (no-op)", op);
    return add_layer(mp, n, cls, SF_LAYER_IDENTITY) ? 0 : -1;
}

/* ---- heads and patterns ------------------------------------------------------------- */

static int do_softmax(mapper *mp, const sf_onnx_node *n, int log) {
    int64_t axis = attr_int(n, "axis", mp->g.opset >= 13 ? -1 : 1);
    if (axis < 0)
        axis += (int64_t)mp->rank;
    /* Before opset 13 the axis flattens [d0..d(axis-1)] x [the rest]: on
     * [batch, features] axis 1 is the class axis in both definitions. */
    if (mp->rank != 2 || axis != 1)
        return fail(mp, n, "axis %lld on a rank-%zu tensor is not the class axis of "
                    "[batch, classes]", (long long)attr_int(n, "axis", 0), mp->rank);
    if (do_activation(mp, n, SF_ACT_SOFTMAX, 0) < 0)
        return -1;
    if (log) /* sigflow serves probabilities: exp of LogSoftmax is Softmax */
        return fuse_class(mp, n, last_layer(mp), "served as exp");
    mp->head = 1;
    return 0;
}

static int is_op(const sf_onnx_node *n, const char *op) {
    return n->op_type && !strcmp(n->op_type, op) && (!n->domain || !*n->domain ||
                                                      !strcmp(n->domain, "ai.onnx"));
}

/* A constant with a single value equal to v (within float rounding). */
static int const_is(mapper *mp, const char *name, double v) {
    sf_onnx_tensor *t = constant(mp, name);
    if (!t)
        return 0;
    double *x;
    size_t c;
    /* A failure here only means "not the pattern"; its message is overwritten. */
    int ok = values(mp, NULL, t, 1, &x, &c) == 0 && c == 1 && fabs(x[0] - v) <= 1e-6 * fabs(v);
    free(x);
    return ok;
}

/* The other input of a two-input node, given one. */
static const char *other_input(const sf_onnx_node *n, const char *one) {
    if (n->n_inputs != 2 || !n->inputs[0] || !n->inputs[1])
        return NULL;
    if (!strcmp(n->inputs[0], one))
        return n->inputs[1];
    if (!strcmp(n->inputs[1], one))
        return n->inputs[0];
    return NULL;
}

/* The single consumer of `name`, or NULL. */
static const sf_onnx_node *sole(const mapper *mp, const char *name, size_t *idx) {
    size_t i[2];
    if (consumers(mp, name, i, 2) != 1 || is_output(mp, name))
        return NULL;
    *idx = i[0];
    return &mp->g.nodes[i[0]];
}

/* Exporters before opset 20 write GELU as x * 0.5 * (1 + erf(x / sqrt 2)),
 * in one of three orders. cur feeds exactly two nodes: the scaled erf branch
 * and a Mul. Returns 1 and the pattern's end tensor, 0 if not the pattern. */
static int match_erf_gelu(mapper *mp, const size_t *c, const char **end, size_t *nodes,
                          size_t *n_nodes) {
    const char *x = mp->cur;
    for (int first = 0; first < 2; first++) {
        const sf_onnx_node *d = &mp->g.nodes[c[first]], *other = &mp->g.nodes[c[!first]];
        const char *k = other_input(d, x);
        int scaled = k && ((is_op(d, "Div") && !strcmp(d->inputs[0], x) && const_is(mp, k, 1.4142135623730951)) ||
                           (is_op(d, "Mul") && const_is(mp, k, 0.7071067811865476)));
        if (!scaled || d->n_outputs < 1)
            continue;
        size_t ie, ia, im, im2;
        const sf_onnx_node *e = sole(mp, d->outputs[0], &ie);
        if (!e || !is_op(e, "Erf") || e->n_outputs < 1)
            continue;
        const sf_onnx_node *a = sole(mp, e->outputs[0], &ia);
        const char *one = a ? other_input(a, e->outputs[0]) : NULL;
        if (!a || !is_op(a, "Add") || !one || !const_is(mp, one, 1.0) || a->n_outputs < 1)
            continue;
        const char *p = a->outputs[0]; /* 1 + erf */
        const sf_onnx_node *m1 = sole(mp, p, &im);
        if (!m1 || !is_op(m1, "Mul") || m1->n_outputs < 1)
            continue;
        const char *q = other_input(m1, p), *tail = NULL;
        size_t other_idx = c[!first];
        if (q && !strcmp(q, x) && other == m1) {
            /* (x * (1 + erf)) * 0.5 */
            const sf_onnx_node *m2 = sole(mp, m1->outputs[0], &im2);
            const char *h = m2 ? other_input(m2, m1->outputs[0]) : NULL;
            if (!m2 || !is_op(m2, "Mul") || !h || !const_is(mp, h, 0.5) || m2->n_outputs < 1)
                continue;
            tail = m2->outputs[0];
        } else if (q && is_op(other, "Mul") && other->n_outputs >= 1 &&
                   !strcmp(q, other->outputs[0]) && other_input(other, x) &&
                   const_is(mp, other_input(other, x), 0.5)) {
            /* (x * 0.5) * (1 + erf) */
            tail = m1->outputs[0];
            im2 = im;
        } else if (q && const_is(mp, q, 0.5)) {
            /* x * ((1 + erf) * 0.5) */
            const sf_onnx_node *m2 = sole(mp, m1->outputs[0], &im2);
            if (!m2 || m2 != other || !is_op(m2, "Mul") || m2->n_outputs < 1 ||
                !other_input(m2, x))
                continue;
            tail = m2->outputs[0];
        } else {
            continue;
        }
        size_t list[] = {c[first], ie, ia, im, other_idx, im2};
        *n_nodes = 0;
        for (size_t i = 0; i < sizeof list / sizeof list[0]; i++) {
            size_t j = 0;
            while (j < *n_nodes && nodes[j] != list[i])
                j++;
            if (j == *n_nodes)
                nodes[(*n_nodes)++] = list[i];
        }
        *end = tail;
        return 1;
    }
    return 0;
}

/* skl2onnx's binary head: p = Sigmoid(z) feeds Sub(1, p) and
 * Concat([1 - p, p], axis 1). That is the [1 - p, p] that sigflow's own
 * sigmoid head yields, so the two nodes map to nothing. */
static int match_binary_head(mapper *mp, const size_t *c, const char **end, size_t *nodes) {
    sf_layer *l = last_layer(mp);
    if (!l || l->activation != SF_ACT_SIGMOID || mp->width != 1 ||
        (l->kind != SF_LAYER_DENSE && l->kind != SF_LAYER_ACTIVATION))
        return 0;
    for (int first = 0; first < 2; first++) {
        const sf_onnx_node *s = &mp->g.nodes[c[first]], *cat = &mp->g.nodes[c[!first]];
        if (!is_op(s, "Sub") || s->n_inputs != 2 || !s->inputs[1] || strcmp(s->inputs[1], mp->cur) ||
            !const_is(mp, s->inputs[0], 1.0) || s->n_outputs < 1)
            continue;
        int64_t axis = attr_int(cat, "axis", 0);
        if (!is_op(cat, "Concat") || (axis != 1 && axis != -1) || cat->n_inputs != 2 ||
            !cat->inputs[0] || !cat->inputs[1] || strcmp(cat->inputs[0], s->outputs[0]) ||
            strcmp(cat->inputs[1], mp->cur) || cat->n_outputs < 1)
            continue;
        if (consumers(mp, s->outputs[0], NULL, 0) != 1 || is_output(mp, s->outputs[0]))
            continue;
        nodes[0] = c[first];
        nodes[1] = c[!first];
        *end = cat->outputs[0];
        return 1;
    }
    return 0;
}

/* ---- the walk ---------------------------------------------------------------------- */

static int is_initializer(const mapper *mp, const char *name) {
    for (size_t i = 0; i < mp->g.n_inits; i++)
        if (mp->g.inits[i].name && !strcmp(mp->g.inits[i].name, name))
            return 1;
    return 0;
}

/* The one graph input that is not an initializer (IR < 4 lists those too). */
static int find_input(mapper *mp, const sf_onnx_value **in) {
    *in = NULL;
    for (size_t i = 0; i < mp->g.n_inputs; i++) {
        const sf_onnx_value *v = &mp->g.inputs[i];
        if (!v->name || is_initializer(mp, v->name))
            continue;
        if (*in)
            return fail(mp, NULL, "input '%s': a second graph input (after '%s'); only one "
                        "input tensor is supported", v->name, (*in)->name);
        *in = v;
    }
    if (!*in)
        return fail(mp, NULL, "the graph has no input");
    const sf_onnx_value *v = *in;
    if (!v->is_tensor || v->elem_type != SF_ONNX_FLOAT)
        return fail(mp, NULL, "input '%s' is %s; only a float tensor is supported", v->name,
                    v->is_tensor ? type_name(v->elem_type) : "not a tensor");
    if (!v->has_shape || v->rank != 2)
        return fail(mp, NULL, "input '%s' has %s; only [batch, features] is supported", v->name,
                    v->has_shape ? "another rank" : "no shape");
    if (v->dims[1] <= 0)
        return fail(mp, NULL, "input '%s': dimension 1 is dynamic%s%s%s; only the batch "
                    "dimension may be", v->name, v->dim_params[1] ? " ('" : "",
                    v->dim_params[1] ? v->dim_params[1] : "", v->dim_params[1] ? "')" : "");
    if (v->dims[1] > (1 << 24))
        return fail(mp, NULL, "input '%s' has %lld features", v->name, (long long)v->dims[1]);
    return 0;
}

/* The graph output to serve, as a tensor name (a ZipMap's input stands for
 * the ZipMap's output). */
static int choose_output(mapper *mp, const char *want, const char **out, char *ignored,
                         size_t ignored_size) {
    const char *named = NULL, *only = NULL, *chosen = NULL, *named_out = NULL, *only_out = NULL;
    size_t n_float = 0;
    *out = NULL;
    for (size_t i = 0; i < mp->g.n_outputs; i++) {
        const sf_onnx_value *v = &mp->g.outputs[i];
        if (!v->name)
            continue;
        const char *t = v->name;
        int is_float = v->is_tensor && v->elem_type == SF_ONNX_FLOAT;
        const sf_onnx_node *p = producer(mp, v->name);
        if (!v->is_tensor && p && p->op_type && !strcmp(p->op_type, "ZipMap") && input_at(p, 0)) {
            t = p->inputs[0]; /* skl2onnx's dictionaries of the probability tensor */
            is_float = 1;
        }
        if (want && !strcmp(want, v->name)) {
            if (!is_float)
                return fail(mp, NULL, "output '%s' is not a float tensor", want);
            *out = t;
            chosen = v->name;
        }
        if (is_float) {
            n_float++;
            only = t;
            only_out = v->name;
            if (!named && (strstr(v->name, "probabilities") ||
                           strstr(v->name, "output_probability"))) {
                named = t;
                named_out = v->name;
            }
        }
    }
    if (want && !*out)
        return fail(mp, NULL, "the graph has no output named '%s'", want);
    if (!want) {
        *out = n_float == 1 ? only : named;
        chosen = n_float == 1 ? only_out : named_out;
    }
    if (!*out)
        return fail(mp, NULL, "%zu float outputs and none named like 'probabilities': choose "
                    "one with --onnx-output", n_float);
    ignored[0] = '\0';
    for (size_t i = 0; i < mp->g.n_outputs; i++) {
        const char *name = mp->g.outputs[i].name;
        size_t len = strlen(ignored);
        if (name && strcmp(name, chosen) != 0 && len < ignored_size)
            snprintf(ignored + len, ignored_size - len, "%s'%s'", len ? ", " : "", name);
    }
    return 0;
}

static int check_node(mapper *mp, const sf_onnx_node *n) {
    if (n->domain && *n->domain && strcmp(n->domain, "ai.onnx") != 0 &&
        strcmp(n->domain, "ai.onnx.ml") != 0)
        return fail(mp, n, "operator domain '%s' is not supported", n->domain);
    if (!n->op_type || !*n->op_type)
        return fail(mp, n, "no op_type");
    for (size_t i = 0; i < n->n_attrs; i++)
        if (n->attrs[i].has_graph)
            return fail(mp, n, "control flow (a subgraph attribute) is not supported");
    if (n->n_outputs < 1 || !n->outputs[0] || !*n->outputs[0])
        return fail(mp, n, "no output");
    return 0;
}

/* One step: the node (or pattern) that consumes mp->cur. */
static int step(mapper *mp) {
    size_t c[3];
    size_t k = consumers(mp, mp->cur, c, 3);
    if (k == 0)
        return fail(mp, NULL, "tensor '%s' reaches no node and is not the chosen output", mp->cur);
    if (k == 2) {
        const char *end;
        size_t nodes[6], n_nodes;
        if (match_binary_head(mp, c, &end, nodes)) {
            for (size_t i = 0; i < 2; i++)
                mp->used[nodes[i]] = 1;
            mp->width = 2;
            mp->shape[1] = 2;
            mp->head = 1;
            mp->cur = end;
            sf_layer *l = add_layer(mp, &mp->g.nodes[nodes[1]],
                                    "Sub+Concat (binary head [1 - p, p])", SF_LAYER_IDENTITY);
            if (!l)
                return -1;
            l->n_in = l->n_out = 1; /* widened to 2 by the sigmoid-head rewrite */
            return 0;
        }
        if (!mp->head && match_erf_gelu(mp, c, &end, nodes, &n_nodes)) {
            for (size_t i = 0; i < n_nodes; i++)
                mp->used[nodes[i]] = 1;
            if (activation_as(mp, &mp->g.nodes[nodes[0]], SF_ACT_GELU, 0, "GELU (erf form)") < 0)
                return -1;
            mp->cur = end;
            return 0;
        }
    }
    if (k > 1)
        return fail(mp, &mp->g.nodes[c[0]], "tensor '%s' feeds %zu nodes: not a single chain",
                    mp->cur, k);
    const sf_onnx_node *n = &mp->g.nodes[c[0]];
    if (mp->used[c[0]])
        return fail(mp, n, "the graph has a cycle");
    mp->used[c[0]] = 1;
    if (check_node(mp, n) < 0)
        return -1;
    const char *op = n->op_type;
    int ml = n->domain && !strcmp(n->domain, "ai.onnx.ml");
    /* The chain's tensor must be the data input, the others constant. */
    int data_first = input_at(n, 0) && !strcmp(n->inputs[0], mp->cur);
    int arith = !ml && (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") ||
                        !strcmp(op, "Div"));
    if (!data_first && !arith)
        return fail(mp, n, "the chain's tensor '%s' is not its first input", mp->cur);
    for (size_t i = 1; i < n->n_inputs && !arith; i++)
        if (input_at(n, i) && !strcmp(n->inputs[i], mp->cur))
            return fail(mp, n, "the chain's tensor is used twice");
    if (mp->head && !(!ml && (!strcmp(op, "Identity") || !strcmp(op, "Squeeze") ||
                              !strcmp(op, "Reshape") || !strcmp(op, "Flatten") ||
                              !strcmp(op, "Cast") || !strcmp(op, "Unsqueeze"))))
        return fail(mp, n, "comes after the output head (Softmax or sigmoid); only no-ops may");
    int rc;
    if (ml && !strcmp(op, "Scaler"))
        rc = do_scaler(mp, n);
    else if (ml)
        rc = fail(mp, n, "unsupported operator (ai.onnx.ml)");
    else if (!strcmp(op, "Gemm"))
        rc = do_dense(mp, n, 1);
    else if (!strcmp(op, "MatMul"))
        rc = do_dense(mp, n, 0);
    else if (arith)
        rc = do_arith(mp, n, op);
    else if (!strcmp(op, "BatchNormalization"))
        rc = do_batchnorm(mp, n);
    else if (!strcmp(op, "Softmax"))
        rc = do_softmax(mp, n, 0);
    else if (!strcmp(op, "LogSoftmax"))
        rc = do_softmax(mp, n, 1), mp->head = 1;
    else if ((rc = map_activation(mp, n, op)) == 1 && (rc = map_noop(mp, n, op)) == 1)
        rc = fail(mp, n, "unsupported operator");
    if (rc < 0)
        return -1;
    mp->cur = n->outputs[0];
    return 0;
}

/* Opset, producer and outputs, for inspect: kept as the first layer (an
 * identity named after the input), which every loader path carries. */
static int describe(mapper *mp, const char *input, const char *output, const char *ignored) {
    char cls[1024];
    snprintf(cls, sizeof cls, "ONNX input; opset %lld, IR %lld, producer %s %s; output '%s'%s%s",
             (long long)mp->g.opset, (long long)mp->g.ir_version,
             mp->g.producer_name && *mp->g.producer_name ? mp->g.producer_name : "(none)",
             mp->g.producer_version ? mp->g.producer_version : "", output,
             *ignored ? "; ignored outputs: " : "", ignored);
    const char *save = mp->cur;
    mp->cur = input;
    sf_layer *l = add_layer(mp, NULL, cls, SF_LAYER_IDENTITY);
    mp->cur = save;
    return l ? 0 : -1;
}

int sf_onnx_build(sf_model *m, const unsigned char *buf, size_t len, const char *path,
                  const char *output, sf_onnx_fetch fetch, void *fetch_ctx, sf_sha256 *hash,
                  char *errstr, size_t errstr_size) {
    mapper mp = {.path = path, .m = m, .hash = hash, .fetch = fetch, .fetch_ctx = fetch_ctx,
                 .errstr = errstr,
                 .errstr_size = errstr_size};
    char why[512];
    errstr[0] = '\0';
    if (sf_onnx_parse(&mp.g, buf, len, why, sizeof why) < 0) {
        snprintf(errstr, errstr_size, "%s: %s", path, why);
        return -1;
    }
    int rc = -1;
    const sf_onnx_value *in;
    const char *target;
    char ignored[512];
    if (mp.g.opset < 9 || mp.g.opset > 21) {
        fail(&mp, NULL, "opset %lld of the default domain; supported: 9 to 21",
             (long long)mp.g.opset);
        goto done;
    }
    if (mp.g.n_nodes > MAX_NODES) {
        fail(&mp, NULL, "%zu nodes; an MLP has far fewer (limit %d)", mp.g.n_nodes, MAX_NODES);
        goto done;
    }
    if (!(mp.used = calloc(mp.g.n_nodes + 1, 1))) {
        fail(&mp, NULL, "out of memory");
        goto done;
    }
    if (find_input(&mp, &in) < 0 || choose_output(&mp, output, &target, ignored,
                                                  sizeof ignored) < 0)
        goto done;
    mp.cur = in->name;
    mp.width = (size_t)in->dims[1];
    mp.rank = 2;
    mp.shape[0] = -1;
    mp.shape[1] = in->dims[1];
    mp.batch = in->dims[0];
    m->n_inputs = mp.width;
    if (describe(&mp, in->name, target, ignored) < 0)
        goto done;
    for (size_t steps = 0; strcmp(mp.cur, target) != 0; steps++) {
        if (steps > mp.g.n_nodes) {
            fail(&mp, NULL, "the walk from '%s' does not end", in->name);
            goto done;
        }
        if (step(&mp) < 0)
            goto done;
    }
    if (!mp.dense_seen) {
        fail(&mp, NULL, "no Gemm, MatMul or BatchNormalization between input '%s' and output "
             "'%s'", in->name, target);
        goto done;
    }
    for (size_t i = 0; i < m->n_layers; i++)
        m->n_params += m->layers[i].n_params;
    m->n_outputs = mp.width;
    rc = 0;
done:
    free(mp.used);
    sf_onnx_model_free(&mp.g);
    return rc;
}
