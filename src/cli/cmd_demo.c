/* cmd_demo.c: `sigflow demo`, the whole product on one machine in one process:
 * the embedded broker, a replay of the bundled ATLAS sample into `events`, and
 * the pipeline with the shipped model, run until every event is processed. */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigflow/broker.h"
#include "sigflow/clock.h"
#include "sigflow/kafka.h"
#include "sigflow/paths.h"
#include "sigflow/args.h"
#include "sigflow/modelset.h"
#include "sigflow/pipeline.h"
#include "sigflow/replay.h"
#include "commands.h"

#define DEMO_TIMEOUT_MS 120000
#define SHOWN_SIGNALS 3

/* Set by SIGINT/SIGTERM (args.h). */
static sf_stop_flag interrupted;

typedef struct {
    sf_pipeline_conf conf;
    int rc;
    char err[1024];
    atomic_int finished; /* the pipeline returned (say, on a fatal Kafka error) */
} pipeline_job;

static void *pipeline_thread(void *arg) {
    pipeline_job *job = arg;
    job->rc = sf_pipeline_run(&job->conf, job->err, sizeof job->err);
    atomic_store(&job->finished, 1);
    return NULL;
}

/* Prints the first few published signals, read back from the output topic. */
static void show_signals(const char *brokers, const char *topic, int partitions, sf_log_format f) {
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    sf_kafka_conf_log(conf, f);
    if (sf_kafka_conf_set(conf, "bootstrap.servers", brokers, err, sizeof err) ||
        sf_kafka_conf_set(conf, "group.id", "sigflow-demo-reader", err, sizeof err)) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(partitions);
    for (int i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(l, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    printf("first published signals:\n");
    int shown = 0;
    int64_t deadline = sf_clock_ms() + 5000;
    while (shown < SHOWN_SIGNALS && sf_clock_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err) {
            printf("  %.*s\n", (int)m->len, (const char *)m->payload);
            shown++;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static const char usage[] =
    "usage: sigflow demo [--model PATH --variables PATH | --model SET.json] [--file CSV]\n"
    "                    [--limit N]\n"
    "                    [--batch-size N] [--batch-wait-ms MS] [--log-level L]\n"
    "                    [--backend auto|openblas|onednn] [--precision fp32|bf16|int8]\n"
    "                    [--log-format text|json] [--unsafe-model-loader]\n"
    "\n"
    "Starts the embedded broker, replays the bundled ATLAS Higgs sample into 'events',\n"
    "runs the pipeline with the shipped model until every event is processed, and\n"
    "prints a summary.\n";

int sf_cmd_demo(int argc, char **argv) {
    /* The shipped model and sample, found next to the executable (build tree
     * or install prefix); a missing one fails at load, naming the path. */
    char model_path[4096], vars_path[4096], sample_path[4096];
    sf_paths_data(SF_PATHS_MODEL, model_path, sizeof model_path);
    sf_paths_data(SF_PATHS_VARIABLES, vars_path, sizeof vars_path);
    sf_paths_data(SF_PATHS_SAMPLE, sample_path, sizeof sample_path);
    const char *file = sample_path;
    pipeline_job job;
    sf_pipeline_conf *c = &job.conf;
    sf_pipeline_conf_init(c);
    c->engine.model_path = model_path;
    c->engine.vars_path = vars_path;
    c->dlq_topic = "events.dlq";
    c->group = "sigflow-demo";
    c->log_level = SF_LOG_WARN;
    long limit = 0, v;
    enum { O_BW = 256, O_LOG, O_LOGF };
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'}, {"variables", required_argument, NULL, SF_ARGS_O_VARS},
        {"file", required_argument, NULL, 'f'}, {"limit", required_argument, NULL, 'n'},
        {"batch-size", required_argument, NULL, SF_ARGS_O_BATCH},
        {"batch-wait-ms", required_argument, NULL, O_BW},
        {"log-level", required_argument, NULL, O_LOG}, {"help", no_argument, NULL, 'h'},
        {"backend", required_argument, NULL, SF_ARGS_O_BACKEND},
        {"precision", required_argument, NULL, SF_ARGS_O_PRECISION},
        {"unsafe-model-loader", no_argument, NULL, SF_ARGS_O_UNSAFE_LOADER},
        {"log-format", required_argument, NULL, O_LOGF},
        {NULL, 0, NULL, 0}};
    sf_cli cli = sf_args_cli("sigflow demo", argc, argv);
    c->log_format = cli.format;
    int opt, bad = 0;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        if (sf_args_engine(&cli, opt, optarg, &c->engine, &bad))
            continue;
        switch (opt) {
        case 'f': file = optarg; break;
        case 'n':
            if (sf_args_long(optarg, 1, 100000000, &limit))
                bad = sf_args_bad(&cli, "--limit", optarg, "a positive integer");
            break;
        case O_BW:
            if (sf_args_long(optarg, 0, 60000, &v))
                bad = sf_args_bad(&cli, "--batch-wait-ms", optarg, "an integer in 0..60000");
            c->batch_wait_ms = (int)v;
            break;
        case O_LOG:
            if (sf_log_level_parse(optarg, &c->log_level))
                bad = sf_args_bad(&cli, "--log-level", optarg, "error, warn, info or debug");
            break;
        case O_LOGF: bad |= sf_args_log_format(&cli, optarg, &c->log_format); break;
        case 'h': fputs(usage, stdout); return 0;
        default: bad = sf_args_getopt_error(&cli, opt, argv);
        }
    }
    if (!bad && optind < argc)
        bad = sf_args_usage(&cli, "unexpected argument '%s'", argv[optind]);
    if (bad)
        return sf_args_try(&cli);
#define SAY(...) sf_log_cli(c->log_format, SF_LOG_ERROR, cli.prog, __VA_ARGS__)
    /* A set's members carry their own variables; the shipped file is not theirs
     * (still vars_path: no --variables given). */
    if (c->engine.vars_path == vars_path && sf_modelset_is_set(c->engine.model_path))
        c->engine.vars_path = NULL;

    char err[1024];
    /* The model first, while this process has one thread (pipeline.h), and
     * so that a bad one is refused before anything starts. */
    c->engine.loader.log_format = c->log_format;
    if (sf_engine_load(&c->loaded, &c->engine, err, sizeof err)) {
        SAY("%s", err);
        return 2;
    }
    static const char *const topics[] = {"events", "signals", "events.dlq"};
    const int partitions = 8;
    sf_broker *broker = NULL;
    if (sf_broker_start(&broker, partitions, topics, 3, err, sizeof err)) {
        SAY("%s", err);
        sf_engine_free(c->loaded);
        return 1;
    }
    const char *bootstrap = sf_broker_bootstrap(broker);
    printf("embedded broker at %s (topics events, signals, events.dlq; %d partitions)\n", bootstrap,
           partitions);

    atomic_int stop = 0;
    sf_metrics *metrics = sf_metrics_new();
    c->brokers = bootstrap;
    c->stop = &stop;
    c->metrics = metrics;
    c->metrics_addr = NULL;
    sf_args_signals(&interrupted, NULL);

    /* The pipeline consumes while the replay produces: the embedded broker keeps
     * only a few MB per partition, so streaming concurrently is what a real
     * deployment looks like anyway. */
    double t0 = sf_clock_s();
    pthread_t tid;
    job.rc = 0;
    atomic_init(&job.finished, 0);
    if (pthread_create(&tid, NULL, pipeline_thread, &job)) {
        SAY("cannot start the pipeline thread");
        sf_engine_free(c->loaded);
        sf_metrics_free(metrics);
        sf_broker_stop(broker);
        return 1;
    }

    sf_replay_opts ro;
    sf_replay_opts_init(&ro);
    ro.path = file;
    ro.limit = (uint64_t)limit;
    sf_replay_stats rs;
    rd_kafka_conf_t *pconf = rd_kafka_conf_new();
    sf_kafka_conf_log(pconf, c->log_format);
    rd_kafka_t *producer = NULL;
    int rc = 1;
    if (sf_replay_conf_init(pconf, err, sizeof err) == 0 &&
        sf_kafka_conf_set(pconf, "bootstrap.servers", bootstrap, err, sizeof err) == 0)
        producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
    if (!producer)
        rd_kafka_conf_destroy(pconf);
    else if (sf_replay_run(producer, "events", &ro, &rs, &interrupted, err, sizeof err) == 0 &&
             rs.failed == 0)
        rc = 0;
    if (producer)
        rd_kafka_destroy(producer);
    if (rc)
        SAY("replay failed: %s", err);
    else
        printf("replayed %" PRIu64 " events in %.2f s\n", rs.delivered, rs.seconds);

    /* Every replayed event consumed and scored, then the pipeline drains on stop. */
    int64_t deadline = sf_clock_ms() + DEMO_TIMEOUT_MS;
    double first = 0; /* when the group had formed and the first batch was scored */
    while (rc == 0 && !atomic_load(&interrupted) && !atomic_load(&job.finished) &&
           sf_metrics_get(metrics, SF_C_CONSUMED) < rs.delivered) {
        if (first == 0 && sf_metrics_get(metrics, SF_C_CONSUMED) > 0)
            first = sf_clock_s();
        if (sf_clock_ms() > deadline) {
            SAY("only %" PRIu64 " of %" PRIu64 " events processed after %d s",
                    sf_metrics_get(metrics, SF_C_CONSUMED), rs.delivered, DEMO_TIMEOUT_MS / 1000);
            rc = 1;
            break;
        }
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    double done = sf_clock_s();
    atomic_store(&stop, 1);
    pthread_join(tid, NULL);
    if (job.rc) {
        SAY("pipeline: %s", job.err);
        rc = 1;
    }

    uint64_t consumed = sf_metrics_get(metrics, SF_C_CONSUMED);
    uint64_t rejected = sf_metrics_rejected_total(metrics);
    printf("events in:          %" PRIu64 "\n", consumed);
    printf("predicted:          %" PRIu64 "\n", sf_metrics_get(metrics, SF_C_PREDICTED));
    printf("signals published:  %" PRIu64 "\n", sf_metrics_get(metrics, SF_C_SIGNALS));
    printf("dead letters:       %" PRIu64 " (%" PRIu64 " rejected)\n",
           sf_metrics_get(metrics, SF_C_DEAD_LETTERS), rejected);
    printf("batches:            %" PRIu64 "\n", sf_metrics_get(metrics, SF_C_BATCHES));
    char inf[512];
    sf_metrics_get_inference(metrics, inf, sizeof inf);
    printf("forward pass:       %s\n", inf);
    printf("elapsed:            %.2f s, of which %.2f s joining the consumer group\n", done - t0,
           (first ? first : done) - t0);
    if (first && done > first)
        printf("throughput:         %.0f events/s once consuming\n", (double)consumed / (done - first));
    if (rc == 0)
        show_signals(bootstrap, "signals", partitions, c->log_format);
    sf_metrics_free(metrics);
    sf_broker_stop(broker);
    return rc;
}
