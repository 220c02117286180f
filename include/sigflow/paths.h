/* paths.h: where the shipped model, variables and sample are, found from the
 * running executable so an installed tree can move (a relocatable prefix) and
 * the build tree works the same way.
 *
 * Layouts searched, relative to the directory of /proc/self/exe:
 *   ./share/sigflow/NAME      the build tree (CMake stages the files there)
 *   ../share/sigflow/NAME     an install prefix (bin/ next to share/)
 * and libexec/sigflow/ in place of share/sigflow/ for programs. */
#ifndef SIGFLOW_PATHS_H
#define SIGFLOW_PATHS_H

#include <stddef.h>

#define SF_PATHS_MODEL "higgs_mlp.h5"
#define SF_PATHS_VARIABLES "higgs_variables.json"
#define SF_PATHS_SAMPLE "atlas-higgs-challenge-2014-v2-sample.csv.gz"
/* The shipped model with byte 2130 set to 0x10: libhdf5 segfaults reading it
 * (issue 15's reproducer); the bench's soak reloads it to prove the isolation. */
#define SF_PATHS_SOAK_CORRUPT "corrupt_segv_2130_10.h5.gz"
/* A model whose external link makes libhdf5 open /etc/passwd: the loader's
 * sandbox kills it (issue 26); the soak reloads it too. */
#define SF_PATHS_SOAK_SANDBOX "sandbox_external_link.h5"

/* The model loader program (model.h), in libexec/sigflow/ of the same two
 * layouts: found by sf_paths_libexec. */
#define SF_PATHS_LOADER "sigflow-loader"

/* Writes the path of the shipped file NAME into out. 0, or -1 with out holding
 * the install-layout candidate (so the caller's "cannot open" names a path). */
int sf_paths_data(const char *name, char *out, size_t n);

/* The same for a program in libexec/sigflow/ (executable), beside the binary
 * (the build tree) or beside its bin/ (an install prefix). */
int sf_paths_libexec(const char *name, char *out, size_t n);

#endif
