/* clock.h: the clocks sigflow reads. Monotonic for waits and durations,
 * wall-clock milliseconds for Kafka message timestamps (end-to-end latency),
 * thread CPU time for the per-stage costs. */
#ifndef SIGFLOW_CLOCK_H
#define SIGFLOW_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t sf_clock_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline double sf_clock_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Wall-clock milliseconds with sub-millisecond digits, to compare with Kafka
 * message timestamps. */
static inline double sf_clock_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* CPU time this thread has used, in nanoseconds (per-stage costs). */
static inline int64_t sf_clock_thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
