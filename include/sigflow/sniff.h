/* sniff.h: what a file given as a model or variables looks like, for the
 * message that refuses it: "not an HDF5 file" leaves an operator guessing,
 * "it looks like an ONNX model" says what went wrong (issue 28). Only the
 * first 4 KB are read. */
#ifndef SIGFLOW_SNIFF_H
#define SIGFLOW_SNIFF_H

/* The model formats sigflow reads, for those messages. */
#define SF_SNIFF_MODEL_FORMATS                                                                   \
    "sigflow reads Keras HDF5 (.h5: a whole model, or weights with --architecture), .keras "    \
    "archives, ONNX models (.onnx) and model sets (.json with members)"

typedef enum {
    SF_SNIFF_UNREADABLE = 0, /* missing or unreadable: the caller's message says why */
    SF_SNIFF_UNKNOWN,
    SF_SNIFF_EMPTY,
    SF_SNIFF_DIRECTORY,
    SF_SNIFF_SAVEDMODEL,     /* a directory with saved_model.pb */
    SF_SNIFF_HDF5,
    SF_SNIFF_KERAS,          /* a zip named .keras */
    SF_SNIFF_ZIP,
    SF_SNIFF_GZIP,
    SF_SNIFF_ONNX,
    SF_SNIFF_TF_GRAPH,       /* .pb, .tflite */
    SF_SNIFF_SET,            /* JSON with "members" */
    SF_SNIFF_VARIABLES,      /* JSON with "inputs" */
    SF_SNIFF_ARCHITECTURE,   /* JSON with "class_name" or "config" */
    SF_SNIFF_JSON,
    SF_SNIFF_CSV,
    SF_SNIFF_TEXT,
} sf_sniff_kind;

/* What path looks like. */
sf_sniff_kind sf_sniff(const char *path);

/* The kind as a noun phrase: "an ONNX model", "a TensorFlow SavedModel
 * directory", "a variables JSON file", ...; "" for SF_SNIFF_UNREADABLE. */
const char *sf_sniff_name(sf_sniff_kind k);

#endif
