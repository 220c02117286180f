/* csv.h: a streaming reader for comma-separated files, plain or gzip, for the
 * replay engine (sigflow-replay, `sigflow demo`, sigflow-bench).
 *
 * One record per line (LF or CRLF). Fields may be double-quoted, with "" for a
 * quote inside; a quoted field cannot span lines. Spaces and tabs around a
 * field are kept (the caller decides). A UTF-8 byte-order mark at the start of
 * the file is skipped. Empty lines are skipped. Lines longer than
 * SF_CSV_MAX_LINE are reported as bad and skipped. */
#ifndef SIGFLOW_CSV_H
#define SIGFLOW_CSV_H

#include <stddef.h>
#include <stdint.h>

#define SF_CSV_MAX_LINE (1u << 20)

typedef struct sf_csv sf_csv;

/* One field of the current record: NUL-terminated in place, quotes removed. */
typedef struct {
    const char *ptr;
    size_t len;
} sf_csv_field;

/* What sf_csv_next returns. */
#define SF_CSV_RECORD 1   /* the fields hold the record */
#define SF_CSV_EOF 0
#define SF_CSV_BAD (-1)   /* this line is malformed (errstr); the next call goes on */
#define SF_CSV_ERROR (-2) /* the file cannot be read further (errstr) */

/* Opens `path` (gzip or plain: zlib reads both). 0, or -1 with errstr. */
int sf_csv_open(sf_csv **out, const char *path, char *errstr, size_t errstr_size);

/* Reads the next record. The fields are valid until the next call. */
int sf_csv_next(sf_csv *c, const sf_csv_field **fields, size_t *n_fields, char *errstr,
                size_t errstr_size);

/* The 1-based line number of the record (or bad line) last returned. */
uint64_t sf_csv_line(const sf_csv *c);

/* Keeps up to max_bytes of the (decompressed) file in memory as it is read,
 * so that rewinds after a complete pass replay from memory instead of
 * inflating the file again. Call before the first sf_csv_next; a file larger
 * than max_bytes is simply read again. */
void sf_csv_keep(sf_csv *c, size_t max_bytes);

/* Starts over from the first line. 0, or -1 with errstr. */
int sf_csv_rewind(sf_csv *c, char *errstr, size_t errstr_size);

void sf_csv_close(sf_csv *c);

#endif
