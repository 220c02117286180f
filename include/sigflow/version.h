/* version.h: what a binary is and what it was built with, for --version and
 * sigflow_build_info on /metrics: an operator comparing two hosts, or
 * reporting a bug, needs the libraries' versions as much as sigflow's. */
#ifndef SIGFLOW_VERSION_H
#define SIGFLOW_VERSION_H

#include <stdio.h>

typedef struct sf_version {
    char version[32];    /* the project's, from CMakeLists.txt */
    char git[64];        /* git describe when built from a git checkout, else "" */
    char librdkafka[32]; /* rd_kafka_version_str() */
    char onednn[32];     /* dnnl_version(), major.minor.patch */
    char openblas[32];   /* from openblas_get_config() */
    char hdf5[32];       /* H5get_libversion() */
} sf_version;

void sf_version_get(sf_version *v);

/* --version's text: "PROG VERSION (git DESCRIBE)" then one "library VERSION"
 * line per library, on f. */
void sf_version_print(FILE *f, const char *prog);

#endif
