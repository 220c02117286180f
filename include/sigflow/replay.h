/* replay.h: the replay engine. It turns a CSV of events (the ATLAS Higgs
 * layouts: Kaggle training.csv or the CERN Open Data release) into one JSON
 * object per row and produces them to Kafka, paced or flat out. It lives in the
 * core library because sigflow-replay, `sigflow demo` and sigflow-bench all
 * replay the bundled CSV in-process.
 *
 * Row to JSON: the header names are the keys, in column order, minus the
 * dropped columns. Every value must be a number; its text is copied into the
 * JSON verbatim (so 138.47 and -999.0 print back exactly as in the file), after
 * normalizing the spellings that CSV allows and JSON does not:
 *   "+3" -> 3   ".5" -> 0.5   "-.5" -> -0.5   "1." -> 1.0   "007" -> 7
 *   " 2 " -> 2 (spaces and tabs around a value are ignored)
 * A value without '.' or exponent is a JSON integer and must fit in int64; any
 * other is a JSON real and must be finite as a double. Anything else ("", "s",
 * "nan", "inf", "0x1F", "1e", "1.2.3") makes the row bad. A row whose field
 * count differs from the header's is bad too. Bad rows are reported with their
 * line number and skipped (or stop the run in strict mode).
 *
 * The message key is the raw text of the key column (default EventId), which
 * is found in the header even when it is dropped from the JSON; no key when the
 * file has no such column. */
#ifndef SIGFLOW_REPLAY_H
#define SIGFLOW_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "sigflow/args.h"

#define SF_REPLAY_DEFAULT_DROP "Label,Weight,KaggleSet,KaggleWeight"
#define SF_REPLAY_DEFAULT_KEY "EventId"

/* ---- Reading: CSV rows to JSON messages, no Kafka involved. ---- */

typedef struct sf_replay sf_replay;

typedef struct {
    const char *value;    /* the JSON object, NUL-terminated */
    size_t value_len;
    const char *key;      /* NULL when the file has no key column */
    size_t key_len;
    uint64_t line;        /* line of the row in the file (the header is line 1) */
    const char *label;    /* the Label column's text (NULL when the file has none) */
    size_t label_len;
} sf_replay_msg;

/* What sf_replay_next returns. */
#define SF_REPLAY_ROW 1
#define SF_REPLAY_EOF 0
#define SF_REPLAY_BAD (-1)   /* row skipped; errstr is "PATH:LINE: why" */
#define SF_REPLAY_ERROR (-2) /* the file cannot be read further (errstr) */

/* Opens a CSV (plain or gzip) and reads its header row.
 * drop: comma-separated column names left out of the JSON; NULL means
 *   SF_REPLAY_DEFAULT_DROP, "" drops nothing; names absent from the file are
 *   ignored.
 * key_field: the column whose text becomes the message key; NULL means
 *   SF_REPLAY_DEFAULT_KEY, "" means no key.
 * A missing, unreadable or empty file, or a header with an empty, duplicate or
 * non-UTF-8 name, is an error. 0 and *out, or -1 with errstr. */
int sf_replay_open(sf_replay **out, const char *path, const char *drop,
                   const char *key_field, char *errstr, size_t errstr_size);

/* Reads the next row. On SF_REPLAY_ROW, *msg points into the reader's buffers,
 * valid until the next call. */
int sf_replay_next(sf_replay *r, sf_replay_msg *msg, char *errstr, size_t errstr_size);

/* Goes back to the first data row. 0, or -1 with errstr. */
int sf_replay_rewind(sf_replay *r, char *errstr, size_t errstr_size);

/* The names of the JSON fields, in order (header minus dropped columns). */
size_t sf_replay_fields(const sf_replay *r, const char *const **names);

/* 1 when messages carry a key (the key column exists). */
int sf_replay_has_key(const sf_replay *r);

void sf_replay_close(sf_replay *r);

/* Validates one CSV value against the rules above and writes its JSON text to
 * out (NUL-terminated; out_size >= len + 3 always suffices). *is_int tells
 * integer from real. 0, or -1 with a short reason in errstr (no location). */
int sf_replay_json_number(const char *text, size_t len, char *out, size_t out_size,
                          size_t *out_len, int *is_int, char *errstr, size_t errstr_size);

/* Row m's truth message, {"<key_field>": id, "Label": "s"} (the id a number
 * when it is one, else a string), as --truth-topic sends it and the daemon's
 * --truth-topic reads it. Its length, or -1 when the row has no key or label,
 * or they (or key_field) do not fit in out or would need escaping. */
int sf_replay_truth_format(const sf_replay_msg *m, const char *key_field, char *out,
                           size_t out_size);

/* ---- Producing: the loop shared by sigflow-replay, the demo and the bench. ---- */

typedef struct {
    uint64_t read;      /* data rows read (good and bad) */
    uint64_t sent;      /* messages handed to librdkafka */
    uint64_t delivered; /* delivery reports without error */
    uint64_t failed;    /* delivery reports with an error, or refused by produce */
    uint64_t skipped;   /* bad rows */
    double seconds;     /* from the first row to the last delivery report */
    char error[256];    /* the first delivery error, "" when none */
    int created_topic;  /* 1: the topic did not exist and was created */
    int created_partitions; /* its partitions then, as the cluster reports them (-1: unknown) */
} sf_replay_stats;

typedef struct {
    const char *path;         /* the CSV to replay (required) */
    const char *drop;         /* as for sf_replay_open */
    const char *key_field;    /* as for sf_replay_open */
    uint64_t limit;           /* messages per pass, 0 = the whole file */
    uint64_t passes;          /* passes over the file, 0 = until *stop */
    double interval;          /* seconds to wait between passes */
    double rate;              /* messages per second, 0 = as fast as possible */
    int strict;               /* stop at the first bad row (the run fails) */
    int timeout_ms;           /* bound on the reachability check, 0 = 10000 */
    /* A missing topic is created with these (<= 0: the broker's defaults). */
    int partitions;
    int replication_factor;
    /* --truth-topic: each row's label, {"<key_field>": id, "Label": "s"},
     * truth_delay_s after the row (NULL: none; needs the key and Label columns). */
    const char *truth_topic;
    double truth_delay_s;
    int flush_timeout_ms;     /* bound on waiting for delivery reports at the
                                 end, 0 = message.timeout.ms of the producer + 1 s */
    /* Called for each bad row when not strict (NULL: bad rows are only counted). */
    void (*on_bad_row)(void *opaque, const char *msg);
    /* Called about four times a second while running (NULL: never). */
    void (*on_progress)(void *opaque, const sf_replay_stats *st, uint64_t in_flight);
    void *opaque;
} sf_replay_opts;

/* Zeroes *o and sets passes = 1. */
void sf_replay_opts_init(sf_replay_opts *o);

/* Prepares a producer configuration for sf_replay_run: installs
 * sf_replay_dr_msg_cb as the delivery report callback and sets batching
 * settings (linger.ms=5, batch.num.messages=10000, compression none,
 * queue.buffering.max.messages=500000). Apply your own settings after it to
 * override them. 0, or -1 with errstr. */
int sf_replay_conf_init(rd_kafka_conf_t *conf, char *errstr, size_t errstr_size);

/* The delivery report callback sf_replay_run relies on. An application that
 * needs its own dr_msg_cb must call this one for the replay's messages. */
void sf_replay_dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

/* Replays opts->path to `topic` through `rk`, a producer whose configuration
 * went through sf_replay_conf_init (nothing else may produce on it or poll it
 * during the run). It first checks that the cluster answers within
 * opts->timeout_ms and creates the topic when it does not exist (Admin API,
 * opts->partitions and replication_factor), then runs the passes, then waits for
 * every delivery report, so all counters are final on return. *stop (may be
 * NULL) ends the run early: no new messages, the sent ones are flushed.
 *
 * Returns 0 when the run completed (deliveries may still have failed: check
 * st->failed), or -1 with errstr when it could not start or was cut short: file
 * unreadable, cluster unreachable, the topic's name illegal or its creation
 * refused (errstr has the broker's reason), or a bad row in strict mode.
 * *st is filled in both cases. */
int sf_replay_run(rd_kafka_t *rk, const char *topic, const sf_replay_opts *opts,
                  sf_replay_stats *st, sf_stop_flag *stop, char *errstr,
                  size_t errstr_size);

#endif
