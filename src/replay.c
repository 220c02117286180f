/* replay.c: CSV rows to JSON Kafka messages, and the produce loop around it.
 *
 * The JSON is built by hand: the key prefixes ("name":) are escaped once at
 * open, and each value's text is copied after a grammar check, so a row costs
 * one pass over its bytes and no allocation. Copying the text (rather than
 * strtod + printf) is what makes every decimal arrive exactly as written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sigflow/csv.h"
#include "sigflow/kafka.h"
#include "sigflow/clock.h"
#include "sigflow/replay.h"
#include "sigflow/topics.h"

struct sf_replay {
    sf_csv *csv;
    char *path;
    size_t n_cols;
    char **names;           /* every header name, trimmed */
    unsigned char *keep;    /* 1 when the column goes into the JSON */
    char **prefix;          /* kept columns: {"name": for the first, ,"name": after */
    size_t *prefix_len;
    const char **fields;    /* names of the kept columns, in order */
    size_t n_fields;
    size_t fixed_len;       /* sum of prefix lengths + "{}" */
    long key_col;           /* -1: no key */
    long label_col;         /* -1: no Label column */
    char *out;              /* the JSON of the current row */
    size_t out_cap;
};

static int is_blank(char c) {
    return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *len) {
    while (*len && is_blank(**s))
        (*s)++, (*len)--;
    while (*len && is_blank((*s)[*len - 1]))
        (*len)--;
}

/* Copies at most 32 bytes of s for an error message, with control and
 * non-ASCII bytes shown as '?' so bad input cannot garble a terminal. */
static void quote(char *dst, size_t dst_size, const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len && n + 4 < dst_size; i++) {
        if (n == 32) {
            memcpy(dst + n, "...", 3);
            n += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        dst[n++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
    }
    dst[n] = '\0';
}

static int utf8_valid(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + n >= len)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += n + 1;
    }
    return 1;
}

int sf_replay_json_number(const char *text, size_t len, char *out, size_t out_size,
                          size_t *out_len, int *is_int, char *errstr, size_t errstr_size) {
    const char *p = text;
    char echo[48];
    if (len && (is_blank(p[0]) || is_blank(p[len - 1])))
        trim(&p, &len);
    const char *e = p + len;
    if (len == 0) {
        snprintf(errstr, errstr_size, "empty value");
        return -1;
    }
    if (out_size < len + 3) {
        snprintf(errstr, errstr_size, "value longer than the output buffer");
        return -1;
    }
    /* One pass that checks the grammar while copying; the rare spellings JSON
     * rejects (+1, .5, 1., 007) are repaired on the way. */
    char *o = out;
    int neg = 0;
    if (*p == '-')
        neg = 1, *o++ = *p++;
    else if (*p == '+')
        p++;
    char *io = o;
    while (p < e && (unsigned)(*p - '0') < 10)
        *o++ = *p++;
    size_t n_int = (size_t)(o - io);
    if (n_int > 1 && *io == '0') {
        /* JSON allows one leading zero at most. */
        size_t z = 0;
        while (z + 1 < n_int && io[z] == '0')
            z++;
        memmove(io, io + z, n_int - z);
        n_int -= z;
        o -= z;
    }
    int has_dot = 0, has_exp = 0, ok;
    size_t n_frac = 0;
    if (p < e && *p == '.') {
        has_dot = 1;
        p++;
        if (n_int == 0)
            *o++ = '0';
        *o++ = '.';
        char *fo = o;
        while (p < e && (unsigned)(*p - '0') < 10)
            *o++ = *p++;
        n_frac = (size_t)(o - fo);
        if (n_frac == 0)
            *o++ = '0';
    }
    ok = n_int + n_frac > 0;
    if (ok && p < e && (*p == 'e' || *p == 'E')) {
        has_exp = 1;
        *o++ = *p++;
        if (p < e && (*p == '+' || *p == '-'))
            *o++ = *p++;
        char *xo = o;
        while (p < e && (unsigned)(*p - '0') < 10)
            *o++ = *p++;
        ok = o > xo;
    }
    if (!ok || p != e) {
        quote(echo, sizeof echo, text, (size_t)(e - text));
        snprintf(errstr, errstr_size, "'%s' is not a number", echo);
        return -1;
    }
    *o = '\0';
    *is_int = !has_dot && !has_exp;
    if (*is_int && (n_int > 19 ||
                    (n_int == 19 &&
                     memcmp(io, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0))) {
        quote(echo, sizeof echo, text, (size_t)(e - text));
        snprintf(errstr, errstr_size, "'%s' is out of the 64-bit integer range", echo);
        return -1;
    }
    /* Only an exponent or ~309 integer digits can overflow a double. */
    if (!*is_int && (has_exp || n_int > 300) && isinf(strtod(out, NULL))) {
        quote(echo, sizeof echo, text, (size_t)(e - text));
        snprintf(errstr, errstr_size, "'%s' is out of the double range", echo);
        return -1;
    }
    *out_len = (size_t)(o - out);
    return 0;
}

/* Writes s as the inside of a JSON string; returns the length (dst may be
 * NULL to measure). */
static size_t json_escape(char *dst, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            if (dst)
                dst[n] = '\\', dst[n + 1] = (char)c;
            n += 2;
        } else if (c < 0x20) {
            if (dst) {
                memcpy(dst + n, "\\u00", 4);
                dst[n + 4] = hex[c >> 4];
                dst[n + 5] = hex[c & 15];
            }
            n += 6;
        } else {
            if (dst)
                dst[n] = (char)c;
            n++;
        }
    }
    return n;
}

/* 1 when `name` appears in the comma-separated list. */
static int in_list(const char *list, const char *name) {
    size_t nlen = strlen(name);
    const char *p = list;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *item = p;
        trim(&item, &len);
        if (len == nlen && !memcmp(item, name, len))
            return 1;
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

static int replay_header(sf_replay *r, const char *drop, const char *key_field,
                            char *errstr, size_t errstr_size) {
    const sf_csv_field *f;
    size_t n;
    int rc = sf_csv_next(r->csv, &f, &n, errstr, errstr_size);
    if (rc == SF_CSV_EOF) {
        snprintf(errstr, errstr_size, "%s: empty file (no header row)", r->path);
        return -1;
    }
    if (rc != SF_CSV_RECORD)
        return -1;
    r->n_cols = n;
    r->names = calloc(n, sizeof *r->names);
    r->keep = calloc(n, 1);
    r->prefix = calloc(n, sizeof *r->prefix);
    r->prefix_len = calloc(n, sizeof *r->prefix_len);
    r->fields = calloc(n, sizeof *r->fields);
    if (!r->names || !r->keep || !r->prefix || !r->prefix_len || !r->fields)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        const char *s = f[i].ptr;
        size_t len = f[i].len;
        trim(&s, &len);
        if (len == 0) {
            snprintf(errstr, errstr_size, "%s:%llu: column %zu has an empty name", r->path,
                     (unsigned long long)sf_csv_line(r->csv), i + 1);
            return -1;
        }
        if (!utf8_valid((const unsigned char *)s, len) || memchr(s, '\0', len)) {
            snprintf(errstr, errstr_size, "%s:%llu: column %zu name is not valid UTF-8 text",
                     r->path, (unsigned long long)sf_csv_line(r->csv), i + 1);
            return -1;
        }
        if (!(r->names[i] = strndup(s, len)))
            goto oom;
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(r->names[j], r->names[i])) {
                snprintf(errstr, errstr_size, "%s:%llu: column name '%s' appears twice",
                         r->path, (unsigned long long)sf_csv_line(r->csv), r->names[i]);
                return -1;
            }
        }
    }
    r->key_col = r->label_col = -1;
    r->fixed_len = 2;
    for (size_t i = 0; i < n; i++) {
        if (key_field[0] && !strcmp(r->names[i], key_field))
            r->key_col = (long)i;
        if (!strcmp(r->names[i], "Label"))
            r->label_col = (long)i;
        if (in_list(drop, r->names[i]))
            continue;
        size_t len = strlen(r->names[i]);
        size_t esc = json_escape(NULL, r->names[i], len);
        char *p = malloc(esc + 5);
        if (!p)
            goto oom;
        p[0] = r->n_fields ? ',' : '{';
        p[1] = '"';
        json_escape(p + 2, r->names[i], len);
        memcpy(p + 2 + esc, "\":", 3);
        r->keep[i] = 1;
        r->prefix[i] = p;
        r->prefix_len[i] = esc + 4;
        r->fixed_len += esc + 4;
        r->fields[r->n_fields++] = r->names[i];
    }
    return 0;
oom:
    snprintf(errstr, errstr_size, "%s: out of memory reading the header", r->path);
    return -1;
}

int sf_replay_open(sf_replay **out, const char *path, const char *drop,
                   const char *key_field, char *errstr, size_t errstr_size) {
    *out = NULL;
    sf_replay *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        snprintf(errstr, errstr_size, "%s: out of memory", path);
        return -1;
    }
    if (sf_csv_open(&r->csv, path, errstr, errstr_size) != 0 ||
        replay_header(r, drop ? drop : SF_REPLAY_DEFAULT_DROP,
                         key_field ? key_field : SF_REPLAY_DEFAULT_KEY, errstr,
                         errstr_size) != 0) {
        sf_replay_close(r);
        return -1;
    }
    *out = r;
    return 0;
}

void sf_replay_close(sf_replay *r) {
    if (!r)
        return;
    sf_csv_close(r->csv);
    for (size_t i = 0; i < r->n_cols; i++) {
        if (r->names)
            free(r->names[i]);
        if (r->prefix)
            free(r->prefix[i]);
    }
    free(r->names);
    free(r->keep);
    free(r->prefix);
    free(r->prefix_len);
    free(r->fields);
    free(r->out);
    free(r->path);
    free(r);
}

size_t sf_replay_fields(const sf_replay *r, const char *const **names) {
    *names = r->fields;
    return r->n_fields;
}

int sf_replay_has_key(const sf_replay *r) {
    return r->key_col >= 0;
}

int sf_replay_rewind(sf_replay *r, char *errstr, size_t errstr_size) {
    const sf_csv_field *f;
    size_t n;
    if (sf_csv_rewind(r->csv, errstr, errstr_size) != 0)
        return -1;
    if (sf_csv_next(r->csv, &f, &n, errstr, errstr_size) != SF_CSV_RECORD) {
        snprintf(errstr, errstr_size, "%s: header row unreadable on rewind", r->path);
        return -1;
    }
    return 0;
}

int sf_replay_next(sf_replay *r, sf_replay_msg *msg, char *errstr, size_t errstr_size) {
    const sf_csv_field *f;
    size_t n;
    int rc = sf_csv_next(r->csv, &f, &n, errstr, errstr_size);
    if (rc == SF_CSV_EOF)
        return SF_REPLAY_EOF;
    if (rc == SF_CSV_ERROR)
        return SF_REPLAY_ERROR;
    unsigned long long line = (unsigned long long)sf_csv_line(r->csv);
    if (rc == SF_CSV_BAD)
        return SF_REPLAY_BAD;
    if (n != r->n_cols) {
        snprintf(errstr, errstr_size, "%s:%llu: expected %zu fields, found %zu", r->path, line,
                 r->n_cols, n);
        return SF_REPLAY_BAD;
    }
    size_t need = r->fixed_len + 1;
    for (size_t i = 0; i < n; i++)
        if (r->keep[i])
            need += f[i].len + 3;
    if (need > r->out_cap) {
        size_t cap = need < 4096 ? 4096 : need * 2;
        char *p = realloc(r->out, cap);
        if (!p) {
            snprintf(errstr, errstr_size, "%s:%llu: out of memory", r->path, line);
            return SF_REPLAY_ERROR;
        }
        r->out = p;
        r->out_cap = cap;
    }
    char *o = r->out;
    for (size_t i = 0; i < n; i++) {
        if (!r->keep[i])
            continue;
        memcpy(o, r->prefix[i], r->prefix_len[i]);
        o += r->prefix_len[i];
        size_t len;
        int is_int;
        char why[128];
        if (sf_replay_json_number(f[i].ptr, f[i].len, o, f[i].len + 3, &len, &is_int, why,
                                  sizeof why) != 0) {
            snprintf(errstr, errstr_size, "%s:%llu: column %s: %s", r->path, line, r->names[i],
                     why);
            return SF_REPLAY_BAD;
        }
        o += len;
    }
    if (o == r->out)
        *o++ = '{';
    *o++ = '}';
    *o = '\0';
    msg->value = r->out;
    msg->value_len = (size_t)(o - r->out);
    msg->key = NULL;
    msg->key_len = 0;
    if (r->key_col >= 0) {
        const char *k = f[r->key_col].ptr;
        size_t klen = f[r->key_col].len;
        trim(&k, &klen);
        msg->key = k;
        msg->key_len = klen;
    }
    msg->label = NULL;
    msg->label_len = 0;
    if (r->label_col >= 0) {
        msg->label = f[r->label_col].ptr;
        msg->label_len = f[r->label_col].len;
        trim(&msg->label, &msg->label_len);
    }
    msg->line = line;
    return SF_REPLAY_ROW;
}

/* ---- Producing ---- */

/* A looping run keeps a file up to this size (decompressed) in memory, so
 * passes after the first cost no inflate: it doubles gzip replay speed. */
#define SF_REPLAY_KEEP_MAX ((size_t)256 << 20)

/* Delivery outcomes, reached from each message's opaque. Only the thread
 * running sf_replay_run polls the producer, so plain counters suffice. */
typedef struct {
    uint64_t delivered, failed;
    char error[256];
} sf_replay_counts;

void sf_replay_dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk, (void)opaque;
    sf_replay_counts *c = m->_private;
    if (!c)
        return;
    if (!m->err) {
        c->delivered++;
        return;
    }
    c->failed++;
    if (!c->error[0])
        snprintf(c->error, sizeof c->error, "delivery to %s [%d] failed: %s",
                 rd_kafka_topic_name(m->rkt), (int)m->partition, rd_kafka_err2str(m->err));
}

int sf_replay_conf_init(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size) {
    /* Idempotence: a produce request retried across a broker outage must not
     * write an event twice (the daemon would then rightly publish it twice),
     * nor reorder a partition. -X enable.idempotence=false still turns it off. */
    static const char *const kv[][2] = {
        {"enable.idempotence", "true"},
        {"linger.ms", "5"},
        {"batch.num.messages", "10000"},
        {"compression.type", "none"},
        {"queue.buffering.max.messages", "500000"},
    };
    rd_kafka_conf_set_dr_msg_cb(conf, sf_replay_dr_msg_cb);
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        if (sf_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, errstr_size) != 0)
            return -1;
    return 0;
}

void sf_replay_opts_init(sf_replay_opts *o) {
    memset(o, 0, sizeof *o);
    o->passes = 1;
}

static int stopped(sf_stop_flag *stop) {
    return stop && atomic_load(stop);
}

/* Waits until the monotonic `deadline`, serving delivery reports meanwhile;
 * returns early when *stop is set. */
static void wait_until(rd_kafka_t *rk, double deadline, sf_stop_flag *stop) {
    for (;;) {
        double left = deadline - sf_clock_s();
        if (left <= 0 || stopped(stop))
            return;
        if (left > 0.002) {
            int ms = (int)((left - 0.001) * 1000);
            rd_kafka_poll(rk, ms > 100 ? 100 : ms);
        } else {
            struct timespec ts = {0, (long)(left * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
}

typedef struct {
    rd_kafka_t *rk;
    const sf_replay_opts *o;
    sf_replay_stats *st;
    sf_replay_counts *c;
    uint64_t refused;       /* produce() refusals: failed, but never reported */
    double t0, next_progress;
    /* --truth-topic: labels waiting for their time, oldest first (a ring). */
    rd_kafka_topic_t *truth;
    struct truth_msg {
        double due;
        size_t len;
        char json[120];
    } *pending;
    size_t n_pending, first, cap;
} sf_replay_loop;

int sf_replay_truth_format(const sf_replay_msg *m, const char *field, char *out, size_t size) {
    if (!m->key || !m->label || m->key_len > 40 || m->label_len > 40 || strchr(field, '"') ||
        memchr(m->key, '"', m->key_len) || memchr(m->label, '"', m->label_len))
        return -1;
    char num[64], why[64];
    size_t nlen;
    int is_int, w;
    if (sf_replay_json_number(m->key, m->key_len, num, sizeof num, &nlen, &is_int, why,
                              sizeof why) == 0)
        w = snprintf(out, size, "{\"%s\":%s,\"Label\":\"%.*s\"}", field, num,
                     (int)m->label_len, m->label);
    else
        w = snprintf(out, size, "{\"%s\":\"%.*s\",\"Label\":\"%.*s\"}", field,
                     (int)m->key_len, m->key, (int)m->label_len, m->label);
    return w < 0 || (size_t)w >= size ? -1 : w;
}

/* Queues row m's truth, due truth_delay_s from now. 0, or -1 when the row
 * cannot have one (no key or label, too long) or out of memory. */
static int truth_queue(sf_replay_loop *l, const sf_replay_msg *m) {
    if (!m->key || !m->label || m->key_len > 40 || m->label_len > 40)
        return -1;
    if (l->n_pending == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        struct truth_msg *p = malloc(cap * sizeof *p);
        if (!p)
            return -1;
        for (size_t i = 0; i < l->n_pending; i++)
            p[i] = l->pending[(l->first + i) % l->cap];
        free(l->pending);
        l->pending = p;
        l->cap = cap;
        l->first = 0;
    }
    struct truth_msg *t = &l->pending[(l->first + l->n_pending) % l->cap];
    int w = sf_replay_truth_format(m, l->o->key_field ? l->o->key_field : SF_REPLAY_DEFAULT_KEY,
                                   t->json, sizeof t->json);
    if (w < 0)
        return -1;
    t->len = (size_t)w;
    t->due = sf_clock_s() + l->o->truth_delay_s;
    l->n_pending++;
    return 0;
}

/* Produces the truth that is due (all of it when all). */
static void truth_flush(sf_replay_loop *l, int all) {
    double now = sf_clock_s();
    while (l->n_pending && (all || l->pending[l->first].due <= now)) {
        struct truth_msg *t = &l->pending[l->first];
        if (rd_kafka_produce(l->truth, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, t->json,
                             t->len, NULL, 0, NULL) != 0) {
            if (rd_kafka_last_error() == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(l->rk, 10);
                continue;
            }
            if (!l->st->error[0])
                snprintf(l->st->error, sizeof l->st->error, "produce to %s refused: %s",
                         rd_kafka_topic_name(l->truth), rd_kafka_err2str(rd_kafka_last_error()));
        }
        l->first = (l->first + 1) % l->cap;
        l->n_pending--;
    }
}

/* Brings *st up to date with the delivery reports served so far. */
static void replay_sync(sf_replay_loop *l) {
    l->st->delivered = l->c->delivered;
    l->st->failed = l->c->failed + l->refused;
    l->st->seconds = sf_clock_s() - l->t0;
    if (!l->st->error[0] && l->c->error[0])
        snprintf(l->st->error, sizeof l->st->error, "%s", l->c->error);
}

static uint64_t in_flight(const sf_replay_loop *l) {
    return l->st->sent - l->c->delivered - l->c->failed;
}

static void replay_progress(sf_replay_loop *l, int force) {
    if (!l->o->on_progress)
        return;
    double now = sf_clock_s();
    if (!force && now < l->next_progress)
        return;
    l->next_progress = now + 0.25;
    replay_sync(l);
    l->o->on_progress(l->o->opaque, l->st, in_flight(l));
}

/* Waits for every report of the messages sent, so no opaque outlives the run. */
static void replay_drain(sf_replay_loop *l, int timeout_ms) {
    double deadline = sf_clock_s() + timeout_ms / 1000.0;
    while (in_flight(l) > 0 && sf_clock_s() < deadline) {
        rd_kafka_flush(l->rk, 100);
        replay_progress(l, 0);
    }
    if (in_flight(l) == 0)
        return;
    rd_kafka_purge(l->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    deadline = sf_clock_s() + 5.0;
    while (in_flight(l) > 0 && sf_clock_s() < deadline)
        rd_kafka_poll(l->rk, 50);
}

/* The cluster answers, and the topic exists or is created now: a new
 * user's first replay onto a fresh cluster works whether or not the brokers
 * auto-create topics, with the partitions asked for. */
static int replay_check_cluster(rd_kafka_t *rk, const char *topic, const sf_replay_opts *o,
                                sf_replay_stats *st, char *errstr, size_t errstr_size) {
    int timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 10000;
    char servers[512] = "(none)";
    size_t sz = sizeof servers;
    rd_kafka_conf_get(rd_kafka_conf(rk), "bootstrap.servers", servers, &sz);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (err) {
        snprintf(errstr, errstr_size, "no Kafka broker answered at %s within %.1f s (%s)",
                 servers, timeout_ms / 1000.0, rd_kafka_err2str(err));
        return -1;
    }
    rd_kafka_metadata_destroy(md);
    sf_topic_spec spec = {o->partitions > 0 ? o->partitions : -1,
                          o->replication_factor > 0 ? o->replication_factor : -1};
    size_t created = 0;
    char why[512];
    if (sf_topics_ensure(rk, &topic, 1, &spec, timeout_ms, &created, why, sizeof why)) {
        snprintf(errstr, errstr_size, "%s (at %s)", why, servers);
        return -1;
    }
    if (created) { /* what the cluster made of it, which the caller reports */
        rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
        st->created_partitions = -1;
        if (t && !rd_kafka_metadata(rk, 0, t, &md, timeout_ms)) {
            if (md->topic_cnt == 1 && !md->topics[0].err)
                st->created_partitions = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
        }
        if (t)
            rd_kafka_topic_destroy(t);
    }
    st->created_topic = created > 0;
    return 0;
}

static int conf_int(rd_kafka_t *rk, const char *key, int dflt) {
    char buf[64];
    size_t sz = sizeof buf;
    if (rd_kafka_conf_get(rd_kafka_conf(rk), key, buf, &sz) != RD_KAFKA_CONF_OK)
        return dflt;
    return atoi(buf);
}

/* One pass over the file. 0 at the end of the pass (or on stop), -1 on a fatal
 * error. *produced gets the number of messages handed to librdkafka. */
static int replay_pass(sf_replay_loop *l, sf_replay *r, rd_kafka_topic_t *rkt,
                          sf_stop_flag *stop, uint64_t *produced, double *tokens,
                          double *last, char *errstr, size_t errstr_size) {
    const sf_replay_opts *o = l->o;
    sf_replay_stats *st = l->st;
    double cap = o->rate > 0 ? (o->rate / 50 > 1 ? o->rate / 50 : 1) : 0;
    uint64_t sent = 0;
    while (!stopped(stop) && (!o->limit || sent < o->limit)) {
        sf_replay_msg m;
        char why[512];
        int rc = sf_replay_next(r, &m, why, sizeof why);
        if (rc == SF_REPLAY_EOF)
            break;
        if (rc == SF_REPLAY_ERROR) {
            snprintf(errstr, errstr_size, "%s", why);
            return -1;
        }
        st->read++;
        if (rc == SF_REPLAY_BAD) {
            st->skipped++;
            if (o->strict) {
                snprintf(errstr, errstr_size, "%s (strict: stopping)", why);
                return -1;
            }
            if (o->on_bad_row)
                o->on_bad_row(o->opaque, why);
            continue;
        }
        if (o->rate > 0) {
            /* Token bucket: at most `cap` (20 ms worth) can go out back to back. */
            double now = sf_clock_s();
            *tokens += (now - *last) * o->rate;
            if (*tokens > cap)
                *tokens = cap;
            *last = now;
            if (*tokens < 1) {
                wait_until(l->rk, now + (1 - *tokens) / o->rate, stop);
                now = sf_clock_s();
                *tokens += (now - *last) * o->rate;
                *last = now;
                if (stopped(stop))
                    break;
            }
            *tokens -= 1;
        }
        for (;;) {
            if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
                                 (void *)m.value, m.value_len, m.key, m.key_len, l->c) == 0) {
                st->sent++;
                sent++;
                break;
            }
            rd_kafka_resp_err_t err = rd_kafka_last_error();
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(l->rk, 10);
                continue;
            }
            l->refused++;
            if (!st->error[0])
                snprintf(st->error, sizeof st->error, "produce to %s refused: %s",
                         rd_kafka_topic_name(rkt), rd_kafka_err2str(err));
            break;
        }
        if (l->truth) {
            if (truth_queue(l, &m) && !st->error[0])
                snprintf(st->error, sizeof st->error, "line %llu: no truth sent (no key or "
                         "Label, or too long)", (unsigned long long)m.line);
            truth_flush(l, 0);
        }
        if ((st->sent & 255) == 0)
            rd_kafka_poll(l->rk, 0);
        if (o->rate > 0 || (st->sent & 255) == 0)
            replay_progress(l, 0);
    }
    *produced = sent;
    return 0;
}

int sf_replay_run(rd_kafka_t *rk, const char *topic, const sf_replay_opts *o,
                  sf_replay_stats *st, sf_stop_flag *stop, char *errstr,
                  size_t errstr_size) {
    memset(st, 0, sizeof *st);
    if (!o->path || !topic || !topic[0]) {
        snprintf(errstr, errstr_size, "replay: no %s given", o->path ? "topic" : "file");
        return -1;
    }
    if (o->rate < 0 || o->interval < 0 || !isfinite(o->rate) || !isfinite(o->interval)) {
        snprintf(errstr, errstr_size, "replay: rate and interval must be finite and >= 0");
        return -1;
    }
    sf_replay *r;
    if (sf_replay_open(&r, o->path, o->drop, o->key_field, errstr, errstr_size) != 0)
        return -1;
    if (sf_topic_check(topic, errstr, errstr_size)) {
        sf_replay_close(r);
        return -1;
    }
    /* Before the topic handle: its metadata requests would have a broker
     * that auto-creates topics make it with its own partition count. */
    if (replay_check_cluster(rk, topic, o, st, errstr, errstr_size) != 0) {
        sf_replay_close(r);
        return -1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(errstr, errstr_size, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        sf_replay_close(r);
        return -1;
    }
    /* Heap, not stack: if a report could ever outlive the drain below, it
     * must not land in a dead frame (see the end of this function). */
    sf_replay_counts *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(errstr, errstr_size, "replay: out of memory");
        rd_kafka_topic_destroy(rkt);
        sf_replay_close(r);
        return -1;
    }
    if (o->passes != 1)
        sf_csv_keep(r->csv, SF_REPLAY_KEEP_MAX);
    sf_replay_loop l = {rk, o, st, c, 0, sf_clock_s(), 0, NULL, NULL, 0, 0, 0};
    if (o->truth_topic && !(l.truth = rd_kafka_topic_new(rk, o->truth_topic, NULL))) {
        snprintf(errstr, errstr_size, "topic %s: %s", o->truth_topic,
                 rd_kafka_err2str(rd_kafka_last_error()));
        rd_kafka_topic_destroy(rkt);
        sf_replay_close(r);
        free(c);
        return -1;
    }
    double tokens = 1, last = l.t0;
    int rc = 0;
    for (uint64_t pass = 0; !o->passes || pass < o->passes; pass++) {
        if (pass > 0) {
            wait_until(rk, sf_clock_s() + o->interval, stop);
            if (stopped(stop))
                break;
            if (sf_replay_rewind(r, errstr, errstr_size) != 0) {
                rc = -1;
                break;
            }
        }
        uint64_t produced = 0;
        if (replay_pass(&l, r, rkt, stop, &produced, &tokens, &last, errstr, errstr_size) != 0) {
            rc = -1;
            break;
        }
        /* A pass that got nothing out (no rows, only bad ones, or only
         * refused ones) would make an endless run spin without purpose. */
        if (produced == 0 || stopped(stop))
            break;
    }
    /* The last labels are due truth_delay_s after the last rows. */
    while (l.n_pending && !stopped(stop)) {
        wait_until(rk, l.pending[l.first].due, stop);
        truth_flush(&l, 0);
    }
    if (l.truth) {
        truth_flush(&l, 1); /* stopped early: the rest now rather than never */
        free(l.pending);
    }
    int flush_ms = o->flush_timeout_ms > 0
                       ? o->flush_timeout_ms
                       : conf_int(rk, "message.timeout.ms", 300000) + 1000;
    if (l.truth) /* the labels are not counted in flight: wait for them too */
        rd_kafka_flush(rk, flush_ms);
    replay_drain(&l, flush_ms);
    replay_sync(&l);
    replay_progress(&l, 1);
    uint64_t left = in_flight(&l);
    rd_kafka_topic_destroy(rkt);
    if (l.truth)
        rd_kafka_topic_destroy(l.truth);
    sf_replay_close(r);
    if (left > 0) {
        /* librdkafka still owes reports after a purge: keep their target
         * alive rather than risk a write into freed memory. */
        if (rc == 0) {
            snprintf(errstr, errstr_size, "replay: %llu deliveries unaccounted for",
                     (unsigned long long)left);
            rc = -1;
        }
    } else {
        free(c);
    }
    return rc;
}
