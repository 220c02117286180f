/* modelset.c: reading the model set file (modelset.h says why it exists). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sha256.h"
#include "sigflow/modelset.h"
#include "sigflow/sniff.h"

int sf_modelset_is_set(const char *path) {
    /* A JSON object that is not plainly something else: a set with a typo
     * is still refused by the set's parser, which says where. */
    sf_sniff_kind k = sf_sniff(path);
    return k == SF_SNIFF_SET || k == SF_SNIFF_JSON;
}

void sf_modelset_free(sf_modelset *s) {
    if (!s)
        return;
    for (size_t i = 0; i < s->n_members; i++) {
        free(s->members[i].name);
        free(s->members[i].model_path);
        free(s->members[i].vars_path);
    }
    free(s->members);
    free(s->name);
    free(s->path);
    free(s);
}

/* p relative to the directory of set_path, unless absolute. */
static char *resolve(const char *set_path, const char *p) {
    const char *slash = strrchr(set_path, '/');
    size_t dir = p[0] == '/' || !slash ? 0 : (size_t)(slash - set_path) + 1;
    char *out = malloc(dir + strlen(p) + 1);
    if (out) {
        memcpy(out, set_path, dir);
        strcpy(out + dir, p);
    }
    return out;
}

static int file_sha256(const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    sf_sha256 c;
    sf_sha256_init(&c);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sf_sha256_update(&c, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad)
        return -1;
    sf_sha256_final_hex(&c, hex);
    return 0;
}

static const char *string_field(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) && json_string_length(v) > 0 ? json_string_value(v) : NULL;
}

int sf_modelset_load(sf_modelset **out, const char *path, char *errstr, size_t n) {
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(errstr, n, "%s:%d:%d: %s", path, jerr.line, jerr.column, jerr.text);
        return -1;
    }
    sf_modelset *s = calloc(1, sizeof *s);
    json_t *members = json_object_get(root, "members");
    const char *name = string_field(root, "name");
    if (!s) {
        snprintf(errstr, n, "out of memory");
        goto fail;
    }
    if (!json_is_object(root) || !name) {
        snprintf(errstr, n, "%s: a model set needs a \"name\" string", path);
        goto fail;
    }
    if (!json_is_array(members) || json_array_size(members) == 0) {
        snprintf(errstr, n, "%s: a model set needs a non-empty \"members\" array", path);
        goto fail;
    }
    s->path = strdup(path);
    s->name = strdup(name);
    s->members = calloc(json_array_size(members), sizeof *s->members);
    if (!s->path || !s->name || !s->members) {
        snprintf(errstr, n, "out of memory");
        goto fail;
    }
    if (file_sha256(path, s->sha256)) {
        snprintf(errstr, n, "%s: cannot read the file", path);
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(members); i++) {
        json_t *m = json_array_get(members, i);
        const char *mname = json_is_object(m) ? string_field(m, "name") : NULL;
        if (!mname) {
            snprintf(errstr, n, "%s: member %zu has no \"name\" string", path, i + 1);
            goto fail;
        }
        for (size_t k = 0; k < i; k++)
            if (!strcmp(s->members[k].name, mname)) {
                snprintf(errstr, n, "%s: member '%s' named twice", path, mname);
                goto fail;
            }
        const char *model = string_field(m, "model"), *vars = string_field(m, "variables");
        json_t *w = json_object_get(m, "weight");
        if (!model || !vars) {
            snprintf(errstr, n, "%s: member '%s' needs \"model\" and \"variables\" paths", path,
                     mname);
            goto fail;
        }
        if (!json_is_number(w) || !(json_number_value(w) > 0) || !isfinite(json_number_value(w))) {
            snprintf(errstr, n, "%s: member '%s': \"weight\" must be a positive number", path,
                     mname);
            goto fail;
        }
        sf_modelset_member *d = &s->members[s->n_members++];
        d->weight = json_number_value(w);
        d->name = strdup(mname);
        d->model_path = resolve(path, model);
        d->vars_path = resolve(path, vars);
        if (!d->name || !d->model_path || !d->vars_path) {
            snprintf(errstr, n, "out of memory");
            goto fail;
        }
    }
    json_decref(root);
    *out = s;
    return 0;
fail:
    json_decref(root);
    sf_modelset_free(s);
    return -1;
}
