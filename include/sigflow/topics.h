/* topics.h: Kafka topic names and their existence, for the commands that
 * name topics (run, replay, broker).
 *
 * A name is checked before any client exists, so a typo is a usage error
 * with a clear message rather than a broker's INVALID_TOPIC much later. A
 * missing topic is created through the Admin API only when the caller says
 * so (sigflow-replay always; the daemon with --create-topics), otherwise the
 * error names it. Conventions: CONTRIBUTING.md. */
#ifndef SIGFLOW_TOPICS_H
#define SIGFLOW_TOPICS_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

#define SF_TOPIC_MAX 249 /* Kafka's limit on a topic name */

/* 0 when name is a legal Kafka topic name (1..249 of [a-zA-Z0-9._-], not "."
 * or ".."), else -1 with errstr saying why. */
int sf_topic_check(const char *name, char *errstr, size_t errstr_size);

/* A subscription pattern: a name starting with '^' is a regular expression
 * (librdkafka's convention), which matches topics rather than naming one. */
int sf_topic_is_pattern(const char *name);

/* How to create a missing topic: partitions and replication factor, -1 for
 * the broker's defaults (num.partitions, default.replication.factor). */
typedef struct sf_topic_spec {
    int partitions;
    int replication_factor;
} sf_topic_spec;

/* Makes sure the n topics exist on rk's cluster. Those that do not are
 * created with spec when spec is non-NULL (a topic someone else created
 * meanwhile counts as created), else it is an error naming the first missing
 * one, after the metadata was asked again for up to 3 s (a topic created a
 * moment ago reaches every broker's metadata a little later). A cluster without a reachable controller (the embedded broker, which
 * has no Admin API) creates them itself on a metadata request, with its own
 * partition count. *created (may be NULL) gets the number created. 0, or -1
 * with errstr naming the topic and, for a refused creation, the broker's
 * reason. */
int sf_topics_ensure(rd_kafka_t *rk, const char *const *topics, size_t n,
                     const sf_topic_spec *spec, int timeout_ms, size_t *created,
                     char *errstr, size_t errstr_size);

#endif
