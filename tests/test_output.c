/* test_output.c: the prediction JSON shared by predict and run. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* Formats the floats 64 at a time as one output's probabilities and compares
 * them with snprintf("%.9g"), the contract; returns the mismatches. */
static size_t mismatches_with_printf(const float *f, size_t count) {
    static char *one_label[] = {"b"};
    enum { CHUNK = 64 };
    size_t bad = 0;
    for (size_t i = 0; i < count; i += CHUNK) {
        size_t k = count - i < CHUNK ? count - i : CHUNK;
        sf_vars v = {.n_labels = k, .labels = one_label};
        char got[CHUNK * 32 + 128], want[CHUNK * 32 + 128];
        int n = snprintf(want, sizeof want, "{\"label\": \"b\", \"label_index\": 0, \"probabilities\": [");
        for (size_t j = 0; j < k; j++) {
            n += snprintf(want + n, sizeof want - (size_t)n, j ? ", " : "");
            n += isfinite(f[i + j]) ? snprintf(want + n, sizeof want - (size_t)n, "%.9g", (double)f[i + j])
                                    : snprintf(want + n, sizeof want - (size_t)n, "null");
        }
        snprintf(want + n, sizeof want - (size_t)n, "]}");
        assert_int_equal(sf_output_format(got, sizeof got, NULL, NULL, &v, f + i, 0, -1, 0),
                         (int)strlen(want));
        if (strcmp(got, want) != 0 && bad++ == 0)
            print_message("got  %s\nwant %s\n", got, want);
    }
    return bad;
}

static float from_bits(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The fast path for probabilities must print what %.9g prints: at and around
 * its range's ends, powers of two and of ten (where the digit count and the
 * %f/%e choice change), subnormals, zeros, and short mantissas, which are
 * where exact ties (rounded half to even) live; then random bit patterns.
 * bench/output/exhaustive_9g.c checks every float of the range, once. */
static void test_probabilities_match_printf(void **state) {
    (void)state;
    size_t cap = 600000, n = 0;
    float *f = malloc(cap * sizeof *f);
    assert_non_null(f);
    const float edges[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, FLT_MIN, FLT_MAX, FLT_TRUE_MIN,
                           FLT_EPSILON, INFINITY, -INFINITY, NAN, 0x1p-70f, 0x1p20f, 1e-9f, 1e9f};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++)
        f[n++] = edges[i];
    for (int e = -149; e <= 127; e++) {
        float p = ldexpf(1.0f, e);
        f[n++] = p, f[n++] = nextafterf(p, 0), f[n++] = nextafterf(p, INFINITY);
    }
    for (int e = -45; e <= 38; e++) {
        float p = (float)pow(10, e);
        f[n++] = p, f[n++] = nextafterf(p, 0), f[n++] = nextafterf(p, INFINITY);
        f[n++] = nextafterf(nextafterf(p, 0), 0);
    }
    for (uint32_t sign = 0; sign < 2; sign++)
        for (uint32_t exp = 0; exp < 255; exp++)
            for (uint32_t m = 0; m < 1u << 9; m++)
                f[n++] = from_bits(sign << 31 | exp << 23 | m << 14);
    uint32_t x = 2463534242u; /* xorshift32: the same floats every run */
    while (n < cap) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        f[n++] = from_bits(x);
    }
    assert_int_equal(mismatches_with_printf(f, n), 0);
    free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_with_id_and_source),
        cmocka_unit_test(test_without_id_or_source),
        cmocka_unit_test(test_too_small_buffer),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test(test_probabilities_match_printf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
