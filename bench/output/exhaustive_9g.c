/* exhaustive_9g.c: the proof behind output.c's fast float path. Every float
 * fmt_9g claims (2^-70 <= |f| < 2^20, both signs, and the zeros) is formatted
 * by it and by snprintf("%.9g", (double)f) and the two compared byte for byte;
 * it also checks fmt_9g declines the floats just outside, which take snprintf.
 * A manual tool (about 1.5 billion snprintf calls: minutes on one core), not
 * built by CMake nor run in CI; tests/test_output.c samples the same
 * comparison quickly.
 *
 *   cc -O2 -Iinclude bench/output/exhaustive_9g.c -lm -o /tmp/exhaustive_9g
 *   nice -n 19 /tmp/exhaustive_9g
 */
#include "../../src/output.c"

#include <stdlib.h>

static unsigned long long checked, mismatches;

static void check(uint32_t bits) {
    float f;
    memcpy(&f, &bits, sizeof f);
    char got[64], want[64];
    int n = fmt_9g(got, f);
    if (n < 0) {
        printf("0x%08x (%.9g): fmt_9g declined a float in its range\n", bits, (double)f);
        mismatches++;
        return;
    }
    got[n] = '\0';
    snprintf(want, sizeof want, "%.9g", (double)f);
    if (strcmp(got, want) != 0 && mismatches++ < 20)
        printf("0x%08x: fmt_9g \"%s\", snprintf \"%s\"\n", bits, got, want);
    checked++;
}

/* Floats just outside the range must go to snprintf. */
static void check_declined(uint32_t bits) {
    float f;
    char tmp[64];
    memcpy(&f, &bits, sizeof f);
    if (fmt_9g(tmp, f) >= 0) {
        printf("0x%08x: fmt_9g took a float outside its range\n", bits);
        mismatches++;
    }
}

int main(void) {
    const uint32_t lo = (127 - 70) << 23, hi = (127 + 20) << 23;
    for (uint32_t sign = 0; sign < 2; sign++) {
        uint32_t s = sign << 31;
        check(s); /* 0 and -0 */
        for (uint32_t b = lo; b < hi; b++)
            check(s | b);
        for (uint32_t b = lo - 16; b < lo; b++)
            check_declined(s | b);
        for (uint32_t b = hi; b < hi + 16; b++)
            check_declined(s | b);
        printf("sign %u done: %llu floats checked, %llu mismatches\n", sign, checked, mismatches);
        fflush(stdout);
    }
    return mismatches ? 1 : 0;
}
