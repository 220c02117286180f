/* output_cost.c: what sf_output_format costs per published event, measured
 * apart from Kafka (a manual tool, not built by CMake nor run in CI).
 *
 *   cc -O2 -g -Iinclude bench/output/output_cost.c src/output.c -lm -o /tmp/output_cost
 *   valgrind --tool=callgrind /tmp/output_cost 100000 1    # instructions, repeatable
 *   /tmp/output_cost 1000000 5                              # ns per call, best of 5
 *
 * The outputs look like the daemon's for the shipped Higgs model: a numeric
 * EventId, labels "b"/"s", the softmax of a logit spread the way a trained
 * classifier's is, partition and offset; a checksum keeps the work live. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sigflow/output.h"

static uint64_t rng = 0x9e3779b97f4a7c15u;

static double uniform(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

int main(int argc, char **argv) {
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    int reps = argc > 2 ? atoi(argv[2]) : 1;
    char *lab[] = {"b", "s"};
    sf_vars vars = {.n_labels = 2, .labels = lab};
    float (*probs)[2] = malloc(n * sizeof *probs);
    sf_event_id *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        /* a logit of N(0, 3): most events confident, some very (p near 1e-6) */
        double z = 3 * sqrt(-2 * log(1 - uniform())) * cos(6.283185307179586 * uniform());
        float s = (float)(1 / (1 + exp(-z)));
        probs[i][0] = 1 - s, probs[i][1] = s;
        ids[i].json_len = ids[i].key_len = (size_t)snprintf(ids[i].json, sizeof ids[i].json, "%zu", 100000 + i);
        memcpy(ids[i].key, ids[i].json, ids[i].json_len + 1);
    }
    char buf[512];
    uint64_t sum = 0;
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t i = 0; i < n; i++) {
            int len = sf_output_format(buf, sizeof buf, "EventId", &ids[i], &vars, probs[i],
                                       probs[i][1] > 0.5f, (int32_t)(i % 4), (int64_t)(1000000 + i));
            sum += (uint64_t)len + (unsigned char)buf[len / 2];
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / (double)n;
        if (ns < best)
            best = ns;
    }
    sf_output_format(buf, sizeof buf, "EventId", &ids[n - 1], &vars, probs[n - 1], 1, 3, 1000000 + (int64_t)n - 1);
    printf("%s\n%zu outputs x %d: best %.1f ns per call (checksum %llu)\n", buf, n, reps, best,
           (unsigned long long)sum);
    free(probs);
    free(ids);
    return 0;
}
