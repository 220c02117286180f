/* model_guard.h: what sf_model_load (the parent) and the sigflow-loader
 * program (the child, src/loader/) share: the child's entry point and the
 * descriptors it is handed. */
#ifndef SIGFLOW_MODEL_GUARD_H
#define SIGFLOW_MODEL_GUARD_H

#include "sigflow/model.h"

/* The loader's descriptors: the model file (read-only, opened by the
 * parent), the result pipe, the socket on which it asks the parent for an
 * ONNX model's external data, the architecture JSON when there is one. */
#define SF_LOADER_FD_MODEL 3
#define SF_LOADER_FD_PIPE 4
#define SF_LOADER_FD_BROKER 5
#define SF_LOADER_FD_ARCH 6

/* The refusal of a loader that could not confine itself (a sandbox cause). */
#define SF_LOADER_NO_SANDBOX "cannot confine the model loader"
/* The parent's message for a trapped system call (a sandbox cause). */
#define SF_LOADER_VIOLATION "model loader violated its sandbox"

/* Called once confined, just before parsing: test builds of the loader use it
 * to misbehave on purpose (tests/loader_probe.c); the shipped one passes NULL. */
typedef void (*sf_model_loader_hook)(const sf_model_bytes *model);

/* The loader's sf_onnx_fetch: asks the parent for external data over the
 * broker socket (ctx points to its descriptor). Test loaders use it to ask
 * for what a compromised parser would. */
int sf_loader_broker_ask(void *ctx, const char *location, long long offset, size_t nbytes,
                         unsigned char **out, char *why, size_t why_size);

/* The loader program's main. */
int sf_model_loader_main(int argc, char **argv, sf_model_loader_hook hook);

#endif
