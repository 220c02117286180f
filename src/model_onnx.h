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

#include "sigflow/model.h"
#include "sha256.h"

/* Builds m's layers, n_inputs, n_outputs and n_params from the `len` bytes of
 * an ONNX file. `path` names the file in messages; its folder is where
 * external data files are looked for (none may lie outside it). `output`
 * names the graph output to serve, NULL for the default (the only float
 * output, else the one named like probabilities / output_probability).
 * External data files are read only with SF_ONNX_EXTERNAL_READ; otherwise a
 * tensor stored in one is refused with a message containing
 * SF_ONNX_EXTERNAL_SANDBOXED that says how to re-save the model. The bytes of external data files read are added to `hash` (the model's
 * digest covers its weights wherever they are). A single sigmoid unit at the
 * end is left as it is, for the caller's binary-head rewrite. 0, or -1 with
 * "<path>: ..." in errstr. */
#define SF_ONNX_EXTERNAL_SANDBOXED "the sandboxed model loader cannot open"
int sf_onnx_build(sf_model *m, const unsigned char *buf, size_t len, const char *path,
                  const char *output, sf_onnx_external external, sf_sha256 *hash,
                  char *errstr, size_t errstr_size);

#endif
