/* kafka.h: small librdkafka helpers shared by the daemon, the replay tool, the
 * demo and the benchmark, so every binary accepts -X key=value the same way. */
#ifndef SIGFLOW_KAFKA_H
#define SIGFLOW_KAFKA_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

/* Applies one "key=value" librdkafka property. 0, or -1 with errstr. */
int sf_kafka_conf_set_kv(rd_kafka_conf_t *conf, const char *kv, char *errstr, size_t errstr_size);

/* Sets `key` to `value`. 0, or -1 with errstr naming the property. */
int sf_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                      char *errstr, size_t errstr_size);

#endif
