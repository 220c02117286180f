/* model_keras.h: the Keras 3 `.keras` archive (a zip of config.json,
 * metadata.json and model.weights.h5), opened so the loader can treat it like
 * any other model: the architecture as text and the weights as an HDF5 file. */
#ifndef SIGFLOW_MODEL_KERAS_H
#define SIGFLOW_MODEL_KERAS_H

#include <stddef.h>
#include <hdf5.h>

/* Refusal limits: no MLP comes near them, a hostile archive's claims do. */
#define SF_KERAS_MAX_MEMBER ((unsigned long long)1 << 30) /* 1 GiB */
#define SF_KERAS_MAX_TOTAL ((unsigned long long)4 << 30)  /* 4 GiB */

typedef struct sf_keras_archive {
    char *config;            /* config.json, NUL-terminated */
    size_t config_len;
    char *keras_version;     /* from metadata.json; NULL when it names none */
    hid_t weights;           /* model.weights.h5, an in-memory HDF5 file */
} sf_keras_archive;

/* 1 when data[0..len) starts with a zip signature, 0 otherwise. */
int sf_keras_is_zip(const void *data, size_t len);

/* Opens the archive whose bytes are data[0..len) (borrowed until
 * sf_keras_open returns); `path` names it in messages. Refuses, naming the file and the member: a non-zip or damaged
 * zip, a member over SF_KERAS_MAX_MEMBER, members adding up to more than
 * SF_KERAS_MAX_TOTAL, a missing member, malformed metadata.json, a weights
 * member that is not HDF5. Messages start with the path. 0 or -1. */
int sf_keras_open(sf_keras_archive *a, const char *path, const void *data, size_t len,
                  char *errstr, size_t errstr_size);

void sf_keras_close(sf_keras_archive *a);

#endif
