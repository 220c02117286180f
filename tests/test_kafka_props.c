/* test_kafka_props.c: -F properties files and -X properties (kafka.c), without
 * a broker, and -F on the command lines of sigflow run, sigflow-replay and
 * sigflow-bench: a file's properties reach the client, a bad line is refused
 * naming the file and the line; Kafka Connect's consumer./producer. scoping and
 * Java's JAAS line (issue 28). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigflow/kafka.h"
#include "support.h"

static char *write_temp(const char *text) {
    char *path = sft_temp_path(".properties");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void conf_value(rd_kafka_conf_t *conf, const char *key, const char *want) {
    char buf[256];
    size_t n = sizeof buf;
    assert_int_equal(rd_kafka_conf_get(conf, key, buf, &n), RD_KAFKA_CONF_OK);
    assert_string_equal(buf, want);
}

static void file_lines_in_order(void **state) {
    (void)state;
    char *path = write_temp("# credentials for the cluster\n"
                            "\n"
                            "  client.id = sigflow-a  \n"
                            "linger.ms=7\r\n"
                            "\t# indented comment\n"
                            "sasl.password=p=a=ss # not a comment: values keep '#'\n"
                            "client.id=sigflow-b\n"
                            "socket.timeout.ms=12345"); /* no final newline */
    sf_kafka_props p = {0};
    char err[512];
    assert_int_equal(sf_kafka_props_add(&p, "linger.ms=3", err, sizeof err), 0);
    assert_int_equal(sf_kafka_props_load(&p, path, err, sizeof err), 0);
    assert_int_equal(p.n, 6);
    assert_string_equal(p.kv[0], "linger.ms=3");
    assert_string_equal(p.kv[1], "client.id=sigflow-a");
    assert_string_equal(p.kv[2], "linger.ms=7");
    assert_string_equal(p.kv[3], "sasl.password=p=a=ss # not a comment: values keep '#'");
    assert_string_equal(p.kv[5], "socket.timeout.ms=12345");

    /* Applied in order: the later client.id and linger.ms win. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(sf_kafka_props_apply(conf, SF_KAFKA_FOR_PRODUCER, (const char *const *)p.kv, p.n, err, sizeof err), 0);
    conf_value(conf, "client.id", "sigflow-b");
    conf_value(conf, "linger.ms", "7");
    conf_value(conf, "socket.timeout.ms", "12345");
    rd_kafka_conf_destroy(conf);
    sf_kafka_props_free(&p);
    assert_int_equal(p.n, 0);
    sf_kafka_props_free(&p); /* twice is harmless */
    remove(path);
    free(path);
}

static void bad_line_names_file_and_line(void **state) {
    (void)state;
    char *path = write_temp("client.id=x\n# fine\nno equals sign here\nlinger.ms=1\n");
    sf_kafka_props p = {0};
    char err[512], want[600];
    assert_int_equal(sf_kafka_props_load(&p, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:3: expected key=value", path);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "no equals sign here"));
    sf_kafka_props_free(&p);
    remove(path);
    free(path);

    path = write_temp("=value without key\n");
    assert_int_equal(sf_kafka_props_load(&p, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:1: expected key=value", path);
    assert_non_null(strstr(err, want));
    sf_kafka_props_free(&p);
    remove(path);

    /* A missing file names the file and why. */
    assert_int_equal(sf_kafka_props_load(&p, path, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));
    free(path);

    assert_int_equal(sf_kafka_props_add(&p, "novalue", err, sizeof err), -1);
    assert_non_null(strstr(err, "expected key=value"));
    sf_kafka_props_free(&p);
}

/* Runs argv, returns the exit status; stderr in *err (caller frees). */
static int run(char *const argv[], char **err) {
    char *err_path = sft_temp_path(".err");
    pid_t pid = sft_spawn(argv, NULL, NULL, err_path);
    int rc = sft_wait(pid, 60000);
    *err = sft_read_file(err_path, NULL);
    assert_non_null(*err);
    remove(err_path);
    free(err_path);
    return rc;
}

/* Each binary refuses a bad line naming file and line, with usage status 2. */
static void cli_bad_line(void **state) {
    (void)state;
    char *path = write_temp("client.id=x\nsecurity.protocol\n");
    char want[600];
    snprintf(want, sizeof want, "%s:2: expected key=value", path);
    char *const run_argv[] = {SF_BUILD_DIR "/sigflow", "run", "--brokers", "127.0.0.1:9",
                              "--model", SF_SOURCE_DIR "/models/higgs_mlp.h5", "--variables",
                              SF_SOURCE_DIR "/models/higgs_variables.json", "-F", path, NULL};
    char *const replay_argv[] = {SF_BUILD_DIR "/sigflow-replay", "-b", "127.0.0.1:9", "-t", "t",
                                 "-f", "x.csv", "-F", path, NULL};
    char *const bench_argv[] = {SF_BUILD_DIR "/sigflow-bench", "--quick", "-F", path, NULL};
    char *const *all[] = {run_argv, replay_argv, bench_argv};
    for (size_t i = 0; i < 3; i++) {
        char *err;
        assert_int_equal(run(all[i], &err), 2);
        if (!strstr(err, want))
            fail_msg("%s: stderr lacks '%s': %s", all[i][0], want, err);
        free(err);
    }
    remove(path);
    free(path);
}

/* A file's properties reach the client: librdkafka refuses an unknown one,
 * by name, as it would from -X, before anything starts (a usage error). */
static void cli_file_is_applied(void **state) {
    (void)state;
    char *path = write_temp("# from a file\nnonsense.property.from.file=1\n");
    char *const run_argv[] = {SF_BUILD_DIR "/sigflow", "run", "--brokers", "127.0.0.1:9",
                              "--model", SF_SOURCE_DIR "/models/higgs_mlp.h5", "--variables",
                              SF_SOURCE_DIR "/models/higgs_variables.json", "--metrics-addr",
                              "none", "-F", path, NULL};
    char *const replay_argv[] = {SF_BUILD_DIR "/sigflow-replay", "-b", "127.0.0.1:9", "-t", "t",
                                 "-f", "x.csv", "-F", path, NULL};
    char *err;
    assert_int_equal(run(run_argv, &err), 2);
    assert_non_null(strstr(err, "nonsense.property.from.file"));
    free(err);
    assert_int_equal(run(replay_argv, &err), 2);
    assert_non_null(strstr(err, "nonsense.property.from.file"));
    free(err);
    remove(path);
    free(path);
}

/* Kafka Connect's scoping: a prefix picks the client, an unprefixed property
 * goes to the clients librdkafka applies it to and is left out of the others
 * (no CONFWARN), a prefix naming the wrong client is refused. */
static void scoped(void **state) {
    (void)state;
    const char *kv[] = {"consumer.fetch.wait.max.ms=5", "linger.ms=9", "session.timeout.ms=6000",
                        "client.id=both", "producer.client.id=p"};
    char err[512], buf[64];
    size_t n;
    rd_kafka_conf_t *c = rd_kafka_conf_new(), *p = rd_kafka_conf_new();
    assert_int_equal(sf_kafka_props_apply(c, SF_KAFKA_FOR_CONSUMER, kv, 5, err, sizeof err), 0);
    assert_int_equal(sf_kafka_props_apply(p, SF_KAFKA_FOR_PRODUCER, kv, 5, err, sizeof err), 0);
    conf_value(c, "fetch.wait.max.ms", "5");
    conf_value(c, "session.timeout.ms", "6000");
    conf_value(c, "client.id", "both");
    conf_value(p, "linger.ms", "9");
    conf_value(p, "client.id", "p");
    /* Left at librdkafka's defaults where they do not apply. */
    n = sizeof buf;
    assert_int_equal(rd_kafka_conf_get(p, "fetch.wait.max.ms", buf, &n), RD_KAFKA_CONF_OK);
    assert_string_not_equal(buf, "5");
    n = sizeof buf;
    assert_int_equal(rd_kafka_conf_get(c, "linger.ms", buf, &n), RD_KAFKA_CONF_OK);
    assert_string_not_equal(buf, "9");
    rd_kafka_conf_destroy(c);
    rd_kafka_conf_destroy(p);
    const char *wrong[] = {"consumer.linger.ms=1"};
    assert_int_equal(sf_kafka_props_check(wrong, 1, SF_KAFKA_FOR_CONSUMER | SF_KAFKA_FOR_PRODUCER, err,
                                          sizeof err), -1);
    assert_non_null(strstr(err, "linger.ms is a producer property"));
    const char *unknown[] = {"no.such.property=1"};
    assert_int_equal(sf_kafka_props_check(unknown, 1, SF_KAFKA_FOR_PRODUCER, err, sizeof err), -1);
    assert_non_null(strstr(err, "no.such.property"));
}

/* A Java client's JAAS line for PLAIN or SCRAM becomes librdkafka's username
 * and password, under its prefix; another module is refused with advice. */
static void jaas(void **state) {
    (void)state;
    sf_kafka_props p = {0};
    char err[512];
    assert_int_equal(sf_kafka_props_add(&p, "producer.sasl.jaas.config=org.apache.kafka.common.security.scram."
                                            "ScramLoginModule required username=\"al ice\" password=pw;",
                                        err, sizeof err), 0);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.kv[0], "producer.sasl.username=al ice");
    assert_string_equal(p.kv[1], "producer.sasl.password=pw");
    assert_int_equal(sf_kafka_props_add(&p, "sasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule "
                                            "required useKeyTab=true;", err, sizeof err), -1);
    assert_non_null(strstr(err, "sasl.kerberos.keytab"));
    assert_int_equal(sf_kafka_props_add(&p, "sasl.jaas.config=org.apache.kafka.common.security.plain."
                                            "PlainLoginModule required username=\"u\";", err, sizeof err), -1);
    assert_int_equal(p.n, 2);
    sf_kafka_props_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(file_lines_in_order),
        cmocka_unit_test(bad_line_names_file_and_line),
        cmocka_unit_test(cli_bad_line),
        cmocka_unit_test(cli_file_is_applied),
        cmocka_unit_test(scoped),
        cmocka_unit_test(jaas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
