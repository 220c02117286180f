/* kafka.c: -X key=value handling shared by every binary that talks to Kafka. */
#include <stdio.h>
#include <string.h>

#include "sigflow/kafka.h"

int sf_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                      char *errstr, size_t errstr_size) {
    char rderr[512];
    if (rd_kafka_conf_set(conf, key, value, rderr, sizeof rderr) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka property %s=%s: %s", key, value, rderr);
        return -1;
    }
    return 0;
}

int sf_kafka_conf_set_kv(rd_kafka_conf_t *conf, const char *kv, char *errstr, size_t errstr_size) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        snprintf(errstr, errstr_size, "kafka property '%s': expected key=value", kv);
        return -1;
    }
    char key[256];
    size_t klen = (size_t)(eq - kv);
    if (klen >= sizeof key) {
        snprintf(errstr, errstr_size, "kafka property '%.40s...': key too long", kv);
        return -1;
    }
    memcpy(key, kv, klen);
    key[klen] = '\0';
    return sf_kafka_conf_set(conf, key, eq + 1, errstr, errstr_size);
}
