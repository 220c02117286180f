/* model_keras.c: reads Keras 3's default save format, the `.keras` zip.
 *
 * The zip is read with libzip, which reports each member's uncompressed size
 * from the central directory before anything is inflated, so an archive that
 * claims gigabytes is refused without allocating them, and which checks every
 * read against the archive's bounds. The weights member is inflated into
 * memory and handed to HDF5's core (memory) driver, so nothing is written to
 * disk and the rest of the loader reads it like any HDF5 file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <zip.h>

#include "model_h5.h"
#include "model_keras.h"

#define MAX_JSON_MEMBER ((unsigned long long)64 << 20)

static const char *const members[] = {"config.json", "metadata.json", "model.weights.h5"};

int sf_keras_is_zip(const void *data, size_t len) {
    const unsigned char *sig = data;
    /* A local file header, or the end record of an empty archive. */
    return len >= 4 && sig[0] == 'P' && sig[1] == 'K' &&
           ((sig[2] == 3 && sig[3] == 4) || (sig[2] == 5 && sig[3] == 6));
}

/* Inflates one member whose size has already been checked. */
static int read_member(zip_t *z, const char *path, const char *name, zip_uint64_t size,
                       char **out, char *errstr, size_t errstr_size) {
    *out = malloc(size + 1);
    if (!*out) {
        snprintf(errstr, errstr_size, "%s: member '%s': out of memory", path, name);
        return -1;
    }
    zip_file_t *zf = zip_fopen(z, name, 0);
    if (!zf) {
        snprintf(errstr, errstr_size, "%s: member '%s' cannot be opened: %s", path, name,
                 zip_strerror(z));
        free(*out);
        *out = NULL;
        return -1;
    }
    /* One more byte must not be there: the size was the archive's own claim. */
    char extra;
    zip_int64_t got = zip_fread(zf, *out, size);
    zip_int64_t more = got >= 0 && (zip_uint64_t)got == size ? zip_fread(zf, &extra, 1) : 0;
    const char *why = NULL;
    if (got < 0 || more < 0)
        why = zip_file_strerror(zf);
    else if ((zip_uint64_t)got != size || more != 0)
        why = "its size differs from the one the archive states";
    if (why) /* copied before zip_fclose frees zf's message */
        snprintf(errstr, errstr_size, "%s: member '%s' cannot be read: %s", path, name, why);
    zip_fclose(zf);
    if (why) {
        free(*out);
        *out = NULL;
        return -1;
    }
    (*out)[size] = '\0';
    return 0;
}

static int parse_metadata(sf_keras_archive *a, const char *path, const char *text, size_t len,
                          char *errstr, size_t errstr_size) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, 0, &jerr);
    if (!json_is_object(root)) {
        snprintf(errstr, errstr_size, "%s: member 'metadata.json' is not a JSON object%s%s", path,
                 root ? "" : ": ", root ? "" : jerr.text);
        json_decref(root);
        return -1;
    }
    json_t *v = json_object_get(root, "keras_version");
    if (v && !json_is_string(v)) {
        snprintf(errstr, errstr_size, "%s: member 'metadata.json': keras_version is not a string",
                 path);
        json_decref(root);
        return -1;
    }
    if (v && !(a->keras_version = strdup(json_string_value(v)))) {
        snprintf(errstr, errstr_size, "%s: out of memory", path);
        json_decref(root);
        return -1;
    }
    json_decref(root);
    return 0;
}

static int open_weights(sf_keras_archive *a, const char *path, char *buf, size_t len,
                        char *errstr, size_t errstr_size) {
    char why[128];
    if (sf_h5_open_image(buf, len, &a->weights, why, sizeof why) < 0) {
        snprintf(errstr, errstr_size, "%s: member 'model.weights.h5' is not a readable HDF5 file",
                 path);
        return -1;
    }
    return 0;
}

int sf_keras_open(sf_keras_archive *a, const char *path, const void *data, size_t len,
                  char *errstr, size_t errstr_size) {
    memset(a, 0, sizeof *a);
    a->weights = H5I_INVALID_HID;
    int rc = -1;
    char *bufs[3] = {NULL, NULL, NULL};
    zip_uint64_t sizes[3] = {0, 0, 0};
    zip_error_t e;
    zip_error_init(&e);
    /* libzip reads the caller's bytes in place (freep 0: they stay the caller's). */
    zip_source_t *src = zip_source_buffer_create(data, len, 0, &e);
    zip_t *z = src ? zip_open_from_source(src, ZIP_RDONLY, &e) : NULL;
    if (!z) {
        snprintf(errstr, errstr_size, "%s: not a readable zip archive (.keras): %s", path,
                 zip_error_strerror(&e));
        zip_error_fini(&e);
        zip_source_free(src);
        return -1;
    }
    zip_error_fini(&e);
    /* Every member counts towards the total, read or not: the limits are about
     * what the archive claims, checked before anything is inflated. */
    zip_int64_t n = zip_get_num_entries(z, 0);
    unsigned long long total = 0;
    for (zip_int64_t i = 0; i < n; i++) {
        zip_stat_t st;
        if (zip_stat_index(z, (zip_uint64_t)i, 0, &st) < 0 || !(st.valid & ZIP_STAT_SIZE)) {
            snprintf(errstr, errstr_size, "%s: member #%lld: cannot read its entry: %s", path,
                     (long long)i, zip_strerror(z));
            goto done;
        }
        const char *name = (st.valid & ZIP_STAT_NAME) ? st.name : "?";
        if (st.size > SF_KERAS_MAX_MEMBER) {
            snprintf(errstr, errstr_size, "%s: member '%s' is %llu bytes uncompressed, over the "
                     "limit of 1 GiB", path, name, (unsigned long long)st.size);
            goto done;
        }
        total += st.size;
        if (total > SF_KERAS_MAX_TOTAL) {
            snprintf(errstr, errstr_size, "%s: members add up to more than 4 GiB uncompressed "
                     "(at member '%s')", path, name);
            goto done;
        }
    }
    for (size_t k = 0; k < 3; k++) {
        zip_stat_t st;
        if (zip_stat(z, members[k], 0, &st) < 0) {
            snprintf(errstr, errstr_size, "%s: member '%s' is missing: not a Keras .keras archive",
                     path, members[k]);
            goto done;
        }
        if (k < 2 && st.size > MAX_JSON_MEMBER) {
            snprintf(errstr, errstr_size, "%s: member '%s' is over 64 MiB", path, members[k]);
            goto done;
        }
        sizes[k] = st.size;
        if (read_member(z, path, members[k], st.size, &bufs[k], errstr, errstr_size) < 0)
            goto done;
    }
    if (parse_metadata(a, path, bufs[1], (size_t)sizes[1], errstr, errstr_size) < 0 ||
        open_weights(a, path, bufs[2], (size_t)sizes[2], errstr, errstr_size) < 0)
        goto done;
    a->config = bufs[0];
    a->config_len = (size_t)sizes[0];
    bufs[0] = NULL;
    rc = 0;
done:
    for (size_t k = 0; k < 3; k++)
        free(bufs[k]);
    zip_discard(z);
    if (rc < 0)
        sf_keras_close(a);
    return rc;
}

void sf_keras_close(sf_keras_archive *a) {
    free(a->config);
    free(a->keras_version);
    if (a->weights >= 0)
        H5Fclose(a->weights);
    memset(a, 0, sizeof *a);
    a->weights = H5I_INVALID_HID;
}
