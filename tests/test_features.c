/* test_features.c: event JSON to feature rows. Besides the rules (defaults,
 * missing value, every rejection and its message), the fast scanner and the
 * jansson fallback are run side by side on a few thousand events made from the
 * bundled ATLAS sample and mutated in every way we could think of: they must
 * agree on the verdict, the message, the id and every bit of the row. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "sigflow/features.h"
#include "../src/features_impl.h"
#include "support.h"

#define HIGGS_VARS SF_SOURCE_DIR "/tests/fixtures/vars_higgs.json"
#define HIGGS_CSV SF_SOURCE_DIR "/producer/data/atlas-higgs-challenge-2014-v2-sample.csv.gz"

static sf_vars *load_vars_text(const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/sf_test_features_XXXXXX", sft_tmpdir());
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    sf_vars *v;
    char err[256];
    int rc = sf_vars_load(&v, path, err, sizeof err);
    unlink(path);
    if (rc)
        fail_msg("%s", err);
    return v;
}

/* a (no default), b (default 5), c (no default); missing value -999 */
static sf_vars *small_vars(void) {
    return load_vars_text("{\"inputs\": ["
                          "{\"name\": \"a\", \"offset\": 1, \"scale\": 2},"
                          "{\"name\": \"b\", \"offset\": 0, \"scale\": 1, \"default\": 5},"
                          "{\"name\": \"c\", \"offset\": -1, \"scale\": 0.5}],"
                          "\"missing_value\": -999}");
}

typedef struct result {
    sf_reject r;
    char err[512];
    float row[64];
    sf_event_id id;
} result;

static void run(const sf_assembler *a, const char *json, result *res) {
    memset(res, 0, sizeof *res);
    res->r = sf_assembler_run(a, json, strlen(json), res->row, &res->id, res->err,
                              sizeof res->err);
}

/* Runs both paths; fails when they disagree. Returns 1 if the fast path decided. */
static int compare_paths(const sf_assembler *a, const char *json, size_t len, size_t n) {
    result f, j;
    memset(&f, 0, sizeof f);
    memset(&j, 0, sizeof j);
    _Atomic uint64_t fd[64] = {0}, jd[64] = {0};
    assert_true(n <= 64);
    int fr = sf_features_run_fast(a, json, len, f.row, &f.id, fd, f.err, sizeof f.err);
    j.r = sf_features_run_jansson(a, json, len, j.row, &j.id, jd, j.err, sizeof j.err);
    /* sf_assembler_run returns the message cleaned to valid UTF-8; the paths
     * are compared the same way (their raw quotes of broken bytes may differ). */
    sf_features_clean_message(f.err);
    sf_features_clean_message(j.err);
    result whole;
    memset(&whole, 0, sizeof whole);
    whole.r = sf_assembler_run(a, json, len, whole.row, &whole.id, whole.err, sizeof whole.err);
    if (whole.r != j.r || strcmp(whole.err, j.err))
        fail_msg("sf_assembler_run disagrees with jansson on %.*s:\n  %s\n  %s", (int)len, json,
                 whole.err, j.err);
    if (fr == SF_FEATURES_FALLBACK)
        return 0;
    f.r = (sf_reject)fr;
    if (f.r != j.r || strcmp(f.err, j.err))
        fail_msg("paths disagree on %.*s:\n  fast    %s: %s\n  jansson %s: %s", (int)len, json,
                 sf_reject_name(f.r), f.err, sf_reject_name(j.r), j.err);
    if (f.r == SF_REJECT_NONE && memcmp(f.row, j.row, n * sizeof(float)))
        fail_msg("rows differ on %.*s", (int)len, json);
    if (memcmp(fd, jd, n * sizeof fd[0]))
        fail_msg("defaulted inputs counted differently on %.*s", (int)len, json);
    if (f.id.json_len != j.id.json_len || strcmp(f.id.json, j.id.json) ||
        f.id.key_len != j.id.key_len || strcmp(f.id.key, j.id.key))
        fail_msg("ids differ on %.*s: [%s|%s] vs [%s|%s]", (int)len, json, f.id.json, f.id.key,
                 j.id.json, j.id.key);
    return 1;
}

static void test_names(void **state) {
    (void)state;
    assert_string_equal(sf_reject_name(SF_REJECT_NONE), "none");
    assert_string_equal(sf_reject_name(SF_REJECT_NOT_JSON), "not_json");
    assert_string_equal(sf_reject_name(SF_REJECT_NOT_OBJECT), "not_object");
    assert_string_equal(sf_reject_name(SF_REJECT_MISSING_FIELD), "missing_field");
    assert_string_equal(sf_reject_name(SF_REJECT_NOT_NUMBER), "not_number");
    assert_string_equal(sf_reject_name(SF_REJECT_NOT_FINITE), "not_finite");
    assert_string_equal(sf_reject_name(SF_REJECT_TOO_LARGE), "too_large");
    sf_norm n;
    assert_int_equal(sf_norm_parse("standard", &n), 0);
    assert_int_equal(n, SF_NORM_STANDARD);
    assert_int_equal(sf_norm_parse("l2", &n), 0);
    assert_int_equal(n, SF_NORM_L2);
    assert_int_equal(sf_norm_parse("none", &n), 0);
    assert_int_equal(n, SF_NORM_NONE);
    assert_int_equal(sf_norm_parse("L2", &n), -1);
    assert_int_equal(sf_norm_parse("", &n), -1);
}

static void test_basic_and_defaults(void **state) {
    (void)state;
    sf_vars *v = small_vars();
    sf_assembler *a = sf_assembler_new(v, NULL);
    result r;
    run(a, "{\"a\": 1.5, \"b\": -2, \"c\": 1e2}", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[0] == 1.5f && r.row[1] == -2.0f && r.row[2] == 100.0f);
    assert_int_equal(r.id.json_len, 0);

    run(a, "{\"c\": 3, \"a\": 1}", &r); /* b absent -> default; any order */
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[0] == 1.0f && r.row[1] == 5.0f && r.row[2] == 3.0f);

    run(a, "{\"a\": 1, \"b\": -999, \"c\": 3}", &r); /* the missing value -> default */
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[1] == 5.0f);
    run(a, "{\"a\": 1, \"b\": -999.0, \"c\": -9.99e2}", &r);
    assert_int_equal(r.r, SF_REJECT_MISSING_FIELD);
    assert_string_equal(r.err, "field 'c' has the missing value -999 and no default");

    run(a, "{\"b\": 1, \"c\": 3}", &r);
    assert_int_equal(r.r, SF_REJECT_MISSING_FIELD);
    assert_string_equal(r.err, "field 'a' is missing and has no default");
    run(a, "{}", &r); /* every required input the event lacks is named */
    assert_int_equal(r.r, SF_REJECT_MISSING_FIELD);
    assert_string_equal(r.err, "2 required fields 'a', 'c' are missing and have no default");
    run(a, "{\"foo\": \"bar\"}", &r);
    assert_int_equal(r.r, SF_REJECT_MISSING_FIELD);
    assert_string_equal(r.err, "2 required fields 'a', 'c' are missing and have no default");
    run(a, "{\"b\": 1, \"c\": -999}", &r);
    assert_int_equal(r.r, SF_REJECT_MISSING_FIELD);
    assert_string_equal(r.err, "2 required fields 'a', 'c' are missing or have the missing value "
                               "-999, and have no default");

    /* extra fields of every kind are ignored, nested ones included */
    run(a, "{\"x\": \"s\", \"a\": 1, \"y\": [1, {\"a\": \"no\"}], \"c\": 2, \"z\": null, "
           "\"t\": true, \"f\": false, \"e\": \"\\u00e9\\\"\", \"o\": {}, \"n\": -0.5e-3}", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[0] == 1.0f && r.row[1] == 5.0f && r.row[2] == 2.0f);

    /* escaped keys are the same keys */
    run(a, "{\"\\u0061\": 7, \"\\u0063\": 8}", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[0] == 7.0f && r.row[2] == 8.0f);

    /* duplicates: the last one wins, as in jansson */
    run(a, "{\"a\": 1, \"c\": 2, \"a\": 3}", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[0] == 3.0f);
    run(a, "{\"a\": \"x\", \"c\": 2, \"a\": 4}", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[0] == 4.0f);

    /* whitespace of every legal kind */
    run(a, " \t\r\n{\r\n\t\"a\"\t:\n1 ,\"c\" : 2\n}\n\t ", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    sf_assembler_free(a);
    sf_vars_free(v);
}

static void expect_reject(const sf_assembler *a, const char *json, sf_reject kind,
                          const char *msg_part) {
    result r;
    run(a, json, &r);
    if (r.r != kind || !strstr(r.err, msg_part))
        fail_msg("%s: got %s '%s', wanted %s '...%s...'", json, sf_reject_name(r.r), r.err,
                 sf_reject_name(kind), msg_part);
    compare_paths(a, json, strlen(json), 3);
}

/* lwtnn's rule: no default = required; the missing value takes the fill,
 * which does not make an input optional; only defaulted absences count. */
static void test_required_and_fill(void **state) {
    (void)state;
    sf_vars *v = load_vars_text("{\"inputs\": ["
                                "{\"name\": \"a\", \"offset\": 0, \"scale\": 1, \"fill\": 7},"
                                "{\"name\": \"b\", \"offset\": 0, \"scale\": 1, \"default\": 5},"
                                "{\"name\": \"c\", \"offset\": 0, \"scale\": 1}],"
                                "\"missing_value\": -999}");
    sf_assembler *a = sf_assembler_new(v, NULL);
    assert_non_null(a);
    result r;
    run(a, "{\"a\": -999, \"b\": 1, \"c\": 2}", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[0] == 7.0f && r.row[1] == 1.0f && r.row[2] == 2.0f);
    run(a, "{\"b\": 1, \"c\": 2}", &r);
    assert_int_equal(r.r, SF_REJECT_MISSING_FIELD);
    assert_string_equal(r.err, "field 'a' is missing and has no default");
    run(a, "{\"foo\": \"bar\"}", &r);
    assert_string_equal(r.err, "2 required fields 'a', 'c' are missing and have no default");

    /* Counting, on both paths (an escaped key sends the event to jansson). */
    const char *docs[] = {"{\"a\": 1, \"c\": 2}", "{\"\\u0061\": 1, \"c\": 2}",
                          "{\"a\": 1, \"b\": -999, \"c\": 2}", "{\"b\": 1}",
                          "{\"a\": 1, \"c\": \"x\"}"};
    _Atomic uint64_t counts[3] = {0};
    char err[256];
    float row[3];
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        compare_paths(a, docs[i], strlen(docs[i]), 3);
        sf_assembler_run_counted(a, docs[i], strlen(docs[i]), row, NULL, counts, err, sizeof err);
    }
    /* b lacked twice among the accepted; its missing value and rejected events do not count */
    assert_true(counts[0] == 0 && counts[1] == 2 && counts[2] == 0);
    sf_assembler_free(a);
    sf_vars_free(v);

    /* A fill with nothing to fill is a mistake in the file. */
    char path[512];
    snprintf(path, sizeof path, "%s/sf_vars_fill_XXXXXX", sft_tmpdir());
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "{\"inputs\": [{\"name\": \"a\", \"offset\": 0, \"scale\": 1, "
                       "\"fill\": 1}]}";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    sf_vars *bad = NULL;
    assert_int_equal(sf_vars_load(&bad, path, err, sizeof err), -1);
    unlink(path);
    assert_non_null(strstr(err, "input 'a': 'fill' replaces the missing value, but the file has "
                                "no 'missing_value'"));
}

static void test_rejections(void **state) {
    (void)state;
    sf_vars *v = small_vars();
    sf_assembler *a = sf_assembler_new(v, "id");
    /* not_json: jansson's position in the message */
    expect_reject(a, "", SF_REJECT_NOT_JSON, "line 1");
    expect_reject(a, "   ", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": 1, \"c\": 2", SF_REJECT_NOT_JSON, "column");
    expect_reject(a, "{\"a\": 1, \"c\": 2} x", SF_REJECT_NOT_JSON, "line 1");
    expect_reject(a, "{\"a\": 1, \"c\": 2}{}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": 1, \"c\": 2,}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": 01, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": +1, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": .5, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": 1., \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": 1e, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": 0x10, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": NaN, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": nan, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": Infinity, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": -inf, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": tru, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": truex, \"c\": 2}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{'a': 1}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\" 1}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": \"\x01\"}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": \"\xff\xfe\"}", SF_REJECT_NOT_JSON, "invalid JSON");
    expect_reject(a, "{\"a\": \"\\x\"}", SF_REJECT_NOT_JSON, "invalid JSON");
    /* not_object: valid JSON of another kind */
    expect_reject(a, "[1, 2]", SF_REJECT_NOT_OBJECT, "expected a JSON object, got array");
    expect_reject(a, " \"s\" ", SF_REJECT_NOT_OBJECT, "got string");
    expect_reject(a, "3", SF_REJECT_NOT_OBJECT, "got number");
    expect_reject(a, "null", SF_REJECT_NOT_OBJECT, "got null");
    expect_reject(a, "[1, 2", SF_REJECT_NOT_JSON, "invalid JSON");
    /* not_number, naming the field */
    expect_reject(a, "{\"a\": \"1\", \"c\": 2}", SF_REJECT_NOT_NUMBER,
                  "field 'a': expected a number, got string");
    expect_reject(a, "{\"a\": 1, \"c\": true}", SF_REJECT_NOT_NUMBER, "field 'c': expected a number, got boolean");
    expect_reject(a, "{\"a\": 1, \"c\": null}", SF_REJECT_NOT_NUMBER, "field 'c': expected a number, got null");
    expect_reject(a, "{\"a\": [1], \"c\": 2}", SF_REJECT_NOT_NUMBER, "field 'a': expected a number, got array");
    expect_reject(a, "{\"a\": {}, \"c\": 2}", SF_REJECT_NOT_NUMBER, "field 'a': expected a number, got object");
    expect_reject(a, "{\"b\": \"x\", \"a\": 1, \"c\": 2}", SF_REJECT_NOT_NUMBER, "field 'b'");
    /* the first problem in variable order wins, whatever the document order */
    expect_reject(a, "{\"c\": \"x\", \"a\": null}", SF_REJECT_NOT_NUMBER, "field 'a'");
    expect_reject(a, "{\"c\": \"x\"}", SF_REJECT_MISSING_FIELD, "field 'a' is missing");
    /* not_finite: beyond float */
    expect_reject(a, "{\"a\": 1e39, \"c\": 2}", SF_REJECT_NOT_FINITE,
                  "field 'a': value 1e39 is not a finite float");
    expect_reject(a, "{\"a\": 1, \"c\": -3.4028236e38}", SF_REJECT_NOT_FINITE, "field 'c'");
    /* ... and beyond double, anywhere in the event */
    expect_reject(a, "{\"a\": 1e999, \"c\": 2}", SF_REJECT_NOT_FINITE,
                  "field 'a': value 1e999 is not a finite float");
    expect_reject(a, "{\"a\": 1, \"c\": 2, \"extra\": -1E+400}", SF_REJECT_NOT_FINITE,
                  "field 'extra': value -1E+400 is not a finite float");
    expect_reject(a, "{\"a\": 1, \"c\": 2, \"n\": [1, 2e999]}", SF_REJECT_NOT_FINITE,
                  "field 'n': value 2e999 is not a finite float");
    expect_reject(a, "{\"a\": 1, \"c\": 2, \"\\u006e\": 2e999}", SF_REJECT_NOT_FINITE,
                  "field 'n': value 2e999 is not a finite float");
    expect_reject(a, "[2e999]", SF_REJECT_NOT_FINITE, "value 2e999 is not a finite float");
    expect_reject(a, "{\"a\": 1e999, \"c\": 2", SF_REJECT_NOT_FINITE, "field 'a'");
    expect_reject(a, "{\"a\": 1, \"c\": 2, \"a\": 1e999}", SF_REJECT_NOT_FINITE, "field 'a'");
    /* an id over SF_ID_MAX - 1 bytes */
    char big[400];
    snprintf(big, sizeof big, "{\"id\": \"%0200d\", \"a\": 1, \"c\": 2}", 7);
    expect_reject(a, big, SF_REJECT_TOO_LARGE, "field 'id': id longer than 127 bytes");
    sf_assembler_free(a);
    sf_vars_free(v);
}

static void test_numbers(void **state) {
    (void)state;
    sf_vars *v = small_vars();
    sf_assembler *a = sf_assembler_new(v, NULL);
    struct {
        const char *text;
        float want;
    } cases[] = {
        {"0", 0.0f}, {"-0", -0.0f}, {"-0.0", -0.0f}, {"1.5E+2", 150.0f}, {"1.5e-2", 0.015f},
        {"0.000123e-2", 0.00000123f}, {"123456789012345678901234567890", 1.2345679e29f},
        {"1e-400", 0.0f}, {"3.4028235e38", 3.4028235e38f}, {"-3.4028235e38", -3.4028235e38f},
        {"1e-45", 1e-45f}, {"0.1", 0.1f}, {"138.47", 138.47f}, {"-999.5", -999.5f},
        {"100000000000000000000000", 1e23f}, {"9007199254740993", 9007199254740992.0f},
        {"1.00000000000000000000000000001", 1.0f}, {"5e-324", 0.0f}, {"1E22", 1e22f},
        {"4.35", 4.35f}, {"-2.414", -2.414f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char doc[256];
        snprintf(doc, sizeof doc, "{\"a\": %s, \"c\": %s}", cases[i].text, cases[i].text);
        result r;
        run(a, doc, &r);
        if (r.r != SF_REJECT_NONE)
            fail_msg("%s: %s", doc, r.err);
        if (memcmp(&r.row[0], &cases[i].want, sizeof(float)))
            fail_msg("%s: got %.9g, want %.9g", cases[i].text, r.row[0], cases[i].want);
        assert_true(compare_paths(a, doc, strlen(doc), 3));
    }
    /* a 400-digit integer is a fine double but not a float */
    char doc[600] = "{\"c\": 1, \"a\": 1";
    for (int i = 0; i < 400; i++)
        strcat(doc, "0");
    strcat(doc, "}");
    result r;
    run(a, doc, &r);
    assert_int_equal(r.r, SF_REJECT_NOT_FINITE);
    assert_non_null(strstr(r.err, "field 'a': value 1000000000"));
    assert_non_null(strstr(r.err, "... is not a finite float"));
    compare_paths(a, doc, strlen(doc), 3);
    sf_assembler_free(a);
    sf_vars_free(v);
}

static void test_ids(void **state) {
    (void)state;
    sf_vars *v = small_vars();
    sf_assembler *a = sf_assembler_new(v, "EventId");
    result r;
    run(a, "{\"EventId\": 100000, \"a\": 1, \"c\": 2}", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_string_equal(r.id.json, "100000");
    assert_int_equal(r.id.json_len, 6);
    assert_string_equal(r.id.key, "100000");
    assert_int_equal(r.id.key_len, 6);

    run(a, "{\"a\": 1, \"EventId\": \"ev-7\", \"c\": 2}", &r);
    assert_string_equal(r.id.json, "\"ev-7\"");
    assert_string_equal(r.id.key, "ev-7");

    const char *esc = "{\"a\": 1, \"c\": 2, \"EventId\": \"a\\\"b\\\\c\\u00e9\\n\"}";
    run(a, esc, &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_string_equal(r.id.json, "\"a\\\"b\\\\c\\u00e9\\n\"");
    assert_string_equal(r.id.key, "a\"b\\c\xc3\xa9\n");
    assert_int_equal(r.id.key_len, 8);
    compare_paths(a, esc, strlen(esc), 3);

    run(a, "{\"a\": 1, \"c\": 2}", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_int_equal(r.id.json_len, 0);
    assert_int_equal(r.id.key_len, 0);

    run(a, "{\"a\": 1, \"c\": 2, \"EventId\": 1.5e3}", &r);
    assert_string_equal(r.id.json, "1.5e3");
    assert_string_equal(r.id.key, "1.5e3");
    run(a, "{\"a\": 1, \"c\": 2, \"EventId\": null}", &r);
    assert_string_equal(r.id.json, "null");

    /* the id survives a rejection of the features, for dead-lettering */
    run(a, "{\"EventId\": 42, \"c\": 2}", &r);
    assert_int_equal(r.r, SF_REJECT_MISSING_FIELD);
    assert_string_equal(r.id.json, "42");

    /* 127 bytes fit, 128 do not */
    char doc[512];
    char val[200];
    memset(val, 'x', 125);
    val[125] = '\0';
    snprintf(doc, sizeof doc, "{\"EventId\": \"%s\", \"a\": 1, \"c\": 2}", val);
    run(a, doc, &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_int_equal(r.id.json_len, 127);
    assert_int_equal(r.id.key_len, 125);
    val[125] = 'x';
    val[126] = '\0';
    snprintf(doc, sizeof doc, "{\"EventId\": \"%s\", \"a\": 1, \"c\": 2}", val);
    run(a, doc, &r);
    assert_int_equal(r.r, SF_REJECT_TOO_LARGE);
    assert_string_equal(r.err, "field 'EventId': id longer than 127 bytes");
    compare_paths(a, doc, strlen(doc), 3);
    /* a NULL id pointer still gets the same verdict */
    float row[3];
    char err[256];
    assert_int_equal(sf_assembler_run(a, doc, strlen(doc), row, NULL, err, sizeof err),
                     SF_REJECT_TOO_LARGE);
    sf_assembler_free(a);

    /* an id field that is also a variable */
    a = sf_assembler_new(v, "a");
    run(a, "{\"a\": 12, \"c\": 2}", &r);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[0] == 12.0f);
    assert_string_equal(r.id.json, "12");
    compare_paths(a, "{\"c\": 2, \"a\": 12}", 17, 3);
    sf_assembler_free(a);
    sf_vars_free(v);
}

static void test_hostile(void **state) {
    (void)state;
    sf_vars *v = small_vars();
    sf_assembler *a = sf_assembler_new(v, "id");
    size_t n = 100000;
    char *deep = malloc(n + 64);
    memset(deep, '[', n);
    result r;
    memset(&r, 0, sizeof r);
    r.r = sf_assembler_run(a, deep, n, r.row, &r.id, r.err, sizeof r.err);
    assert_int_equal(r.r, SF_REJECT_NOT_JSON);
    strcpy(deep, "{\"a\": 1, \"c\": 2, \"x\": ");
    size_t p = strlen(deep);
    memset(deep + p, '[', n - p);
    r.r = sf_assembler_run(a, deep, n, r.row, &r.id, r.err, sizeof r.err);
    assert_int_equal(r.r, SF_REJECT_NOT_JSON);
    memset(deep, '{', n);
    r.r = sf_assembler_run(a, deep, n, r.row, &r.id, r.err, sizeof r.err);
    assert_int_equal(r.r, SF_REJECT_NOT_JSON);
    free(deep);

    /* a 20 MB line: a huge string, then a lot of whitespace */
    size_t big = 20u << 20;
    char *line = malloc(big + 64);
    size_t o = (size_t)sprintf(line, "{\"a\": 1, \"s\": \"");
    memset(line + o, 'y', big / 2);
    o += big / 2;
    o += (size_t)sprintf(line + o, "\",");
    memset(line + o, ' ', big / 2);
    o += big / 2;
    o += (size_t)sprintf(line + o, "\"c\": 3}");
    r.r = sf_assembler_run(a, line, o, r.row, &r.id, r.err, sizeof r.err);
    assert_int_equal(r.r, SF_REJECT_NONE);
    assert_true(r.row[2] == 3.0f);
    assert_int_equal(compare_paths(a, line, o, 3), 1);
    /* the same with an escape, so jansson takes it */
    line[20] = '\\';
    line[21] = 'n';
    r.r = sf_assembler_run(a, line, o, r.row, &r.id, r.err, sizeof r.err);
    assert_int_equal(r.r, SF_REJECT_NONE);
    /* cut short at the end of the buffer (no terminating NUL is relied on) */
    for (size_t cut = 1; cut < 12; cut++) {
        r.r = sf_assembler_run(a, line, o - cut, r.row, &r.id, r.err, sizeof r.err);
        assert_int_equal(r.r, SF_REJECT_NOT_JSON);
    }
    free(line);

    /* embedded NUL bytes and invalid UTF-8 give clean, valid-UTF-8 messages */
    const char nul[] = "{\"a\": 1,\0 \"c\": 2}";
    r.r = sf_assembler_run(a, nul, sizeof nul - 1, r.row, &r.id, r.err, sizeof r.err);
    assert_int_equal(r.r, SF_REJECT_NOT_JSON);
    const char *bad = "{\"a\": 1, \"c\": 2, \"x\": \"\xc3\"}";
    r.r = sf_assembler_run(a, bad, strlen(bad), r.row, &r.id, r.err, sizeof r.err);
    assert_int_equal(r.r, SF_REJECT_NOT_JSON);
    for (const unsigned char *s = (const unsigned char *)r.err; *s; s++)
        assert_true(*s < 0x80);
    /* found by the fuzzer: jansson quotes the broken byte, the cleaned message does not */
    compare_paths(a, "1e401e\xff", 7, 3);
    sf_assembler_free(a);
    sf_vars_free(v);
}

static void test_normalize(void **state) {
    (void)state;
    sf_vars *v = small_vars(); /* offsets 1, 0, -1; scales 2, 1, 0.5 */
    float rows[6] = {1, 2, 3, -1, 0, 1};
    sf_features_normalize(v, SF_NORM_STANDARD, rows, 2);
    const float want[6] = {4, 2, 1, 0, 0, 0};
    for (int i = 0; i < 6; i++)
        assert_true(rows[i] == want[i]);
    float l2[6] = {0.5f, 4, 3, -1, 0, 1}; /* standard: (3, 4, 1) and (0, 0, 0) */
    sf_features_normalize(v, SF_NORM_L2, l2, 2);
    double norm = sqrt(26.0);
    assert_float_equal(l2[0], 3 / norm, 1e-7);
    assert_float_equal(l2[1], 4 / norm, 1e-7);
    assert_float_equal(l2[2], 1 / norm, 1e-7);
    assert_true(l2[3] == 0.0f && l2[4] == 0.0f && l2[5] == 0.0f);
    float none[3] = {7, 8, 9};
    sf_features_normalize(v, SF_NORM_NONE, none, 1);
    assert_true(none[0] == 7 && none[1] == 8 && none[2] == 9);
    sf_vars_free(v);
}

typedef struct rng {
    uint64_t s;
} rng;

static uint32_t rnd(rng *r, uint32_t n) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return (uint32_t)((r->s >> 16) % n);
}

/* The scanner's own conversion must give strtod's double, bit for bit, or
 * the two paths could round a value differently. */
static void test_number_conversion(void **state) {
    (void)state;
    rng r = {12345};
    char buf[96];
    for (int k = 0; k < 200000; k++) {
        size_t o = 0;
        if (rnd(&r, 2))
            buf[o++] = '-';
        int int_digits = 1 + (int)rnd(&r, rnd(&r, 4) ? 6 : 20);
        for (int i = 0; i < int_digits; i++)
            buf[o++] = (char)('0' + (i == 0 && int_digits > 1 ? 1 + rnd(&r, 9) : rnd(&r, 10)));
        if (rnd(&r, 4)) {
            buf[o++] = '.';
            int frac = 1 + (int)rnd(&r, rnd(&r, 4) ? 6 : 22);
            for (int i = 0; i < frac; i++)
                buf[o++] = (char)('0' + rnd(&r, 10));
        }
        if (rnd(&r, 3) == 0)
            o += (size_t)sprintf(buf + o, "%s%s%d", rnd(&r, 2) ? "e" : "E",
                                 rnd(&r, 3) == 0 ? "+" : rnd(&r, 2) ? "-" : "",
                                 (int)rnd(&r, rnd(&r, 8) ? 30 : 400));
        buf[o] = '\0';
        double got, want = strtod(buf, NULL);
        int rc = sf_features_parse_number(buf, buf + o, &got);
        if (isinf(want)) {
            assert_int_equal(rc, -1);
            continue;
        }
        assert_int_equal(rc, 0);
        if (memcmp(&got, &want, sizeof got))
            fail_msg("%s: got %.17g, strtod %.17g", buf, got, want);
    }
}

/* --- the two paths on a mutated corpus -------------------------------------- */

typedef struct field {
    char key[96];
    char val[192];
} field;

static const char *odd_values[] = {
    "-999", "-999.0", "\"12\"", "true", "false", "null", "[1]", "{\"x\": 1}", "1e39", "1e999",
    "-0", "1.5E+2", "0.000123e-2", "01", "+1", ".5", "1.", "NaN", "Infinity", "0x10", "[]",
    "\"\"", "\"a\\\"b\"", "1e-400", "123456789012345678901234567890", "-", "1e", "tru",
    "\"\xc3\xa9\"", "\"\xff\"", "3.4028235e38", "3.4028236e38", "[[[[1]]]]", "\"\\u00e9\"",
};

static const char *extra_fields[] = {
    "\"Label\": \"s\"", "\"note\": \"a\\\"b\\\\\"", "\"nested\": {\"a\": [1, 2, {\"b\": null}]}",
    "\"flag\": true", "\"big\": 1e999", "\"huge\": 12345678901234567890123", "\"n\": null",
    "\"\\u0041\": 1", "\"emptyarr\": []", "\"w\": 1e308", "\"u\": \"\xe2\x82\xac\"",
    "\"DER_mass_MMC \": \"x\"", "\"\": 0",
};

static void append(char *buf, size_t *o, size_t cap, const char *s) {
    size_t l = strlen(s);
    if (*o + l < cap) {
        memcpy(buf + *o, s, l);
        *o += l;
        buf[*o] = '\0';
    }
}

static size_t build_doc(rng *r, field *f, size_t nf, char *buf, size_t cap) {
    size_t order[48];
    for (size_t i = 0; i < nf; i++)
        order[i] = i;
    uint32_t mode = rnd(r, 16);
    if (mode == 1) { /* reversed */
        for (size_t i = 0; i < nf / 2; i++) {
            size_t t = order[i];
            order[i] = order[nf - 1 - i];
            order[nf - 1 - i] = t;
        }
    } else if (mode == 2 || mode == 3) { /* shuffled */
        for (size_t i = nf - 1; i > 0; i--) {
            size_t j = rnd(r, (uint32_t)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
    }
    static const char *seps[][2] = {{",", ":"}, {", ", ": "}, {"\n\t,", "\r\n:\t"}, {" , ", " :"}};
    const char **sep = seps[rnd(r, 4)];
    size_t o = 0;
    buf[0] = '\0';
    append(buf, &o, cap, rnd(r, 8) == 0 ? " \n{ " : "{");
    int first = 1;
    for (size_t k = 0; k < nf; k++) {
        field *x = &f[order[k]];
        if (!x->key[0])
            continue;
        if (!first)
            append(buf, &o, cap, sep[0]);
        first = 0;
        append(buf, &o, cap, "\"");
        append(buf, &o, cap, x->key);
        append(buf, &o, cap, "\"");
        append(buf, &o, cap, sep[1]);
        append(buf, &o, cap, x->val);
    }
    append(buf, &o, cap, rnd(r, 8) == 0 ? " }\n " : "}");
    return o;
}

static void test_fast_equals_jansson(void **state) {
    (void)state;
    sf_vars *v;
    char err[256];
    if (sf_vars_load(&v, HIGGS_VARS, err, sizeof err))
        fail_msg("%s", err);
    sf_assembler *a = sf_assembler_new(v, "EventId");
    gzFile g = gzopen(HIGGS_CSV, "r");
    assert_non_null(g);
    char line[4096], header[4096];
    assert_non_null(gzgets(g, header, sizeof header));
    header[strcspn(header, "\r\n")] = '\0';
    char names[40][96];
    size_t nnames = 0;
    for (char *t = strtok(header, ","); t && nnames < 40; t = strtok(NULL, ","))
        snprintf(names[nnames++], sizeof names[0], "%.90s", t);
    assert_int_equal(nnames, 35);

    rng r = {0x5eed5eedull};
    size_t fast = 0, fallback = 0, accepted = 0, rejected[SF_REJECT__COUNT] = {0};
    size_t docbuf_cap = 16384;
    char *doc = malloc(docbuf_cap);
    for (int row = 0; row < 200 && gzgets(g, line, sizeof line); row++) {
        line[strcspn(line, "\r\n")] = '\0';
        field base[48];
        size_t nf = 0;
        for (char *t = strtok(line, ","); t && nf < nnames; t = strtok(NULL, ","), nf++) {
            snprintf(base[nf].key, sizeof base[nf].key, "%.90s", names[nf]);
            if (nf == 32 || nf == 33)       /* Label, KaggleSet are strings */
                snprintf(base[nf].val, sizeof base[nf].val, "\"%s\"", t);
            else
                snprintf(base[nf].val, sizeof base[nf].val, "%s", t);
        }
        for (int variant = 0; variant < 24; variant++) {
            field f[48];
            memcpy(f, base, sizeof base);
            size_t n = nf;
            int mutations = variant == 0 ? 0 : 1 + (int)rnd(&r, 3);
            int cut = -1, flip = -1, wrap = 0;
            for (int m = 0; m < mutations; m++) {
                size_t i = rnd(&r, (uint32_t)n);
                switch (rnd(&r, 15)) {
                case 0: f[i].key[0] = '\0'; break;                          /* drop */
                case 1:
                case 2:
                case 3:
                    snprintf(f[i].val, sizeof f[i].val, "%s",
                             odd_values[rnd(&r, sizeof odd_values / sizeof odd_values[0])]);
                    break;
                case 4:
                case 5: {                                                   /* extra field */
                    const char *e = extra_fields[rnd(&r, sizeof extra_fields / sizeof extra_fields[0])];
                    const char *colon = strstr(e, "\": ");
                    snprintf(f[n].key, sizeof f[n].key, "%.*s", (int)(colon - e - 1), e + 1);
                    snprintf(f[n].val, sizeof f[n].val, "%s", colon + 3);
                    n++;
                    break;
                }
                case 6:                                                     /* duplicate */
                    f[n] = f[i];
                    if (rnd(&r, 2))
                        snprintf(f[n].val, sizeof f[n].val, "%u", rnd(&r, 1000));
                    n++;
                    break;
                case 7:                                                     /* escaped key */
                    if (strlen(f[i].key) > 1) {
                        char k[96];
                        snprintf(k, sizeof k, "\\u%04x%s", (unsigned)f[i].key[0], f[i].key + 1);
                        snprintf(f[i].key, sizeof f[i].key, "%s", k);
                    }
                    break;
                case 8:
                case 9: {                                                   /* the id */
                    static const char *ids[] = {"\"100000\"", "\"a\\\"b\\u00e9\"", "1.5e3", "-0",
                                                "null", "true", "[1, 2]", "{\"k\": 1}",
                                                "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
                                                "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\u00e9\""};
                    snprintf(f[0].val, sizeof f[0].val, "%s", ids[rnd(&r, 10)]);
                    if (rnd(&r, 4) == 0)
                        f[0].key[0] = '\0';
                    break;
                }
                case 10: cut = (int)rnd(&r, 100000); break;
                case 11: flip = (int)rnd(&r, 100000); break;
                case 12: wrap = 1; break;                                   /* not an object */
                case 13: f[i].val[0] = '\0'; break;                         /* empty value */
                default: break;                                             /* order only */
                }
            }
            size_t len = build_doc(&r, f, n, doc + wrap, docbuf_cap - 2);
            if (wrap) {
                doc[0] = '[';
                doc[len + 1] = ']';
                len += 2;
            }
            if (cut >= 0)
                len = (size_t)cut % (len + 1);
            if (flip >= 0 && len > 0) {
                static const char junk[] = "{}[]\",:\\ 0-e.tnx\x01\x80";
                doc[(size_t)flip % len] = junk[rnd(&r, sizeof junk - 1)];
            }
            if (compare_paths(a, doc, len, v->n_vars))
                fast++;
            else
                fallback++;
            result res;
            memset(&res, 0, sizeof res);
            res.r = sf_assembler_run(a, doc, len, res.row, &res.id, res.err, sizeof res.err);
            if (res.r == SF_REJECT_NONE)
                accepted++;
            else
                rejected[res.r]++;
            if (variant == 0 && res.r != SF_REJECT_NONE)
                fail_msg("unmutated row %d rejected: %s", row, res.err);
        }
    }
    gzclose(g);
    free(doc);
    print_message("corpus: %zu fast, %zu fallback, %zu accepted; rejected: json %zu, object %zu, "
                  "missing %zu, number %zu, finite %zu, large %zu\n",
                  fast, fallback, accepted, rejected[SF_REJECT_NOT_JSON],
                  rejected[SF_REJECT_NOT_OBJECT], rejected[SF_REJECT_MISSING_FIELD],
                  rejected[SF_REJECT_NOT_NUMBER], rejected[SF_REJECT_NOT_FINITE],
                  rejected[SF_REJECT_TOO_LARGE]);
    /* the corpus exercises both paths and every kind of verdict */
    assert_true(fast > 1000 && fallback > 500 && accepted > 1000);
    assert_true(rejected[SF_REJECT_NOT_JSON] && rejected[SF_REJECT_MISSING_FIELD] &&
                rejected[SF_REJECT_NOT_NUMBER] && rejected[SF_REJECT_NOT_FINITE] &&
                rejected[SF_REJECT_TOO_LARGE]);
    sf_assembler_free(a);
    sf_vars_free(v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_basic_and_defaults),
        cmocka_unit_test(test_required_and_fill),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_number_conversion),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_fast_equals_jansson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
