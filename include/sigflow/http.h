/* http.h: the daemon's observability endpoint: /metrics for Prometheus,
 * /healthz for liveness and /readyz for readiness.
 *
 * The server runs its own libevent loop in its own thread and only reads
 * atomics (sf_metrics, sf_health), so a slow or hostile client can never stall
 * the data path, and a stalled data path shows up as a failing /healthz. */
#ifndef SIGFLOW_HTTP_H
#define SIGFLOW_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include "sigflow/metrics.h"

#define SF_HEALTH_STALL_MS_DEFAULT 30000

/* What the main loop tells the probes. Written by the main loop, read by the
 * HTTP thread; plain atomics, no lock. */
typedef struct sf_health {
    _Atomic int64_t last_beat_ms; /* sf_clock_ms() of the main loop's latest iteration */
    atomic_int model_loaded;
    atomic_int assigned;          /* at least one input partition assigned */
    int64_t stall_ms;             /* /healthz fails once the last beat is older than this;
                                   * set before sf_http_start, never after */
} sf_health;

/* Not ready, default stall threshold, and one beat now so /healthz passes
 * during start-up (for up to stall_ms). */
void sf_health_init(sf_health *h);
void sf_health_beat(sf_health *h);
void sf_health_set_model_loaded(sf_health *h, int loaded);
void sf_health_set_assigned(sf_health *h, int assigned);
/* 1 when the main loop beat within stall_ms of now_ms (an sf_clock_ms() time). */
int sf_health_alive(const sf_health *h, int64_t now_ms);
/* 1 when a model is loaded and partitions are assigned. */
int sf_health_ready(const sf_health *h);

typedef struct sf_http sf_http;

/* Binds addr and starts serving in a new thread:
 *   GET /metrics  200, text/plain; version=0.0.4 (sf_metrics_render)
 *   GET /healthz  200 "ok", 503 once the main loop stalled (sf_health_alive)
 *   GET /readyz   200 "ready", 503 until sf_health_ready
 * HEAD works like GET; another method on those paths gets 405, any other path
 * 404. Requests are limited to 8 KB of headers, 8 KB of body, and 5 s of
 * silence per read or write.
 *
 * addr is "HOST:PORT" or "[IPV6]:PORT"; HOST may be a name. PORT 0 takes an
 * ephemeral port (see sf_http_port). Disabling the endpoint ("none") is the
 * caller's business: just don't start it. m and h must outlive the server.
 * Returns 0, or -1 with errstr (bad address, port in use, out of memory). */
/* Whether addr is a well-formed address for sf_http_start, without binding
 * it: 0, or -1 with errstr, so a command line can refuse it as a usage error. */
int sf_http_addr_check(const char *addr, char *errstr, size_t errstr_size);

int sf_http_start(sf_http **out, const char *addr, sf_metrics *m, sf_health *h, char *errstr,
                  size_t errstr_size);

/* The bound TCP port. */
int sf_http_port(const sf_http *s);

/* Stops the loop, joins its thread and frees everything, open connections
 * included. Call from any thread but the server's own, once. NULL is a no-op. */
void sf_http_stop(sf_http *s);

#endif
