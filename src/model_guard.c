/* model_guard.c: sf_model_load, the model loader behind a process boundary.
 *
 * libhdf5 trusts the bytes it reads: one changed byte in a Keras file makes it
 * segfault or spin forever inside H5Aread (issue 15), and a serving daemon
 * reloads models on SIGHUP. So the real loader (model.c) runs in a forked
 * child that writes the parsed model to a pipe and _exits. The parent reads it
 * under a deadline, kills a child that overstays, and re-checks every count
 * and size it receives, so that not even a child gone wrong can hand the
 * engine a model it would run out of bounds. The parent never calls libhdf5.
 *
 * The child is a fork of a threaded process (Kafka, metrics, inference
 * threads): it only loads, writes and _exits. No logging, no stdio flush, no
 * exit handlers (LeakSanitizer's included: the model it built is left behind
 * on purpose, the process ends right after). A lock another thread held at
 * the fork stays held in the child for good: glibc resets its own, but
 * GCC 12's AddressSanitizer allocator does not, and under ASan a loader child
 * of the bench or the daemon now and then slept on one until the deadline.
 * So start-up loads happen before any thread starts (`run`, and `demo` and
 * the bench through sf_pipeline_conf.loaded). A reload cannot: a child is
 * single-threaded, so one that waits on a futex waits forever, and the
 * parent, seeing that in /proc, kills it and forks again. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sigflow/clock.h"
#include "sigflow/model.h"

#define MAGIC 0x314d4653u          /* "SFM1" */
#define MAX_LAYERS ((uint64_t)1 << 16)
#define MAX_WIDTH ((uint64_t)1 << 24)
#define MAX_VALUES ((uint64_t)1 << 26)
#define MAX_STRING ((uint64_t)1 << 16)
#define MAX_REPLY ((size_t)1 << 30)

/* ---- the child: serialize ----------------------------------------------------- */

typedef struct wbuf {
    char *p;
    size_t len, cap;
    int oom;
} wbuf;

static void put(wbuf *b, const void *v, size_t n) {
    if (b->oom)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, v, n);
    b->len += n;
}

static void put_u32(wbuf *b, uint32_t v) { put(b, &v, sizeof v); }
static void put_u64(wbuf *b, uint64_t v) { put(b, &v, sizeof v); }

static void put_str(wbuf *b, const char *s) {
    size_t n = strlen(s);
    put_u64(b, n);
    put(b, s, n);
}

/* A NULL array is sent as count 0. */
static void put_floats(wbuf *b, const float *v, size_t n) {
    put_u64(b, v ? n : 0);
    if (v)
        put(b, v, n * sizeof *v);
}

/* The structs travel whole, so that a plain value added to sf_model or
 * sf_layer (an activation option, a head flag) crosses without a change here;
 * their pointers are meaningless across processes and are sent as the
 * strings and arrays they point to. The layout checks below fail the build
 * when the structs change, so that whoever changes them looks here: a new
 * pointer must be sent explicitly, a new value may need a range check. */
_Static_assert(sizeof(sf_layer) == 88 && offsetof(sf_layer, n_params) == 80,
               "sf_layer changed: check serialize() and get_layer() in model_guard.c");
_Static_assert(sizeof(sf_model) == 120 && offsetof(sf_model, sha256) == 52,
               "sf_model changed: check serialize() and deserialize() in model_guard.c");

static void serialize(wbuf *b, const sf_model *m, const char *err) {
    put_u32(b, MAGIC);
    put_u32(b, m != NULL);
    if (!m) {
        put_str(b, err);
        return;
    }
    put(b, m, sizeof *m);
    for (size_t i = 0; i < m->n_layers; i++) {
        const sf_layer *l = &m->layers[i];
        put(b, l, sizeof *l);
        put_str(b, l->name);
        put_str(b, l->keras_class);
        put_floats(b, l->kernel, l->n_in * l->n_out);
        put_floats(b, l->bias, l->n_out);
        put_floats(b, l->scale, l->n_out);
    }
    put_u32(b, MAGIC);
}

static void write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

__attribute__((noreturn))
static void child(int fd, const char *path, const char *arch_path, const char *onnx_output) {
    /* A crash should end the child with its signal, the same in every build,
     * rather than run a handler inherited from the parent (a sanitizer's or a
     * fuzzer's) that reports it as the parent's own. */
    static const int deadly[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof deadly / sizeof deadly[0]; i++)
        signal(deadly[i], SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a spinning child must not outlive us */
    /* The loader reports through errstr; anything else on stderr would be a
     * sanitizer's report of libhdf5's fault, and the parent's one line says
     * what happened. */
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0)
        dup2(null, STDERR_FILENO);
    char err[1024] = "";
    sf_model *m = NULL;
    sf_model_load_inprocess(&m, path, arch_path, onnx_output, err, sizeof err);
    wbuf b = {0};
    serialize(&b, m, err);
    if (b.oom) {
        b.len = 0;
        b.oom = 0;
        snprintf(err, sizeof err, "%s: out of memory", path);
        serialize(&b, NULL, err);
    }
    if (!b.oom)
        write_all(fd, b.p, b.len);
    _exit(0);
}

/* ---- the parent: read and check ------------------------------------------------ */

typedef struct rbuf {
    const char *p;
    size_t len, pos;
    const char *bad; /* the first inconsistency found */
} rbuf;

static int get(rbuf *r, void *v, size_t n) {
    if (r->bad)
        return -1;
    if (n > r->len - r->pos) {
        r->bad = "truncated";
        return -1;
    }
    memcpy(v, r->p + r->pos, n);
    r->pos += n;
    return 0;
}

static uint32_t get_u32(rbuf *r) {
    uint32_t v = 0;
    get(r, &v, sizeof v);
    return v;
}

static uint64_t get_u64(rbuf *r) {
    uint64_t v = 0;
    get(r, &v, sizeof v);
    return v;
}

static void mark(rbuf *r, const char *why) {
    if (!r->bad)
        r->bad = why;
}

static char *get_str(rbuf *r) {
    uint64_t n = get_u64(r);
    if (n > MAX_STRING)
        mark(r, "string too long");
    if (r->bad)
        return NULL;
    char *s = malloc(n + 1);
    if (!s) {
        mark(r, "out of memory");
        return NULL;
    }
    if (get(r, s, n) < 0) {
        free(s);
        return NULL;
    }
    s[n] = '\0';
    if (strlen(s) != n)
        mark(r, "string with a NUL byte");
    return s;
}

/* An array of exactly `want` finite floats, or (when absent_ok) none at all. */
static float *get_floats(rbuf *r, uint64_t want, int absent_ok) {
    uint64_t n = get_u64(r);
    if (r->bad || (n == 0 && absent_ok))
        return NULL;
    if (n != want || n == 0 || n > MAX_VALUES) {
        mark(r, "array of the wrong length");
        return NULL;
    }
    float *v = malloc(n * sizeof *v);
    if (!v) {
        mark(r, "out of memory");
        return NULL;
    }
    if (get(r, v, n * sizeof *v) < 0) {
        free(v);
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            mark(r, "non-finite weight");
            break;
        }
    }
    return v;
}

/* Reads layer i into *l and checks what the engine relies on: a known kind
 * and activation, widths that chain, arrays of exactly the implied sizes. */
static void get_layer(rbuf *r, sf_layer *l, size_t n_in_expected) {
    if (get(r, l, sizeof *l) < 0)
        return;
    l->name = l->keras_class = NULL;
    l->kernel = l->bias = l->scale = NULL;
    l->name = get_str(r);
    l->keras_class = get_str(r);
    if (r->bad)
        return;
    size_t n_in = l->n_in, n_out = l->n_out;
    if ((unsigned)l->kind > SF_LAYER_ACTIVATION ||
        !strcmp(sf_activation_name(l->activation), "unknown") || !isfinite(l->alpha) ||
        isnan(l->max_value) || !isfinite(l->threshold))
        mark(r, "unknown layer kind or activation");
    else if (n_in == 0 || n_out == 0 || n_in > MAX_WIDTH || n_out > MAX_WIDTH ||
             n_in * n_out > MAX_VALUES)
        mark(r, "layer width out of range");
    else if (n_in != n_in_expected)
        mark(r, "layer widths do not chain");
    else if (l->kind != SF_LAYER_DENSE && n_in != n_out)
        mark(r, "a non-dense layer changes the width");
    if (r->bad)
        return;
    int dense = l->kind == SF_LAYER_DENSE, scale = l->kind == SF_LAYER_SCALE;
    l->kernel = get_floats(r, dense ? n_in * n_out : 0, !dense);
    l->bias = get_floats(r, n_out, !scale);
    l->scale = get_floats(r, n_out, !scale);
    if ((!dense && l->kernel) || (!dense && !scale && l->bias) || (!scale && l->scale))
        mark(r, "weights on a layer kind that has none");
}

/* Rebuilds the model from the child's reply; NULL with r->bad set if anything
 * in it is inconsistent. */
static sf_model *deserialize(rbuf *r, const char *path, char *errstr, size_t errstr_size) {
    if (get_u32(r) != MAGIC) {
        mark(r, "no header");
        return NULL;
    }
    if (!get_u32(r)) { /* the loader's own refusal */
        char *why = get_str(r);
        if (why && !r->bad)
            snprintf(errstr, errstr_size, "%s", why);
        free(why);
        if (!r->bad && r->pos != r->len)
            mark(r, "trailing bytes");
        return NULL;
    }
    sf_model *m = calloc(1, sizeof *m);
    if (!m) {
        mark(r, "out of memory");
        return NULL;
    }
    if (get(r, m, sizeof *m) < 0) {
        free(m);
        return NULL;
    }
    size_t n_layers = m->n_layers;
    m->path = NULL;
    m->layers = NULL;
    m->n_layers = 0; /* counts the layers read, for sf_model_free */
    m->sha256[64] = '\0';
    if (n_layers == 0 || n_layers > MAX_LAYERS)
        mark(r, "layer count out of range");
    else if (strspn(m->sha256, "0123456789abcdef") != 64)
        mark(r, "malformed sha256");
    else if (m->sigmoid_head != 0 && (m->sigmoid_head != 1 || m->n_outputs != 2))
        mark(r, "malformed sigmoid head");
    else if (!(m->layers = calloc(n_layers, sizeof *m->layers)))
        mark(r, "out of memory");
    size_t width = m->n_inputs;
    for (size_t i = 0; !r->bad && i < n_layers; i++) {
        m->n_layers = i + 1;
        get_layer(r, &m->layers[i], width);
        width = m->layers[i].n_out;
    }
    if (!r->bad && (width != m->n_outputs || m->n_inputs == 0))
        mark(r, "input or output width does not match the layers");
    if (!r->bad && get_u32(r) != MAGIC)
        mark(r, "no trailer");
    if (!r->bad && r->pos != r->len)
        mark(r, "trailing bytes");
    if (!r->bad && !(m->path = strdup(path)))
        mark(r, "out of memory");
    if (r->bad) {
        sf_model_free(m);
        return NULL;
    }
    return m;
}

/* The child sleeps on a lock: a single-threaded process never wakes from that. */
static int stuck_on_lock(pid_t pid) {
    char path[64], wchan[64] = "";
    snprintf(path, sizeof path, "/proc/%d/wchan", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(wchan, 1, sizeof wchan - 1, f);
    fclose(f);
    wchan[n] = '\0';
    return strstr(wchan, "futex") != NULL;
}

/* Reads the child's whole reply, until EOF or the deadline. Returns 0 at EOF,
 * 1 on timeout, 2 when the child is stuck on a lock it inherited, -1 on error
 * (errno). */
static int read_reply(int fd, pid_t pid, int64_t deadline_ms, char **out, size_t *len) {
    int stuck = 0;
    size_t cap = 0, n = 0;
    char *buf = NULL;
    for (;;) {
        int64_t left = deadline_ms - sf_clock_ms();
        if (left <= 0) {
            *out = buf;
            *len = n;
            return 1;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left > 1000 ? 1000 : (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            break;
        if (pr == 0) {
            stuck = stuck_on_lock(pid) ? stuck + 1 : 0;
            if (stuck == 2) { /* seen twice, a second apart */
                free(buf);
                *out = NULL;
                *len = 0;
                return 2;
            }
            continue;
        }
        if (n == cap) {
            char *bigger = cap < MAX_REPLY ? realloc(buf, cap = cap ? cap * 2 : 65536) : NULL;
            if (!bigger) {
                errno = ENOMEM;
                break;
            }
            buf = bigger;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            break;
        if (got == 0) {
            *out = buf;
            *len = n;
            return 0;
        }
        n += (size_t)got;
    }
    free(buf);
    *out = NULL;
    *len = 0;
    return -1;
}

#define LOAD_AGAIN (-2) /* the child stuck on an inherited lock: fork another */

/* One child, up to the caller's deadline (timeout_ms is for the message). */
static int load_once(sf_model **out, const char *path, const char *arch_path,
                     const char *onnx_output, int64_t deadline,
                     int timeout_ms, char *errstr, size_t errstr_size) {
    *out = NULL;
    int fds[2];
    if (pipe(fds) < 0) {
        snprintf(errstr, errstr_size, "%s: cannot create a pipe for the loader: %s", path,
                 strerror(errno));
        return -1;
    }
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(errstr, errstr_size, "%s: cannot start the loader process: %s", path,
                 strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        child(fds[1], path, arch_path, onnx_output);
    }
    close(fds[1]);
    char *reply;
    size_t len;
    int rr = read_reply(fds[0], pid, deadline, &reply, &len);
    int read_errno = errno;
    close(fds[0]);
    if (rr == 1 || rr == 2)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rr == 2 && sf_clock_ms() < deadline)
        return LOAD_AGAIN; /* not the file's doing */
    sf_model *m = NULL;
    if (rr == 1 || rr == 2) {
        snprintf(errstr, errstr_size, "%s: reading it took longer than %g s", path,
                 timeout_ms / 1000.0);
    } else if (WIFSIGNALED(status)) {
        snprintf(errstr, errstr_size, "%s: the HDF5 library crashed reading it (signal %d)", path,
                 WTERMSIG(status));
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(errstr, errstr_size, "%s: the loader process failed (exit status %d)", path,
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    } else if (rr < 0) {
        snprintf(errstr, errstr_size, "%s: cannot read from the loader process: %s", path,
                 strerror(read_errno));
    } else {
        rbuf r = {.p = reply, .len = len};
        errstr[0] = '\0';
        m = deserialize(&r, path, errstr, errstr_size);
        if (r.bad)
            snprintf(errstr, errstr_size, "%s: the loader process sent back a damaged model (%s)",
                     path, r.bad);
    }
    free(reply);
    *out = m;
    return m ? 0 : -1;
}

int sf_model_load_guarded(sf_model **out, const char *path, const char *arch_path,
                          const char *onnx_output, int timeout_ms, char *errstr, size_t errstr_size) {
    int64_t deadline = sf_clock_ms() + timeout_ms;
    int rc;
    while ((rc = load_once(out, path, arch_path, onnx_output, deadline, timeout_ms, errstr, errstr_size)) ==
           LOAD_AGAIN)
        ;
    return rc;
}

int sf_model_load(sf_model **out, const char *path, const char *arch_path,
                  const char *onnx_output, char *errstr, size_t errstr_size) {
    int timeout_ms = SF_MODEL_LOAD_TIMEOUT_MS;
    const char *env = getenv("SIGFLOW_MODEL_LOAD_TIMEOUT");
    if (env && *env) {
        char *end;
        double s = strtod(env, &end);
        if (*end || !(s > 0 && s <= 86400)) {
            *out = NULL;
            snprintf(errstr, errstr_size, "SIGFLOW_MODEL_LOAD_TIMEOUT='%s': expected a number of "
                     "seconds (0 < s <= 86400)", env);
            return -1;
        }
        timeout_ms = (int)ceil(s * 1000);
    }
    return sf_model_load_guarded(out, path, arch_path, onnx_output, timeout_ms, errstr, errstr_size);
}
