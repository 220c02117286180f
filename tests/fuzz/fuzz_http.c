/* fuzz_http.c: the metrics server's request handling, over a real loopback
 * socket (libevent's parser and our handler together). Each input is sent as
 * a client's bytes, then the client half-closes; the server must answer with
 * an HTTP status line or close, and keep serving: every input is followed by
 * a GET /healthz that must get 200. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sigflow/http.h"
#include "sigflow/metrics.h"
#include "fuzz_util.h"

static sf_metrics *metrics;
static sf_health health;
static sf_http *server;
static int port;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    char err[512];
    metrics = sf_metrics_new();
    sf_health_init(&health);
    health.stall_ms = 1000L * 3600 * 24 * 365; /* a fuzzing run is one long "start-up" */
    FUZZ_CHECK(sf_http_start(&server, "127.0.0.1:0", metrics, &health, err, sizeof err) == 0,
               "%s", err);
    port = sf_http_port(server);
    return 0;
}

/* libFuzzer's -timeout watchdog is a SIGALRM without SA_RESTART, so any
 * blocking call here may return EINTR. An interrupted connect goes on in the
 * background: wait for it and take its outcome. */
static void connect_retrying(int fd, const struct sockaddr_in *sa) {
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
        return;
    FUZZ_CHECK(errno == EINTR, "connect: %s", strerror(errno));
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int pr;
    while ((pr = poll(&p, 1, 30000)) < 0 && errno == EINTR)
        ;
    FUZZ_CHECK(pr == 1, "connect: %s", pr == 0 ? "no answer in 30 s" : strerror(errno));
    int soerr = 0;
    socklen_t len = sizeof soerr;
    FUZZ_CHECK(getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0,
               "connect: %s", strerror(soerr));
}

/* Sends data, half-closes, reads the answer (up to cap bytes) until the server
 * closes. Returns the bytes read. */
static size_t exchange(const uint8_t *data, size_t size, char *out, size_t cap, int *err) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    FUZZ_CHECK(fd >= 0, "socket");
    struct timeval tv = {30, 0}; /* the server's own limit is 5 s of silence */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    /* Closing with a reset leaves no TIME_WAIT behind: an hour at a thousand
     * connections a second would otherwise run out of local ports. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    connect_retrying(fd, &sa);
    size_t off = 0;
    while (off < size) { /* the server may close early on a bad request */
        ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(fd, SHUT_WR);
    size_t n = 0;
    *err = 0;
    for (;;) {
        char sink[4096];
        ssize_t r = recv(fd, n < cap ? out + n : sink, n < cap ? cap - n : sizeof sink, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            *err = errno;
        if (r <= 0)
            break;
        n += n < cap ? (size_t)r : 0;
    }
    close(fd);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char buf[256];
    int err;
    size_t n = exchange(data, size, buf, sizeof buf - 1, &err);
    buf[n] = '\0';
    /* libevent answers in the request's version, even a strange one like HTTP/0.1 */
    FUZZ_CHECK(n == 0 || !strncmp(buf, "HTTP/", 5), "answer is not HTTP: %.40s", buf);
    /* Still serving? On a loaded machine one probe may time out; three in a
     * row, 30 s each, do not. */
    static const char probe[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    for (int attempt = 0;; attempt++) {
        n = exchange((const uint8_t *)probe, sizeof probe - 1, buf, sizeof buf - 1, &err);
        buf[n] = '\0';
        if (!strncmp(buf, "HTTP/1.1 200", 12))
            break;
        FUZZ_CHECK(attempt < 2, "server stopped serving: '%.60s' (%s)", buf,
                   err ? strerror(err) : "closed");
    }
    return 0;
}
