/* loader_probe.c: sigflow-loader-probe, a test build of the model loader that
 * does what an exploited parser would, on request: a model file whose bytes
 * start "SFPROBE openat" (or socket, execve) makes it attempt that call once
 * confined, right where the parser would start; "SFPROBE broker" asks sigflow
 * for external data outside the model's folder, and crashes (abort) if any
 * is sent or the refusal does not say why. It shows the sandbox stops
 * each attempt (test_loader_sandbox.c). Built for the tests only and never
 * installed: the shipped loader passes no hook, so no file can ask it for this. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loader/sanitizer_options.h"
#include "model_guard.h"

static void probe(const sf_model_bytes *model) {
    static const char tag[] = "SFPROBE ";
    char what[32] = "";
    if (model->len < sizeof tag - 1 || memcmp(model->data, tag, sizeof tag - 1) != 0)
        return;
    size_t n = model->len - (sizeof tag - 1);
    snprintf(what, sizeof what, "%.*s", (int)(n < sizeof what ? n : sizeof what - 1),
             (const char *)model->data + sizeof tag - 1);
    what[strcspn(what, "\n")] = '\0';
    if (!strcmp(what, "openat")) {
        int fd = open("/etc/passwd", O_RDONLY);
        if (fd >= 0)
            close(fd);
    } else if (!strcmp(what, "socket")) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd >= 0)
            close(fd);
    } else if (!strcmp(what, "double-free")) { /* heap corruption, as libhdf5's */
        char *volatile p = malloc(32);
        free(p);
        free(p);
    } else if (!strcmp(what, "broker")) {
        static const char *const escapes[] = {"/etc/passwd", "../../../../etc/passwd",
                                               "a/../../x", "", "x\n/../.."};
        int fd = SF_LOADER_FD_BROKER;
        for (size_t i = 0; i < sizeof escapes / sizeof escapes[0]; i++) {
            unsigned char *got = NULL;
            char why[512] = "";
            if (sf_loader_broker_ask(&fd, escapes[i], 0, 16, &got, why, sizeof why) == 0 ||
                !strstr(why, "leaves the model's folder"))
                abort();
        }
    } else if (!strcmp(what, "execve")) {
        char *const argv[] = {"true", NULL}, *const envp[] = {NULL};
        execve("/bin/true", argv, envp);
    }
    /* Not stopped: the parse goes on and refuses the file, which the test
     * tells from a sandbox violation. */
}

int main(int argc, char **argv) {
    return sf_model_loader_main(argc, argv, probe);
}
