/* paths.c: finds the shipped data next to the executable instead of a source
 * directory compiled in, so the same binary works in the build tree, in
 * /usr and in any prefix it is copied to. */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sigflow/paths.h"

static int exe_dir(char *out, size_t n) {
    ssize_t len = readlink("/proc/self/exe", out, n - 1);
    if (len <= 0 || (size_t)len >= n - 1)
        return -1;
    out[len] = '\0';
    char *slash = strrchr(out, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    return 0;
}

/* DIR/SUB/NAME beside the binary (the build tree), then beside its bin/ (an
 * install prefix), which is the one named when neither is accessible. */
static int find(const char *sub, const char *name, int mode, char *out, size_t n) {
    char dir[PATH_MAX];
    if (exe_dir(dir, sizeof dir)) {
        snprintf(out, n, "%s", name);
        return -1;
    }
    int w = snprintf(out, n, "%s/%s/%s", dir, sub, name);
    if (w > 0 && (size_t)w < n && access(out, mode) == 0)
        return 0;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    w = snprintf(out, n, "%s/%s/%s", dir, sub, name);
    return w > 0 && (size_t)w < n && access(out, mode) == 0 ? 0 : -1;
}

int sf_paths_data(const char *name, char *out, size_t n) {
    return find("share/sigflow", name, R_OK, out, n);
}

int sf_paths_libexec(const char *name, char *out, size_t n) {
    return find("libexec/sigflow", name, X_OK, out, n);
}
