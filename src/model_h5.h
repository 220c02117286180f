/* model_h5.h: the few HDF5 reads the Keras loader needs (open, string
 * attributes of either storage kind, float datasets), each failing with a short
 * reason in errstr instead of HDF5's own error stack. */
#ifndef SIGFLOW_MODEL_H5_H
#define SIGFLOW_MODEL_H5_H

#include <stddef.h>
#include <hdf5.h>

/* Largest weight dataset we will read, in elements: far above any MLP, far
 * below what a damaged or hostile header could make us allocate. */
#define SF_H5_MAX_ELEMENTS ((size_t)1 << 24)

/* Opens the HDF5 file whose bytes are data[0..len) (an in-memory image, read
 * only). Silences HDF5's automatic error printing (process wide) so damaged
 * files produce one clean message. */
int sf_h5_open_image(const void *data, size_t len, hid_t *out, char *errstr, size_t errstr_size);

/* The name every image is opened under. HDF5's core driver tries to open(2)
 * it (and goes on with the image when that fails); the loader's sandbox
 * answers that one call, recognized by this address, with ENOENT. */
extern const char sf_h5_image_name[];

int sf_h5_has_attr(hid_t obj, const char *name);

/* A scalar (or one-element) string attribute, fixed- or variable-length, as a
 * malloc'ed C string. */
int sf_h5_attr_string(hid_t obj, const char *name, char **out,
                      char *errstr, size_t errstr_size);

/* A 1-D string array attribute (layer_names, weight_names). An empty array of
 * any type (Keras writes weightless layers' names as an empty float array)
 * yields n = 0 and *out = NULL. Free with sf_h5_strings_free. */
int sf_h5_attr_strings(hid_t obj, const char *name, char ***out, size_t *n,
                       char *errstr, size_t errstr_size);
void sf_h5_strings_free(char **v, size_t n);

/* Reads the float32 or float64 dataset `name` (relative to loc, may contain
 * '/') of rank 1 or 2 into malloc'ed doubles; dims[1] is 1 for rank 1. */
int sf_h5_read_doubles(hid_t loc, const char *name, double **out, int *rank, size_t dims[2],
                       char *errstr, size_t errstr_size);

#endif
