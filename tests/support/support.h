/* support.h: what the tests share: an embedded broker and Kafka clients,
 * processes to spawn and stop, producing/consuming whole topics with
 * deadlines, temporary paths (under $TMPDIR, which ctest points into the build
 * tree), and the fixture of the streaming operations tests.
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

/* A Kafka client of `brokers` with the properties of kv ({key, value, ...,
 * NULL}; kv may be NULL). Fails the test when librdkafka refuses one. */
rd_kafka_t *sft_client(rd_kafka_type_t type, const char *brokers, const char *const *kv);

/* Sleeps ms milliseconds: for pacing (probes, random delays) only, never to
 * wait for a condition (poll it against a deadline instead). */
void sft_nap_ms(int ms);

/* Newlines in s. */
size_t sft_count_lines(const char *s);

/* The broker a test runs against: the Apache Kafka cluster that
 * tests/kafka/kafka.sh started in $SF_TEST_KAFKA_DIR (the ctest fixtures of the
 * tests labelled `real` set it), or else an embedded broker. */
typedef struct sft_kafka {
    const char *bootstrap;
    int real;         /* 1: Apache Kafka */
    int nodes;        /* cluster size (1 for the embedded broker) */
    char *dir;        /* the kafka.sh directory when real */
    sf_broker *mock;  /* the embedded broker when not real */
    char *bs_copy;
} sft_kafka;

/* Opens the broker and creates each topic with `partitions` partitions (8 when
 * 0) and, on a real cluster, replication factor min(nodes, 3) and the given
 * topic configs (name/value pairs, NULL-terminated; may be NULL). On a real
 * cluster a topic of the same name is deleted first, so a test starts from
 * empty topics; tests keep their group names distinct. need_real: fail unless
 * $SF_TEST_KAFKA_DIR names a running cluster. */
sft_kafka *sft_kafka_open(int partitions, const char *const *topics, size_t n_topics,
                          const char *const *configs, int need_real);
void sft_kafka_close(sft_kafka *k);

/* Runs `kafka.sh CMD DIR I` (kill-node / start-node) on the real cluster;
 * fails the test when it fails. */
void sft_kafka_node(sft_kafka *k, const char *cmd, int node);

/* The node id leading partition of topic (-1 when none). */
int sft_partition_leader(const char *brokers, const char *topic, int partition);

/* A paced producer thread: the first n ATLAS events (keys = EventIds) to
 * topic at `rate` events/s, and, when bad_every > 0, a malformed event keyed
 * first_bad + j after every bad_every valid ones. Idempotent producer, so a
 * broker failure neither loses nor duplicates input. */
typedef struct sft_feed sft_feed;
sft_feed *sft_feed_start(const char *brokers, const char *topic, size_t n, int rate, size_t bad_every,
                         long first_bad);
/* The same, but it pauses before event hold_at until sft_feed_release: a
 * test that needs something to happen mid-stream makes it so on any machine,
 * however slow, instead of hoping the stream lasts long enough. */
sft_feed *sft_feed_start_held(const char *brokers, const char *topic, size_t n, int rate,
                              size_t bad_every, long first_bad, size_t hold_at);
void sft_feed_release(sft_feed *f);
/* Valid events handed to the producer so far. */
size_t sft_feed_sent(sft_feed *f);
/* Waits for the thread; fails the test on a delivery error; returns the
 * number of messages delivered (valid + malformed) and frees. */
size_t sft_feed_join(sft_feed *f);

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
    char *headers;      /* every header in order, "name=value\n" each ("" when none) */
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
/* The same with headers: headers[i] (NULL, or headers NULL: none) is
 * "name=value\n" lines, as sft_msg.headers shows them. */
size_t sft_produce_headers(const char *brokers, const char *topic, const char *const *keys,
                           const char *const *values, const size_t *lens,
                           const char *const *headers, size_t n);

/* The first n rows of the bundled ATLAS sample as JSON events (what
 * sigflow-replay sends), with their EventIds as keys; caller frees with
 * sft_strings_free. */
void sft_atlas_events(size_t n, char ***keys, char ***values);
void sft_strings_free(char **v, size_t n);

/* A compact JSON event (as the replay writes them: {"a":1,"b":2}) with the
 * value of field replaced by repl, or the field dropped when repl is NULL;
 * caller frees. */
char *sft_edit_field(const char *event, const char *field, const char *repl);

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

/* Replaces dst with len bytes the way a deployment should: a new file renamed
 * over the old one, so a daemon never reads half a file. Fails the test on
 * an error. sft_install_copy does it with src's bytes. */
void sft_install(const char *dst, const char *bytes, size_t len);
void sft_install_copy(const char *dst, const char *src);

/* The directory for temporary files: $TMPDIR, else the system's (P_tmpdir). */
const char *sft_tmpdir(void);

/* Decompresses a gzip fixture into a fresh temporary file with the given
 * suffix and returns its path (caller unlinks and frees); fails the test when
 * the fixture cannot be read. */
char *sft_gunzip_temp(const char *gz_path, const char *suffix);

/* A fresh temporary path under $TMPDIR with the given suffix (caller frees). */
char *sft_temp_path(const char *suffix);

/* A fresh directory under $TMPDIR (caller frees the path), and its removal
 * with everything in it (0, or -1 when rm failed). */
char *sft_temp_dir(void);
int sft_remove_tree(const char *dir);

/* Monotonic milliseconds. */
int64_t sft_now_ms(void);

/* Seeds rand() for a test's random choices from $SIGFLOW_TEST_SEED, or the
 * clock when unset; returns the seed so the test can print it (and a failing
 * run can be replayed). */
unsigned sft_seed(void);

/* ------------------------------------------------------------------------
 * Running daemons and watching them (the operations tests).
 * ------------------------------------------------------------------------ */

/* posix_spawn-like, but the child gets SIGKILL when the test process dies
 * (PR_SET_PDEATHSIG), so a failing test never leaves a daemon behind. */
pid_t sft_spawn_tied(char *const argv[], const char *out_path, const char *err_path);

/* A `sigflow run` child: its pid, stderr log and metrics port. */
typedef struct sft_daemon {
    pid_t pid;    /* 0 once reaped */
    int status;   /* as sft_wait, once reaped */
    int port;     /* from the "metrics on ... port=N" log line */
    char *log;    /* path of its stderr */
} sft_daemon;

/* Spawns `sigflow run ARGS... --metrics-addr 127.0.0.1:0` (args NULL-terminated)
 * tied to the test process, and waits up to timeout_ms for its metrics port.
 * Fails the test, showing the log, when the daemon exits first. */
void sft_daemon_start(sft_daemon *d, const char *const *args, int timeout_ms);
/* The same with another sigflow binary (a copy beside a test build of its
 * model loader, test_loader_sandbox.c). */
void sft_daemon_start_program(sft_daemon *d, const char *program, const char *const *args,
                              int timeout_ms);

/* 1 while the daemon runs; reaps it (recording status) once it exited. */
int sft_daemon_running(sft_daemon *d);

/* Sends sig (0: none) and waits up to timeout_ms for the exit; returns the
 * status as sft_wait does (-1: it had to be SIGKILLed). A no-op returning the
 * recorded status when already reaped. */
int sft_daemon_stop(sft_daemon *d, int sig, int timeout_ms);

/* Stops (SIGKILL) if still running, removes the log, frees. */
void sft_daemon_free(sft_daemon *d);

/* GET http://127.0.0.1:port/path over HTTP/1.0. Returns the status code (-1
 * when nothing answered within 5 s); *body (optional) gets a malloc'd copy. */
int sft_http_get(int port, const char *path, char **body);

/* The value of one series in a Prometheus exposition: `series` is the name
 * with its labels exactly as rendered, e.g. sigflow_batches_total or
 * sigflow_events_rejected_total{reason="not_json"}. NAN when absent. */
double sft_metric(const char *exposition, const char *series);

/* sft_metric of a fresh scrape of the daemon's /metrics; NAN when unreachable. */
double sft_scrape(int port, const char *series);

/* Polls the daemon's series until it is >= min or timeout_ms passes; returns
 * the last value (NAN when never scraped). Fails the test if the daemon exits. */
double sft_wait_metric(sft_daemon *d, const char *series, double min, int timeout_ms);

/* Sum of the high watermarks of every partition of topic: the number of
 * messages ever written to it (plus transaction markers on a real broker). */
int64_t sft_topic_end(const char *brokers, const char *topic);

/* Reads topic from the beginning until every integer key in [lo, hi) arrived
 * at least once and every partition was read to its end, or until timeout_ms.
 * counts[k - lo] (caller-allocated, hi - lo entries) gets how often key k
 * arrived; keys outside the range are counted in the return value only.
 * Returns the number of messages read. */
size_t sft_count_keys(const char *brokers, const char *topic, int64_t lo, int64_t hi,
                      unsigned *counts, int committed_only, int timeout_ms);

/* Fails the test unless topic holds every integer key of [lo, hi) exactly
 * once, naming the first missing and duplicated keys. */
void sft_assert_each_key_once(const char *brokers, const char *topic, int64_t lo, int64_t hi,
                              int timeout_ms);

/* What a consumer group still has to do on topic: the sum over partitions of
 * the high watermark minus the group's committed offset (the low watermark
 * when nothing is committed). 0 once everything written was committed. */
int64_t sft_group_lag(const char *brokers, const char *group, const char *topic);

/* The shipped Higgs model and variables when they exist, else the random
 * 30-input test fixtures (same inputs, labels b/s). */
void sft_pick_model(const char **model, const char **vars);

/* session.timeout.ms for daemons a test kills. A SIGKILLed member keeps its
 * partitions until its session expires (45 s by default), so tests shorten
 * it; but the embedded broker holds a new group's first JoinGroup for 3 s
 * and expires members on a 1 s tick, so below ~4 s a joining member can time
 * out before it is ever answered. */
#define SFT_SESSION_MS "4000"

/* ------------------------------------------------------------------------
 * The streaming operations tests (crash, outage, scale-out): a broker with
 * `events` and `signals` on 8 partitions, up to two daemons and a replay. The
 * broker is sft_kafka_open's: Apache Kafka when $SF_TEST_KAFKA_DIR is set.
 * ------------------------------------------------------------------------ */

typedef struct sft_stream {
    sft_kafka *kafka;
    sf_broker *broker;  /* the embedded broker; NULL on Apache Kafka */
    const char *brokers;
    sft_daemon d[2];
    pid_t replay; /* 0: none running */
} sft_stream;

/* cmocka setup and teardown: *state is the sft_stream. The teardown brings
 * the broker back up, kills what still runs and frees everything. */
int sft_stream_setup(void **state);
int sft_stream_teardown(void **state);

/* Spawns sigflow-replay of the bundled sample into `topic` at `rate` events/s
 * (60 s delivery timeout, quiet), tied to the test, with extra arguments
 * (NULL-terminated, may be NULL); its stdout and stderr go to log_path (NULL:
 * nowhere). */
pid_t sft_replay_spawn(const char *brokers, const char *topic, const char *rate,
                       const char *const *extra, const char *log_path);

#endif
