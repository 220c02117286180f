/* test_output.c: the prediction JSON shared by predict and run. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "sigflow/output.h"

static char *labels[] = {"b", "s\"q"};
static sf_vars vars = {.n_labels = 2, .labels = labels};

static void test_with_id_and_source(void **state) {
    (void)state;
    sf_event_id id = {.json_len = 6, .json = "100000", .key_len = 6, .key = "100000"};
    float probs[] = {0.25f, 0.75f};
    char buf[256];
    int n = sf_output_format(buf, sizeof buf, "EventId", &id, &vars, probs, 1, 3, 1234);
    assert_string_equal(buf, "{\"EventId\": 100000, \"label\": \"s\\\"q\", \"label_index\": 1, "
                             "\"probabilities\": [0.25, 0.75], \"partition\": 3, \"offset\": 1234}");
    assert_int_equal(n, (int)strlen(buf));
}

static void test_without_id_or_source(void **state) {
    (void)state;
    sf_event_id id = {0};
    float probs[] = {0.1f, NAN};
    char buf[256];
    sf_output_format(buf, sizeof buf, "EventId", &id, &vars, probs, 0, -1, 0);
    assert_string_equal(buf, "{\"label\": \"b\", \"label_index\": 0, \"probabilities\": [0.100000001, null]}");
}

static void test_too_small_buffer(void **state) {
    (void)state;
    sf_event_id id = {.json_len = 1, .json = "7"};
    float probs[] = {0.25f, 0.75f};
    char buf[256];
    int full = sf_output_format(buf, sizeof buf, "id", &id, &vars, probs, 1, 0, 0);
    for (size_t size = 0; size <= (size_t)full; size++)
        assert_int_equal(sf_output_format(buf, size, "id", &id, &vars, probs, 1, 0, 0), -1);
    assert_int_equal(sf_output_format(buf, (size_t)full + 1, "id", &id, &vars, probs, 1, 0, 0), full);
}

static void test_json_string_escapes(void **state) {
    (void)state;
    char buf[64];
    assert_int_equal(sf_output_json_string(buf, sizeof buf, "a\\b\n\x01"), 18);
    assert_string_equal(buf, "\"a\\\\b\\u000a\\u0001\"");
    assert_int_equal(sf_output_json_string(buf, 3, "abc"), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_with_id_and_source),
        cmocka_unit_test(test_without_id_or_source),
        cmocka_unit_test(test_too_small_buffer),
        cmocka_unit_test(test_json_string_escapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
