/* test_http.c: the metrics/health endpoint spoken to over real loopback
 * sockets by a deliberately dumb client, including the clients a production
 * endpoint meets: oversized, half-finished and wrong-method requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "sigflow/clock.h"
#include "sigflow/http.h"
#include "sigflow/metrics.h"
#include "support.h"

#define CLIENT_TIMEOUT_MS 10000

typedef struct fixture {
    sf_metrics *m;
    sf_health h;
    sf_http *srv;
    int port;
} fixture;

typedef struct response {
    int status;         /* 0: connection closed or reset without a status line */
    char head[4096];    /* status line and headers */
    char *body;         /* NUL-terminated */
    size_t body_len;
} response;

static int connect_to(int family, int port) {
    int fd = socket(family, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval tv = {CLIENT_TIMEOUT_MS / 1000, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int rc;
    if (family == AF_INET6) {
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
        inet_pton(AF_INET6, "::1", &sa.sin6_addr);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    if (rc != 0) fail_msg("connect to port %d: %s", port, strerror(errno));
    return fd;
}

/* 0 when everything was sent; -1 when the server hung up first. */
static int send_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) fail_msg("send timed out");
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until the server closes; a reset after a reply still keeps the reply. */
static void read_response(int fd, response *r) {
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1 == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            fail_msg("no response within %d ms", CLIENT_TIMEOUT_MS);
        if (n <= 0) break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    memset(r, 0, sizeof *r);
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        r->status = 0;
        r->body = buf;
        return;
    }
    size_t hlen = (size_t)(sep - buf);
    assert_true(hlen < sizeof r->head);
    memcpy(r->head, buf, hlen);
    r->head[hlen] = '\0';
    r->body_len = len - hlen - 4;
    memmove(buf, sep + 4, r->body_len + 1);
    r->body = buf;
}

/* 1 when the peer closed or reset fd (waits up to the client timeout). */
static int closed_by_peer(int fd) {
    char c;
    ssize_t n;
    do n = recv(fd, &c, 1, 0);
    while (n < 0 && errno == EINTR);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

static void request_raw(int family, int port, const char *raw, size_t len, response *r) {
    int fd = connect_to(family, port);
    if (send_all(fd, raw, len) != 0) {
        /* Hung up on us mid-request: whatever it said before still counts. */
    }
    read_response(fd, r);
    close(fd);
}

static void request(const fixture *f, const char *method, const char *path, response *r) {
    char raw[512];
    int n = snprintf(raw, sizeof raw,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method,
                     path);
    request_raw(AF_INET, f->port, raw, (size_t)n, r);
}

/* The value of a header in r->head, copied to out ("" when absent). */
static void header(const response *r, const char *name, char *out, size_t size) {
    out[0] = '\0';
    const char *p = r->head;
    size_t nl = strlen(name);
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            const char *end = strstr(v, "\r\n");
            size_t vl = end ? (size_t)(end - v) : strlen(v);
            snprintf(out, size, "%.*s", (int)vl, v);
            return;
        }
    }
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    f->m = sf_metrics_new();
    sf_health_init(&f->h);
    f->h.stall_ms = 300;
    char err[256] = "";
    if (sf_http_start(&f->srv, "127.0.0.1:0", f->m, &f->h, err, sizeof err) != 0)
        fail_msg("sf_http_start: %s", err);
    f->port = sf_http_port(f->srv);
    assert_true(f->port > 0 && f->port < 65536);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    sf_http_stop(f->srv);
    sf_metrics_free(f->m);
    free(f);
    return 0;
}

static void test_metrics_endpoint(void **state) {
    fixture *f = *state;
    sf_metrics_add(f->m, SF_C_CONSUMED, 42);
    sf_metrics_add(f->m, SF_C_SIGNALS, 7);
    sf_metrics_reject(f->m, SF_REJECT_NOT_JSON);
    sf_metrics_set(f->m, SF_G_ASSIGNED_PARTITIONS, 4);
    sf_metrics_observe(f->m, SF_H_BATCH_SIZE, 100);
    sf_metrics_set_model(f->m, "0123abcd", 30, 2);

    response r;
    request(f, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    char ct[128];
    header(&r, "Content-Type", ct, sizeof ct);
    assert_string_equal(ct, "text/plain; version=0.0.4; charset=utf-8");
    /* Nothing moves meanwhile, so the body is exactly a local render. */
    char *want = sf_metrics_render(f->m);
    assert_string_equal(r.body, want);
    assert_non_null(strstr(r.body, "\nsigflow_events_consumed_total 42\n"));
    assert_non_null(strstr(r.body, "\nsigflow_signals_published_total 7\n"));
    assert_non_null(strstr(r.body, "\nsigflow_events_rejected_total{reason=\"not_json\"} 1\n"));
    assert_non_null(strstr(r.body, "\nsigflow_assigned_partitions 4\n"));
    assert_non_null(strstr(r.body, "\nsigflow_batch_size_bucket{le=\"128\"} 1\n"));
    assert_non_null(
        strstr(r.body, "\nsigflow_model_info{sha256=\"0123abcd\",inputs=\"30\",outputs=\"2\"} 1\n"));
    free(want);
    free(r.body);

    /* A query string does not change the resource; HEAD gives no body. */
    request(f, "GET", "/metrics?name[]=x", &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    request(f, "HEAD", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    free(r.body);
}

static void test_healthz_fails_when_beats_stop(void **state) {
    fixture *f = *state;
    response r;

    /* 200 right after a beat. A request slower than the threshold (a loaded
     * machine, valgrind) proves nothing either way, so retry those. */
    int conclusive = 0;
    for (int i = 0; i < 10 && !conclusive; i++) {
        sf_health_beat(&f->h);
        int64_t beat = sf_clock_ms();
        request(f, "GET", "/healthz", &r);
        if (sf_clock_ms() - beat < f->h.stall_ms) {
            conclusive = 1;
            assert_int_equal(r.status, 200);
            assert_string_equal(r.body, "ok\n");
        }
        free(r.body);
    }
    assert_true(conclusive);

    /* Stop beating: 503 must come, and only once the threshold has passed. */
    sf_health_beat(&f->h);
    int64_t last_beat = atomic_load(&f->h.last_beat_ms);
    int64_t deadline = last_beat + 10000;
    for (;;) {
        int64_t sent = sf_clock_ms();
        request(f, "GET", "/healthz", &r);
        int64_t received = sf_clock_ms();
        if (r.status == 503) {
            assert_true(received - last_beat > f->h.stall_ms);
            assert_non_null(strstr(r.body, "stalled"));
            free(r.body);
            break;
        }
        assert_int_equal(r.status, 200);
        /* Answered 200, so the server looked before the threshold passed. */
        assert_true(sent - last_beat <= f->h.stall_ms);
        free(r.body);
        if (received > deadline) fail_msg("/healthz never turned 503");
        sft_nap_ms(20);
    }

    /* One beat revives it. */
    sf_health_beat(&f->h);
    request(f, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void test_readyz(void **state) {
    fixture *f = *state;
    response r;
    request(f, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "model not loaded"));
    assert_non_null(strstr(r.body, "no partitions assigned"));
    free(r.body);

    sf_health_set_model_loaded(&f->h, 1);
    request(f, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    assert_null(strstr(r.body, "model not loaded"));
    assert_non_null(strstr(r.body, "no partitions assigned"));
    free(r.body);

    sf_health_set_assigned(&f->h, 1);
    request(f, "GET", "/readyz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready\n");
    free(r.body);

    /* A rebalance that takes every partition away makes it unready again. */
    sf_health_set_assigned(&f->h, 0);
    request(f, "GET", "/readyz", &r);
    assert_int_equal(r.status, 503);
    free(r.body);
}

static void test_unknown_path_and_method(void **state) {
    fixture *f = *state;
    response r;
    char allow[64];

    request(f, "GET", "/nope", &r);
    assert_int_equal(r.status, 404);
    free(r.body);
    request(f, "GET", "/metrics/", &r);
    assert_int_equal(r.status, 404);
    free(r.body);
    request(f, "POST", "/nope", &r);
    assert_int_equal(r.status, 404);
    free(r.body);

    static const char *const methods[] = {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"};
    static const char *const paths[] = {"/metrics", "/healthz", "/readyz"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        request(f, methods[i], paths[i % 3], &r);
        if (r.status != 405) fail_msg("%s %s: %d, want 405", methods[i], paths[i % 3], r.status);
        header(&r, "Allow", allow, sizeof allow);
        assert_string_equal(allow, "GET, HEAD");
        free(r.body);
    }
}

static void test_oversized_requests_are_refused(void **state) {
    fixture *f = *state;
    response r;

    /* 64 KB of headers: refused (413/400) or cut off, never served. */
    size_t big = 64 * 1024;
    char *raw = malloc(big + 256);
    int n = snprintf(raw, 256, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ");
    memset(raw + n, 'a', big);
    memcpy(raw + n + big, "\r\n\r\n", 5);
    request_raw(AF_INET, f->port, raw, strlen(raw), &r);
    if (r.status != 0 && (r.status < 400 || r.status > 499))
        fail_msg("64 KB of headers got status %d", r.status);
    free(r.body);

    /* A body over the limit, announced by Content-Length. */
    n = snprintf(raw, 256,
                 "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n\r\n", big);
    memset(raw + n, 'b', big);
    request_raw(AF_INET, f->port, raw, (size_t)n + big, &r);
    if (r.status != 0 && r.status != 413) fail_msg("64 KB body got status %d", r.status);
    free(r.body);
    free(raw);

    /* Garbage instead of HTTP. */
    const char *garbage = "\x01\x02 nonsense\r\n\r\n";
    request_raw(AF_INET, f->port, garbage, strlen(garbage), &r);
    assert_true(r.status == 0 || r.status == 400);
    free(r.body);

    /* The server is unharmed. */
    sf_metrics_add(f->m, SF_C_BATCHES, 5);
    request(f, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\nsigflow_batches_total 5\n"));
    free(r.body);
}

static void test_slow_client_blocks_nobody(void **state) {
    fixture *f = *state;
    response r;

    int slow = connect_to(AF_INET, f->port);
    assert_int_equal(send_all(slow, "GET /metr", 9), 0);

    /* Others are served while it dawdles. */
    int64_t t0 = sf_clock_ms();
    for (int i = 0; i < 3; i++) {
        request(f, "GET", "/metrics", &r);
        assert_int_equal(r.status, 200);
        free(r.body);
    }
    assert_true(sf_clock_ms() - t0 < 4000); /* well under the server's 5 s timeout */

    /* And the server drops it once its 5 s read timeout passes. */
    if (!closed_by_peer(slow)) fail_msg("half a request still open after %d ms", CLIENT_TIMEOUT_MS);
    int64_t held = sf_clock_ms() - t0;
    assert_true(held >= 4000);
    close(slow);

    request(f, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void test_clients_resetting_mid_reply(void **state) {
    fixture *f = *state;
    /* A client pipelines many scrapes, reads one byte and closes with the
     * rest unread, so its kernel resets the connection while the server is
     * still writing replies (strace shows the writes failing with ECONNRESET).
     * The server must drop just that connection. */
    const char *one = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    char raw[64 * 64];
    size_t len = 0, n1 = strlen(one);
    for (int i = 0; i < 64; i++, len += n1) memcpy(raw + len, one, n1);
    for (int i = 0; i < 10; i++) {
        int fd = connect_to(AF_INET, f->port);
        assert_int_equal(send_all(fd, raw, len), 0);
        char c;
        assert_int_equal(recv(fd, &c, 1, 0), 1);
        close(fd);
    }
    response r;
    request(f, "GET", "/metrics", &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void test_bind_errors(void **state) {
    fixture *f = *state;
    char addr[64], err[256];
    sf_http *s = (sf_http *)&s; /* must be reset to NULL on failure */

    snprintf(addr, sizeof addr, "127.0.0.1:%d", f->port);
    assert_int_equal(sf_http_start(&s, addr, f->m, &f->h, err, sizeof err), -1);
    assert_null(s);
    assert_non_null(strstr(err, addr));
    assert_non_null(strstr(err, strerror(EADDRINUSE)));

    static const char *const bad[] = {
        "127.0.0.1",      "127.0.0.1:",     ":9464",      "127.0.0.1:65536", "127.0.0.1:12a",
        "127.0.0.1:-1",   "::1:9464",       "[::1",       "[::1]9464",       "[]:9464",
        "192.0.2.1:0", /* TEST-NET: not an address of this host */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        s = (sf_http *)&s;
        if (sf_http_start(&s, bad[i], f->m, &f->h, err, sizeof err) != -1)
            fail_msg("'%s' accepted", bad[i]);
        assert_null(s);
        if (!strstr(err, bad[i])) fail_msg("'%s': error does not name it: %s", bad[i], err);
    }

    /* The running server is unaffected. */
    response r;
    request(f, "GET", "/healthz", &r);
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void test_ipv6_loopback(void **state) {
    fixture *f = *state;
    sf_http *s;
    char err[256];
    if (sf_http_start(&s, "[::1]:0", f->m, &f->h, err, sizeof err) != 0) {
        print_message("no IPv6 loopback here (%s); skipped\n", err);
        skip();
    }
    response r;
    const char *raw = "GET /healthz HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n";
    request_raw(AF_INET6, sf_http_port(s), raw, strlen(raw), &r);
    assert_int_equal(r.status, 200);
    free(r.body);
    sf_http_stop(s);
}

static void test_stop_with_open_connections(void **state) {
    fixture *f = *state;
    /* Repeated start/stop with clients mid-request must neither hang nor leak
     * (run under ASan/valgrind). */
    for (int i = 0; i < 5; i++) {
        sf_http *s;
        char err[256];
        assert_int_equal(sf_http_start(&s, "127.0.0.1:0", f->m, &f->h, err, sizeof err), 0);
        int port = sf_http_port(s);
        int idle = connect_to(AF_INET, port);
        int half = connect_to(AF_INET, port);
        assert_int_equal(send_all(half, "GET /metrics HTTP/1.1\r\nHo", 25), 0);
        response r;
        const char *raw = "GET /readyz HTTP/1.0\r\n\r\n";
        request_raw(AF_INET, port, raw, strlen(raw), &r);
        assert_int_equal(r.status, 503);
        free(r.body);
        sf_http_stop(s);
        /* Stopped means closed: the clients see the end of the stream. */
        assert_true(closed_by_peer(half));
        assert_true(closed_by_peer(idle));
        close(idle);
        close(half);
    }
    sf_http_stop(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_metrics_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_healthz_fails_when_beats_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readyz, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_path_and_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_requests_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_client_blocks_nobody, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clients_resetting_mid_reply, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_open_connections, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
