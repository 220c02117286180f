/* bench_sys.c: what sigflow-bench asks the operating system: CPU time per
 * thread group, peak RSS and a description of the machine.
 *
 * The benchmark runs the broker, the feed and the pipeline in one process on
 * a shared machine, so a throughput figure is only interpretable next to where
 * the CPU went and what else was running (the load average). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "sigflow/blas.h"
#include "bench.h"

const char *const bench_thread_group_names[BENCH_T__COUNT] = {
    "pipeline_thread", "infer_helpers", "blas_workers", "kafka_clients", "broker", "feed", "other"};

void bench_thread_name(const char *name) {
    prctl(PR_SET_NAME, name, 0, 0, 0);
}

static bench_thread_group group_of(const char *comm) {
    if (!strcmp(comm, "sf-pipeline"))
        return BENCH_T_PIPELINE;
    if (!strcmp(comm, "sf-feed") || !strcmp(comm, "sf-feed-rdk"))
        return BENCH_T_FEED;
    if (!strcmp(comm, "sf-infer"))
        return BENCH_T_INFER;
    if (!strcmp(comm, "rdk:mock"))
        return BENCH_T_BROKER;
    if (!strncmp(comm, "rdk:", 4))
        return BENCH_T_KAFKA;
    if (!strcmp(comm, "sf-main"))
        return BENCH_T_OTHER;
    /* OpenBLAS starts its workers from its library constructor, before main()
     * renames the main thread, so they carry the program's name. */
    return BENCH_T_BLAS;
}

/* utime + stime of one thread, and its name. -1 when it is gone. */
static int read_task(const char *tid, char *comm, size_t comm_size, double *cpu_s) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/self/task/%s/stat", tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* "tid (comm) state ppid ...": comm may hold spaces, so cut at the last ')'. */
    char *open = strchr(buf, '('), *close = strrchr(buf, ')');
    if (!open || !close || close < open)
        return -1;
    snprintf(comm, comm_size, "%.*s", (int)(close - open - 1), open + 1);
    unsigned long long utime = 0, stime = 0;
    /* After ")": state, then fields 4..13, then utime (14) and stime (15). */
    if (sscanf(close + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime,
               &stime) != 2)
        return -1;
    *cpu_s = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

void bench_threads_snapshot(bench_threads *out) {
    out->n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) && out->n < BENCH_MAX_THREADS) {
        if (e->d_name[0] == '.')
            continue;
        char comm[64];
        double cpu;
        if (read_task(e->d_name, comm, sizeof comm, &cpu))
            continue;
        out->tid[out->n] = atoi(e->d_name);
        out->group[out->n] = group_of(comm);
        out->cpu_s[out->n] = cpu;
        out->n++;
    }
    closedir(d);
}

void bench_threads_diff(const bench_threads *before, const bench_threads *after,
                        double cpu_s[BENCH_T__COUNT]) {
    for (int g = 0; g < BENCH_T__COUNT; g++)
        cpu_s[g] = 0;
    for (size_t i = 0; i < after->n; i++) {
        double base = 0; /* a thread born between the snapshots started at 0 */
        for (size_t j = 0; j < before->n; j++)
            if (before->tid[j] == after->tid[i])
                base = before->cpu_s[j];
        cpu_s[after->group[i]] += after->cpu_s[i] - base;
    }
}

double bench_thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double bench_process_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* VmHWM rather than getrusage's ru_maxrss: the kernel folds the peak into
 * ru_maxrss whenever a thread exits, where bench_rss_reset_peak cannot undo it. */
double bench_rss_max_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    if (kb >= 0)
        return (double)kb / 1024.0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

int bench_rss_reset_peak(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f)
        return -1;
    int rc = fputs("5", f) < 0 ? -1 : 0;
    return fclose(f) || rc ? -1 : 0;
}

double bench_rss_mb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

int bench_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory stream's own */
}

/* The value of the first "key<spaces>: value" line of /proc/cpuinfo. */
static void cpuinfo(const char *key, char *out, size_t size) {
    snprintf(out, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) || !strchr(line, ':'))
            continue;
        char *v = strchr(line, ':') + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\n")] = '\0';
        snprintf(out, size, "%s", v);
        break;
    }
    fclose(f);
}

double bench_pids_cpu_s(const int *pids, size_t n) {
    double ticks = (double)sysconf(_SC_CLK_TCK), sum = 0;
    for (size_t i = 0; i < n; i++) {
        char path[64], buf[1024];
        snprintf(path, sizeof path, "/proc/%d/stat", pids[i]);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        /* fields after the ")" that ends the command name: state is field 3,
         * utime and stime are fields 14 and 15 */
        const char *p = strrchr(buf, ')');
        unsigned long long ut = 0, st = 0;
        if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
            sum += (double)(ut + st) / ticks;
    }
    return sum;
}

json_t *bench_machine_json(void) {
    char model[256], mhz[64];
    cpuinfo("model name", model, sizeof model);
    cpuinfo("cpu MHz", mhz, sizeof mhz);
    double load[3] = {-1, -1, -1};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf %lf %lf", &load[0], &load[1], &load[2]) != 3)
            load[0] = load[1] = load[2] = -1;
        fclose(f);
    }
    struct utsname u;
    if (uname(&u))
        snprintf(u.release, sizeof u.release, "unknown");
    sf_blas_info b;
    sf_blas_info_get(&b);
    json_t *j = json_pack("{s:i, s:s, s:f, s:b, s:[f,f,f], s:s, s:s, s:s, s:i, s:s, s:b, s:s}",
                     "cores", (int)sysconf(_SC_NPROCESSORS_ONLN), "cpu_model", model, "cpu_mhz",
                     atof(mhz), "cpu_avx512", b.cpu_avx512, "loadavg_at_start", load[0], load[1],
                     load[2], "kernel", u.release, "blas_core", b.corename, "blas_config", b.config,
                     "blas_threads", b.threads, "openblas_coretype_env", b.coretype_env,
                     "blas_kernel_avx512", b.kernel_avx512, "librdkafka", rd_kafka_version_str());
    json_object_set_new(j, "cpu_bf16", json_boolean(sf_infer_cpu_bf16()));
    json_object_set_new(j, "blas_generic", json_boolean(b.generic));
    json_object_set_new(j, "blas_detected_by_openblas", json_string(b.detected[0] ? b.detected : b.corename));
    json_object_set_new(j, "onednn", json_boolean(sf_infer_backend_available(SF_BACKEND_ONEDNN)));
    return j;
}
