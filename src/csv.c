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
    free(c->buf);
    free(c->path);
    free(c);
}

uint64_t sf_csv_line(const sf_csv *c) {
    return c->line;
}

int sf_csv_rewind(sf_csv *c, char *errstr, size_t errstr_size) {
    if (gzrewind(c->gz) != 0) {
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
static int sf_csv_fill(sf_csv *c, char *errstr, size_t errstr_size) {
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
    int n = gzread(c->gz, c->buf + c->end, (unsigned)(c->cap - c->end - 1));
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
    c->end += (size_t)n;
    return 0;
}

/* Splits line[0, len) into fields in place. line[len] must be writable.
 * 0 and *count, or -1 with errstr. */
static int sf_csv_split(sf_csv *c, char *line, size_t len, size_t *count, char *errstr,
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
            if (sf_csv_fill(c, errstr, errstr_size) != 0)
                return SF_CSV_ERROR;
            continue;
        } else {
            if (sf_csv_fill(c, errstr, errstr_size) != 0)
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
        if (sf_csv_split(c, line, len, n_fields, errstr, errstr_size) != 0)
            return SF_CSV_BAD;
        *fields = c->fields;
        return SF_CSV_RECORD;
    }
}
