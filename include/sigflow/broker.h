/* broker.h: an embedded Kafka-protocol broker (librdkafka's mock cluster) on
 * loopback, for the demo, the tests and local runs.
 *
 * It speaks the real protocol over TCP, so any Kafka client can use it, but it
 * keeps only a few MB per partition: a development and test broker, not storage. */
#ifndef SIGFLOW_BROKER_H
#define SIGFLOW_BROKER_H

#include <stddef.h>

typedef struct sf_broker sf_broker;

/* Starts the cluster and creates each topic with `partitions` partitions.
 * Returns 0 and *out, or -1 with errstr. */
int sf_broker_start(sf_broker **out, int partitions, const char *const *topics,
                    size_t n_topics, char *errstr, size_t errstr_size);

/* "127.0.0.1:PORT[,...]", valid until sf_broker_stop. */
const char *sf_broker_bootstrap(const sf_broker *b);

/* Takes every broker of the cluster down (down=1) or back up (down=0). */
void sf_broker_set_down(sf_broker *b, int down);

void sf_broker_stop(sf_broker *b);

#endif
