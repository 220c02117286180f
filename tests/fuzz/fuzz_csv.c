/* fuzz_csv.c: the CSV reader (plain or gzip: zlib decides). Every call ends
 * in a record, a bad line with a message, EOF or an error; fields are
 * NUL-terminated where the reader says; a rewind replays the same records. */
#include <stdint.h>
#include <string.h>

#include "sigflow/csv.h"
#include "fuzz_util.h"

#define MAX_CALLS 100000

/* Reads to the end; returns the number of records and sums their field lengths. */
static size_t read_all(sf_csv *c, size_t *bytes) {
    char err[512];
    size_t records = 0;
    *bytes = 0;
    for (int i = 0; i < MAX_CALLS; i++) {
        const sf_csv_field *f;
        size_t n;
        err[0] = '\0';
        int r = sf_csv_next(c, &f, &n, err, sizeof err);
        if (r == SF_CSV_EOF || r == SF_CSV_ERROR)
            return records;
        if (r == SF_CSV_BAD) {
            FUZZ_CHECK(err[0], "bad line without a message");
            continue;
        }
        FUZZ_CHECK(r == SF_CSV_RECORD && n > 0, "sf_csv_next returned %d with %zu fields", r, n);
        for (size_t k = 0; k < n; k++) {
            FUZZ_CHECK(f[k].ptr[f[k].len] == '\0', "field %zu not NUL-terminated", k);
            *bytes += f[k].len;
        }
        records++;
    }
    FUZZ_CHECK(0, "more than %d calls", MAX_CALLS);
    return records;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    sf_csv *c;
    const char *path = fuzz_scratch(".csv", data, size);
    if (sf_csv_open(&c, path, err, sizeof err) != 0)
        return 0;
    size_t bytes1, bytes2;
    size_t n1 = read_all(c, &bytes1);
    if (sf_csv_rewind(c, err, sizeof err) == 0) {
        size_t n2 = read_all(c, &bytes2);
        FUZZ_CHECK(n1 == n2 && bytes1 == bytes2, "rewind: %zu/%zu records, %zu/%zu bytes", n1,
                   n2, bytes1, bytes2);
    }
    sf_csv_close(c);
    return 0;
}
