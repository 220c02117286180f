/* version.c: the versions of sigflow and of the libraries it runs on
 * (version.h), read from the libraries themselves at run time: the shared
 * objects loaded, not the headers compiled against. */
#include <stdio.h>
#include <string.h>

#include <dnnl.h>
#include <hdf5.h>
#include <librdkafka/rdkafka.h>

#include "sigflow/version.h"

#ifndef SIGFLOW_VERSION
#define SIGFLOW_VERSION "unknown"
#endif
#include "git_describe.h" /* SIGFLOW_GIT_DESCRIBE, written at build time */

char *openblas_get_config(void);

void sf_version_get(sf_version *v) {
    memset(v, 0, sizeof *v);
    snprintf(v->version, sizeof v->version, "%s", SIGFLOW_VERSION);
    snprintf(v->git, sizeof v->git, "%s", SIGFLOW_GIT_DESCRIBE);
    snprintf(v->librdkafka, sizeof v->librdkafka, "%s", rd_kafka_version_str());
    const dnnl_version_t *d = dnnl_version();
    snprintf(v->onednn, sizeof v->onednn, "%d.%d.%d", d->major, d->minor, d->patch);
    /* "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY ..." */
    const char *cfg = openblas_get_config();
    if (cfg && !strncmp(cfg, "OpenBLAS ", 9))
        snprintf(v->openblas, sizeof v->openblas, "%.*s", (int)strcspn(cfg + 9, " "), cfg + 9);
    else
        snprintf(v->openblas, sizeof v->openblas, "unknown");
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    snprintf(v->hdf5, sizeof v->hdf5, "%u.%u.%u", maj, min, rel);
}

void sf_version_print(FILE *f, const char *prog) {
    sf_version v;
    sf_version_get(&v);
    fprintf(f, "%s %s%s%s%s\n", prog, v.version, *v.git ? " (git " : "", v.git, *v.git ? ")" : "");
    fprintf(f, "librdkafka %s\noneDNN %s\nOpenBLAS %s\nHDF5 %s\n", v.librdkafka, v.onednn, v.openblas,
            v.hdf5);
}
