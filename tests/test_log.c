/* test_log.c: the two log formats carry the same fields. A JSON line is one
 * valid object with ts, level, msg and the message's key=value fields (numbers
 * as numbers, quoted values as strings); a message that is not msg + fields
 * stays whole; escaping and truncation never yield invalid JSON. sf_log itself
 * is checked by capturing stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sigflow/log.h"

static json_t *render(const char *msg, char *buf, size_t n) {
    sf_log_json(buf, n, "2026-01-01T00:00:00.000Z", SF_LOG_WARN, msg);
    json_error_t e;
    json_t *j = json_loads(buf, 0, &e);
    if (!j)
        fail_msg("invalid JSON (%s) for message '%s': %s", e.text, msg, buf);
    assert_string_equal(json_string_value(json_object_get(j, "ts")), "2026-01-01T00:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    return j;
}

static void test_fields(void **state) {
    (void)state;
    char buf[4096];
    json_t *j = render("rejected event topic=events partition=3 offset=17 reason=not_json "
                       "error=\"expected value near 'x' at byte 0\"", buf, sizeof buf);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "rejected event");
    assert_string_equal(json_string_value(json_object_get(j, "topic")), "events");
    assert_true(json_is_integer(json_object_get(j, "partition")));
    assert_int_equal(json_integer_value(json_object_get(j, "partition")), 3);
    assert_int_equal(json_integer_value(json_object_get(j, "offset")), 17);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "expected value near 'x' at byte 0");
    assert_int_equal(json_object_size(j), 3 + 5);
    json_decref(j);

    /* quoted digits stay a string; 007, inf and hex are not JSON numbers */
    j = render("started sha256=\"123456789012\" a=007 b=inf c=0x10 d=-2.5e3 e=0", buf, sizeof buf);
    assert_string_equal(json_string_value(json_object_get(j, "sha256")), "123456789012");
    assert_string_equal(json_string_value(json_object_get(j, "a")), "007");
    assert_string_equal(json_string_value(json_object_get(j, "b")), "inf");
    assert_string_equal(json_string_value(json_object_get(j, "c")), "0x10");
    assert_true(json_real_value(json_object_get(j, "d")) == -2500.0);
    assert_int_equal(json_integer_value(json_object_get(j, "e")), 0);
    json_decref(j);
}

static void test_free_text_stays_whole(void **state) {
    (void)state;
    char buf[4096];
    /* a key=value inside prose is not a field tail */
    const char *msg = "librdkafka said fetch.wait.max.ms=5 is a consumer property";
    json_t *j = render(msg, buf, sizeof buf);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), msg);
    assert_int_equal(json_object_size(j), 3);
    json_decref(j);
    j = render("stopping, draining the batch in flight", buf, sizeof buf);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "stopping, draining the batch in flight");
    json_decref(j);
    /* an unterminated quote: not fields */
    j = render("x error=\"never closed", buf, sizeof buf);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "x error=\"never closed");
    json_decref(j);
}

static void test_escaping_and_truncation(void **state) {
    (void)state;
    char buf[4096];
    json_t *j = render("bad error=\"a \\\"quoted\\\" word,\ttab\x01 and \xc3\xa9\"", buf, sizeof buf);
    assert_string_equal(json_string_value(json_object_get(j, "error")),
                        "a \\\"quoted\\\" word,\ttab\x01 and \xc3\xa9");
    json_decref(j);
    /* too small a buffer: still one valid object, the fields that fit */
    char small[120];
    j = render("throughput consumed=1 predicted=2 signals=3 dead_letters=4 rejected=5 a=11111 b=22222",
               small, sizeof small);
    assert_true(strlen(small) < sizeof small);
    assert_int_equal(json_integer_value(json_object_get(j, "consumed")), 1);
    assert_null(json_object_get(j, "b"));
    json_decref(j);
}

/* Runs sf_log with stderr sent to a file; returns what it wrote. */
static char *captured(sf_logger lg, sf_log_level level, const char *msg) {
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/sf_test_log.XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    sf_log(lg, level, "%s", msg);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    static char out[8192];
    ssize_t n = pread(fd, out, sizeof out - 1, 0);
    close(fd);
    unlink(path);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

/* The throughput line: the same figures in text and in JSON. */
static void test_same_figures_both_formats(void **state) {
    (void)state;
    const char *msg = "throughput consumed_per_s=51234 predicted_per_s=51200 consumed=1000000 "
                      "predicted=999990 signals=333 dead_letters=10 rejected=10 rejects_not_logged=0";
    char *text = captured((sf_logger){SF_LOG_INFO, SF_LOG_TEXT}, SF_LOG_INFO, msg);
    assert_non_null(strstr(text, " sigflow info  throughput consumed_per_s=51234 "));
    assert_int_equal(text[strlen(text) - 1], '\n');
    char text_fields[1024];
    snprintf(text_fields, sizeof text_fields, "%s", strstr(text, "consumed_per_s="));
    text_fields[strcspn(text_fields, "\n")] = '\0';

    char *line = captured((sf_logger){SF_LOG_INFO, SF_LOG_JSON}, SF_LOG_INFO, msg);
    assert_int_equal(line[strlen(line) - 1], '\n');
    json_error_t e;
    json_t *j = json_loads(line, 0, &e);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "throughput");
    /* every key=value of the text line is a member with that value, and no more */
    size_t n = 0;
    for (char *kv = strtok(text_fields, " "); kv; kv = strtok(NULL, " "), n++) {
        char *eq = strchr(kv, '=');
        assert_non_null(eq);
        *eq = '\0';
        json_t *v = json_object_get(j, kv);
        if (!json_is_integer(v))
            fail_msg("field %s missing or not a number in %s", kv, line);
        assert_int_equal(json_integer_value(v), strtoll(eq + 1, NULL, 10));
    }
    assert_int_equal(n, 8);
    assert_int_equal(json_object_size(j), 3 + n);
    json_decref(j);

    /* the threshold drops lines in both formats */
    assert_string_equal(captured((sf_logger){SF_LOG_WARN, SF_LOG_JSON}, SF_LOG_INFO, msg), "");
}

static void test_parse(void **state) {
    (void)state;
    sf_log_format f = SF_LOG_TEXT;
    assert_int_equal(sf_log_format_parse("json", &f), 0);
    assert_int_equal(f, SF_LOG_JSON);
    assert_int_equal(sf_log_format_parse("text", &f), 0);
    assert_int_equal(f, SF_LOG_TEXT);
    assert_int_equal(sf_log_format_parse("JSON", &f), -1);
    assert_int_equal(sf_log_format_parse("", &f), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_free_text_stays_whole),
        cmocka_unit_test(test_escaping_and_truncation),
        cmocka_unit_test(test_same_figures_both_formats),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
