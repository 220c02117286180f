/* modelset.h: the model set file, an ensemble named where a model is.
 *
 * {"name": "higgs-ensemble", "members": [{"name": "tf", "model": "a.h5",
 *  "variables": "a_variables.json", "weight": 0.84}, ...]}
 *
 * `--model` takes a set wherever it takes a model; the file is recognised by
 * its content (a JSON object), not its name, since HDF5 files and .keras
 * archives have binary signatures. Paths are relative to the set file. The
 * engine (engine.h) loads the members and combines them; this module only
 * reads and checks the file. Conventions: CONTRIBUTING.md. */
#ifndef SIGFLOW_MODELSET_H
#define SIGFLOW_MODELSET_H

#include <stddef.h>

typedef struct sf_modelset_member {
    char *name;
    char *model_path; /* resolved against the set file's directory */
    char *vars_path;
    double weight;    /* > 0, as written */
} sf_modelset_member;

typedef struct sf_modelset {
    char *path;
    char *name;
    char sha256[65];  /* of the set file's bytes */
    size_t n_members;
    sf_modelset_member *members;
} sf_modelset;

/* 1 when the file at path starts (after white space) with '{', i.e. is a set
 * rather than a model; 0 otherwise, including when it cannot be read (the
 * model loader then reports that). */
int sf_modelset_is_set(const char *path);

/* Reads and checks the set file: a name, at least one member, each with a
 * unique non-empty name, model and variables paths and a finite positive
 * weight. 0 and *out, or -1 with errstr naming the file and the member. */
int sf_modelset_load(sf_modelset **out, const char *path, char *errstr, size_t errstr_size);

void sf_modelset_free(sf_modelset *s);

#endif
