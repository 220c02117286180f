/* test_ensemble_daemon.c: `sigflow run` serving a model set, end to end on the
 * embedded broker: every output carries the members' probabilities
 * (--emit-members), an event one member refuses goes to the dead-letter topic
 * naming that member, sigflow_model_info has one series per member, and
 * SIGHUP reloads the set all or nothing: a set with a broken member leaves the
 * old set serving (the log names the member), a good one goes live. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support.h"

#define FIXTURE(name) SF_SOURCE_DIR "/tests/fixtures/" name
#define EVENTS 200
#define WAIT_MS 60000

static const char *const topics[] = {"events", "signals", "events.dlq"};

typedef struct fixture {
    sf_broker *broker;
    const char *brokers;
    sft_daemon d;
    char *set;
    char **keys, **values;
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->broker = sft_broker(4, topics, 3);
    f->brokers = sf_broker_bootstrap(f->broker);
    f->set = sft_temp_path(".json");
    sft_atlas_events(2 * EVENTS, &f->keys, &f->values);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    sft_daemon_free(&f->d);
    unlink(f->set);
    free(f->set);
    sft_strings_free(f->keys, 2 * EVENTS);
    sft_strings_free(f->values, 2 * EVENTS);
    sf_broker_stop(f->broker);
    free(f);
    return 0;
}

/* Writes the set file by rename, as a deployment would: members mlp and
 * higgs with the given weights, higgs's model at higgs_model. */
static void install_set(const char *dst, double w_mlp, double w_higgs, const char *higgs_model) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.new", dst);
    FILE *out = fopen(tmp, "w");
    assert_non_null(out);
    fprintf(out,
            "{\"name\": \"daemon-pair\", \"members\": [\n"
            " {\"name\": \"mlp\", \"model\": \"%s\", \"variables\": \"%s\", \"weight\": %g},\n"
            " {\"name\": \"higgs\", \"model\": \"%s\", \"variables\": \"%s\", \"weight\": %g}]}\n",
            FIXTURE("model_mlp.h5"), FIXTURE("vars_higgs.json"), w_mlp, higgs_model,
            FIXTURE("vars_higgs_perm.json"), w_higgs);
    assert_int_equal(fclose(out), 0);
    assert_int_equal(rename(tmp, dst), 0);
}

/* The sha256 of a model file, from its .ref.json or computed by sha256sum. */
static void sha256_of(const char *path, char hex[65]) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sha256sum '%s'", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%64s", hex), 1);
    pclose(p);
}

static void member_series(char *out, size_t n, const char *name, const char *model, double w) {
    char sha[65];
    sha256_of(model, sha);
    snprintf(out, n, "sigflow_model_info{member=\"%s\",sha256=\"%s\",weight=\"%.6g\"}", name, sha, w);
}

/* An event the higgs member refuses: DER_mass_MMC has no default there. */
static int higgs_refuses(const char *event) {
    const char *v = strstr(event, "\"DER_mass_MMC\":");
    assert_non_null(v);
    v += strlen("\"DER_mass_MMC\":");
    return strtod(v, NULL) == -999.0;
}

static void produce(fixture *f, size_t first, size_t n) {
    assert_int_equal(sft_produce(f->brokers, "events", (const char *const *)f->keys + first,
                                 (const char *const *)f->values + first, NULL, n),
                     n);
}

static void test_set_daemon(void **state) {
    fixture *f = *state;
    size_t refused = 0;
    for (size_t i = 0; i < 2 * EVENTS; i++)
        refused += (size_t)higgs_refuses(f->values[i]);
    assert_true(refused > 0 && refused < EVENTS);

    install_set(f->set, 3, 1, SF_SOURCE_DIR "/models/higgs_mlp.h5");
    const char *args[] = {"--brokers", f->brokers, "--model", f->set, "--group", "ens",
                          "--emit", "all", "--emit-members", "--dlq-topic", "events.dlq", NULL};
    sft_daemon_start(&f->d, args, WAIT_MS);
    char mlp[256], higgs[256];
    member_series(mlp, sizeof mlp, "mlp", FIXTURE("model_mlp.h5"), 0.75);
    member_series(higgs, sizeof higgs, "higgs", SF_SOURCE_DIR "/models/higgs_mlp.h5", 0.25);
    assert_true(sft_scrape(f->d.port, mlp) == 1);
    assert_true(sft_scrape(f->d.port, higgs) == 1);

    /* Phase 1: outputs with members, refusals naming the member. */
    produce(f, 0, EVENTS);
    size_t refused1 = 0;
    for (size_t i = 0; i < EVENTS; i++)
        refused1 += (size_t)higgs_refuses(f->values[i]);
    double want = (double)(EVENTS - refused1);
    assert_true(sft_wait_metric(&f->d, "sigflow_signals_published_total", want, WAIT_MS) == want);
    sft_msgs dlq = sft_consume_all(f->brokers, "events.dlq", refused1, 500, WAIT_MS, 0);
    assert_int_equal(dlq.n, refused1);
    for (size_t i = 0; i < dlq.n; i++) {
        assert_non_null(dlq.v[i].error_header);
        if (!strstr(dlq.v[i].error_header, "member 'higgs': field 'DER_mass_MMC'"))
            fail_msg("dead letter without the member: %s", dlq.v[i].error_header);
    }
    sft_msgs_free(&dlq);
    sft_msgs out = sft_consume_all(f->brokers, "signals", (size_t)want, 500, WAIT_MS, 0);
    assert_int_equal(out.n, (size_t)want);
    for (size_t i = 0; i < out.n; i++)
        if (!strstr(out.v[i].value, "\"members\": {\"mlp\": [") ||
            !strstr(out.v[i].value, "], \"higgs\": ["))
            fail_msg("output without members: %s", out.v[i].value);
    sft_msgs_free(&out);

    /* A set whose member does not load: the old set keeps serving. */
    char *bad = sft_temp_path(".h5");
    FILE *b = fopen(bad, "w");
    assert_non_null(b);
    fputs("not a model\n", b);
    fclose(b);
    install_set(f->set, 1, 1, bad);
    assert_int_equal(kill(f->d.pid, SIGHUP), 0);
    assert_true(sft_wait_for_text(f->d.log, "reload failed", WAIT_MS));
    char *log = sft_read_file(f->d.log, NULL);
    assert_non_null(log);
    const char *failed = strstr(log, "reload failed");
    const char *eol = strchr(failed, '\n');
    if (!strstr(failed, "member 'higgs'") || (eol && strstr(failed, "member 'higgs'") > eol))
        fail_msg("the failed reload does not name the member: %s", failed);
    free(log);
    assert_true(sft_scrape(f->d.port, mlp) == 1);
    assert_true(sft_scrape(f->d.port, higgs) == 1);
    produce(f, EVENTS, EVENTS);
    size_t refused2 = refused - refused1;
    want += (double)(EVENTS - refused2);
    assert_true(sft_wait_metric(&f->d, "sigflow_signals_published_total", want, WAIT_MS) == want);

    /* A good set goes live: the member series follow the new weights. */
    install_set(f->set, 1, 1, SF_SOURCE_DIR "/models/higgs_mlp.h5");
    assert_int_equal(kill(f->d.pid, SIGHUP), 0);
    char mlp2[256];
    member_series(mlp2, sizeof mlp2, "mlp", FIXTURE("model_mlp.h5"), 0.5);
    assert_true(sft_wait_metric(&f->d, mlp2, 1, WAIT_MS) == 1);
    assert_true(isnan(sft_scrape(f->d.port, mlp)));
    assert_true(sft_daemon_running(&f->d));
    assert_int_equal(sft_daemon_stop(&f->d, SIGTERM, WAIT_MS), 0);
    unlink(bad);
    free(bad);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_daemon, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
