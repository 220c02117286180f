/* sniff.c: names what a refused model or variables file looks like (sniff.h)
 * from its first bytes and, for a directory, its entries. */
#define _GNU_SOURCE /* memmem */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "sigflow/sniff.h"

static int file_in(const char *dir, const char *name) {
    char p[4096];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &st) == 0;
}

/* Whether the text has the member name "key". */
static int has_key(const char *text, const char *key) {
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    return strstr(text, quoted) != NULL;
}

static int is_ext(const char *path, const char *ext) {
    const char *dot = strrchr(path, '.');
    return dot && !strcmp(dot, ext);
}

sf_sniff_kind sf_sniff(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0)
        return SF_SNIFF_UNREADABLE;
    if (S_ISDIR(st.st_mode))
        return file_in(path, "saved_model.pb") || file_in(path, "saved_model.pbtxt") ? SF_SNIFF_SAVEDMODEL
                                                                                      : SF_SNIFF_DIRECTORY;
    FILE *f = fopen(path, "rb");
    if (!f)
        return SF_SNIFF_UNREADABLE;
    char head[4097];
    size_t len = fread(head, 1, sizeof head - 1, f);
    fclose(f);
    head[len] = '\0';
    const unsigned char *u = (const unsigned char *)head;
    const char *text = head + strspn(head, " \t\r\n");
    int binary = memchr(head, '\0', len) != NULL;
    if (len == 0)
        return SF_SNIFF_EMPTY;
    if (len >= 8 && !memcmp(head, "\x89HDF\r\n\x1a\n", 8))
        return SF_SNIFF_HDF5;
    if (len >= 4 && !memcmp(head, "PK\x03\x04", 4))
        return is_ext(path, ".keras") ? SF_SNIFF_KERAS : SF_SNIFF_ZIP;
    if (len >= 2 && u[0] == 0x1f && u[1] == 0x8b)
        return SF_SNIFF_GZIP;
    /* ONNX is protobuf: field 1 (ir_version, tag 0x08) first, "onnx" in the
     * producer's name or an operator domain soon after. */
    if (is_ext(path, ".onnx") || (u[0] == 0x08 && memmem(head, len, "onnx", 4)))
        return SF_SNIFF_ONNX;
    if (is_ext(path, ".pb") || is_ext(path, ".tflite"))
        return SF_SNIFF_TF_GRAPH;
    if (!binary && *text == '{')
        return has_key(text, "members")                                  ? SF_SNIFF_SET
               : has_key(text, "inputs")                                 ? SF_SNIFF_VARIABLES
               : has_key(text, "class_name") || has_key(text, "config") ? SF_SNIFF_ARCHITECTURE
                                                                        : SF_SNIFF_JSON;
    if (!binary)
        return memchr(head, ',', len) ? SF_SNIFF_CSV : SF_SNIFF_TEXT;
    return SF_SNIFF_UNKNOWN;
}

const char *sf_sniff_name(sf_sniff_kind k) {
    static const char *const names[] = {
        [SF_SNIFF_UNREADABLE] = "",
        [SF_SNIFF_UNKNOWN] = "a file of an unknown kind",
        [SF_SNIFF_EMPTY] = "an empty file",
        [SF_SNIFF_DIRECTORY] = "a directory",
        [SF_SNIFF_SAVEDMODEL] = "a TensorFlow SavedModel directory",
        [SF_SNIFF_HDF5] = "an HDF5 file",
        [SF_SNIFF_KERAS] = "a .keras archive",
        [SF_SNIFF_ZIP] = "a zip archive",
        [SF_SNIFF_GZIP] = "a gzip file",
        [SF_SNIFF_ONNX] = "an ONNX model",
        [SF_SNIFF_TF_GRAPH] = "a TensorFlow graph file",
        [SF_SNIFF_SET] = "a model set",
        [SF_SNIFF_VARIABLES] = "a variables JSON file",
        [SF_SNIFF_ARCHITECTURE] = "a Keras architecture JSON file (for --architecture)",
        [SF_SNIFF_JSON] = "a JSON file",
        [SF_SNIFF_CSV] = "a CSV file",
        [SF_SNIFF_TEXT] = "a text file",
    };
    return names[k];
}
