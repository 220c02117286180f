/* model_onnx_pb.h: the parts of an ONNX ModelProto that the MLP loader uses,
 * read from bytes by a small protobuf wire-format reader (model_onnx_pb.c).
 *
 * Why not protobuf-c: the loader needs about forty fields of eight messages;
 * a generated parser would bring a schema, a code generator and a run-time
 * library into the build and the loader's sandbox, to read the same bytes.
 * Every length here is checked against the buffer, every count is bounded,
 * and the parse never follows a path: it takes bytes (the sandboxed loader
 * hands it the file's contents). Strings and tensor bytes are copied out, so
 * the result outlives the buffer. */
#ifndef SIGFLOW_MODEL_ONNX_PB_H
#define SIGFLOW_MODEL_ONNX_PB_H

#include <stddef.h>
#include <stdint.h>

/* Bounds no MLP comes near and a hostile file's claims do. */
#define SF_ONNX_MAX_BYTES ((size_t)2 << 30)      /* protobuf's own limit: 2 GiB */
#define SF_ONNX_MAX_ITEMS ((size_t)1 << 20)      /* nodes, tensors, values, attributes... */
#define SF_ONNX_MAX_ELEMENTS ((size_t)1 << 26)   /* elements of one tensor */
#define SF_ONNX_MAX_RANK 8

/* TensorProto.DataType values the loader knows by name. */
enum {
    SF_ONNX_FLOAT = 1, SF_ONNX_UINT8 = 2, SF_ONNX_INT8 = 3, SF_ONNX_INT32 = 6,
    SF_ONNX_INT64 = 7, SF_ONNX_STRING = 8, SF_ONNX_BOOL = 9, SF_ONNX_FLOAT16 = 10,
    SF_ONNX_DOUBLE = 11, SF_ONNX_BFLOAT16 = 16
};

/* AttributeProto.AttributeType */
enum { SF_ONNX_ATTR_FLOAT = 1, SF_ONNX_ATTR_INT = 2, SF_ONNX_ATTR_STRING = 3,
       SF_ONNX_ATTR_TENSOR = 4, SF_ONNX_ATTR_GRAPH = 5, SF_ONNX_ATTR_FLOATS = 6,
       SF_ONNX_ATTR_INTS = 7 };

typedef struct sf_onnx_tensor {
    char *name;
    int data_type;
    size_t rank;
    int64_t dims[SF_ONNX_MAX_RANK];
    /* One of: raw bytes (raw_data), typed values (float_data, double_data,
     * int32_data, int64_data, widened to double; int64 beyond 2^53 is refused
     * where it matters, in shapes), or an external location. */
    unsigned char *raw;
    size_t raw_len;
    int has_raw;
    double *typed;
    size_t n_typed;
    int external;            /* data_location EXTERNAL */
    char *ext_location;      /* external_data "location", "offset", "length" */
    int64_t ext_offset, ext_length;
} sf_onnx_tensor;

typedef struct sf_onnx_attr {
    char *name;
    int type;                /* SF_ONNX_ATTR_*, 0 when the file gives none */
    double f;
    int64_t i;
    char *s;                 /* NUL-terminated copy of the bytes */
    sf_onnx_tensor *t;
    int has_graph;           /* a subgraph (control flow): always refused */
    double *floats;
    size_t n_floats;
    int64_t *ints;
    size_t n_ints;
} sf_onnx_attr;

typedef struct sf_onnx_node {
    char *name, *op_type, *domain;
    char **inputs, **outputs; /* "" is an omitted optional input */
    size_t n_inputs, n_outputs;
    sf_onnx_attr *attrs;
    size_t n_attrs;
} sf_onnx_node;

/* A graph input or output (ValueInfoProto) with its tensor type. */
typedef struct sf_onnx_value {
    char *name;
    int is_tensor;           /* 0: sequence, map, ... (skl2onnx's ZipMap output) */
    int elem_type;
    int has_shape;
    size_t rank;
    int64_t dims[SF_ONNX_MAX_RANK]; /* -1: symbolic (dim_param) or unset */
    char *dim_params[SF_ONNX_MAX_RANK];
} sf_onnx_value;

typedef struct sf_onnx_model {
    int64_t ir_version;
    char *producer_name, *producer_version;
    int64_t opset;           /* of the default domain, 0 when not imported */
    int64_t opset_ml;        /* of ai.onnx.ml */
    size_t n_other_domains;  /* opset imports of any other domain */
    char *first_other_domain;
    int has_graph;
    sf_onnx_node *nodes;
    size_t n_nodes;
    sf_onnx_tensor *inits;
    size_t n_inits;
    int n_sparse_inits;      /* sparse_initializer: refused when used */
    sf_onnx_value *inputs, *outputs;
    size_t n_inputs, n_outputs;
    int n_functions;         /* model-local functions: refused when used */
} sf_onnx_model;

/* 1 when `n` leading bytes look like the start of a ModelProto (a known
 * field number with its wire type), 0 otherwise. A hint for telling formats
 * apart by content; the parse decides. */
int sf_onnx_sniff(const unsigned char *p, size_t n);

/* Parses `len` bytes. 0, or -1 with a reason (no file name) in errstr. */
int sf_onnx_parse(sf_onnx_model *m, const unsigned char *buf, size_t len, char *errstr,
                  size_t errstr_size);
void sf_onnx_model_free(sf_onnx_model *m);

#endif
