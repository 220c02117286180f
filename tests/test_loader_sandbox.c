/* test_loader_sandbox.c: the model loader runs in a sandbox (issue 26).
 *
 * A test build of the loader (tests/loader_probe.c) attempts what an exploited
 * parser would: open /etc/passwd, make a socket, exec a program; each attempt
 * must kill it and be reported as a sandbox violation naming the call, in a
 * direct load and in a daemon that keeps serving its old model. While a slow
 * load (the hang reproducer) is in progress, the loader process must hold no
 * SIGFLOW_KAFKA_* variable, no descriptor but the model and the pipe, and be
 * under a seccomp filter with no new privileges. Where no filter can be
 * installed, a load is refused unless the opt-out (--unsafe-model-loader). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <seccomp.h>

#include "sigflow/model.h"
#include "support.h"

#define FIXTURE(name) SF_SOURCE_DIR "/tests/fixtures/" name
#define PROBE SF_BUILD_DIR "/tests/sigflow-loader-probe"
#define WAIT_MS 60000

static const char *const probes[] = {"openat", "socket", "execve"};

static char *write_probe(const char *call) {
    char *path = sft_temp_path(".h5");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "SFPROBE %s\n", call);
    assert_int_equal(fclose(f), 0);
    return path;
}

static void expect_violation(const char *err, const char *path, const char *call) {
    char want[2048];
    snprintf(want, sizeof want,
             "%s: model loader violated its sandbox (syscall %s) while reading %s", path, call,
             path);
    printf("  %s\n", err);
    if (strcmp(err, want) != 0)
        fail_msg("expected \"%s\", got \"%s\"", want, err);
    assert_int_equal(sf_model_refusal_of(err), SF_MODEL_REFUSED_SANDBOX);
}

static void test_probes_are_killed(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        char *path = write_probe(probes[i]);
        char err[2048] = "";
        sf_model *m = (sf_model *)0x1;
        sf_model_loader_conf c = {.program = PROBE, .timeout_ms = WAIT_MS};
        assert_int_equal(sf_model_load_conf(&m, path, NULL, NULL, &c, err, sizeof err), -1);
        assert_null(m);
        expect_violation(err, path, probes[i]);
        unlink(path);
        free(path);
    }
    /* Heap corruption (as libhdf5's overflows cause) is a crash, not a
     * violation: glibc's report of it goes to the closed stderr, then abort. */
    char *path = write_probe("double-free");
    char err[2048] = "";
    sf_model *m = (sf_model *)0x1;
    sf_model_loader_conf pc = {.program = PROBE, .timeout_ms = WAIT_MS};
    assert_int_equal(sf_model_load_conf(&m, path, NULL, NULL, &pc, err, sizeof err), -1);
    printf("  %s\n", err);
    assert_int_equal(sf_model_refusal_of(err), SF_MODEL_REFUSED_CRASH);
    assert_non_null(strstr(err, "crashed reading it (signal 6)"));
    unlink(path);
    free(path);

    /* A parser that asks sigflow for external data outside the model's
     * folder gets a refusal, not the bytes (the probe aborts otherwise); the
     * load then ends as the file deserves: not a model. */
    path = write_probe("broker");
    assert_int_equal(sf_model_load_conf(&m, path, NULL, NULL, &pc, err, sizeof err), -1);
    printf("  %s\n", err);
    if (sf_model_refusal_of(err) != SF_MODEL_REFUSED_INVALID)
        fail_msg("the broker probe: %s", err);
    unlink(path);
    free(path);

    /* The probe loader is the real one otherwise: a model loads through it. */
    m = NULL;
    if (sf_model_load_conf(&m, FIXTURE("model_mlp.h5"), NULL, NULL, &pc, err, sizeof err) != 0)
        fail_msg("%s", err);
    sf_model_free(m);
}

/* No test build needed: a model whose weights group is an HDF5 external link
 * to /etc/passwd makes libhdf5 itself open that file (main's loader did). */
static void test_external_link_is_killed(void **state) {
    (void)state;
    const char *path = FIXTURE("sandbox_external_link.h5");
    char err[2048] = "";
    sf_model *m = (sf_model *)0x1;
    assert_int_equal(sf_model_load(&m, path, NULL, NULL, err, sizeof err), -1);
    assert_null(m);
    expect_violation(err, path, "openat");
    /* In this process, nothing stops libhdf5: it opens the file, finds no HDF5. */
    assert_int_equal(sf_model_load_inprocess(&m, path, NULL, NULL, err, sizeof err), -1);
    printf("  in-process: %s\n", err);
}

/* ---- where no filter can be installed ---------------------------------------- */

/* In a child of this test (first in the run: no thread yet), a filter as a
 * container's seccomp profile may have it: installing another filter fails
 * with EPERM. Then a load is refused, or with the opt-out runs unconfined.
 * The child's exit status: 0 when both held. */
static int no_seccomp_child(const char *path) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return 10;
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_ALLOW);
    if (!f || seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(seccomp), 0) < 0 ||
        seccomp_rule_add(f, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(prctl), 1,
                         (struct scmp_arg_cmp){.arg = 0, .op = SCMP_CMP_EQ,
                                               .datum_a = PR_SET_SECCOMP, .datum_b = 0}) < 0 ||
        seccomp_load(f) < 0)
        return 11;
    seccomp_release(f);
    char err[2048] = "";
    sf_model *m = NULL;
    sf_model_loader_conf c = {.timeout_ms = WAIT_MS};
    if (sf_model_load_conf(&m, path, NULL, NULL, &c, err, sizeof err) != -1)
        return 12;
    printf("  without a filter: %s\n", err);
    if (!strstr(err, "cannot confine the model loader") ||
        sf_model_refusal_of(err) != SF_MODEL_REFUSED_SANDBOX)
        return 13;
    c.unsafe = 1;
    if (sf_model_load_conf(&m, path, NULL, NULL, &c, err, sizeof err) != 0) {
        printf("  unsafe: %s\n", err);
        return 14;
    }
    sf_model_free(m);
    return 0;
}

static void test_no_filter_no_load(void **state) {
    (void)state;
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int rc = no_seccomp_child(FIXTURE("model_mlp.h5"));
        fflush(stdout);
        _exit(rc);
    }
    int status = sft_wait(pid, WAIT_MS);
    assert_int_equal(status, 0);
}

/* ---- the loader process while it parses ------------------------------------ */

typedef struct slow_load {
    const char *path;
    int rc;
    char err[2048];
} slow_load;

static void *run_slow_load(void *arg) {
    slow_load *s = arg;
    sf_model *m = NULL;
    s->rc = sf_model_load_guarded(&m, s->path, NULL, NULL, 4000, s->err, sizeof s->err);
    sf_model_free(m);
    return NULL;
}

/* A child of this process running the loader program, or 0. */
static pid_t find_loader(void) {
    DIR *tasks = opendir("/proc/self/task");
    assert_non_null(tasks);
    struct dirent *t;
    pid_t found = 0;
    while (!found && (t = readdir(tasks))) {
        if (t->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "/proc/self/task/%.64s/children", t->d_name);
        char *kids = sft_read_file(path, NULL);
        for (char *p = kids; p && *p && !found;) {
            pid_t pid = (pid_t)strtol(p, &p, 10);
            char exe[256], link[4096];
            snprintf(exe, sizeof exe, "/proc/%d/exe", (int)pid);
            ssize_t n = readlink(exe, link, sizeof link - 1);
            if (n > 0) {
                link[n] = '\0';
                if (strstr(link, "/sigflow-loader"))
                    found = pid;
            }
            while (*p == ' ')
                p++;
        }
        free(kids);
    }
    closedir(tasks);
    return found;
}

/* The descriptors of pid as "fd=target;..." into out; their count. */
static int list_fds(pid_t pid, char *out, size_t size) {
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    int n = 0;
    out[0] = '\0';
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[256], target[1024] = "";
        snprintf(path, sizeof path, "%s/%.64s", dir, e->d_name);
        ssize_t len = readlink(path, target, sizeof target - 1);
        target[len > 0 ? len : 0] = '\0';
        size_t used = strlen(out);
        snprintf(out + used, size - used, "%s=%s;", e->d_name, target);
        n++;
    }
    closedir(d);
    return n;
}

static void test_loader_holds_no_secrets(void **state) {
    (void)state;
    /* What the daemon of a real deployment holds in its environment. */
    assert_int_equal(setenv("SIGFLOW_KAFKA_SASL_PASSWORD", "s3cret-of-the-daemon", 1), 0);
    assert_int_equal(setenv("SIGFLOW_KAFKA_SSL_KEY_PASSWORD", "another-s3cret", 1), 0);
    slow_load s = {.path = sft_gunzip_temp(FIXTURE("corrupt_hang_6240_7f.h5.gz"), ".h5")};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_slow_load, &s), 0);

    /* Sampled once the loader has confined itself (its filter is the last
     * step) and is spinning in libhdf5. */
    pid_t pid = 0;
    char fds[4096] = "", status_path[64];
    char *status = NULL;
    int64_t deadline = sft_now_ms() + 6000;
    while (sft_now_ms() < deadline) {
        if (!pid && (pid = find_loader()))
            snprintf(status_path, sizeof status_path, "/proc/%d/status", (int)pid);
        free(status);
        status = pid ? sft_read_file(status_path, NULL) : NULL;
        if (status && strstr(status, "\nSeccomp:\t2"))
            break;
        sft_nap_ms(5);
    }
    if (!pid || !status)
        fail_msg("no loader process seen");
    assert_true(list_fds(pid, fds, sizeof fds) >= 1);
    printf("  loader %d descriptors: %s\n", (int)pid, fds);
    size_t env_len = 0;
    char env_path[64];
    snprintf(env_path, sizeof env_path, "/proc/%d/environ", (int)pid);
    char *env = sft_read_file(env_path, &env_len);
    assert_non_null(env);
    printf("  loader environment: %zu bytes\n", env_len);
    for (size_t i = 0; i < env_len; i += strlen(env + i) + 1)
        if (strstr(env + i, "SIGFLOW_KAFKA_") || strstr(env + i, "s3cret"))
            fail_msg("the loader's environment holds %s", env + i);
    /* Every descriptor is the model (3), the pipe (4) or the broker socket (5). */
    for (char *p = fds; *p;) {
        int fd = atoi(p);
        const char *target = strchr(p, '=') + 1;
        if (!(fd == 4 && !strncmp(target, "pipe:", 5)) &&
            !(fd == 5 && !strncmp(target, "socket:", 7)) && /* the broker (ONNX) */
            !(fd == 3 && !strncmp(target, s.path, strlen(s.path))))
            fail_msg("unexpected descriptor in the loader: %s", p);
        p = strchr(p, ';') + 1;
    }
    assert_non_null(strstr(fds, "4=pipe:"));
    const char *seccomp = strstr(status, "\nSeccomp:");
    const char *nnp = strstr(status, "\nNoNewPrivs:");
    assert_true(seccomp && nnp);
    printf("  %.*s, %.*s\n", (int)strcspn(seccomp + 1, "\n"), seccomp + 1,
           (int)strcspn(nnp + 1, "\n"), nnp + 1);
    assert_int_equal(atoi(strchr(seccomp, ':') + 1), 2); /* SECCOMP_MODE_FILTER */
    assert_int_equal(atoi(strchr(nnp, ':') + 1), 1);
    free(env);
    free(status);

    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(s.rc, -1);
    printf("  %s\n", s.err);
    assert_int_equal(sf_model_refusal_of(s.err), SF_MODEL_REFUSED_TIMEOUT);
    unsetenv("SIGFLOW_KAFKA_SASL_PASSWORD");
    unsetenv("SIGFLOW_KAFKA_SSL_KEY_PASSWORD");
    unlink(s.path);
    free((char *)s.path);
}

/* ---- a daemon whose loader misbehaves --------------------------------------- */

static void produce_and_wait(const char *brokers, sft_daemon *d, char **keys, char **values,
                             size_t first, size_t n) {
    assert_int_equal(sft_produce(brokers, "events", (const char *const *)keys + first,
                                 (const char *const *)values + first, NULL, n),
                     n);
    double want = (double)(first + n);
    assert_true(sft_wait_metric(d, "sigflow_signals_published_total", want, WAIT_MS) == want);
}

/* SIGHUP and the "reload failed" line it gives, after what the log held. */
static char *reload_refused(sft_daemon *d) {
    char *before = sft_read_file(d->log, NULL);
    size_t before_len = before ? strlen(before) : 0;
    free(before);
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    int64_t deadline = sft_now_ms() + WAIT_MS;
    while (sft_now_ms() < deadline) {
        char *log = sft_read_file(d->log, NULL);
        const char *at = log && strlen(log) > before_len ? strstr(log + before_len, "reload failed")
                                                         : NULL;
        if (at) {
            char *line = strndup(at, strcspn(at, "\n"));
            free(log);
            return line;
        }
        free(log);
        sft_nap_ms(20);
    }
    fail_msg("no \"reload failed\" in %s", d->log);
    return strdup("");
}

static void test_daemon_keeps_serving(void **state) {
    (void)state;
    static const char *const topics[] = {"events", "signals"};
    sf_broker *broker = sft_broker(4, topics, 2);
    const char *brokers = sf_broker_bootstrap(broker);
    /* An install tree whose loader is the probe: the daemon finds
     * libexec/sigflow/sigflow-loader beside its bin/, as installed. */
    char *tree = sft_temp_dir(), dir[1024], sigflow[1024], loader[1024];
    assert_true(strlen(tree) < 512);
    snprintf(dir, sizeof dir, "%.512s/bin", tree);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(dir, sizeof dir, "%.512s/libexec", tree);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(dir, sizeof dir, "%.512s/libexec/sigflow", tree);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(sigflow, sizeof sigflow, "%.512s/bin/sigflow", tree);
    snprintf(loader, sizeof loader, "%.512s/libexec/sigflow/sigflow-loader", tree);
    sft_install_copy(sigflow, SF_TEST_SIGFLOW);
    sft_install_copy(loader, PROBE);
    assert_int_equal(chmod(sigflow, 0755), 0);
    assert_int_equal(chmod(loader, 0755), 0);

    char *model = sft_temp_path(".h5");
    sft_install_copy(model, FIXTURE("model_mlp.h5"));
    char **keys, **values;
    size_t per_phase = 50;
    sft_atlas_events(2 * per_phase, &keys, &values);
    const char *args[] = {"--brokers", brokers, "--model", model, "--variables",
                          FIXTURE("vars_higgs.json"), "--group", "sandbox", "--emit", "all", NULL};
    sft_daemon d;
    sft_daemon_start_program(&d, sigflow, args, WAIT_MS);
    produce_and_wait(brokers, &d, keys, values, 0, per_phase);

    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        char *probe = write_probe(probes[i]);
        sft_install_copy(model, probe);
        char *line = reload_refused(&d);
        printf("  log: %s\n", line);
        char want[256];
        snprintf(want, sizeof want, "model loader violated its sandbox (syscall %s) while reading",
                 probes[i]);
        if (!strstr(line, want) || !strstr(line, model))
            fail_msg("expected \"%s\" naming %s in: %s", want, model, line);
        free(line);
        assert_true(sft_daemon_running(&d));
        unlink(probe);
        free(probe);
    }
    assert_true(sft_scrape(d.port, "sigflow_model_refusals_total{cause=\"sandbox\"}") == 3);
    assert_true(sft_scrape(d.port, "sigflow_model_reload_failures_total") == 3);
    /* The first model still scores every event. */
    produce_and_wait(brokers, &d, keys, values, per_phase, per_phase);
    assert_int_equal(sft_daemon_stop(&d, SIGTERM, WAIT_MS), 0);

    sft_daemon_free(&d);
    sft_strings_free(keys, 2 * per_phase);
    sft_strings_free(values, 2 * per_phase);
    unlink(model);
    free(model);
    sft_remove_tree(tree);
    free(tree);
    sf_broker_stop(broker);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_filter_no_load), /* first: it forks */
        cmocka_unit_test(test_probes_are_killed),
        cmocka_unit_test(test_external_link_is_killed),
        cmocka_unit_test(test_loader_holds_no_secrets),
        cmocka_unit_test(test_daemon_keeps_serving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
