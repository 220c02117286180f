/* test_replay_parse.c: the replay engine's reading half (CSV to JSON), no
 * Kafka: number rules, both ATLAS layouts, gzip, drops and keys, bad rows with
 * their line numbers, header errors, rewinds and hostile input. Expected values
 * come from the fixture files read back by a separate naive reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "support.h"
#include <zlib.h>

#include "sigflow/csv.h"
#include "sigflow/replay.h"

#define FIX SF_SOURCE_DIR "/tests/fixtures/"
#define SAMPLE SF_SOURCE_DIR "/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz"

/* ---- an independent, naive reader of the (quote-free) fixtures ---- */

typedef struct {
    size_t n;
    char *f[64];
    char buf[8192];
} naive_row;

/* Reads line `want` (1-based, header = 1) of a plain or gzip CSV. */
static int naive_line(const char *path, int want, naive_row *r) {
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return -1;
    int line = 0, found = -1;
    while (gzgets(gz, r->buf, sizeof r->buf)) {
        if (++line != want)
            continue;
        r->buf[strcspn(r->buf, "\r\n")] = '\0';
        r->n = 0;
        char *save, *tok = strtok_r(r->buf, ",", &save);
        while (tok && r->n < 64) {
            r->f[r->n++] = tok;
            tok = strtok_r(NULL, ",", &save);
        }
        found = 0;
        break;
    }
    gzclose(gz);
    return found;
}

static int in_list(const char *name, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(*list, name))
            return 1;
    return 0;
}

/* The text of the value of "name" in a JSON object we produced: the bytes
 * between "name": and the next , or }. Our values never contain either. */
static size_t json_token(const char *json, const char *name, char *out, size_t out_size) {
    char pat[256];
    snprintf(pat, sizeof pat, "\"%s\":", name);
    const char *p = strstr(json, pat);
    if (!p)
        return 0;
    p += strlen(pat);
    size_t n = strcspn(p, ",}");
    if (n >= out_size)
        return 0;
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

/* Checks one produced message against CSV line `line` of `path`: field order,
 * dropped columns gone, exact text, integer vs real, value, key. */
static void check_row(const char *path, const sf_replay_msg *m, const char *const *dropped,
                      const char *key_field) {
    naive_row hdr, row;
    assert_int_equal(naive_line(path, 1, &hdr), 0);
    assert_int_equal(naive_line(path, (int)m->line, &row), 0);
    assert_int_equal(row.n, hdr.n);
    json_error_t jerr;
    json_t *obj = json_loadb(m->value, m->value_len, 0, &jerr);
    if (!obj)
        fail_msg("line %llu: invalid JSON: %s: %s", (unsigned long long)m->line, jerr.text,
                 m->value);
    assert_true(json_is_object(obj));
    void *it = json_object_iter(obj);
    size_t kept = 0;
    for (size_t i = 0; i < hdr.n; i++) {
        if (in_list(hdr.f[i], dropped)) {
            assert_null(json_object_get(obj, hdr.f[i]));
            continue;
        }
        kept++;
        assert_non_null(it);
        assert_string_equal(json_object_iter_key(it), hdr.f[i]); /* column order */
        json_t *v = json_object_iter_value(it);
        char tok[128];
        assert_true(json_token(m->value, hdr.f[i], tok, sizeof tok) > 0);
        assert_string_equal(tok, row.f[i]); /* the decimal text, verbatim */
        int integer = !strpbrk(row.f[i], ".eE");
        if (integer) {
            assert_true(json_is_integer(v));
            assert_true(json_integer_value(v) == strtoll(row.f[i], NULL, 10));
        } else {
            assert_true(json_is_real(v));
            assert_true(json_real_value(v) == strtod(row.f[i], NULL));
        }
        it = json_object_iter_next(obj, it);
    }
    assert_null(it);
    assert_int_equal(json_object_size(obj), kept);
    json_decref(obj);
    long key_col = -1;
    for (size_t i = 0; i < hdr.n; i++)
        if (key_field && !strcmp(hdr.f[i], key_field))
            key_col = (long)i;
    if (key_col < 0) {
        assert_null(m->key);
    } else {
        assert_int_equal(m->key_len, strlen(row.f[key_col]));
        assert_memory_equal(m->key, row.f[key_col], m->key_len);
    }
}

/* ---- numbers ---- */

static void test_numbers_valid(void **state) {
    (void)state;
    static const struct {
        const char *in, *out;
        int is_int;
    } cases[] = {
        {"0", "0", 1},           {"100000", "100000", 1},   {"-999.0", "-999.0", 0},
        {"138.47", "138.47", 0}, {"0.2", "0.2", 0},         {"+3", "3", 1},
        {".5", "0.5", 0},        {"-.5", "-0.5", 0},        {"+.25", "0.25", 0},
        {"1.", "1.0", 0},        {"-1.", "-1.0", 0},        {"007", "7", 1},
        {"-007.50", "-7.50", 0}, {"00.5", "0.5", 0},        {"000", "0", 1},
        {"-0", "-0", 1},         {"1e5", "1e5", 0},         {"1E+05", "1E+05", 0},
        {"-2.5e-3", "-2.5e-3", 0}, {"1.e5", "1.0e5", 0},    {".5e1", "0.5e1", 0},
        {" 2 ", "2", 1},         {"\t-1.5 ", "-1.5", 0},    {"0.00081448039868", "0.00081448039868", 0},
        {"9223372036854775807", "9223372036854775807", 1},
        {"-9223372036854775808", "-9223372036854775808", 1},
        {"1e308", "1e308", 0},   {"1e-400", "1e-400", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64], err[128], wrapped[80];
        size_t len = 0;
        int is_int = -1;
        size_t in_len = strlen(cases[i].in);
        if (sf_replay_json_number(cases[i].in, in_len, out, in_len + 3, &len, &is_int, err,
                                  sizeof err) != 0)
            fail_msg("'%s' rejected: %s", cases[i].in, err);
        assert_string_equal(out, cases[i].out);
        assert_int_equal(len, strlen(cases[i].out));
        assert_int_equal(is_int, cases[i].is_int);
        /* It is valid JSON of the announced type, with the CSV's value. */
        snprintf(wrapped, sizeof wrapped, "[%s]", out);
        json_error_t jerr;
        json_t *a = json_loads(wrapped, 0, &jerr);
        if (!a)
            fail_msg("'%s' -> '%s' is not JSON: %s", cases[i].in, out, jerr.text);
        json_t *v = json_array_get(a, 0);
        assert_int_equal(json_is_integer(v), cases[i].is_int);
        if (!cases[i].is_int)
            assert_true(json_real_value(v) == strtod(cases[i].in, NULL));
        json_decref(a);
    }
}

static void test_numbers_invalid(void **state) {
    (void)state;
    static const char *const cases[] = {
        "", " ", "\t", "abc", "s", "b", "nan", "NaN", "inf", "-inf", "Infinity", "0x1F",
        "1e", "1e+", "e5", "1.2.3", ".", "-", "+", "--1", "+-1", "1 2", "1_000", "1,5",
        "9223372036854775808", "-9223372036854775809", "12345678901234567890123",
        "1e999", "-1e400", "\xd9\xa1", "1\x01", "1.5.", "..5",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64], err[128] = "";
        size_t len;
        int is_int;
        size_t in_len = strlen(cases[i]);
        if (sf_replay_json_number(cases[i], in_len, out, in_len + 3, &len, &is_int, err,
                                  sizeof err) == 0)
            fail_msg("'%s' accepted as '%s'", cases[i], out);
        assert_true(err[0] != '\0');
        for (const char *p = err; *p; p++) /* the echo is printable */
            assert_true(*p >= 0x20 && *p < 0x7f);
    }
    /* An embedded NUL is not a digit either. */
    char out[16], err[128];
    size_t len;
    int is_int;
    assert_int_equal(sf_replay_json_number("1\0002", 3, out, sizeof out, &len, &is_int, err,
                                           sizeof err), -1);
}

/* ---- layouts ---- */

static const char *const default_drop[] = {"Label", "Weight", "KaggleSet", "KaggleWeight", NULL};

/* Reads every row of `path` and checks each against the file. */
static size_t replay_all(const char *path, const char *drop, const char *key,
                         const char *const *dropped, size_t want_fields) {
    sf_replay *r;
    char err[512];
    if (sf_replay_open(&r, path, drop, key, err, sizeof err) != 0)
        fail_msg("open: %s", err);
    const char *const *names;
    assert_int_equal(sf_replay_fields(r, &names), want_fields);
    for (size_t i = 0; i < want_fields; i++)
        assert_false(in_list(names[i], dropped));
    sf_replay_msg m;
    size_t n = 0;
    int rc;
    while ((rc = sf_replay_next(r, &m, err, sizeof err)) == SF_REPLAY_ROW) {
        check_row(path, &m, dropped, key ? key : "EventId");
        n++;
    }
    if (rc != SF_REPLAY_EOF)
        fail_msg("row after %zu: %s", n, err);
    sf_replay_close(r);
    return n;
}

static void test_kaggle_layout(void **state) {
    (void)state;
    /* EventId, 30 features, Weight, Label: 31 fields remain. */
    assert_int_equal(replay_all(FIX "csv_kaggle.csv", NULL, NULL, default_drop, 31), 10);
}

static void test_cern_layout_plain_and_gzip(void **state) {
    (void)state;
    assert_int_equal(replay_all(FIX "csv_cern.csv", NULL, NULL, default_drop, 31), 20);
    assert_int_equal(replay_all(FIX "csv_cern.csv.gz", NULL, NULL, default_drop, 31), 20);
    /* Byte-identical output from both encodings. */
    sf_replay *a, *b;
    char err[512];
    assert_int_equal(sf_replay_open(&a, FIX "csv_cern.csv", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(sf_replay_open(&b, FIX "csv_cern.csv.gz", NULL, NULL, err, sizeof err), 0);
    sf_replay_msg ma, mb;
    int ra, rb;
    while ((ra = sf_replay_next(a, &ma, err, sizeof err)) == SF_REPLAY_ROW) {
        char *copy = strndup(ma.value, ma.value_len);
        rb = sf_replay_next(b, &mb, err, sizeof err);
        assert_int_equal(rb, SF_REPLAY_ROW);
        assert_string_equal(copy, mb.value);
        free(copy);
    }
    assert_int_equal(ra, SF_REPLAY_EOF);
    assert_int_equal(sf_replay_next(b, &mb, err, sizeof err), SF_REPLAY_EOF);
    sf_replay_close(a);
    sf_replay_close(b);
}

static void test_bundled_sample(void **state) {
    (void)state;
    sf_replay *r;
    char err[512];
    assert_int_equal(sf_replay_open(&r, SAMPLE, NULL, NULL, err, sizeof err), 0);
    sf_replay_msg m;
    size_t n = 0;
    int rc;
    long long want = 100000;
    while ((rc = sf_replay_next(r, &m, err, sizeof err)) == SF_REPLAY_ROW) {
        char key[24];
        snprintf(key, sizeof key, "%lld", want++);
        assert_int_equal(m.key_len, strlen(key));
        assert_memory_equal(m.key, key, m.key_len);
        if (n % 997 == 0)
            check_row(SAMPLE, &m, default_drop, "EventId");
        n++;
    }
    assert_int_equal(rc, SF_REPLAY_EOF);
    assert_int_equal(n, 20000);
    sf_replay_close(r);
}

static void test_drop_and_key_options(void **state) {
    (void)state;
    static const char *const some[] = {"Label", "KaggleSet", NULL};
    /* Weight and KaggleWeight are numbers: kept when not dropped. */
    assert_int_equal(replay_all(FIX "csv_cern.csv", "Label, KaggleSet", NULL, some, 33), 20);
    assert_int_equal(replay_all(FIX "csv_cern.csv", "Label,KaggleSet,Nope", "PRI_jet_num", some,
                                33), 20);
    /* The key column may itself be dropped from the JSON. */
    static const char *const with_id[] = {"Label", "Weight", "KaggleSet", "KaggleWeight",
                                          "EventId", NULL};
    assert_int_equal(replay_all(FIX "csv_cern.csv", "Label,Weight,KaggleSet,KaggleWeight,EventId",
                                NULL, with_id, 30), 20);
    /* No key: "" or a column the file does not have. */
    sf_replay *r;
    char err[512];
    sf_replay_msg m;
    assert_int_equal(sf_replay_open(&r, FIX "csv_cern.csv", NULL, "", err, sizeof err), 0);
    assert_false(sf_replay_has_key(r));
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_ROW);
    assert_null(m.key);
    sf_replay_close(r);
    assert_int_equal(sf_replay_open(&r, FIX "csv_cern.csv", NULL, "Id", err, sizeof err), 0);
    assert_false(sf_replay_has_key(r));
    sf_replay_close(r);
    /* Keeping Label makes every row bad: 's'/'b' are not numbers. */
    assert_int_equal(sf_replay_open(&r, FIX "csv_cern.csv", "", NULL, err, sizeof err), 0);
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_BAD);
    assert_non_null(strstr(err, "csv_cern.csv:2: column Label: 's' is not a number"));
    sf_replay_close(r);
}

/* ---- bad rows ---- */

static void test_bad_rows(void **state) {
    (void)state;
    sf_replay *r;
    char err[512];
    sf_replay_msg m;
    assert_int_equal(sf_replay_open(&r, FIX "csv_bad.csv", NULL, NULL, err, sizeof err), 0);
    static const struct {
        int rc;
        unsigned line;
        const char *text; /* the JSON, or a piece of the error */
    } want[] = {
        {SF_REPLAY_ROW, 2, "{\"EventId\":1,\"DER_mass_MMC\":138.47,\"PRI_jet_num\":2}"},
        {SF_REPLAY_BAD, 3, "csv_bad.csv:3: column DER_mass_MMC: 'abc' is not a number"},
        {SF_REPLAY_BAD, 4, "csv_bad.csv:4: expected 5 fields, found 4"},
        {SF_REPLAY_ROW, 6, "{\"EventId\":4,\"DER_mass_MMC\":-999.0,\"PRI_jet_num\":3}"},
        {SF_REPLAY_ROW, 7, "{\"EventId\":5,\"DER_mass_MMC\":0.5,\"PRI_jet_num\":7}"},
        {SF_REPLAY_BAD, 8, "csv_bad.csv:8: expected 5 fields, found 6"},
        {SF_REPLAY_ROW, 9, "{\"EventId\":7,\"DER_mass_MMC\":2e3,\"PRI_jet_num\":1}"},
        {SF_REPLAY_EOF, 0, NULL},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int rc = sf_replay_next(r, &m, err, sizeof err);
        assert_int_equal(rc, want[i].rc);
        if (rc == SF_REPLAY_ROW) {
            assert_int_equal(m.line, want[i].line);
            assert_string_equal(m.value, want[i].text);
        } else if (rc == SF_REPLAY_BAD) {
            if (!strstr(err, want[i].text))
                fail_msg("got '%s', want '%s'", err, want[i].text);
        }
    }
    sf_replay_close(r);
}

/* ---- header and file errors ---- */

static char *tmpdir; /* per run, made by setup */

static const char *write_tmp(const char *name, const char *data, size_t len) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    return path;
}

static void expect_open_error(const char *path, const char *piece) {
    sf_replay *r = (sf_replay *)1;
    char err[512] = "";
    assert_int_equal(sf_replay_open(&r, path, NULL, NULL, err, sizeof err), -1);
    assert_null(r);
    if (!strstr(err, piece))
        fail_msg("error '%s' lacks '%s'", err, piece);
}

static void test_header_errors(void **state) {
    (void)state;
    expect_open_error(FIX "no_such_file.csv", "no_such_file.csv: No such file or directory");
    expect_open_error(tmpdir, "is a directory");
    expect_open_error(write_tmp("empty.csv", "", 0), "empty file (no header row)");
    expect_open_error(write_tmp("blank.csv", "\n\r\n\n", 4), "empty file (no header row)");
    expect_open_error(write_tmp("dup.csv", "a,b,a\n1,2,3\n", 12), "column name 'a' appears twice");
    expect_open_error(write_tmp("hole.csv", "a,,c\n", 5), "column 2 has an empty name");
    expect_open_error(write_tmp("utf8.csv", "a,\xff\xfe\n", 6), "column 2 name is not valid UTF-8");
    expect_open_error(write_tmp("quote.csv", "a,\"b\n", 5), "unterminated quote");
    expect_open_error(write_tmp("junk.gz", "\x1f\x8b\x08\x00garbage", 12), "junk.gz");

    /* A header alone is a valid, empty replay. */
    sf_replay *r;
    char err[512];
    sf_replay_msg m;
    assert_int_equal(sf_replay_open(&r, write_tmp("hdr.csv", "a,b", 3), NULL, NULL, err, sizeof err), 0);
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_EOF);
    sf_replay_close(r);
}

static void test_names_escaped_and_bom(void **state) {
    (void)state;
    const char csv[] = "\xEF\xBB\xBF\"a\"\"b\",c\\d,\"x,y\", sp ,\xc3\xa9\n1,2,3,4,5\n";
    sf_replay *r;
    char err[512];
    sf_replay_msg m;
    assert_int_equal(sf_replay_open(&r, write_tmp("names.csv", csv, sizeof csv - 1), "", "a\"b",
                                    err, sizeof err), 0);
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_ROW);
    json_error_t jerr;
    json_t *o = json_loads(m.value, 0, &jerr);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "a\"b")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "c\\d")), 2);
    assert_int_equal(json_integer_value(json_object_get(o, "x,y")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "sp")), 4);
    assert_int_equal(json_integer_value(json_object_get(o, "\xc3\xa9")), 5);
    json_decref(o);
    assert_int_equal(m.key_len, 1);
    assert_memory_equal(m.key, "1", 1);
    sf_replay_close(r);
}

static void test_long_line_skipped(void **state) {
    (void)state;
    size_t big = SF_CSV_MAX_LINE + 4096;
    char *data = malloc(big + 64);
    assert_non_null(data);
    size_t n = (size_t)sprintf(data, "a,b\n1,2\n");
    memset(data + n, '7', big);
    n += big;
    n += (size_t)sprintf(data + n, "\n3,4\n5,6");
    sf_replay *r;
    char err[512];
    sf_replay_msg m;
    assert_int_equal(sf_replay_open(&r, write_tmp("long.csv", data, n), NULL, NULL, err, sizeof err), 0);
    free(data);
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_ROW);
    assert_string_equal(m.value, "{\"a\":1,\"b\":2}");
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_BAD);
    assert_non_null(strstr(err, "long.csv:3: line longer than"));
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_ROW);
    assert_int_equal(m.line, 4);
    assert_string_equal(m.value, "{\"a\":3,\"b\":4}");
    /* The last line has no newline. */
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_ROW);
    assert_string_equal(m.value, "{\"a\":5,\"b\":6}");
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_EOF);
    sf_replay_close(r);
}

/* ---- rewinds, with and without the in-memory copy ---- */

static char *all_rows(sf_csv *c, size_t *count) {
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    const sf_csv_field *f;
    size_t n;
    char err[256];
    *count = 0;
    int rc;
    while ((rc = sf_csv_next(c, &f, &n, err, sizeof err)) != SF_CSV_EOF) {
        assert_int_equal(rc, SF_CSV_RECORD);
        for (size_t i = 0; i < n; i++) {
            if (len + f[i].len + 2 > cap)
                s = realloc(s, cap *= 2);
            memcpy(s + len, f[i].ptr, f[i].len);
            len += f[i].len;
            s[len++] = i + 1 < n ? ',' : '\n';
        }
        (*count)++;
    }
    s[len] = '\0';
    return s;
}

static void test_rewind(void **state) {
    (void)state;
    static const size_t keep[] = {0, 1 << 30, 1000};
    for (size_t k = 0; k < 3; k++) {
        sf_csv *c;
        char err[256];
        assert_int_equal(sf_csv_open(&c, FIX "csv_cern.csv.gz", err, sizeof err), 0);
        sf_csv_keep(c, keep[k]);
        size_t n1, n2, n3;
        char *a = all_rows(c, &n1);
        assert_int_equal(sf_csv_rewind(c, err, sizeof err), 0);
        char *b = all_rows(c, &n2);
        assert_int_equal(sf_csv_rewind(c, err, sizeof err), 0);
        char *d = all_rows(c, &n3);
        assert_int_equal(n1, 21);
        assert_int_equal(n2, 21);
        assert_int_equal(n3, 21);
        assert_string_equal(a, b);
        assert_string_equal(a, d);
        assert_int_equal(sf_csv_line(c), 21);
        free(a), free(b), free(d);
        sf_csv_close(c);
    }
    sf_replay *r;
    char err[512];
    sf_replay_msg m;
    assert_int_equal(sf_replay_open(&r, FIX "csv_kaggle.csv", NULL, NULL, err, sizeof err), 0);
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_ROW);
    char *first = strdup(m.value);
    while (sf_replay_next(r, &m, err, sizeof err) == SF_REPLAY_ROW)
        ;
    assert_int_equal(sf_replay_rewind(r, err, sizeof err), 0);
    assert_int_equal(sf_replay_next(r, &m, err, sizeof err), SF_REPLAY_ROW);
    assert_string_equal(m.value, first);
    assert_int_equal(m.line, 2);
    free(first);
    sf_replay_close(r);
}

/* ---- hostile input: random bytes never crash the reader ---- */

static void test_random_bytes(void **state) {
    (void)state;
    uint32_t seed = 12345;
    static const char alphabet[] = "0123456789.,-+eE\"\r\n \tabc\xc3\xff";
    for (int iter = 0; iter < 300; iter++) {
        char data[1024];
        size_t n = (seed = seed * 1103515245u + 12345u) % sizeof data;
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            data[i] = (iter % 3 == 0) ? (char)(seed >> 16)
                                      : alphabet[(seed >> 16) % (sizeof alphabet - 1)];
        }
        const char *path = write_tmp("fuzz.csv", data, n);
        sf_replay *r;
        char err[512];
        if (sf_replay_open(&r, path, "", "", err, sizeof err) != 0)
            continue;
        sf_replay_msg m;
        int rc, rows = 0;
        while ((rc = sf_replay_next(r, &m, err, sizeof err)) != SF_REPLAY_EOF) {
            assert_true(rc == SF_REPLAY_ROW || rc == SF_REPLAY_BAD || rc == SF_REPLAY_ERROR);
            if (rc == SF_REPLAY_ERROR)
                break;
            if (rc == SF_REPLAY_ROW) {
                json_error_t jerr;
                json_t *o = json_loadb(m.value, m.value_len, 0, &jerr);
                if (!o)
                    fail_msg("invalid JSON from fuzz input: %s", m.value);
                json_decref(o);
            }
            assert_true(++rows < 2000);
        }
        sf_replay_close(r);
    }
}

static int setup(void **state) {
    (void)state;
    tmpdir = sft_temp_dir();
    return 0;
}

static int teardown(void **state) {
    (void)state;
    int rc = sft_remove_tree(tmpdir);
    free(tmpdir);
    return rc;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_valid),
        cmocka_unit_test(test_numbers_invalid),
        cmocka_unit_test(test_kaggle_layout),
        cmocka_unit_test(test_cern_layout_plain_and_gzip),
        cmocka_unit_test(test_bundled_sample),
        cmocka_unit_test(test_drop_and_key_options),
        cmocka_unit_test(test_bad_rows),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_names_escaped_and_bom),
        cmocka_unit_test(test_long_line_skipped),
        cmocka_unit_test(test_rewind),
        cmocka_unit_test(test_random_bytes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
