/* kafka.h: librdkafka plumbing shared by the daemon, the replay tool, the demo
 * and the benchmark: properties given with -X key=value or -F FILE, the
 * daemon's client defaults, and client construction, so every binary talks to
 * Kafka the same way. Conventions: CONTRIBUTING.md. */
#ifndef SIGFLOW_KAFKA_H
#define SIGFLOW_KAFKA_H

#include <stdatomic.h>
#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "sigflow/log.h"

/* Whether a Kafka property's value is a secret, never to be printed, logged or
 * exported (property: "name" or "name=value"): its name holds password,
 * passphrase, secret, token, credential, jaas, private.key, or is
 * sasl.oauthbearer.config, ssl.key.pem or ssl_key (with or without a
 * consumer./producer. scope). */
int sf_kafka_secret(const char *property);

/* Sets `key` to `value`. 0, or -1 with errstr naming the property. */
int sf_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                      char *errstr, size_t errstr_size);

/* Sets each key, value pair of a NULL-terminated {key, value, ..., NULL} list. */
int sf_kafka_conf_set_all(rd_kafka_conf_t *conf, const char *const *kv, char *errstr,
                          size_t errstr_size);

/* The properties of a command line, in the order given: -X key=value and the
 * lines of -F files, later ones overriding earlier ones (as in kcat). */
typedef struct sf_kafka_props {
    char **kv; /* "key=value", owned */
    size_t n, cap;
} sf_kafka_props;

/* Appends a copy of "key=value". 0, or -1 with errstr (not key=value, or out
 * of memory). */
int sf_kafka_props_add(sf_kafka_props *p, const char *kv, char *errstr, size_t errstr_size);

/* Appends the properties of a file: key=value lines; blank lines and lines
 * starting with # are skipped, surrounding blanks trimmed. 0, or -1 with
 * errstr naming the file and the line ("f.properties:3: expected key=value"). */
int sf_kafka_props_load(sf_kafka_props *p, const char *path, char *errstr, size_t errstr_size);

/* The clients a property is for, as Kafka Connect scopes them: "consumer.K=V"
 * is for the consumer only, "producer.K=V" for the producer only, and an
 * unprefixed K=V for each client librdkafka applies K to (silently not for the
 * others, so no CONFWARN). */
enum { SF_KAFKA_FOR_CONSUMER = 1, SF_KAFKA_FOR_PRODUCER = 2 };

/* Applies, in order, those of n "key=value" properties that are for client
 * (one SF_KAFKA_FOR_* value). 0, or -1 with errstr (an unknown name, a bad
 * value, a prefix naming the wrong client: "consumer.linger.ms"). */
int sf_kafka_props_apply(rd_kafka_conf_t *conf, int client, const char *const *kv, size_t n,
                         char *errstr, size_t errstr_size);

/* Whether the properties would apply to each client of clients (SF_KAFKA_FOR_*
 * bits), for a command line to refuse a bad one as a usage error before it
 * starts anything. 0, or -1 with errstr. */
int sf_kafka_props_check(const char *const *kv, size_t n, int clients, char *errstr, size_t errstr_size);

/* The value of the last property named name (unprefixed), or NULL; e.g.
 * bootstrap.servers from a Java client's properties file. */
const char *sf_kafka_props_get(const sf_kafka_props *p, const char *name);

/* Frees the copies; the struct is empty again. */
void sf_kafka_props_free(sf_kafka_props *p);

/* What the daemon's clients are made of. */
typedef struct sf_kafka_opts {
    const char *brokers;
    const char *const *props;     /* applied after the defaults */
    size_t n_props;
    const char *group;            /* consumer */
    int exactly_once;
    const char *transactional_id; /* producer, with exactly_once */
    size_t max_message_bytes;     /* producer: the largest payload it must send */
    int statistics;               /* consumer: statistics every 5 s */
} sf_kafka_opts;

/* The consumer receives messages up to this size. */
#define SF_KAFKA_RECEIVE_MAX_BYTES (16u << 20)

/* A configuration with the daemon's defaults for its producer or consumer,
 * then o->props. NULL with errstr when a property is refused. */
rd_kafka_conf_t *sf_kafka_producer_conf(const sf_kafka_opts *o, char *errstr, size_t errstr_size);
rd_kafka_conf_t *sf_kafka_consumer_conf(const sf_kafka_opts *o, char *errstr, size_t errstr_size);

/* Creates a client; it owns conf from then on, and conf is destroyed on
 * failure too. NULL with errstr ("cannot create producer: ..."). */
rd_kafka_t *sf_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr,
                         size_t errstr_size);

/* Checks that the brokers answer within timeout_ms (metadata request) and
 * whether `topic` exists (*topic_exists). 0; 1 as soon as *stop is set (NULL:
 * never), within 100 ms; or -1 with errstr naming the brokers. */
int sf_kafka_check_brokers(rd_kafka_t *rk, const char *brokers, const char *topic, int timeout_ms,
                           const atomic_int *stop, int *topic_exists, char *errstr, size_t errstr_size);

/* Moves a consumer back to its group's committed offsets for parts (the
 * beginning where none is committed). 0, or -1 when they cannot be read. */
int sf_kafka_rewind_to_committed(rd_kafka_t *consumer, const rd_kafka_topic_partition_list_t *parts,
                                 int timeout_ms);

/* Consumer lag from a librdkafka statistics JSON: the sum of consumer_lag over
 * the partitions being fetched. -1 when the JSON does not parse. */
double sf_kafka_stats_consumer_lag(const char *json, size_t len);

/* "topic[0] topic[3] ..." into buf, truncated to fit. */
void sf_kafka_partitions_format(char *buf, size_t size, const rd_kafka_topic_partition_list_t *l);

/* Sends a client's librdkafka log lines through the logger in format, instead
 * of librdkafka's own lines on stderr (a client whose opaque is not a pipeline
 * with a logger: the replay tool's, the demo's). */
void sf_kafka_conf_log(rd_kafka_conf_t *conf, sf_log_format format);

/* sigflow's level for a librdkafka (syslog) log level. */
sf_log_level sf_kafka_log_level(int syslog_level);

#endif
