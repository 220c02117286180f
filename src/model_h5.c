/* model_h5.c: HDF5 reads for the Keras loader, kept apart from the architecture
 * walk so each file can be read in one sitting.
 *
 * Keras files come from many h5py versions: the same attribute may be stored as
 * a fixed-length or a variable-length string, and an empty name list may have a
 * float type. These helpers absorb those differences. Every handle opened here
 * is closed here, on every path. The serial HDF5 library is not thread-safe:
 * load models from one thread at a time. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_h5.h"

/* Attributes hold names and one JSON document; this bounds a damaged header. */
#define MAX_ATTR_STRINGS ((size_t)1 << 20)

/* HDF5 finds its superblock at byte 0, 512, 1024, 2048, ... (a user block
 * may precede it), as H5Fis_hdf5 searches a file. */
static int has_superblock(const unsigned char *data, size_t len) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    for (size_t at = 0; at + sizeof sig <= len; at = at ? at * 2 : 512)
        if (!memcmp(data + at, sig, sizeof sig))
            return 1;
    return 0;
}

const char sf_h5_image_name[] = "/sigflow-model-image.h5"; /* absolute: HDF5 asks no getcwd */

int sf_h5_open_image(const void *data, size_t len, hid_t *out, char *errstr, size_t errstr_size) {
    *out = H5I_INVALID_HID;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (!has_superblock(data, len)) {
        snprintf(errstr, errstr_size, "not an HDF5 file");
        return -1;
    }
    /* The core (memory) driver without a backing store reads the image.
     * It still tries to open the file by name first, and does without when
     * that fails: the sandbox fails exactly that open (of this very string)
     * with ENOENT (model_sandbox.c). H5Pset_file_image copies the bytes, so
     * the caller keeps its buffer. */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 ||
        H5Pset_file_image(fapl, (void *)data, len) < 0) {
        if (fapl >= 0)
            H5Pclose(fapl);
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    hid_t f = H5Fopen(sf_h5_image_name, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        snprintf(errstr, errstr_size, "HDF5 file cannot be opened (truncated or damaged?)");
        return -1;
    }
    *out = f;
    return 0;
}

int sf_h5_has_attr(hid_t obj, const char *name) {
    return H5Aexists(obj, name) > 0;
}

void sf_h5_strings_free(char **v, size_t n) {
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Variable-length strings: HDF5 allocates each one; we copy and give them back. */
static int read_vlen_strings(hid_t attr, hid_t ftype, size_t n, char **v) {
    int rc = -1;
    char **raw = calloc(n, sizeof *raw);
    hid_t mtype = H5Tcopy(H5T_C_S1);
    if (!raw || mtype < 0 || H5Tset_size(mtype, H5T_VARIABLE) < 0 ||
        H5Tset_cset(mtype, H5Tget_cset(ftype)) < 0 || H5Aread(attr, mtype, raw) < 0)
        goto done;
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(raw[i] ? raw[i] : "");
        if (!v[i])
            rc = -1;
        H5free_memory(raw[i]);
    }
done:
    if (mtype >= 0)
        H5Tclose(mtype);
    free(raw);
    return rc;
}

/* Fixed-length strings: one buffer of n slots, each padded with NULs or spaces. */
static int read_fixed_strings(hid_t attr, hid_t ftype, size_t n, char **v) {
    size_t len = H5Tget_size(ftype);
    if (len == 0 || n > SIZE_MAX / len)
        return -1;
    char *buf = malloc(n * len);
    if (!buf || H5Aread(attr, ftype, buf) < 0) {
        free(buf);
        return -1;
    }
    int spacepad = H5Tget_strpad(ftype) == H5T_STR_SPACEPAD;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = buf + i * len;
        size_t l = strnlen(s, len);
        while (spacepad && l > 0 && s[l - 1] == ' ')
            l--;
        v[i] = strndup(s, l);
        if (!v[i])
            rc = -1;
    }
    free(buf);
    return rc;
}

int sf_h5_attr_strings(hid_t obj, const char *name, char ***out, size_t *n,
                       char *errstr, size_t errstr_size) {
    *out = NULL;
    *n = 0;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0) {
        snprintf(errstr, errstr_size, "attribute '%s' is missing", name);
        return -1;
    }
    int rc = -1;
    char **v = NULL;
    hid_t space = H5Aget_space(attr);
    hid_t type = H5Aget_type(attr);
    hssize_t np = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    if (type < 0 || np < 0 || rank < 0 || rank > 1 || (size_t)np > MAX_ATTR_STRINGS) {
        snprintf(errstr, errstr_size, "attribute '%s' is not a list of strings", name);
        goto done;
    }
    if (np == 0) { /* Keras' empty list: the type says nothing, often float */
        rc = 0;
        goto done;
    }
    if (H5Tget_class(type) != H5T_STRING) {
        snprintf(errstr, errstr_size, "attribute '%s' does not hold strings", name);
        goto done;
    }
    v = calloc((size_t)np, sizeof *v);
    int vlen = H5Tis_variable_str(type);
    if (!v || vlen < 0 ||
        (vlen ? read_vlen_strings(attr, type, (size_t)np, v)
              : read_fixed_strings(attr, type, (size_t)np, v)) < 0) {
        snprintf(errstr, errstr_size, "attribute '%s' cannot be read", name);
        goto done;
    }
    *out = v;
    *n = (size_t)np;
    v = NULL;
    rc = 0;
done:
    sf_h5_strings_free(v, (size_t)(np > 0 ? np : 0));
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    H5Aclose(attr);
    return rc;
}

int sf_h5_attr_string(hid_t obj, const char *name, char **out,
                      char *errstr, size_t errstr_size) {
    char **v;
    size_t n;
    *out = NULL;
    if (sf_h5_attr_strings(obj, name, &v, &n, errstr, errstr_size) < 0)
        return -1;
    if (n != 1) {
        snprintf(errstr, errstr_size, "attribute '%s' holds %zu strings, expected one", name, n);
        sf_h5_strings_free(v, n);
        return -1;
    }
    *out = v[0];
    free(v);
    return 0;
}

int sf_h5_read_doubles(hid_t loc, const char *name, double **out, int *rank, size_t dims[2],
                       char *errstr, size_t errstr_size) {
    *out = NULL;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds < 0) {
        snprintf(errstr, errstr_size, "dataset '%s' not found", name);
        return -1;
    }
    int rc = -1;
    double *buf = NULL;
    hid_t type = H5Dget_type(ds);
    hid_t space = H5Dget_space(ds);
    int r = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    hsize_t hd[2] = {1, 1};
    if (type < 0 || H5Tget_class(type) != H5T_FLOAT ||
        (H5Tget_size(type) != 4 && H5Tget_size(type) != 8)) {
        snprintf(errstr, errstr_size, "dataset '%s' is not float32 or float64", name);
        goto done;
    }
    if (r < 1 || r > 2 || H5Sget_simple_extent_dims(space, hd, NULL) < 0) {
        snprintf(errstr, errstr_size, "dataset '%s' has rank %d, expected 1 or 2", name, r);
        goto done;
    }
    if (hd[0] == 0 || hd[1] == 0 || hd[0] > SF_H5_MAX_ELEMENTS ||
        hd[1] > SF_H5_MAX_ELEMENTS / hd[0]) {
        snprintf(errstr, errstr_size, "dataset '%s' has an unsupported size", name);
        goto done;
    }
    size_t count = (size_t)(hd[0] * hd[1]);
    buf = malloc(count * sizeof *buf);
    if (!buf || H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        snprintf(errstr, errstr_size, "dataset '%s' cannot be read", name);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(buf[i])) {
            snprintf(errstr, errstr_size, "dataset '%s' holds a non-finite value at index %zu",
                     name, i);
            goto done;
        }
    }
    *out = buf;
    buf = NULL;
    *rank = r;
    dims[0] = (size_t)hd[0];
    dims[1] = (size_t)hd[1];
    rc = 0;
done:
    free(buf);
    if (type >= 0)
        H5Tclose(type);
    if (space >= 0)
        H5Sclose(space);
    H5Dclose(ds);
    return rc;
}
