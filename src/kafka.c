/* kafka.c: how sigflow's binaries configure and create their Kafka clients
 * (kafka.h): -X / -F properties, and the daemon's producer and consumer
 * defaults with the reason for each. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sigflow/clock.h"
#include "sigflow/kafka.h"

/* The longest a start-up wait goes without looking at the stop flag. */
#define STOP_SLICE_MS 100

/* librdkafka backs off reconnecting up to 10 s: after a broker outage the
 * consumer could come back after its 10 s session expired, lose its
 * partitions and redo everything since its last commit. Retry every second. */
#define RECONNECT_BACKOFF_MAX_MS "1000"

int sf_kafka_secret(const char *property) {
    /* Kafka's and librdkafka's credentials: sasl.password, sasl.jaas.config,
     * ssl.key.password, ssl.keystore.password, ssl.key.pem, ssl_key,
     * sasl.oauthbearer.client.secret, .config and the assertion's private key
     * and its passphrase; and whatever a future name calls a secret. */
    static const char *const words[] = {"password", "passphrase", "secret", "token", "credential",
                                        "jaas", "sasl.oauthbearer.config", "private.key",
                                        "ssl.key.pem", "ssl_key"};
    char lower[256];
    size_t i = 0;
    for (; property[i] && property[i] != '=' && i + 1 < sizeof lower; i++)
        lower[i] = (char)tolower((unsigned char)property[i]);
    lower[i] = '\0';
    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++)
        if (strstr(lower, words[w]))
            return 1;
    return 0;
}

/* librdkafka's message about a value, without the value when it is a secret
 * (some messages quote it). */
static void mask_value(char *msg, const char *value) {
    size_t vn = strlen(value);
    if (!vn)
        return;
    for (char *at = strstr(msg, value); at; at = strstr(at, value)) {
        if (vn < 3) { /* never longer than the value: msg must not grow */
            memset(at, '*', vn);
            at += vn;
            continue;
        }
        memmove(at + 3, at + vn, strlen(at + vn) + 1);
        memcpy(at, "***", 3);
        at += 3;
    }
}

int sf_kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value,
                      char *errstr, size_t errstr_size) {
    char rderr[512];
    if (rd_kafka_conf_set(conf, key, value, rderr, sizeof rderr) != RD_KAFKA_CONF_OK) {
        int secret = sf_kafka_secret(key);
        if (secret)
            mask_value(rderr, value);
        snprintf(errstr, errstr_size, "kafka property %s=%s: %s", key, secret ? "***" : value, rderr);
        return -1;
    }
    return 0;
}

/* The '=' of "key=value" (key non-empty), or NULL with errstr. */
static const char *kv_equals(const char *kv, char *errstr, size_t errstr_size) {
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv) {
        if (sf_kafka_secret(kv))
            snprintf(errstr, errstr_size,
                     "kafka property '%.*s...' (a credential, not shown): expected key=value (a name, then '=')",
                     (int)strcspn(kv, " :\t"), kv);
        else
            snprintf(errstr, errstr_size, "kafka property '%s': expected key=value (a name, then '=')", kv);
        return NULL;
    }
    return eq;
}

int sf_kafka_conf_set_all(rd_kafka_conf_t *conf, const char *const *kv, char *errstr,
                          size_t errstr_size) {
    for (; kv[0]; kv += 2)
        if (sf_kafka_conf_set(conf, kv[0], kv[1], errstr, errstr_size))
            return -1;
    return 0;
}

/* Which clients librdkafka applies a property to, from its own table (so it
 * follows the library's version): SF_KAFKA_FOR_* bits, both for "*", 0 for a
 * name it does not know. table: rd_kafka_conf_properties_show's text. */
static int property_scope(const char *table, const char *name) {
    size_t n = strlen(name);
    for (const char *l = table; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncmp(l, name, n) || (l[n] != ' ' && l[n] != '|'))
            continue;
        const char *bar = strchr(l, '|');
        if (!bar)
            return 0;
        bar++;
        while (*bar == ' ')
            bar++;
        return *bar == 'C' ? SF_KAFKA_FOR_CONSUMER : *bar == 'P' ? SF_KAFKA_FOR_PRODUCER
                                                                 : SF_KAFKA_FOR_CONSUMER | SF_KAFKA_FOR_PRODUCER;
    }
    return 0;
}

/* rd_kafka_conf_properties_show's table, malloc'd, or NULL. */
static char *property_table(void) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    rd_kafka_conf_properties_show(f);
    if (fclose(f)) {
        free(text);
        return NULL;
    }
    return text;
}

/* The client a Kafka Connect prefix names ("consumer." or "producer."), with
 * *name moved past it; 0 without a prefix. */
static int scope_prefix(const char **name) {
    if (!strncmp(*name, "consumer.", 9)) {
        *name += 9;
        return SF_KAFKA_FOR_CONSUMER;
    }
    if (!strncmp(*name, "producer.", 9)) {
        *name += 9;
        return SF_KAFKA_FOR_PRODUCER;
    }
    return 0;
}

int sf_kafka_props_apply(rd_kafka_conf_t *conf, int client, const char *const *kv, size_t n,
                         char *errstr, size_t errstr_size) {
    char *table = n ? property_table() : NULL;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *eq = kv_equals(kv[i], errstr, errstr_size);
        if (!eq) {
            rc = -1;
            break;
        }
        char key[256];
        size_t klen = (size_t)(eq - kv[i]);
        if (klen >= sizeof key) {
            snprintf(errstr, errstr_size, "kafka property '%.40s...': name too long", kv[i]);
            rc = -1;
            break;
        }
        memcpy(key, kv[i], klen);
        key[klen] = '\0';
        const char *name = key;
        int prefix = scope_prefix(&name);
        int scope = table ? property_scope(table, name) : 0;
        if (prefix && scope && !(scope & prefix)) {
            snprintf(errstr, errstr_size, "kafka property %s: %s is a %s property", key, name,
                     scope == SF_KAFKA_FOR_CONSUMER ? "consumer" : "producer");
            rc = -1;
        } else if (prefix ? (prefix & client) : (!scope || (scope & client))) {
            /* An unknown name is set too: librdkafka's refusal names it. */
            rc = sf_kafka_conf_set(conf, name, eq + 1, errstr, errstr_size);
        }
    }
    free(table);
    return rc;
}

int sf_kafka_props_check(const char *const *kv, size_t n, int clients, char *errstr, size_t errstr_size) {
    int rc = 0;
    for (int c = SF_KAFKA_FOR_CONSUMER; c <= SF_KAFKA_FOR_PRODUCER && rc == 0; c <<= 1) {
        if (!(clients & c))
            continue;
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rc = sf_kafka_props_apply(conf, c, kv, n, errstr, errstr_size);
        rd_kafka_conf_destroy(conf);
    }
    return rc;
}

const char *sf_kafka_props_get(const sf_kafka_props *p, const char *name) {
    size_t n = strlen(name);
    for (size_t i = p->n; i-- > 0;)
        if (!strncmp(p->kv[i], name, n) && p->kv[i][n] == '=')
            return p->kv[i] + n + 1;
    return NULL;
}

/* Appends key[0..klen) "=" value[0..vlen). */
static int props_append(sf_kafka_props *p, const char *key, size_t klen, const char *value,
                        size_t vlen) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 8;
        char **kv = realloc(p->kv, cap * sizeof *kv);
        if (!kv)
            return -1;
        p->kv = kv;
        p->cap = cap;
    }
    char *s = malloc(klen + vlen + 2);
    if (!s)
        return -1;
    memcpy(s, key, klen);
    s[klen] = '=';
    memcpy(s + klen + 1, value, vlen);
    s[klen + 1 + vlen] = '\0';
    p->kv[p->n++] = s;
    return 0;
}

/* A JAAS option's value at *s ("alice" or alice), into out; *s moves past it.
 * 0, or -1 when it does not end. */
static int jaas_value(const char **s, char *out, size_t n) {
    const char *v = *s, *end;
    if (*v == '"') {
        end = strchr(++v, '"');
        if (!end)
            return -1;
        *s = end + 1;
    } else {
        end = v + strcspn(v, " \t;");
        *s = end;
    }
    if ((size_t)(end - v) >= n)
        return -1;
    memcpy(out, v, (size_t)(end - v));
    out[end - v] = '\0';
    return 0;
}

static int ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    return n >= k && !strncmp(s + n - k, suffix, k);
}

/* Java's sasl.jaas.config, which librdkafka refuses, as librdkafka's own
 * properties: PLAIN's and SCRAM's username and password become sasl.username
 * and sasl.password (under the same consumer./producer. prefix); any other
 * module is refused with what to write instead. The value is never quoted in
 * a message. */
static int add_jaas(sf_kafka_props *p, const char *key, size_t klen, const char *v, char *errstr,
                    size_t errstr_size) {
    size_t plen = klen - strlen("sasl.jaas.config"); /* the prefix */
    const char *module = v + strspn(v, " \t");
    size_t mlen = strcspn(module, " \t;");
    static const char *const advice[][2] = {
        {"OAuthBearerLoginModule", "sasl.mechanism=OAUTHBEARER, sasl.oauthbearer.method=oidc, "
                                   "sasl.oauthbearer.client.id, sasl.oauthbearer.client.secret and "
                                   "sasl.oauthbearer.token.endpoint.url"},
        {"Krb5LoginModule", "sasl.mechanism=GSSAPI, sasl.kerberos.principal and sasl.kerberos.keytab"},
    };
    if (!ends_with(module, mlen, "PlainLoginModule") && !ends_with(module, mlen, "ScramLoginModule")) {
        const char *instead = "sasl.username and sasl.password (with sasl.mechanism PLAIN or SCRAM-SHA-*)";
        for (size_t i = 0; i < sizeof advice / sizeof advice[0]; i++)
            if (ends_with(module, mlen, advice[i][0]))
                instead = advice[i][1];
        /* The module's name, when it is one: anything else may be the secret. */
        int named = ends_with(module, mlen, "LoginModule") && mlen < 120 &&
                    strspn(module, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._$") == mlen;
        snprintf(errstr, errstr_size,
                 "kafka property %.*s: only Java's PlainLoginModule and ScramLoginModule are translated "
                 "(to sasl.username and sasl.password); for %s%.*s write %s instead", (int)klen, key,
                 named ? "module " : "another module", named ? (int)mlen : 0, module, instead);
        return -1;
    }
    char user[512] = "", pass[512] = "";
    int have_user = 0, have_pass = 0;
    const char *s = module + mlen;
    s += strspn(s, " \t");
    s += strcspn(s, " \t;"); /* the control flag: required, ... */
    for (;;) {
        s += strspn(s, " \t");
        if (!*s || *s == ';')
            break;
        const char *name = s;
        size_t nlen = strcspn(s, "= \t;");
        s += nlen;
        char val[512];
        if (*s != '=' || (s++, jaas_value(&s, val, sizeof val))) {
            snprintf(errstr, errstr_size, "kafka property %.*s: not a JAAS line of the form "
                     "MODULE required username=\"...\" password=\"...\";", (int)klen, key);
            return -1;
        }
        if (nlen == 8 && !strncmp(name, "username", 8)) {
            strcpy(user, val);
            have_user = 1;
        } else if (nlen == 8 && !strncmp(name, "password", 8)) {
            strcpy(pass, val);
            have_pass = 1;
        }
    }
    if (!have_user || !have_pass) {
        snprintf(errstr, errstr_size, "kafka property %.*s: the login module needs username and password",
                 (int)klen, key);
        return -1;
    }
    char name[64];
    snprintf(name, sizeof name, "%.*ssasl.username", (int)plen, key);
    if (props_append(p, name, strlen(name), user, strlen(user)))
        goto oom;
    snprintf(name, sizeof name, "%.*ssasl.password", (int)plen, key);
    if (props_append(p, name, strlen(name), pass, strlen(pass)))
        goto oom;
    return 0;
oom:
    snprintf(errstr, errstr_size, "out of memory");
    return -1;
}

/* Appends key[0..klen) "=" value, translating sasl.jaas.config. */
static int add_property(sf_kafka_props *p, const char *key, size_t klen, const char *value, size_t vlen,
                        char *errstr, size_t errstr_size) {
    const char *name = key;
    char k[256];
    if (klen < sizeof k) {
        memcpy(k, key, klen);
        k[klen] = '\0';
        name = k;
        scope_prefix(&name);
        if (!strcmp(name, "sasl.jaas.config")) {
            char *v = strndup(value, vlen);
            if (!v) {
                snprintf(errstr, errstr_size, "out of memory");
                return -1;
            }
            int rc = add_jaas(p, key, klen, v, errstr, errstr_size);
            free(v);
            return rc;
        }
    }
    if (props_append(p, key, klen, value, vlen)) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    return 0;
}

int sf_kafka_props_add(sf_kafka_props *p, const char *kv, char *errstr, size_t errstr_size) {
    const char *eq = kv_equals(kv, errstr, errstr_size);
    if (!eq)
        return -1;
    return add_property(p, kv, (size_t)(eq - kv), eq + 1, strlen(eq + 1), errstr, errstr_size);
}

static const char *trim(const char *s, const char **end) {
    while (s < *end && isspace((unsigned char)*s))
        s++;
    while (*end > s && isspace((unsigned char)(*end)[-1]))
        (*end)--;
    return s;
}

/* Whether a line (trimmed) ends in an odd number of backslashes: a Java
 * properties file continues it on the next line. */
static int continued(const char *s, const char *end) {
    size_t n = 0;
    while (end > s && end[-1] == '\\') {
        end--;
        n++;
    }
    return n % 2;
}

int sf_kafka_props_load(sf_kafka_props *p, const char *path, char *errstr, size_t errstr_size) {
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL, *joined = NULL;
    size_t cap = 0, jlen = 0;
    ssize_t len;
    unsigned long lineno = 0, first = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        const char *end = line + len;
        const char *s = trim(line, &end);
        if (!joined && (s == end || *s == '#' || *s == '!'))
            continue;
        /* A logical line: this one, and the next ones while they continue. */
        int more = continued(s, end);
        size_t add = (size_t)(end - s) - (size_t)more;
        char *grown = realloc(joined, jlen + add + 1);
        if (!grown) {
            snprintf(errstr, errstr_size, "out of memory");
            rc = -1;
            break;
        }
        if (!joined)
            first = lineno;
        joined = grown;
        memcpy(joined + jlen, s, add);
        jlen += add;
        joined[jlen] = '\0';
        if (more)
            continue;
        s = joined;
        end = joined + jlen;
        const char *eq = memchr(s, '=', (size_t)(end - s));
        const char *kend = eq;
        if (eq)
            trim(s, &kend);
        if (!eq || kend == s) {
            if (sf_kafka_secret(s)) /* "sasl.password: x" */
                snprintf(errstr, errstr_size, "%s:%lu: expected key=value, got a line naming a credential "
                         "(not shown)", path, first);
            else
                snprintf(errstr, errstr_size, "%s:%lu: expected key=value, got '%.*s'", path, first,
                         (int)(end - s > 60 ? 60 : end - s), s);
            rc = -1;
            break;
        }
        const char *vend = end;
        const char *v = trim(eq + 1, &vend);
        char err[512];
        if (add_property(p, s, (size_t)(kend - s), v, (size_t)(vend - v), err, sizeof err)) {
            snprintf(errstr, errstr_size, "%s:%lu: %s", path, first, err);
            rc = -1;
        }
        free(joined);
        joined = NULL;
        jlen = 0;
    }
    if (rc == 0 && ferror(f)) {
        snprintf(errstr, errstr_size, "%s: read error", path);
        rc = -1;
    }
    free(joined);
    free(line);
    fclose(f);
    return rc;
}

void sf_kafka_props_free(sf_kafka_props *p) {
    for (size_t i = 0; i < p->n; i++)
        free(p->kv[i]);
    free(p->kv);
    memset(p, 0, sizeof *p);
}

static rd_kafka_conf_t *conf_with(int client, const char *const *defaults, const sf_kafka_opts *o,
                                  char *errstr, size_t n) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (sf_kafka_conf_set_all(conf, defaults, errstr, n) ||
        sf_kafka_props_apply(conf, client, o->props, o->n_props, errstr, n)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

rd_kafka_conf_t *sf_kafka_producer_conf(const sf_kafka_opts *o, char *errstr, size_t n) {
    /* Room for any dead letter: a too-large event is copied to the dead-letter
     * topic whole, so the limit is what the consumer can receive, not the
     * event size limit; plus room for key and headers. */
    char max_bytes[32];
    size_t largest = o->max_message_bytes > SF_KAFKA_RECEIVE_MAX_BYTES ? o->max_message_bytes
                                                                        : SF_KAFKA_RECEIVE_MAX_BYTES;
    snprintf(max_bytes, sizeof max_bytes, "%zu", largest + (64 << 10));
    const char *defaults[] = {
        "bootstrap.servers", o->brokers,
        "enable.idempotence", "true",
        "linger.ms", "2",
        "message.timeout.ms", "0", /* retry until acknowledged: never drop an output */
        "message.max.bytes", max_bytes,
        "queue.buffering.max.kbytes", "32768",
        "reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS,
        NULL};
    rd_kafka_conf_t *conf = conf_with(SF_KAFKA_FOR_PRODUCER, defaults, o, errstr, n);
    if (conf && o->exactly_once &&
        sf_kafka_conf_set(conf, "transactional.id", o->transactional_id, errstr, n)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

rd_kafka_conf_t *sf_kafka_consumer_conf(const sf_kafka_opts *o, char *errstr, size_t n) {
    char receive_max[32];
    snprintf(receive_max, sizeof receive_max, "%u", SF_KAFKA_RECEIVE_MAX_BYTES);
    const char *defaults[] = {
        "bootstrap.servers", o->brokers,
        "group.id", o->group,
        "auto.offset.reset", "earliest",
        "enable.auto.offset.store", "false",
        "enable.auto.commit", o->exactly_once ? "false" : "true",
        /* Stored offsets go out often: after a crash, what was acknowledged
         * but not yet committed is published again. */
        "auto.commit.interval.ms", "100",
        "isolation.level", "read_committed",
        /* Kafka's pre-3.0 default: a dead instance's partitions move within
         * 10 s (librdkafka's 45 s default also delays restarts on the
         * embedded broker, which holds a departed group that long). */
        "session.timeout.ms", "10000",
        "heartbeat.interval.ms", "1000",
        "reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS,
        /* The prefetch, sized to hold at least a second of input flat out.
         * In librdkafka 2.0.2, once the consumer queue (every partition's
         * queue is forwarded to it, so the limits are the whole queue's)
         * holds queued.min.messages or queued.max.messages.kbytes, each
         * partition leaves the fetch list with no timer of its own, and the
         * broker thread looks again only when something else wakes it, at
         * the latest after its fixed 1 s poll (fetch.queue.backoff.ms came
         * in 2.2.0). So a backlog is read one full queue a second: at 20,000
         * events and 16 MB the pipeline idled 60 % of every second catching
         * up (bench/README.md). Memory bound: 96 MB of events, plus one
         * fetch response (fetch.max.bytes) per broker, plus librdkafka's
         * few hundred bytes per queued message; about 130,000 events of the
         * Higgs sample's 740 bytes, 2 s at 65,000 events/s. */
        "queued.max.messages.kbytes", "98304",
        "queued.min.messages", "150000",
        "fetch.max.bytes", "8388608",
        "receive.message.max.bytes", receive_max,
        "statistics.interval.ms", o->statistics ? "5000" : "0",
        /* Idle fetches come back within 10 ms, a low rate's latency: brokers
         * that answer an empty fetch only when it expires (the embedded one
         * among them) hold an event that long; a real broker answers as soon
         * as data arrives, and an idle consumer asks 100 times a second. */
        "fetch.wait.max.ms", "10",
        NULL};
    return conf_with(SF_KAFKA_FOR_CONSUMER, defaults, o, errstr, n);
}

rd_kafka_t *sf_kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf, char *errstr, size_t n) {
    char rderr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, rderr, sizeof rderr);
    if (!rk) {
        snprintf(errstr, n, "cannot create %s: %s",
                 type == RD_KAFKA_PRODUCER ? "producer" : "consumer", rderr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int sf_kafka_check_brokers(rd_kafka_t *rk, const char *brokers, const char *topic, int timeout_ms,
                           const atomic_int *stop, int *topic_exists, char *errstr, size_t n) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR__TIMED_OUT;
    /* Short requests, so that a stop is seen within a slice. */
    int64_t deadline = sf_clock_ms() + timeout_ms;
    for (int64_t left = timeout_ms; left > 0; left = deadline - sf_clock_ms()) {
        if (stop && atomic_load(stop))
            return 1;
        err = rd_kafka_metadata(rk, 1, NULL, &md, (int)(left < STOP_SLICE_MS ? left : STOP_SLICE_MS));
        if (err != RD_KAFKA_RESP_ERR__TIMED_OUT && err != RD_KAFKA_RESP_ERR__TRANSPORT)
            break;
    }
    if (err && stop && atomic_load(stop)) /* whatever the last request said */
        return 1;
    if (err) {
        snprintf(errstr, n, "cannot reach brokers %s within %d ms: %s", brokers, timeout_ms,
                 rd_kafka_err2str(err));
        return -1;
    }
    *topic_exists = 0;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, topic) && !md->topics[i].err)
            *topic_exists = 1;
    rd_kafka_metadata_destroy(md);
    return 0;
}

int sf_kafka_rewind_to_committed(rd_kafka_t *consumer, const rd_kafka_topic_partition_list_t *parts,
                                 int timeout_ms) {
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    int rc = -1;
    if (rd_kafka_committed(consumer, l, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < l->cnt; i++)
            if (l->elems[i].offset < 0)
                l->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        /* A failed seek leaves the consumer where it was: the next fetch
         * error or rebalance puts it right, as before this function. */
        rd_kafka_error_t *err = rd_kafka_seek_partitions(consumer, l, timeout_ms);
        if (err)
            rd_kafka_error_destroy(err);
        rc = 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
    return rc;
}

double sf_kafka_stats_consumer_lag(const char *json, size_t len) {
    json_t *root = json_loadb(json, len, 0, NULL);
    if (!root)
        return -1;
    double lag = 0;
    const char *tname;
    json_t *topic;
    json_object_foreach(json_object_get(root, "topics"), tname, topic) {
        const char *pname;
        json_t *part;
        json_object_foreach(json_object_get(topic, "partitions"), pname, part) {
            json_t *l = json_object_get(part, "consumer_lag");
            const char *state = json_string_value(json_object_get(part, "fetch_state"));
            if (strcmp(pname, "-1") && json_is_integer(l) && json_integer_value(l) > 0 && state &&
                !strcmp(state, "active"))
                lag += (double)json_integer_value(l);
        }
    }
    json_decref(root);
    return lag;
}

void sf_kafka_partitions_format(char *buf, size_t size, const rd_kafka_topic_partition_list_t *l) {
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < l->cnt && n + 32 < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%s[%d]", i ? " " : "", l->elems[i].topic,
                              (int)l->elems[i].partition);
}

/* librdkafka's lines for a client without a pipeline behind its opaque: the
 * format is in the choice of callback; librdkafka's log_level filters. */
static void log_line(sf_log_format f, const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    sf_log((sf_logger){SF_LOG_DEBUG, f}, sf_kafka_log_level(level),
           "librdkafka client=%s facility=%s text=\"%s\"", rd_kafka_name(rk), fac, buf);
}

static void log_text(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    log_line(SF_LOG_TEXT, rk, level, fac, buf);
}

static void log_json(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
    log_line(SF_LOG_JSON, rk, level, fac, buf);
}

void sf_kafka_conf_log(rd_kafka_conf_t *conf, sf_log_format format) {
    rd_kafka_conf_set_log_cb(conf, format == SF_LOG_JSON ? log_json : log_text);
}

sf_log_level sf_kafka_log_level(int level) {
    return level <= 2 ? SF_LOG_ERROR : level <= 4 ? SF_LOG_WARN : level <= 6 ? SF_LOG_INFO : SF_LOG_DEBUG;
}
