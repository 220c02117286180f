/* model_onnx.h: an ONNX graph mapped onto sigflow's layers.
 *
 * The loader's third room, beside the HDF5 and zip readers: it takes the
 * file's bytes (model_onnx_pb.c parses them), finds the single chain from the
 * one 2-D float input to the chosen output, and turns each node, or each
 * group of nodes (MatMul then Add; the erf form of GELU; skl2onnx's binary
 * head), into an sf_layer the engine computes exactly. Anything else is
 * refused with a message naming the file, the node and its op. */
#ifndef SIGFLOW_MODEL_ONNX_H
#define SIGFLOW_MODEL_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "sigflow/model.h"
#include "sha256.h"

/* Builds m's layers, n_inputs, n_outputs and n_params from the `len` bytes of
 * an ONNX file. `path` names the file in messages; its folder is where
 * external data files are looked for (none may lie outside it). `output`
 * names the graph output to serve, NULL for the default (the only float
 * output, else the one named like probabilities / output_probability).
 * External data files are read from the model's folder (sf_onnx_external_read)
 * or, with fetch, asked of it (the sandboxed loader asks the parent). The bytes
 * of external data read are added to `hash` (the model's digest covers its
 * weights wherever they are). A single sigmoid unit at the
 * end is left as it is, for the caller's binary-head rewrite. 0, or -1 with
 * "<path>: ..." in errstr. */
int sf_onnx_build(sf_model *m, const unsigned char *buf, size_t len, const char *path,
                  const char *output, sf_onnx_fetch fetch, void *fetch_ctx, sf_sha256 *hash,
                  char *errstr, size_t errstr_size);

/* One tensor's external data: nbytes at offset of the file `location`, which
 * must be relative, without "..", inside the folder of model_path once links
 * are resolved, not itself a link, a regular file, and at most
 * SF_ONNX_MAX_EXTERNAL bytes are read. 0 and *out (malloc'd), or -1 with a
 * reason (no file name prefix) in why. */
#define SF_ONNX_MAX_EXTERNAL ((int64_t)1 << 30)
int sf_onnx_external_read(const char *model_path, const char *location, int64_t offset,
                          size_t nbytes, unsigned char **out, char *why, size_t why_size);

#endif
