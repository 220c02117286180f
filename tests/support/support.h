/* support.h: what the Kafka-facing tests share: an embedded broker, processes
 * to spawn and stop, and producing/consuming whole topics with deadlines.
 *
 * Every wait here polls a condition against a deadline; nothing sleeps and
 * hopes. Functions abort the test (via cmocka's fail_msg) on set-up errors. */
#ifndef SIGFLOW_TEST_SUPPORT_H
#define SIGFLOW_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <librdkafka/rdkafka.h>

#include "sigflow/broker.h"

/* Paths into the source and build trees (set by tests/CMakeLists.txt). */
#define SF_TEST_SIGFLOW SF_BUILD_DIR "/sigflow"
#define SF_TEST_REPLAY SF_BUILD_DIR "/sigflow-replay"
#define SF_TEST_DATA SF_SOURCE_DIR "/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz"
#define SF_TEST_MODEL SF_SOURCE_DIR "/models/higgs_mlp.h5"
#define SF_TEST_VARS SF_SOURCE_DIR "/models/higgs_variables.json"

/* Starts an embedded broker with the given topics (8 partitions unless
 * partitions > 0). */
sf_broker *sft_broker(int partitions, const char *const *topics, size_t n_topics);

/* One consumed message, owned by an sft_msgs. */
typedef struct sft_msg {
    char *key;          /* NUL-terminated copy, NULL when absent */
    char *value;        /* NUL-terminated copy */
    size_t len;
    int32_t partition;
    int64_t offset;
    int64_t timestamp;
    char *error_header; /* sigflow-error, NULL when absent */
    char *source_header;/* sigflow-source, NULL when absent */
} sft_msg;

typedef struct sft_msgs {
    sft_msg *v;
    size_t n, cap;
} sft_msgs;

void sft_msgs_free(sft_msgs *m);

/* Reads `topic` from the beginning of every partition (read_committed when
 * committed_only) until `expect` messages arrived and then `quiet_ms` passed
 * with nothing new, or until timeout_ms. expect 0 reads until quiet. */
sft_msgs sft_consume_all(const char *brokers, const char *topic, size_t expect, int quiet_ms,
                         int timeout_ms, int committed_only);

/* Produces messages (key may be NULL) and waits for every delivery report.
 * Returns the number delivered. */
size_t sft_produce(const char *brokers, const char *topic, const char *const *keys,
                   const char *const *values, const size_t *lens, size_t n);

/* The first n rows of the bundled ATLAS sample as JSON events (what
 * sigflow-replay sends), with their EventIds as keys; caller frees with
 * sft_strings_free. */
void sft_atlas_events(size_t n, char ***keys, char ***values);
void sft_strings_free(char **v, size_t n);

/* posix_spawn of argv (NULL-terminated), stdout/stderr to the given files
 * (NULL: /dev/null), stdin from in_path (NULL: /dev/null). */
pid_t sft_spawn(char *const argv[], const char *in_path, const char *out_path, const char *err_path);

/* Waits for pid up to timeout_ms; returns its exit status (0..255), 128+signal
 * when killed, or -1 on timeout (the process is then SIGKILLed and reaped). */
int sft_wait(pid_t pid, int timeout_ms);

/* Polls until path contains needle or timeout_ms passes. 1 found, 0 not. */
int sft_wait_for_text(const char *path, const char *needle, int timeout_ms);

/* Reads a whole file (NUL-terminated, caller frees); NULL when unreadable. */
char *sft_read_file(const char *path, size_t *len);

/* A fresh temporary path under $TMPDIR with the given suffix (caller frees). */
char *sft_temp_path(const char *suffix);

/* Monotonic milliseconds. */
int64_t sft_now_ms(void);

#endif
