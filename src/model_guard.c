/* model_guard.c: sf_model_load, the model loader behind a process boundary
 * and in a sandbox (issues 15 and 26).
 *
 * libhdf5 trusts the bytes it reads: one changed byte in a Keras file makes it
 * segfault or spin forever inside H5Aread (issue 15), and fuzzing found heap
 * overflows a crafted file reaches: a way in, not only a crash. So the real
 * loader (model.c) runs in a separate program, sigflow-loader, exec'd afresh
 * for every load: it shares nothing with the daemon (no memory holding Kafka
 * credentials, no environment, no descriptor but a read-only one on the model
 * file and the result pipe), reads the file, confines itself
 * (model_sandbox.c) and only then parses, writes the parsed model to the pipe
 * and exits. The parent reads it under a deadline, kills a child that
 * overstays, and re-checks every count and size it receives, so that not even
 * a child gone wrong can hand the engine a model it would run out of bounds.
 * The parent never calls libhdf5.
 *
 * An exec'd program also inherits no locks: the forked child of earlier days
 * could sleep forever on a lock another thread of the daemon held at the fork.
 *
 * An ONNX model may keep its weights in external data files beside it. The
 * loader opens nothing, so it asks for them over a socket (fd 5): this side
 * checks each location as the in-process reader does (relative, no "..",
 * inside the model's folder once links are resolved, no link itself, a
 * regular file, bounded sizes) and sends the bytes, which the loader adds to
 * the model's digest. */
#define _GNU_SOURCE /* posix_spawn_file_actions_addclosefrom_np */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <hdf5.h>

#include "sigflow/clock.h"
#include "sigflow/log.h"
#include "sigflow/model.h"
#include "sigflow/paths.h"
#include "model_guard.h"
#include "model_onnx.h"
#include "model_sandbox.h"

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

static void serialize(wbuf *b, int confined, const sf_model *m, const char *err) {
    put_u32(b, MAGIC);
    put_u32(b, (uint32_t)confined);
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

static int write_all(int fd, const void *v, size_t n) {
    const char *p = v;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The loader program's arguments, in this order (model_guard.h). */
enum { ARG_PATH = 1, ARG_ARCH, ARG_ONNX_OUTPUT, ARG_CPU, ARG_MEMORY, ARG_UNSAFE, ARG_PARENT,
       N_ARGS };

/* ONNX external data, brokered: the loader sends a request on its broker
 * socket (magic, offset, length, location length, location) and the parent
 * answers status (0: the bytes follow; else a reason of n bytes), n, bytes.
 * The parent checks the location as the in-process reader does
 * (sf_onnx_external_read); the loader checks that n is what it asked for. */
#define BROKER_MAGIC 0x58464653u /* "SFFX" */
#define BROKER_MAX_LOCATION 4096
#define BROKER_MAX_TOTAL ((uint64_t)4 << 30) /* bytes served for one load */

static int read_full(int fd, void *p, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

int sf_loader_broker_ask(void *ctx, const char *location, long long offset, size_t nbytes,
                      unsigned char **out, char *why, size_t why_size) {
    int fd = *(int *)ctx;
    size_t ln = strlen(location);
    *out = NULL;
    if (ln > BROKER_MAX_LOCATION) {
        snprintf(why, why_size, "external data location too long");
        return -1;
    }
    uint32_t magic = BROKER_MAGIC, len32 = (uint32_t)ln, status;
    uint64_t off = (uint64_t)offset, want = nbytes, n;
    if (write_all(fd, &magic, 4) < 0 || write_all(fd, &off, 8) < 0 ||
        write_all(fd, &want, 8) < 0 || write_all(fd, &len32, 4) < 0 ||
        write_all(fd, location, ln) < 0 || read_full(fd, &status, 4) < 0 ||
        read_full(fd, &n, 8) < 0) {
        snprintf(why, why_size, "external data file '%s': no answer from sigflow", location);
        return -1;
    }
    if (status != 0 ? n >= why_size : n != want) {
        snprintf(why, why_size, "external data file '%s': a damaged answer from sigflow",
                 location);
        return -1;
    }
    if (status != 0) {
        if (read_full(fd, why, n) < 0)
            n = 0;
        why[n] = '\0';
        return -1;
    }
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf || read_full(fd, buf, n) < 0) {
        free(buf);
        snprintf(why, why_size, "external data file '%s': %s", location,
                 buf ? "a short answer from sigflow" : "out of memory");
        return -1;
    }
    *out = buf;
    return 0;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SF_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SF_ASAN 1
#endif

int sf_model_loader_main(int argc, char **argv, sf_model_loader_hook hook) {
    if (argc != N_ARGS) {
        fprintf(stderr, "sigflow-loader: internal to sigflow (it parses one model file, in a "
                "sandbox, for sf_model_load); not for use by hand\n");
        return 2;
    }
    /* A spinning child must not outlive us; one whose parent is already gone
     * has nobody to answer. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t)atol(argv[ARG_PARENT]))
        return 1;
    const char *path = argv[ARG_PATH], *arch_path = *argv[ARG_ARCH] ? argv[ARG_ARCH] : NULL;
    int broker = SF_LOADER_FD_BROKER;
    sf_model_parse_opts opts = {
        .onnx_output = *argv[ARG_ONNX_OUTPUT] ? argv[ARG_ONNX_OUTPUT] : NULL,
        .fetch = sf_loader_broker_ask, .fetch_ctx = &broker};
    char err[1024] = "", why[256];
    sf_model_bytes model = {0}, arch = {0};
    sf_model *m = NULL;
    int confined = 0;

    /* Reading is not parsing: the bytes come in before the filter goes up,
     * so that no descriptor but the pipe is open while libhdf5 runs. */
    if (sf_model_bytes_read(&model, SF_LOADER_FD_MODEL, path, SF_MODEL_MAX_FILE, err,
                            sizeof err) < 0 ||
        (arch_path && sf_model_bytes_read(&arch, SF_LOADER_FD_ARCH, arch_path,
                                          SF_MODEL_MAX_ARCH, err, sizeof err) < 0))
        goto reply;
    /* What the libraries would otherwise do on first use, with calls the
     * filter forbids: jansson seeds its hashes from /dev/urandom, libzip's
     * mktime would stat and read /etc/localtime on every call (a zone given
     * as a rule reads no file; zip times mean nothing to us), HDF5 sets
     * itself up and would dlopen a filter plugin a file asks for. */
    json_object_seed(0);
    setenv("TZ", "UTC0", 1);
    /* glibc reports heap corruption (libhdf5's, say) on /dev/tty unless told
     * stderr: an open, where the report should end in abort(), a crash. */
    setenv("LIBC_FATAL_STDERR_", "1", 1);
    tzset();
    if (H5open() < 0 || H5PLset_loading_state(0) < 0) {
        snprintf(err, sizeof err, "%s: the HDF5 library cannot be initialized", path);
        goto reply;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* A crash should end the child with its signal, the same in every build. */
    static const int deadly[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof deadly / sizeof deadly[0]; i++)
        signal(deadly[i], SIG_DFL);
    sf_sandbox_limits lim = {.pipe_fd = SF_LOADER_FD_PIPE, .broker_fd = SF_LOADER_FD_BROKER,
                             .cpu_seconds = atoi(argv[ARG_CPU]),
                             .memory = strtoull(argv[ARG_MEMORY], NULL, 10)};
#ifdef SF_ASAN
    lim.memory = 0; /* ASan reserved terabytes of shadow at start-up */
#endif
    confined = sf_sandbox_enter(&lim, why, sizeof why) == 0;
    if (!confined && strcmp(argv[ARG_UNSAFE], "1") != 0) {
        snprintf(err, sizeof err, "%s: " SF_LOADER_NO_SANDBOX " (%s); refusing to parse it "
                 "unconfined (--unsafe-model-loader would)", path, why);
        goto reply;
    }
    if (hook)
        hook(&model);
    sf_model_parse(&m, &model, arch_path ? &arch : NULL, &opts, err, sizeof err);
reply:;
    wbuf b = {0};
    serialize(&b, confined, m, err);
    if (b.oom) {
        b.len = 0;
        b.oom = 0;
        snprintf(err, sizeof err, "%s: out of memory", path);
        serialize(&b, confined, NULL, err);
    }
    if (!b.oom)
        write_all(SF_LOADER_FD_PIPE, b.p, b.len);
    /* No clean-up: the process ends here, and freeing a model libhdf5 may
     * have damaged could only crash after the answer. */
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
static sf_model *deserialize(rbuf *r, const char *path, int *confined, char *errstr,
                             size_t errstr_size) {
    if (get_u32(r) != MAGIC) {
        mark(r, "no header");
        return NULL;
    }
    *confined = get_u32(r) != 0;
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

/* The parent's side of the broker socket (non-blocking): a request being
 * read, an answer being written. */
typedef struct broker {
    int fd;                    /* -1 once the loader closed it or broke the protocol */
    const char *model_path;
    unsigned char req[24 + BROKER_MAX_LOCATION + 1];
    size_t req_n;
    unsigned char *ans;        /* header and bytes */
    size_t ans_n, ans_pos;
    uint64_t served;
} broker;

/* Stops serving: the loader's next read sees the end, and it reports that
 * it had no answer, rather than wait for the deadline. */
static void broker_stop(broker *b) {
    shutdown(b->fd, SHUT_RDWR);
    b->fd = -1;
}

/* Answers one whole request in b->req: the bytes, or why not. */
static void broker_answer(broker *b, uint64_t off, uint64_t want, const char *loc) {
    char why[512];
    unsigned char *data = NULL;
    uint32_t status = 0;
    if (want > BROKER_MAX_TOTAL - b->served || off > INT64_MAX) {
        snprintf(why, sizeof why, "external data: more than %llu bytes in all",
                 (unsigned long long)BROKER_MAX_TOTAL);
        status = 1;
    } else if (sf_onnx_external_read(b->model_path, loc, (int64_t)off, (size_t)want, &data, why,
                                     sizeof why) < 0) {
        status = 1;
    }
    uint64_t n = status ? strlen(why) : want;
    b->ans = malloc(12 + (size_t)n);
    if (!b->ans) {
        free(data);
        broker_stop(b); /* the loader gets no answer and reports it */
        return;
    }
    memcpy(b->ans, &status, 4);
    memcpy(b->ans + 4, &n, 8);
    memcpy(b->ans + 12, status ? (const void *)why : (const void *)data, (size_t)n);
    free(data);
    b->ans_n = 12 + (size_t)n;
    b->ans_pos = 0;
    b->req_n = 0;
    if (!status)
        b->served += want;
}

/* Reads what the loader sent; answers a request once it is whole. */
static void broker_read(broker *b) {
    size_t need = 24;
    uint32_t magic, ln = 0;
    if (b->req_n >= 24) {
        memcpy(&ln, b->req + 20, 4);
        if (ln > BROKER_MAX_LOCATION) {
            broker_stop(b);
            return;
        }
        need = 24 + (size_t)ln;
    }
    ssize_t r = read(b->fd, b->req + b->req_n, need - b->req_n);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (r <= 0) {
        broker_stop(b);
        return;
    }
    b->req_n += (size_t)r;
    if (b->req_n < need)
        return;
    memcpy(&magic, b->req, 4);
    memcpy(&ln, b->req + 20, 4);
    if (magic != BROKER_MAGIC || ln > BROKER_MAX_LOCATION) {
        broker_stop(b);
        return;
    }
    if (b->req_n < 24 + (size_t)ln)
        return; /* the header is in; the location follows */
    uint64_t off, want;
    memcpy(&off, b->req + 4, 8);
    memcpy(&want, b->req + 12, 8);
    b->req[24 + ln] = '\0';
    if (strlen((const char *)b->req + 24) != ln) { /* a NUL inside the name */
        broker_stop(b);
        return;
    }
    broker_answer(b, off, want, (const char *)b->req + 24);
}

static void broker_write(broker *b) {
    ssize_t w = write(b->fd, b->ans + b->ans_pos, b->ans_n - b->ans_pos);
    if (w < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (w <= 0) {
        broker_stop(b);
        return;
    }
    b->ans_pos += (size_t)w;
    if (b->ans_pos == b->ans_n) {
        free(b->ans);
        b->ans = NULL;
        b->ans_n = b->ans_pos = 0;
    }
}

/* Reads the loader's whole reply, serving its requests for external data
 * meanwhile, until EOF, the deadline or *stop. Returns 0 at EOF, 1 on
 * timeout, 2 when stopped, -1 on error (errno). */
static int read_reply(int fd, broker *b, int64_t deadline_ms, const atomic_int *stop,
                      char **out, size_t *len) {
    size_t cap = 0, n = 0;
    char *buf = NULL;
    for (;;) {
        int64_t left = deadline_ms - sf_clock_ms();
        if (left <= 0 || (stop && atomic_load(stop))) {
            free(b->ans);
            b->ans = NULL;
            *out = buf;
            *len = n;
            return left <= 0 ? 1 : 2;
        }
        struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN},
                                {.fd = b->fd, .events = b->ans ? POLLOUT : POLLIN}};
        int pr = poll(pfd, b->fd >= 0 ? 2 : 1, left > 100 ? 100 : (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            break;
        if (pr == 0)
            continue;
        if (b->fd >= 0 && pfd[1].revents) {
            if (b->ans)
                broker_write(b);
            else
                broker_read(b);
        }
        if (!pfd[0].revents)
            continue;
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
            free(b->ans);
            b->ans = NULL;
            *out = buf;
            *len = n;
            return 0;
        }
        n += (size_t)got;
    }
    free(b->ans);
    b->ans = NULL;
    free(buf);
    *out = NULL;
    *len = 0;
    return -1;
}

/* A descriptor at 10 or above, close-on-exec, so that the spawn's dup2 onto
 * 3 to 6 never overwrites a source it has yet to copy. */
static int high_fd(int fd) {
    return fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

/* Starts the loader: fds 3 (model), 4 (pipe), 5 (broker), 6 (architecture)
 * and nothing else, an empty environment, default signal dispositions and
 * mask. */
static int spawn_loader(const char *program, char *const argv[], int model_fd, int pipe_fd,
                        int broker_fd, int arch_fd, pid_t *pid) {
    int src[4] = {high_fd(model_fd), high_fd(pipe_fd), high_fd(arch_fd), high_fd(broker_fd)};
    int rc = -1;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    char *const envp[] = {NULL};
    if (src[0] < 0 || src[1] < 0 || src[3] < 0 || (arch_fd >= 0 && src[2] < 0))
        goto close;
    if ((errno = posix_spawn_file_actions_init(&fa)) != 0)
        goto close;
    if ((errno = posix_spawnattr_init(&at)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        goto close;
    }
    int e = 0;
    for (int fd = 0; fd < 3; fd++)
        e = e ? e : posix_spawn_file_actions_addclose(&fa, fd);
    e = e ? e : posix_spawn_file_actions_adddup2(&fa, src[0], SF_LOADER_FD_MODEL);
    e = e ? e : posix_spawn_file_actions_adddup2(&fa, src[1], SF_LOADER_FD_PIPE);
    e = e ? e : posix_spawn_file_actions_adddup2(&fa, src[3], SF_LOADER_FD_BROKER);
    if (arch_fd >= 0)
        e = e ? e : posix_spawn_file_actions_adddup2(&fa, src[2], SF_LOADER_FD_ARCH);
    e = e ? e : posix_spawn_file_actions_addclosefrom_np(
                    &fa, (arch_fd >= 0 ? SF_LOADER_FD_ARCH : SF_LOADER_FD_BROKER) + 1);
    e = e ? e : posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    e = e ? e : posix_spawnattr_setsigmask(&at, &none);
    e = e ? e : posix_spawnattr_setsigdefault(&at, &all);
    e = e ? e : posix_spawn(pid, program, &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    errno = e;
    rc = e ? -1 : 0;
close:;
    int saved = errno;
    for (int i = 0; i < 4; i++)
        if (src[i] >= 0)
            close(src[i]);
    errno = saved;
    return rc;
}

/* The child's last words when the filter trapped a call: the trap record at
 * the end of whatever it wrote. */
static const char *trapped_call(const char *reply, size_t len, char *buf, size_t size) {
    uint32_t rec[2];
    if (!reply || len < SF_SANDBOX_TRAP_SIZE)
        return "unknown";
    memcpy(rec, reply + len - SF_SANDBOX_TRAP_SIZE, sizeof rec);
    if (rec[0] != SF_SANDBOX_TRAP_MAGIC)
        return "unknown";
    return sf_sandbox_syscall_name(rec[1], buf, size);
}

/* Opens one input of the load for the child: read-only, never a terminal of ours. */
static int open_input(const char *path, char *errstr, size_t errstr_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        snprintf(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
    return fd;
}

static int load_sandboxed(sf_model **out, const char *path, const char *arch_path,
                          const char *onnx_output, const char *unsafe,
                          const sf_model_loader_conf *c, int timeout_ms, unsigned long long memory,
                          int *confined, char *errstr, size_t errstr_size) {
    *out = NULL;
    char program[PATH_MAX];
    if (c->program)
        snprintf(program, sizeof program, "%s", c->program);
    else if (sf_paths_libexec(SF_PATHS_LOADER, program, sizeof program) < 0) {
        snprintf(errstr, errstr_size, "%s: cannot load it: the model loader %s is missing (it is "
                 "installed with sigflow)", path, program);
        return -1;
    }
    int model_fd = open_input(path, errstr, errstr_size);
    if (model_fd < 0)
        return -1;
    int arch_fd = arch_path ? open_input(arch_path, errstr, errstr_size) : -1;
    if (arch_path && arch_fd < 0) {
        close(model_fd);
        return -1;
    }
    int fds[2], bfds[2] = {-1, -1};
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, bfds) < 0 ||
        fcntl(bfds[0], F_SETFL, O_NONBLOCK) < 0 || pipe2(fds, O_CLOEXEC) < 0) {
        if (bfds[0] >= 0) {
            close(bfds[0]);
            close(bfds[1]);
        }
        snprintf(errstr, errstr_size, "%s: cannot create a pipe for the loader: %s", path,
                 strerror(errno));
        close(model_fd);
        if (arch_fd >= 0)
            close(arch_fd);
        return -1;
    }
    char cpu[32], mem[32], parent[32];
    snprintf(cpu, sizeof cpu, "%d", (timeout_ms + 999) / 1000);
    snprintf(mem, sizeof mem, "%llu", memory);
    snprintf(parent, sizeof parent, "%ld", (long)getpid());
    char *const argv[] = {"sigflow-loader", (char *)path, (char *)(arch_path ? arch_path : ""),
                          (char *)(onnx_output ? onnx_output : ""), cpu, mem, (char *)unsafe,
                          parent, NULL};
    int64_t deadline = sf_clock_ms() + timeout_ms;
    pid_t pid;
    int sr = spawn_loader(program, argv, model_fd, fds[1], bfds[1], arch_fd, &pid);
    int spawn_errno = errno;
    close(model_fd);
    if (arch_fd >= 0)
        close(arch_fd);
    close(fds[1]);
    close(bfds[1]);
    if (sr < 0) {
        close(bfds[0]);
        snprintf(errstr, errstr_size, "%s: cannot start the model loader %s: %s", path, program,
                 strerror(spawn_errno));
        close(fds[0]);
        return -1;
    }
    char *reply;
    size_t len;
    broker b = {.fd = bfds[0], .model_path = path};
    int rr = read_reply(fds[0], &b, deadline, c->stop, &reply, &len);
    close(bfds[0]);
    int read_errno = errno;
    close(fds[0]);
    if (rr == 1 || rr == 2)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    sf_model *m = NULL;
    char name[64];
    if (rr == 2) {
        snprintf(errstr, errstr_size, "%s: loading stopped (SIGTERM or SIGINT)", path);
    } else if (rr == 1 || (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU)) {
        snprintf(errstr, errstr_size, "%s: reading it took longer than %g s", path,
                 timeout_ms / 1000.0);
    } else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
        snprintf(errstr, errstr_size, "%s: " SF_LOADER_VIOLATION " (syscall %s) while reading %s",
                 path, trapped_call(reply, len, name, sizeof name), path);
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
        m = deserialize(&r, path, confined, errstr, errstr_size);
        if (r.bad)
            snprintf(errstr, errstr_size, "%s: the loader process sent back a damaged model (%s)",
                     path, r.bad);
    }
    free(reply);
    *out = m;
    return m ? 0 : -1;
}

/* A limit from the environment variable `name`, in `unit` (0 < v <= max);
 * unset or empty leaves *out. 0, or -1 with errstr. */
static int env_number(const char *name, const char *unit, double max, double *out,
                      char *errstr, size_t errstr_size) {
    const char *env = getenv(name);
    if (!env || !*env)
        return 0;
    char *end;
    double v = strtod(env, &end);
    if (*end || !(v > 0 && v <= max)) {
        snprintf(errstr, errstr_size, "%s='%s': expected a number of %s (0 < n <= %g)", name, env,
                 unit, max);
        return -1;
    }
    *out = v;
    return 0;
}

int sf_model_load_conf(sf_model **out, const char *path, const char *arch_path,
                       const char *onnx_output, const sf_model_loader_conf *conf, char *errstr,
                       size_t errstr_size) {
    static const sf_model_loader_conf defaults = {0};
    const sf_model_loader_conf *c = conf ? conf : &defaults;
    double seconds = SF_MODEL_LOAD_TIMEOUT_MS / 1000.0, mib = SF_MODEL_LOADER_MEMORY >> 20;
    *out = NULL;
    if ((!c->timeout_ms &&
         env_number("SIGFLOW_MODEL_LOAD_TIMEOUT", "seconds", 86400, &seconds, errstr,
                    errstr_size) < 0) ||
        (!c->memory &&
         env_number("SIGFLOW_MODEL_LOADER_MEMORY", "MiB", 1 << 30, &mib, errstr, errstr_size) < 0))
        return -1;
    int timeout_ms = c->timeout_ms ? c->timeout_ms : (int)ceil(seconds * 1000);
    unsigned long long memory = c->memory ? c->memory : (unsigned long long)mib << 20;
    int confined = 0;
    int rc = load_sandboxed(out, path, arch_path, onnx_output, c->unsafe ? "1" : "0", c,
                            timeout_ms, memory, &confined, errstr, errstr_size);
    if (c->unsafe) /* every load under the opt-out says so, confined or not */
        sf_log((sf_logger){SF_LOG_WARN, (sf_log_format)c->log_format}, SF_LOG_WARN,
               "model loader sandbox may be off (--unsafe-model-loader) model=\"%s\" "
               "confined=%s", path, rc == 0 ? (confined ? "yes" : "no") : "unknown");
    return rc;
}

int sf_model_load_guarded(sf_model **out, const char *path, const char *arch_path,
                          const char *onnx_output, int timeout_ms, char *errstr,
                          size_t errstr_size) {
    sf_model_loader_conf c = {.timeout_ms = timeout_ms};
    return sf_model_load_conf(out, path, arch_path, onnx_output, &c, errstr, errstr_size);
}

int sf_model_load(sf_model **out, const char *path, const char *arch_path,
                  const char *onnx_output, char *errstr, size_t errstr_size) {
    return sf_model_load_conf(out, path, arch_path, onnx_output, NULL, errstr, errstr_size);
}

static const char *const refusal_names[SF_MODEL_REFUSED__COUNT] = {
    [SF_MODEL_REFUSED_INVALID] = "invalid",
    [SF_MODEL_REFUSED_CRASH] = "crash",
    [SF_MODEL_REFUSED_TIMEOUT] = "timeout",
    [SF_MODEL_REFUSED_SANDBOX] = "sandbox",
};

/* The phrases are this file's own messages above. */
sf_model_refusal sf_model_refusal_of(const char *errstr) {
    if (strstr(errstr, SF_LOADER_VIOLATION) || strstr(errstr, SF_LOADER_NO_SANDBOX))
        return SF_MODEL_REFUSED_SANDBOX;
    if (strstr(errstr, ": reading it took longer than "))
        return SF_MODEL_REFUSED_TIMEOUT;
    if (strstr(errstr, ": the HDF5 library crashed reading it") ||
        strstr(errstr, ": the loader process failed") ||
        strstr(errstr, ": the loader process sent back a damaged model"))
        return SF_MODEL_REFUSED_CRASH;
    return SF_MODEL_REFUSED_INVALID;
}

const char *sf_model_refusal_name(sf_model_refusal r) {
    return (unsigned)r < SF_MODEL_REFUSED__COUNT ? refusal_names[r] : "invalid";
}
