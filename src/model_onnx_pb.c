/* model_onnx_pb.c: the protobuf wire-format reader behind the ONNX loader.
 *
 * It exists so that an ONNX file is read by code that checks every length it
 * meets against the bytes it has (model_onnx_pb.h says why not protobuf-c).
 * The reader knows the field numbers of onnx.proto (IR 3 to 10) for the
 * messages the MLP subset needs and skips every other field, as protobuf
 * readers do; unknown wire types, lengths past the end and counts past the
 * bounds are errors. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_onnx_pb.h"

typedef struct rd {
    const unsigned char *p;
    size_t len, pos;
    size_t base;             /* offset of p in the whole file, for messages */
    char *errstr;
    size_t errstr_size;
    int *failed;
} rd;

__attribute__((format(printf, 2, 3)))
static int bad(rd *r, const char *fmt, ...) {
    if (*r->failed)
        return -1;
    *r->failed = 1;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(r->errstr, r->errstr_size, "not a valid ONNX file: %s (at byte %zu)", why,
             r->base + r->pos);
    return -1;
}

static int more(const rd *r) { return !*r->failed && r->pos < r->len; }

static int varint(rd *r, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->pos >= r->len)
            return bad(r, "truncated varint");
        unsigned char b = r->p[r->pos++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
    }
    return bad(r, "varint longer than 10 bytes");
}

static int tag(rd *r, uint32_t *field, int *wt) {
    uint64_t t;
    if (varint(r, &t) < 0)
        return -1;
    *field = (uint32_t)(t >> 3);
    *wt = (int)(t & 7);
    if ((t >> 3) == 0 || (t >> 3) > 0x1fffffff)
        return bad(r, "field number %llu", (unsigned long long)(t >> 3));
    return 0;
}

/* A length-delimited field: the sub-reader over its bytes. */
static int sub(rd *r, rd *s) {
    uint64_t n;
    if (varint(r, &n) < 0)
        return -1;
    if (n > r->len - r->pos)
        return bad(r, "a field of %llu bytes runs past the end (%zu left)",
                   (unsigned long long)n, r->len - r->pos);
    *s = *r;
    s->p = r->p + r->pos;
    s->len = (size_t)n;
    s->pos = 0;
    s->base = r->base + r->pos;
    r->pos += (size_t)n;
    return 0;
}

static int skip(rd *r, int wt) {
    uint64_t v;
    rd s;
    switch (wt) {
    case 0: return varint(r, &v);
    case 1:
        if (r->len - r->pos < 8)
            return bad(r, "truncated fixed64");
        r->pos += 8;
        return 0;
    case 2: return sub(r, &s);
    case 5:
        if (r->len - r->pos < 4)
            return bad(r, "truncated fixed32");
        r->pos += 4;
        return 0;
    default: return bad(r, "wire type %d (groups are not used by ONNX)", wt);
    }
}

static int want(rd *r, int wt, int expected, const char *what) {
    if (wt != expected)
        return bad(r, "%s has wire type %d, expected %d", what, wt, expected);
    return 0;
}

static int int_field(rd *r, int wt, const char *what, int64_t *out) {
    uint64_t v;
    if (want(r, wt, 0, what) < 0 || varint(r, &v) < 0)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static float get_f32(const unsigned char *p) {
    float f;
    memcpy(&f, p, 4); /* little-endian file, little-endian host (x86-64, arm64) */
    return f;
}

static double get_f64(const unsigned char *p) {
    double d;
    memcpy(&d, p, 8);
    return d;
}

/* A string or bytes field as a NUL-terminated copy. */
static int str_field(rd *r, int wt, const char *what, char **out) {
    rd s;
    if (want(r, wt, 2, what) < 0 || sub(r, &s) < 0)
        return -1;
    if (memchr(s.p, 0, s.len))
        return bad(r, "%s contains a NUL byte", what);
    char *c = malloc(s.len + 1);
    if (!c)
        return bad(r, "out of memory");
    memcpy(c, s.p, s.len);
    c[s.len] = '\0';
    free(*out); /* a repeated scalar field: the last one wins, as in protobuf */
    *out = c;
    return 0;
}

/* Appends a zeroed item to a growable array of `size`-byte items, bounded by
 * `max`; capacities are powers of two. On failure *arr is left as it was. */
static void *grow(rd *r, void **arr, size_t *n, size_t size, size_t max) {
    if (*n >= max) {
        bad(r, "more than %zu items", max);
        return NULL;
    }
    if ((*n & (*n - 1)) == 0) { /* 0 or a power of two: full */
        void *bigger = realloc(*arr, (*n ? *n * 2 : 1) * size);
        if (!bigger) {
            bad(r, "out of memory");
            return NULL;
        }
        *arr = bigger;
    }
    char *item = (char *)*arr + *n * size;
    memset(item, 0, size);
    ++*n;
    return item;
}

#define PUSH(r, arr, n, max) grow((r), (void **)&(arr), &(n), sizeof *(arr), (max))

/* Repeated numbers, packed or one per field, widened to double. kind: 'f'
 * float (fixed32), 'd' double (fixed64), 'i' signed varint (int32/int64). */
static int numbers(rd *r, int wt, char kind, double **vals, size_t *n, size_t max) {
    rd s;
    int packed = wt == 2;
    if (packed) {
        if (sub(r, &s) < 0)
            return -1;
    } else {
        int expected = kind == 'f' ? 5 : kind == 'd' ? 1 : 0;
        if (want(r, wt, expected, "a repeated number") < 0)
            return -1;
        s = *r;
    }
    do {
        double v;
        if (kind == 'f' || kind == 'd') {
            size_t w = kind == 'f' ? 4 : 8;
            if (s.len - s.pos < w)
                return bad(&s, "truncated %s", kind == 'f' ? "float" : "double");
            v = kind == 'f' ? get_f32(s.p + s.pos) : get_f64(s.p + s.pos);
            s.pos += w;
        } else {
            uint64_t u;
            if (varint(&s, &u) < 0)
                return -1;
            v = (double)(int64_t)u;
        }
        double *slot = PUSH(&s, *vals, *n, max);
        if (!slot)
            return -1;
        *slot = v;
    } while (packed && more(&s));
    if (!packed)
        r->pos = s.pos;
    return 0;
}

/* Repeated int64 kept exact (dims, ints attributes). */
static int int64s(rd *r, int wt, int64_t **vals, size_t *n, size_t max) {
    rd s;
    int packed = wt == 2;
    if (packed) {
        if (sub(r, &s) < 0)
            return -1;
    } else {
        if (want(r, wt, 0, "a repeated integer") < 0)
            return -1;
        s = *r;
    }
    do {
        uint64_t u;
        if (varint(&s, &u) < 0)
            return -1;
        int64_t *slot = PUSH(&s, *vals, *n, max);
        if (!slot)
            return -1;
        *slot = (int64_t)u;
    } while (packed && more(&s));
    if (!packed)
        r->pos = s.pos;
    return 0;
}

/* ---- messages ------------------------------------------------------------------- */

/* StringStringEntryProto of external_data. */
static int parse_ext_entry(rd *r, sf_onnx_tensor *t) {
    char *key = NULL, *value = NULL;
    while (more(r)) {
        uint32_t f;
        int wt;
        if (tag(r, &f, &wt) < 0)
            break;
        if (f == 1)
            str_field(r, wt, "external_data key", &key);
        else if (f == 2)
            str_field(r, wt, "external_data value", &value);
        else
            skip(r, wt);
    }
    if (!*r->failed && key && value) {
        char *end;
        if (!strcmp(key, "location")) {
            free(t->ext_location);
            t->ext_location = value;
            value = NULL;
        } else if (!strcmp(key, "offset") || !strcmp(key, "length")) {
            long long v = strtoll(value, &end, 10);
            if (!*value || *end || v < 0)
                bad(r, "external_data %s '%s' is not a byte count", key, value);
            else if (key[0] == 'o')
                t->ext_offset = v;
            else
                t->ext_length = v;
        }
    }
    free(key);
    free(value);
    return *r->failed ? -1 : 0;
}

static int parse_tensor(rd *r, sf_onnx_tensor *t) {
    int64_t *dims = NULL;
    size_t n_dims = 0;
    t->ext_length = -1;
    while (more(r)) {
        uint32_t f;
        int wt;
        int64_t v;
        rd s;
        if (tag(r, &f, &wt) < 0)
            break;
        switch (f) {
        case 1: int64s(r, wt, &dims, &n_dims, SF_ONNX_MAX_RANK + 1); break;
        case 2:
            if (int_field(r, wt, "data_type", &v) == 0)
                t->data_type = (int)v;
            break;
        case 4: numbers(r, wt, 'f', &t->typed, &t->n_typed, SF_ONNX_MAX_ELEMENTS); break;
        case 5: /* int32_data; also carries float16 and bfloat16 bits, refused later */
        case 7: numbers(r, wt, 'i', &t->typed, &t->n_typed, SF_ONNX_MAX_ELEMENTS); break;
        case 10: numbers(r, wt, 'd', &t->typed, &t->n_typed, SF_ONNX_MAX_ELEMENTS); break;
        case 8: str_field(r, wt, "tensor name", &t->name); break;
        case 9:
            if (want(r, wt, 2, "raw_data") < 0 || sub(r, &s) < 0)
                break;
            free(t->raw);
            t->raw = malloc(s.len ? s.len : 1);
            if (!t->raw) {
                bad(r, "out of memory");
                break;
            }
            memcpy(t->raw, s.p, s.len);
            t->raw_len = s.len;
            t->has_raw = 1;
            break;
        case 13:
            if (want(r, wt, 2, "external_data") == 0 && sub(r, &s) == 0)
                parse_ext_entry(&s, t);
            break;
        case 14:
            if (int_field(r, wt, "data_location", &v) == 0)
                t->external = v == 1;
            break;
        default: skip(r, wt); break;
        }
    }
    if (!*r->failed && n_dims > SF_ONNX_MAX_RANK)
        bad(r, "tensor '%s' has more than %d dimensions", t->name ? t->name : "",
            SF_ONNX_MAX_RANK);
    if (!*r->failed) {
        t->rank = n_dims;
        if (n_dims)
            memcpy(t->dims, dims, n_dims * sizeof *dims);
    }
    free(dims);
    return *r->failed ? -1 : 0;
}

static int parse_attr(rd *r, sf_onnx_attr *a) {
    while (more(r)) {
        uint32_t f;
        int wt;
        int64_t v;
        rd s;
        if (tag(r, &f, &wt) < 0)
            break;
        switch (f) {
        case 1: str_field(r, wt, "attribute name", &a->name); break;
        case 20:
            if (int_field(r, wt, "attribute type", &v) == 0)
                a->type = (int)v;
            break;
        case 2:
            if (want(r, wt, 5, "attribute f") == 0) {
                if (r->len - r->pos < 4) {
                    bad(r, "truncated float");
                    break;
                }
                a->f = get_f32(r->p + r->pos);
                r->pos += 4;
            }
            break;
        case 3: int_field(r, wt, "attribute i", &a->i); break;
        case 4: str_field(r, wt, "attribute s", &a->s); break;
        case 5:
            if (want(r, wt, 2, "attribute t") < 0 || sub(r, &s) < 0)
                break;
            if (a->t) {
                bad(r, "attribute with two tensors");
                break;
            }
            if (!(a->t = calloc(1, sizeof *a->t))) {
                bad(r, "out of memory");
                break;
            }
            parse_tensor(&s, a->t);
            break;
        case 6:  /* g */
        case 11: /* graphs */
            a->has_graph = 1;
            skip(r, wt);
            break;
        case 7: numbers(r, wt, 'f', &a->floats, &a->n_floats, SF_ONNX_MAX_ELEMENTS); break;
        case 8: int64s(r, wt, &a->ints, &a->n_ints, SF_ONNX_MAX_ITEMS); break;
        default: skip(r, wt); break;
        }
    }
    return *r->failed ? -1 : 0;
}

static int parse_node(rd *r, sf_onnx_node *n) {
    while (more(r)) {
        uint32_t f;
        int wt;
        rd s;
        char **slot;
        sf_onnx_attr *a;
        if (tag(r, &f, &wt) < 0)
            break;
        switch (f) {
        case 1:
            if ((slot = PUSH(r, n->inputs, n->n_inputs, SF_ONNX_MAX_ITEMS)))
                str_field(r, wt, "node input", slot);
            break;
        case 2:
            if ((slot = PUSH(r, n->outputs, n->n_outputs, SF_ONNX_MAX_ITEMS)))
                str_field(r, wt, "node output", slot);
            break;
        case 3: str_field(r, wt, "node name", &n->name); break;
        case 4: str_field(r, wt, "op_type", &n->op_type); break;
        case 7: str_field(r, wt, "node domain", &n->domain); break;
        case 5:
            if (want(r, wt, 2, "attribute") == 0 && sub(r, &s) == 0 &&
                (a = PUSH(r, n->attrs, n->n_attrs, SF_ONNX_MAX_ITEMS)))
                parse_attr(&s, a);
            break;
        default: skip(r, wt); break;
        }
    }
    return *r->failed ? -1 : 0;
}

/* TensorShapeProto.Dimension */
static int parse_dim(rd *r, sf_onnx_value *v) {
    size_t k = v->rank++;
    v->dims[k] = -1;
    while (more(r)) {
        uint32_t f;
        int wt;
        int64_t d;
        if (tag(r, &f, &wt) < 0)
            break;
        if (f == 1 && int_field(r, wt, "dim_value", &d) == 0)
            v->dims[k] = d < 0 ? -1 : d;
        else if (f == 2)
            str_field(r, wt, "dim_param", &v->dim_params[k]);
        else if (f != 1)
            skip(r, wt);
    }
    return *r->failed ? -1 : 0;
}

/* ValueInfoProto, with TypeProto.Tensor and its TensorShapeProto inlined. */
static int parse_value(rd *r, sf_onnx_value *v) {
    while (more(r)) {
        uint32_t f;
        int wt;
        rd type, tensor, shape, dim;
        if (tag(r, &f, &wt) < 0)
            break;
        if (f == 1) {
            str_field(r, wt, "value name", &v->name);
            continue;
        }
        if (f != 2) {
            skip(r, wt);
            continue;
        }
        if (want(r, wt, 2, "value type") < 0 || sub(r, &type) < 0)
            break;
        while (more(&type)) {
            if (tag(&type, &f, &wt) < 0)
                break;
            if (f != 1) { /* sequence_type, map_type, ...: not a tensor */
                skip(&type, wt);
                continue;
            }
            if (want(&type, wt, 2, "tensor_type") < 0 || sub(&type, &tensor) < 0)
                break;
            v->is_tensor = 1;
            while (more(&tensor)) {
                int64_t e;
                if (tag(&tensor, &f, &wt) < 0)
                    break;
                if (f == 1 && int_field(&tensor, wt, "elem_type", &e) == 0) {
                    v->elem_type = (int)e;
                } else if (f == 2) {
                    if (want(&tensor, wt, 2, "shape") < 0 || sub(&tensor, &shape) < 0)
                        break;
                    v->has_shape = 1;
                    while (more(&shape)) {
                        if (tag(&shape, &f, &wt) < 0)
                            break;
                        if (f != 1) {
                            skip(&shape, wt);
                            continue;
                        }
                        if (v->rank >= SF_ONNX_MAX_RANK) {
                            bad(&shape, "value '%s' has more than %d dimensions",
                                v->name ? v->name : "", SF_ONNX_MAX_RANK);
                            break;
                        }
                        if (want(&shape, wt, 2, "dim") == 0 && sub(&shape, &dim) == 0)
                            parse_dim(&dim, v);
                    }
                } else if (f != 1) {
                    skip(&tensor, wt);
                }
            }
        }
    }
    return *r->failed ? -1 : 0;
}

static int parse_graph(rd *r, sf_onnx_model *m) {
    while (more(r)) {
        uint32_t f;
        int wt;
        rd s;
        void *item;
        if (tag(r, &f, &wt) < 0)
            break;
        if (f != 1 && f != 5 && f != 11 && f != 12 && f != 15) {
            skip(r, wt);
            continue;
        }
        if (want(r, wt, 2, "graph member") < 0 || sub(r, &s) < 0)
            break;
        switch (f) {
        case 1:
            if ((item = PUSH(r, m->nodes, m->n_nodes, SF_ONNX_MAX_ITEMS)))
                parse_node(&s, item);
            break;
        case 5:
            if ((item = PUSH(r, m->inits, m->n_inits, SF_ONNX_MAX_ITEMS)))
                parse_tensor(&s, item);
            break;
        case 11:
            if ((item = PUSH(r, m->inputs, m->n_inputs, SF_ONNX_MAX_ITEMS)))
                parse_value(&s, item);
            break;
        case 12:
            if ((item = PUSH(r, m->outputs, m->n_outputs, SF_ONNX_MAX_ITEMS)))
                parse_value(&s, item);
            break;
        case 15: m->n_sparse_inits++; break;
        }
    }
    return *r->failed ? -1 : 0;
}

static int parse_opset(rd *r, sf_onnx_model *m) {
    char *domain = NULL;
    int64_t version = 0;
    while (more(r)) {
        uint32_t f;
        int wt;
        if (tag(r, &f, &wt) < 0)
            break;
        if (f == 1)
            str_field(r, wt, "opset domain", &domain);
        else if (f == 2)
            int_field(r, wt, "opset version", &version);
        else
            skip(r, wt);
    }
    if (!*r->failed) {
        if (!domain || !*domain || !strcmp(domain, "ai.onnx")) {
            m->opset = version;
        } else if (!strcmp(domain, "ai.onnx.ml")) {
            m->opset_ml = version;
        } else {
            if (!m->first_other_domain) {
                m->first_other_domain = domain;
                domain = NULL;
            }
            m->n_other_domains++;
        }
    }
    free(domain);
    return *r->failed ? -1 : 0;
}

int sf_onnx_sniff(const unsigned char *p, size_t n) {
    if (n < 2)
        return 0;
    /* ir_version (varint), producer strings, graph, opset_import: what
     * exporters write first. */
    switch (p[0]) {
    case 0x08: return p[1] >= 1 && p[1] <= 20;
    case 0x12: case 0x1a: case 0x3a: case 0x42: return 1;
    default: return 0;
    }
}

int sf_onnx_parse(sf_onnx_model *m, const unsigned char *buf, size_t len, char *errstr,
                  size_t errstr_size) {
    int failed = 0;
    rd r = {.p = buf, .len = len, .errstr = errstr, .errstr_size = errstr_size,
            .failed = &failed};
    memset(m, 0, sizeof *m);
    if (len > SF_ONNX_MAX_BYTES)
        return bad(&r, "larger than protobuf's 2 GiB limit");
    while (more(&r)) {
        uint32_t f;
        int wt;
        rd s;
        if (tag(&r, &f, &wt) < 0)
            break;
        switch (f) {
        case 1: int_field(&r, wt, "ir_version", &m->ir_version); break;
        case 2: str_field(&r, wt, "producer_name", &m->producer_name); break;
        case 3: str_field(&r, wt, "producer_version", &m->producer_version); break;
        case 7:
            if (want(&r, wt, 2, "graph") < 0 || sub(&r, &s) < 0)
                break;
            if (m->has_graph) {
                bad(&r, "two graphs");
                break;
            }
            m->has_graph = 1;
            parse_graph(&s, m);
            break;
        case 8:
            if (want(&r, wt, 2, "opset_import") == 0 && sub(&r, &s) == 0)
                parse_opset(&s, m);
            break;
        case 25: m->n_functions++; skip(&r, wt); break;
        default: skip(&r, wt); break;
        }
    }
    if (!failed && !m->has_graph)
        bad(&r, "no graph");
    if (failed) {
        sf_onnx_model_free(m);
        return -1;
    }
    return 0;
}

static void free_tensor(sf_onnx_tensor *t) {
    free(t->name);
    free(t->raw);
    free(t->typed);
    free(t->ext_location);
}

static void free_value(sf_onnx_value *v) {
    free(v->name);
    for (size_t k = 0; k < SF_ONNX_MAX_RANK; k++)
        free(v->dim_params[k]);
}

static void free_strings(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void sf_onnx_model_free(sf_onnx_model *m) {
    if (!m)
        return;
    for (size_t i = 0; i < m->n_nodes; i++) {
        sf_onnx_node *n = &m->nodes[i];
        free(n->name);
        free(n->op_type);
        free(n->domain);
        free_strings(n->inputs, n->n_inputs);
        free_strings(n->outputs, n->n_outputs);
        for (size_t j = 0; j < n->n_attrs; j++) {
            sf_onnx_attr *a = &n->attrs[j];
            free(a->name);
            free(a->s);
            if (a->t)
                free_tensor(a->t);
            free(a->t);
            free(a->floats);
            free(a->ints);
        }
        free(n->attrs);
    }
    free(m->nodes);
    for (size_t i = 0; i < m->n_inits; i++)
        free_tensor(&m->inits[i]);
    free(m->inits);
    for (size_t i = 0; i < m->n_inputs; i++)
        free_value(&m->inputs[i]);
    free(m->inputs);
    for (size_t i = 0; i < m->n_outputs; i++)
        free_value(&m->outputs[i]);
    free(m->outputs);
    free(m->producer_name);
    free(m->producer_version);
    free(m->first_other_domain);
    memset(m, 0, sizeof *m);
}
