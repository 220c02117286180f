/* replay_main.c: sigflow-replay, the command-line face of the replay engine
 * (src/replay.c): it replays an ATLAS Higgs CSV to a Kafka topic as JSON, the
 * job of the dist-keras example producer, with pacing, counters and exit codes
 * a script can trust. Only option parsing and printing live here. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "sigflow/args.h"
#include "sigflow/kafka.h"
#include "sigflow/log.h"
#include "sigflow/replay.h"
#include "sigflow/topics.h"
#include "sigflow/version.h"

#define PROG "sigflow-replay"

/* Set by SIGINT/SIGTERM (args.h). */
static sf_stop_flag stop_flag;

static void usage(FILE *f) {
    fprintf(f,
        "usage: sigflow-replay --brokers B --topic T --file PATH [options]\n"
        "\n"
        "Replays a CSV with a header row (plain or .gz) to a Kafka topic, one JSON\n"
        "object per row, keyed by the --key-field column.\n"
        "\n"
        "  -b, --brokers HOST:PORT,...  bootstrap servers (required)\n"
        "  -t, --topic NAME             topic to produce to (required); created when\n"
        "                               missing (Admin API)\n"
        "      --partitions N           partitions of a topic created (default: the broker's)\n"
        "      --replication-factor R   replicas of a topic created (default: the broker's)\n"
        "  -f, --file PATH              CSV file, plain or gzip (required)\n"
        "      --limit N                at most N events per pass\n"
        "      --loop N                 N passes over the file (default 1)\n"
        "      --forever                loop until SIGINT/SIGTERM\n"
        "      --interval SECONDS       pause between passes (default 0)\n"
        "      --rate EVENTS_PER_S      pace sending smoothly (default: flat out)\n"
        "      --key-field NAME         message key column (default EventId, \"\" = none)\n"
        "      --drop COL,...           columns left out (default %s)\n"
        "      --strict                 stop at the first bad row, exit 1\n"
        "      --truth-topic T          also publish each event's label to T, as\n"
        "                               {\"EventId\": ..., \"Label\": \"s\"}\n"
        "      --truth-delay-s D        seconds after its event (default 0)\n"
        "      --timeout SECONDS        broker reachability and delivery bound (default 10)\n"
        "  -q, --quiet                  no progress line\n"
        "      --log-format FORMAT      stderr messages as text (default) or JSON lines\n"
        "  -X key=value                 librdkafka producer property (repeatable)\n"
        "  -F FILE                      librdkafka properties file: key=value lines,\n"
        "                               # comments (in order with -X)\n"
        "  -h, --help                   this text\n"
        "      --version                versions of sigflow-replay and its libraries\n"
        "\n"
        "Prints one summary line on stdout at the end. Exit status: 0 all delivered,\n"
        "1 runtime failure (file, broker, failed delivery, strict bad row, every row\n"
        "bad), 2 usage.\n",
        SF_REPLAY_DEFAULT_DROP);
}

/* A positive count for --limit and --loop. */
static int parse_count(const char *s, uint64_t *out) {
    long v;
    if (sf_args_long(s, 1, LONG_MAX, &v))
        return -1;
    *out = (uint64_t)v;
    return 0;
}

static int is_tty;

/* opaque: the sf_log_format of --log-format. */
static void on_bad_row(void *opaque, const char *msg) {
    if (*(const sf_log_format *)opaque == SF_LOG_JSON) {
        sf_log_cli(SF_LOG_JSON, SF_LOG_WARN, PROG, "bad row error=\"%s\"", msg);
    } else {
        if (is_tty) /* over the progress line */
            fputs("\r\033[K", stderr);
        sf_log_cli(SF_LOG_TEXT, SF_LOG_WARN, PROG, "%s", msg);
    }
}

static void on_progress(void *opaque, const sf_replay_stats *st, uint64_t in_flight) {
    (void)opaque;
    double rate = st->seconds > 0 ? (double)st->delivered / st->seconds : 0;
    fprintf(stderr, "\r\033[K%10.0f ev/s  delivered %llu  in flight %llu  skipped %llu", rate,
            (unsigned long long)st->delivered, (unsigned long long)in_flight,
            (unsigned long long)st->skipped);
}

int main(int argc, char **argv) {
    enum { O_LIMIT = 256, O_LOOP, O_FOREVER, O_INTERVAL, O_RATE, O_KEY, O_DROP, O_STRICT,
           O_TIMEOUT, O_LOGF, O_PARTS, O_RF, O_TRUTH, O_TRUTH_DELAY };
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"file", required_argument, NULL, 'f'},
        {"limit", required_argument, NULL, O_LIMIT},
        {"loop", required_argument, NULL, O_LOOP},
        {"forever", no_argument, NULL, O_FOREVER},
        {"interval", required_argument, NULL, O_INTERVAL},
        {"rate", required_argument, NULL, O_RATE},
        {"key-field", required_argument, NULL, O_KEY},
        {"drop", required_argument, NULL, O_DROP},
        {"strict", no_argument, NULL, O_STRICT},
        {"truth-topic", required_argument, NULL, O_TRUTH},
        {"truth-delay-s", required_argument, NULL, O_TRUTH_DELAY},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"partitions", required_argument, NULL, O_PARTS},
        {"replication-factor", required_argument, NULL, O_RF},
        {"quiet", no_argument, NULL, 'q'},
        {"log-format", required_argument, NULL, O_LOGF},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *brokers = NULL, *topic = NULL;
    sf_kafka_props props = {0};
    char errstr[512];
    int quiet = 0, forever = 0, loop_given = 0;
    double timeout_s = 10;
    sf_log_format log_format = SF_LOG_TEXT;
    sf_replay_opts o;
    sf_replay_opts_init(&o);

    sf_cli cli = sf_args_cli(PROG, argc, argv);
    log_format = cli.format;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":b:t:f:qX:F:h", longopts, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case 'b': brokers = optarg; break;
        case 't': topic = optarg; break;
        case 'f': o.path = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); sf_kafka_props_free(&props); return 0;
        case 'V': sf_version_print(stdout, PROG); sf_kafka_props_free(&props); return 0;
        case 'X':
        case 'F':
            if ((opt == 'X' ? sf_kafka_props_add(&props, optarg, errstr, sizeof errstr)
                            : sf_kafka_props_load(&props, optarg, errstr, sizeof errstr)))
                bad = sf_args_usage(&cli, "%s", errstr);
            break;
        case O_LIMIT:
            if (parse_count(optarg, &o.limit))
                bad = sf_args_bad(&cli, "--limit", optarg, "a positive integer");
            break;
        case O_LOOP:
            if (parse_count(optarg, &o.passes))
                bad = sf_args_bad(&cli, "--loop", optarg, "a positive integer");
            loop_given = 1;
            break;
        case O_FOREVER: forever = 1; break;
        case O_INTERVAL:
            if (sf_args_double(optarg, 0, 1e9, &o.interval))
                bad = sf_args_bad(&cli, "--interval", optarg, "a number of seconds >= 0");
            break;
        case O_RATE:
            if (sf_args_double(optarg, 0, 1e12, &o.rate) || o.rate == 0)
                bad = sf_args_bad(&cli, "--rate", optarg, "a positive number of events per second");
            break;
        case O_LOGF: bad |= sf_args_log_format(&cli, optarg, &log_format); break;
        case O_KEY: o.key_field = optarg; break;
        case O_DROP: o.drop = optarg; break;
        case O_STRICT: o.strict = 1; break;
        case O_TRUTH: o.truth_topic = optarg; break;
        case O_TRUTH_DELAY:
            if (sf_args_double(optarg, 0, 86400, &o.truth_delay_s))
                bad = sf_args_bad(&cli, "--truth-delay-s", optarg, "seconds in 0..86400");
            break;
        case O_PARTS:
        case O_RF: {
            long v;
            if (sf_args_long(optarg, 1, opt == O_PARTS ? 100000 : 1000, &v))
                bad = sf_args_bad(&cli, opt == O_PARTS ? "--partitions" : "--replication-factor",
                                  optarg, opt == O_PARTS ? "an integer in 1..100000"
                                                         : "an integer in 1..1000");
            *(opt == O_PARTS ? &o.partitions : &o.replication_factor) = (int)v;
            break;
        }
        case O_TIMEOUT:
            if (sf_args_double(optarg, 0.1, 3600, &timeout_s))
                bad = sf_args_bad(&cli, "--timeout", optarg, "seconds between 0.1 and 3600");
            break;
        default:
            bad = sf_args_getopt_error(&cli, opt, argv);
        }
        if (bad) {
            sf_kafka_props_free(&props);
            return sf_args_try(&cli);
        }
    }
    int bad = 0;
    if (!brokers) /* a Java client's properties file names them */
        brokers = sf_kafka_props_get(&props, "bootstrap.servers");
    if (optind < argc)
        bad = sf_args_usage(&cli, "unexpected argument '%s'", argv[optind]);
    else if (!brokers || !topic || !o.path)
        bad = sf_args_usage(&cli, "--brokers, --topic and --file are required");
    else if (forever && loop_given)
        bad = sf_args_usage(&cli, "--loop and --forever exclude each other");
    if (bad) {
        sf_kafka_props_free(&props);
        return sf_args_try(&cli);
    }
    if (sf_topic_check(topic, errstr, sizeof errstr)) {
        sf_args_usage(&cli, "--topic '%s': %s", topic, errstr);
        sf_kafka_props_free(&props);
        return sf_args_try(&cli);
    }
    if (forever)
        o.passes = 0;
    o.timeout_ms = (int)(timeout_s * 1000);

    char tmo[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    sf_kafka_conf_log(conf, log_format);
    snprintf(tmo, sizeof tmo, "%d", o.timeout_ms);
    /* librdkafka's own log lines would repeat every connection failure; the
     * run reports one clear error instead (-X log_level=7 brings them back). */
    int setup_rc = 0;
    if (sf_replay_conf_init(conf, errstr, sizeof errstr) != 0 ||
        sf_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr) != 0 ||
        sf_kafka_conf_set(conf, "message.timeout.ms", tmo, errstr, sizeof errstr) != 0 ||
        sf_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr) != 0)
        setup_rc = 1;
    else if (sf_kafka_props_apply(conf, SF_KAFKA_FOR_PRODUCER, (const char *const *)props.kv, props.n, errstr,
                                  sizeof errstr) != 0)
        setup_rc = 2; /* the user's property: a usage error */
    sf_kafka_props_free(&props);
    if (setup_rc) {
        if (setup_rc == 2)
            sf_args_usage(&cli, "%s", errstr);
        else
            sf_log_cli(log_format, SF_LOG_ERROR, PROG, "%s", errstr);
        rd_kafka_conf_destroy(conf);
        return setup_rc == 2 ? sf_args_try(&cli) : 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        sf_log_cli(log_format, SF_LOG_ERROR, PROG, "cannot create the producer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    /* A second Ctrl-C while flushing kills at once (args.h). */
    sf_args_signals(&stop_flag, NULL);

    is_tty = isatty(STDERR_FILENO);
    o.on_bad_row = on_bad_row;
    o.opaque = &log_format;
    /* The progress line rewrites itself on a terminal; JSON lines never do. */
    if (is_tty && !quiet && log_format == SF_LOG_TEXT)
        o.on_progress = on_progress;

    sf_replay_stats st;
    int rc = sf_replay_run(rk, topic, &o, &st, &stop_flag, errstr, sizeof errstr);
    if (o.on_progress)
        fputs("\r\033[K", stderr);
    rd_kafka_destroy(rk);

    if (st.created_topic && o.partitions > 0 && st.created_partitions != o.partitions)
        sf_log_cli(log_format, SF_LOG_WARN, PROG, "created topic %s with %d partitions, not the "
                   "%d asked: this cluster has no Admin API (the embedded broker) and chose its "
                   "own", topic, st.created_partitions, o.partitions);
    else if (st.created_topic)
        sf_log_cli(log_format, SF_LOG_INFO, PROG, "created topic %s with %d partitions", topic,
                   st.created_partitions);
    if (rc != 0)
        sf_log_cli(log_format, SF_LOG_ERROR, PROG, "%s", errstr);
    else if (st.read > 0 && st.skipped == st.read)
        sf_log_cli(log_format, SF_LOG_ERROR, PROG, "nothing sent: all %llu rows were bad",
                   (unsigned long long)st.read);
    else if (st.failed > 0)
        sf_log_cli(log_format, SF_LOG_ERROR, PROG, "%llu deliveries failed, first: %s",
                   (unsigned long long)st.failed, st.error);
    /* The summary is printed even after an error: what got through matters. */
    if (rc == 0 || st.read > 0 || st.sent > 0)
        printf("read=%llu sent=%llu delivered=%llu failed=%llu skipped=%llu seconds=%.3f "
               "rate=%.0f/s\n",
               (unsigned long long)st.read, (unsigned long long)st.sent,
               (unsigned long long)st.delivered, (unsigned long long)st.failed,
               (unsigned long long)st.skipped, st.seconds,
               st.seconds > 0 ? (double)st.delivered / st.seconds : 0.0);
    return rc != 0 || st.failed > 0 || (st.read > 0 && st.skipped == st.read) ? 1 : 0;
}
