/* csv.c: streaming CSV over zlib, so replaying the bundled .csv.gz (or any
 * plain CSV) costs one pass through a fixed buffer, no per-line allocation.
 * Lines are found with memchr in a large buffer and split in place. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "sigflow/csv.h"

#define SF_CSV_CHUNK (256u * 1024u)

struct sf_csv {
    gzFile gz;
    char *path;
    char *buf;        /* data read but not consumed is buf[start, end) */
    size_t cap, start, end;
    int eof;          /* gzread has nothing more */
    int skipping;     /* inside a line longer than SF_CSV_MAX_LINE */
    uint64_t line;    /* lines consumed so far */
    char *memo;       /* sf_csv_keep: the file's bytes as read so far */
    size_t memo_len, memo_cap, memo_max, memo_pos;
    int memo_state;   /* 0 off, 1 recording, 2 complete: serve rewinds from memo */
    sf_csv_field *fields;
    size_t fields_cap;
};

int sf_csv_open(sf_csv **out, const char *path, char *errstr, size_t errstr_size) {
    struct stat st;
    *out = NULL;
    if (stat(path, &st) != 0) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(errstr, errstr_size, "%s: is a directory", path);
        return -1;
    }
    sf_csv *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path)) || !(c->buf = malloc(SF_CSV_CHUNK))) {
        if (c)
            free(c->path);
        free(c);
        snprintf(errstr, errstr_size, "%s: out of memory", path);
        return -1;
    }
    c->cap = SF_CSV_CHUNK;
    errno = 0;
    c->gz = gzopen(path, "rb");
    if (!c->gz) {
        snprintf(errstr, errstr_size, "%s: %s", path, errno ? strerror(errno) : "cannot open");
        sf_csv_close(c);
        return -1;
    }
    gzbuffer(c->gz, SF_CSV_CHUNK);
    *out = c;
    return 0;
}

void sf_csv_close(sf_csv *c) {
    if (!c)
        return;
    if (c->gz)
        gzclose(c->gz);
    free(c->fields);
    free(c->memo);
    free(c->buf);
    free(c->path);
    free(c);
}

uint64_t sf_csv_line(const sf_csv *c) {
    return c->line;
}

void sf_csv_keep(sf_csv *c, size_t max_bytes) {
    if (c->memo_state == 0 && c->end == 0 && !c->eof && max_bytes > 0) {
        c->memo_max = max_bytes;
        c->memo_state = 1;
    }
}

static void csv_forget(sf_csv *c) {
    free(c->memo);
    c->memo = NULL;
    c->memo_len = c->memo_cap = 0;
    c->memo_state = 0;
}

/* Appends what was just read to the memo, giving up past memo_max. */
static void csv_record(sf_csv *c, const char *data, size_t n) {
    if (c->memo_len + n > c->memo_max) {
        csv_forget(c);
        return;
    }
    if (c->memo_len + n > c->memo_cap) {
        size_t cap = c->memo_cap ? c->memo_cap : SF_CSV_CHUNK;
        while (cap < c->memo_len + n)
            cap *= 2;
        char *m = realloc(c->memo, cap);
        if (!m) {
            csv_forget(c);
            return;
        }
        c->memo = m;
        c->memo_cap = cap;
    }
    memcpy(c->memo + c->memo_len, data, n);
    c->memo_len += n;
}

int sf_csv_rewind(sf_csv *c, char *errstr, size_t errstr_size) {
    if (c->memo_state == 1 && c->eof)
        c->memo_state = 2;
    if (c->memo_state == 2) {
        c->memo_pos = 0;
    } else if (c->memo_state == 1) {
        /* Rewound before the end: the memo restarts with the file. */
        c->memo_len = 0;
    }
    if (c->memo_state != 2 && gzrewind(c->gz) != 0) {
        snprintf(errstr, errstr_size, "%s: cannot rewind", c->path);
        return -1;
    }
    c->start = c->end = 0;
    c->eof = c->skipping = 0;
    c->line = 0;
    return 0;
}

/* Reads more input after buf[start, end), keeping one spare byte so the last
 * line of a file without a final newline can be NUL-terminated in place.
 * 0, or -1 with errstr (a damaged gzip stream lands here). */
static int csv_fill(sf_csv *c, char *errstr, size_t errstr_size) {
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end + 1 >= c->cap) {
        size_t ncap = c->cap * 2;
        char *nbuf = realloc(c->buf, ncap);
        if (!nbuf) {
            snprintf(errstr, errstr_size, "%s: out of memory", c->path);
            return -1;
        }
        c->buf = nbuf;
        c->cap = ncap;
    }
    size_t room = c->cap - c->end - 1;
    if (c->memo_state == 2) {
        size_t n = c->memo_len - c->memo_pos;
        if (n > room)
            n = room;
        memcpy(c->buf + c->end, c->memo + c->memo_pos, n);
        c->memo_pos += n;
        c->end += n;
        if (n == 0)
            c->eof = 1;
        return 0;
    }
    int n = gzread(c->gz, c->buf + c->end, (unsigned)room);
    int zerr = Z_OK;
    const char *msg = gzerror(c->gz, &zerr);
    if (n < 0 || (zerr != Z_OK && zerr != Z_STREAM_END)) {
        snprintf(errstr, errstr_size, "%s: read error after line %llu: %s", c->path,
                 (unsigned long long)c->line,
                 zerr == Z_ERRNO ? strerror(errno) : msg);
        return -1;
    }
    if (n == 0)
        c->eof = 1;
    if (c->memo_state == 1 && n > 0)
        csv_record(c, c->buf + c->end, (size_t)n);
    c->end += (size_t)n;
    return 0;
}

/* Splits line[0, len) into fields in place. line[len] must be writable.
 * 0 and *count, or -1 with errstr. */
static int csv_split(sf_csv *c, char *line, size_t len, size_t *count, char *errstr,
                        size_t errstr_size) {
    char *p = line, *end = line + len;
    size_t n = 0;
    for (;;) {
        if (n == c->fields_cap) {
            size_t ncap = c->fields_cap ? c->fields_cap * 2 : 64;
            sf_csv_field *nf = realloc(c->fields, ncap * sizeof *nf);
            if (!nf) {
                snprintf(errstr, errstr_size, "%s:%llu: out of memory", c->path,
                         (unsigned long long)c->line);
                return -1;
            }
            c->fields = nf;
            c->fields_cap = ncap;
        }
        char *f = p, *next;
        size_t flen;
        if (p < end && *p == '"') {
            char *out = p++;
            for (;;) {
                if (p == end) {
                    snprintf(errstr, errstr_size, "%s:%llu: field %zu: unterminated quote",
                             c->path, (unsigned long long)c->line, n + 1);
                    return -1;
                }
                if (*p == '"') {
                    if (p + 1 < end && p[1] == '"') {
                        *out++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *out++ = *p++;
            }
            if (p < end && *p != ',') {
                snprintf(errstr, errstr_size, "%s:%llu: field %zu: text after closing quote",
                         c->path, (unsigned long long)c->line, n + 1);
                return -1;
            }
            flen = (size_t)(out - f);
            next = p;
        } else {
            next = memchr(p, ',', (size_t)(end - p));
            if (!next)
                next = end;
            flen = (size_t)(next - f);
        }
        f[flen] = '\0';
        c->fields[n].ptr = f;
        c->fields[n].len = flen;
        n++;
        if (next == end)
            break;
        p = next + 1;
    }
    *count = n;
    return 0;
}

int sf_csv_next(sf_csv *c, const sf_csv_field **fields, size_t *n_fields, char *errstr,
                size_t errstr_size) {
    for (;;) {
        char *line = c->buf + c->start;
        char *nl = memchr(line, '\n', c->end - c->start);
        size_t len;
        if (nl) {
            len = (size_t)(nl - line);
            c->start += len + 1;
        } else if (c->eof) {
            if (c->start == c->end && !c->skipping)
                return SF_CSV_EOF;
            len = c->end - c->start;
            c->start = c->end;
        } else if (c->end - c->start >= SF_CSV_MAX_LINE) {
            /* Drop what we have of the overlong line and read on to its end. */
            if (!c->skipping)
                c->line++;
            c->skipping = 1;
            c->start = c->end = 0;
            if (csv_fill(c, errstr, errstr_size) != 0)
                return SF_CSV_ERROR;
            continue;
        } else {
            if (csv_fill(c, errstr, errstr_size) != 0)
                return SF_CSV_ERROR;
            continue;
        }
        if (c->skipping) {
            c->skipping = 0;
            snprintf(errstr, errstr_size, "%s:%llu: line longer than %u bytes", c->path,
                     (unsigned long long)c->line, SF_CSV_MAX_LINE);
            return SF_CSV_BAD;
        }
        c->line++;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (c->line == 1 && len >= 3 && !memcmp(line, "\xEF\xBB\xBF", 3)) {
            line += 3;
            len -= 3;
        }
        if (len == 0)
            continue;
        if (len > SF_CSV_MAX_LINE) {
            snprintf(errstr, errstr_size, "%s:%llu: line longer than %u bytes", c->path,
                     (unsigned long long)c->line, SF_CSV_MAX_LINE);
            return SF_CSV_BAD;
        }
        /* line[len] is the '\n', the '\r' or the spare byte: writable. */
        if (csv_split(c, line, len, n_fields, errstr, errstr_size) != 0)
            return SF_CSV_BAD;
        *fields = c->fields;
        return SF_CSV_RECORD;
    }
}
