/* http.c: /metrics, /healthz and /readyz on a libevent evhttp server.
 *
 * The server owns its event_base and touches it from its own thread only. The
 * one cross-thread action, stopping, goes through a socketpair: sf_http_stop
 * writes a byte, and a read event inside the loop breaks it. That is why
 * evthread_use_pthreads() is not called: it would switch on locking for every
 * event_base in the process (librdkafka and others need none of it) only to
 * make one loopbreak call safe from outside.
 *
 * The socket is bound by hand rather than with evhttp_bind_socket so a bad
 * address or a busy port comes back as a message in errstr instead of a
 * libevent warning on stderr. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>

#include "sigflow/clock.h"
#include "sigflow/http.h"

#define SF_HTTP_MAX_HEADERS 8192
#define SF_HTTP_MAX_BODY 8192
#define SF_HTTP_TIMEOUT_S 5
#define SF_HTTP_BACKLOG 64

struct sf_http {
    struct event_base *base;
    struct evhttp *http;
    struct event *wake_ev;
    evutil_socket_t wake[2]; /* [0] read by the loop, [1] written by sf_http_stop */
    pthread_t thread;
    int port;
    sf_metrics *metrics;
    sf_health *health;
};

/* ---- health ------------------------------------------------------------- */

void sf_health_init(sf_health *h) {
    atomic_init(&h->last_beat_ms, sf_clock_ms());
    atomic_init(&h->model_loaded, 0);
    atomic_init(&h->assigned, 0);
    h->stall_ms = SF_HEALTH_STALL_MS_DEFAULT;
}

void sf_health_beat(sf_health *h) {
    atomic_store_explicit(&h->last_beat_ms, sf_clock_ms(), memory_order_relaxed);
}

void sf_health_set_model_loaded(sf_health *h, int loaded) {
    atomic_store_explicit(&h->model_loaded, loaded != 0, memory_order_relaxed);
}

void sf_health_set_assigned(sf_health *h, int assigned) {
    atomic_store_explicit(&h->assigned, assigned != 0, memory_order_relaxed);
}

int sf_health_alive(const sf_health *h, int64_t now_ms) {
    return now_ms - atomic_load_explicit(&h->last_beat_ms, memory_order_relaxed) <= h->stall_ms;
}

int sf_health_ready(const sf_health *h) {
    return atomic_load_explicit(&h->model_loaded, memory_order_relaxed) &&
           atomic_load_explicit(&h->assigned, memory_order_relaxed);
}

/* ---- requests ----------------------------------------------------------- */

static void reply(struct evhttp_request *req, int code, const char *reason,
                  const char *content_type, const char *body, size_t len) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    /* libevent 2.1 would send a body even in answer to HEAD. */
    if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
        evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
    evhttp_send_reply(req, code, reason, NULL);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *body) {
    reply(req, code, reason, "text/plain; charset=utf-8", body, strlen(body));
}

static void serve_metrics(sf_http *s, struct evhttp_request *req) {
    char *text = sf_metrics_render(s->metrics);
    if (!text) {
        reply_text(req, 500, "Internal Server Error", "out of memory rendering metrics\n");
        return;
    }
    reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
}

static void serve_healthz(sf_http *s, struct evhttp_request *req) {
    int64_t now = sf_clock_ms();
    if (sf_health_alive(s->health, now)) {
        reply_text(req, 200, "OK", "ok\n");
        return;
    }
    char body[128];
    snprintf(body, sizeof body, "stalled: main loop silent for %lld ms (limit %lld ms)\n",
             (long long)(now - atomic_load(&s->health->last_beat_ms)),
             (long long)s->health->stall_ms);
    reply_text(req, 503, "Service Unavailable", body);
}

static void serve_readyz(sf_http *s, struct evhttp_request *req) {
    int model = atomic_load(&s->health->model_loaded);
    int assigned = atomic_load(&s->health->assigned);
    if (model && assigned) {
        reply_text(req, 200, "OK", "ready\n");
        return;
    }
    char body[128];
    snprintf(body, sizeof body, "not ready:%s%s\n", model ? "" : " model not loaded",
             assigned ? "" : " no partitions assigned");
    reply_text(req, 503, "Service Unavailable", body);
}

static void handle_request(struct evhttp_request *req, void *arg) {
    sf_http *s = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    void (*serve)(sf_http *, struct evhttp_request *) = NULL;

    if (!path) path = "";
    if (strcmp(path, "/metrics") == 0) serve = serve_metrics;
    else if (strcmp(path, "/healthz") == 0) serve = serve_healthz;
    else if (strcmp(path, "/readyz") == 0) serve = serve_readyz;
    if (!serve) {
        reply_text(req, 404, "Not Found", "not found\n");
        return;
    }
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_text(req, 405, "Method Not Allowed", "method not allowed\n");
        return;
    }
    serve(s, req);
}

/* ---- lifecycle ---------------------------------------------------------- */

/* Splits "HOST:PORT" / "[IPV6]:PORT" into host and port. */
static int parse_addr(const char *addr, char *host, size_t host_size, char *port,
                      size_t port_size, char *errstr, size_t errstr_size) {
    const char *h, *h_end, *p;
    if (addr[0] == '[') {
        h = addr + 1;
        h_end = strchr(h, ']');
        if (!h_end || h_end[1] != ':') {
            snprintf(errstr, errstr_size, "http address '%s': expected [IPV6]:PORT", addr);
            return -1;
        }
        p = h_end + 2;
    } else {
        h = addr;
        h_end = strrchr(addr, ':');
        if (!h_end) {
            snprintf(errstr, errstr_size, "http address '%s': expected HOST:PORT", addr);
            return -1;
        }
        if (memchr(addr, ':', (size_t)(h_end - addr))) {
            snprintf(errstr, errstr_size,
                     "http address '%s': an IPv6 host needs brackets, e.g. [::1]:9464", addr);
            return -1;
        }
        p = h_end + 1;
    }
    size_t hlen = (size_t)(h_end - h);
    if (hlen == 0 || hlen >= host_size) {
        snprintf(errstr, errstr_size, "http address '%s': %s host", addr,
                 hlen ? "overlong" : "empty");
        return -1;
    }
    size_t plen = strlen(p);
    unsigned long portnum = 0;
    int ok = plen > 0 && plen < port_size && plen <= 5;
    for (size_t i = 0; ok && i < plen; i++) {
        if (p[i] < '0' || p[i] > '9') ok = 0;
        else portnum = portnum * 10 + (unsigned long)(p[i] - '0');
    }
    if (!ok || portnum > 65535) {
        snprintf(errstr, errstr_size, "http address '%s': port must be 0..65535", addr);
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    memcpy(port, p, plen + 1);
    return 0;
}

int sf_http_addr_check(const char *addr, char *errstr, size_t errstr_size) {
    char host[256], port[8];
    return parse_addr(addr, host, sizeof host, port, sizeof port, errstr, errstr_size);
}

/* A listening, non-blocking socket on the first address of host that binds. */
static int listen_on(const char *addr, const char *host, const char *port, char *errstr,
                     size_t errstr_size) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "http address '%s': %s", addr, gai_strerror(rc));
        return -1;
    }
    int fd = -1, err = 0;
    const char *step = "socket";
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            step = "socket";
            continue;
        }
        int one = 1;
        /* A restart must not wait out the previous run's TIME_WAIT sockets;
         * on Linux this still refuses a port another socket listens on. */
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) step = "bind";
        else if (listen(fd, SF_HTTP_BACKLOG) != 0) step = "listen";
        else break;
        err = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) snprintf(errstr, errstr_size, "http address '%s': %s: %s", addr, step,
                         strerror(err));
    return fd;
}

static int bound_port(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return -1;
}

static void on_wake(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    char byte;
    (void)recv(fd, &byte, 1, 0);
    event_base_loopbreak(arg);
}

static void *serve_thread(void *arg) {
    sf_http *s = arg;
    event_base_dispatch(s->base);
    return NULL;
}

/* Frees what sf_http_start built; the thread must not be running. */
static void http_free(sf_http *s) {
    if (s->http) evhttp_free(s->http); /* closes the listener and open connections */
    if (s->wake_ev) event_free(s->wake_ev);
    if (s->base) event_base_free(s->base);
    if (s->wake[0] >= 0) evutil_closesocket(s->wake[0]);
    if (s->wake[1] >= 0) evutil_closesocket(s->wake[1]);
    free(s);
}

int sf_http_start(sf_http **out, const char *addr, sf_metrics *m, sf_health *h, char *errstr,
                  size_t errstr_size) {
    char host[256], port[8];
    *out = NULL;
    if (parse_addr(addr, host, sizeof host, port, sizeof port, errstr, errstr_size) != 0)
        return -1;

    sf_http *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(errstr, errstr_size, "http server: out of memory");
        return -1;
    }
    s->wake[0] = s->wake[1] = -1;
    s->metrics = m;
    s->health = h;

    int fd = listen_on(addr, host, port, errstr, errstr_size);
    if (fd < 0) {
        http_free(s);
        return -1;
    }
    s->port = bound_port(fd);

    s->base = event_base_new();
    s->http = s->base ? evhttp_new(s->base) : NULL;
    if (!s->http || evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, s->wake) != 0 ||
        evutil_make_socket_nonblocking(s->wake[0]) != 0 ||
        !(s->wake_ev = event_new(s->base, s->wake[0], EV_READ, on_wake, s->base)) ||
        event_add(s->wake_ev, NULL) != 0) {
        snprintf(errstr, errstr_size, "http server on '%s': cannot set up the event loop", addr);
        close(fd);
        http_free(s);
        return -1;
    }
    evhttp_set_max_headers_size(s->http, SF_HTTP_MAX_HEADERS);
    evhttp_set_max_body_size(s->http, SF_HTTP_MAX_BODY);
    evhttp_set_timeout(s->http, SF_HTTP_TIMEOUT_S);
    /* Let every method reach the handler so a wrong one gets 405, not
     * libevent's 501. */
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(s->http, handle_request, s);
    if (!evhttp_accept_socket_with_handle(s->http, fd)) {
        snprintf(errstr, errstr_size, "http server on '%s': cannot accept on the socket", addr);
        close(fd);
        http_free(s);
        return -1;
    }

    /* The thread starts with the asynchronous signals blocked, so SIGINT and
     * SIGTERM reach the main loop, and a client hanging up mid-reply leaves
     * SIGPIPE pending on this thread (the write just fails with EPIPE) instead
     * of killing us. Faults stay unblocked: a blocked SIGSEGV would bypass the
     * sanitizers' handlers. */
    sigset_t all, old;
    sigfillset(&all);
    static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS};
    for (size_t i = 0; i < sizeof faults / sizeof faults[0]; i++) sigdelset(&all, faults[i]);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, serve_thread, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(errstr, errstr_size, "http server on '%s': cannot start thread: %s", addr,
                 strerror(rc));
        http_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int sf_http_port(const sf_http *s) {
    return s->port;
}

void sf_http_stop(sf_http *s) {
    if (!s) return;
    char byte = 1;
    /* A fresh socketpair has room for a byte, so this neither blocks nor fails
     * short of a broken process; retry only on interruption. */
    while (send(s->wake[1], &byte, 1, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
    pthread_join(s->thread, NULL);
    http_free(s);
}
