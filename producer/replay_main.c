/* replay_main.c: sigflow-replay, the command-line face of the replay engine
 * (src/replay.c): it replays an ATLAS Higgs CSV to a Kafka topic as JSON, the
 * job of the dist-keras example producer, with pacing, counters and exit codes
 * a script can trust. Only option parsing and printing live here. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "sigflow/args.h"
#include "sigflow/kafka.h"
#include "sigflow/replay.h"

#define MAX_X 64

/* Set by SIGINT/SIGTERM; the one piece of global state a CLI may keep. */
static volatile sig_atomic_t stop_flag;

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *f) {
    fprintf(f,
        "usage: sigflow-replay --brokers B --topic T --file PATH [options]\n"
        "\n"
        "Replays a CSV with a header row (plain or .gz) to a Kafka topic, one JSON\n"
        "object per row, keyed by the --key-field column.\n"
        "\n"
        "  -b, --brokers HOST:PORT,...  bootstrap servers (required)\n"
        "  -t, --topic NAME             topic to produce to (required)\n"
        "  -f, --file PATH              CSV file, plain or gzip (required)\n"
        "      --limit N                at most N events per pass\n"
        "      --loop N                 N passes over the file (default 1)\n"
        "      --forever                loop until SIGINT/SIGTERM\n"
        "      --interval SECONDS       pause between passes (default 0)\n"
        "      --rate EVENTS_PER_S      pace sending smoothly (default: flat out)\n"
        "      --key-field NAME         message key column (default EventId, \"\" = none)\n"
        "      --drop COL,...           columns left out (default %s)\n"
        "      --strict                 stop at the first bad row, exit 1\n"
        "      --timeout SECONDS        broker reachability and delivery bound (default 10)\n"
        "  -q, --quiet                  no progress line\n"
        "  -X key=value                 librdkafka producer property (repeatable)\n"
        "  -h, --help                   this text\n"
        "\n"
        "Prints one summary line on stdout at the end. Exit status: 0 all delivered,\n"
        "1 runtime failure (file, broker, failed delivery, strict bad row, every row\n"
        "bad), 2 usage.\n",
        SF_REPLAY_DEFAULT_DROP);
}

/* Strict numeric parsing: the whole argument, finite, in range. */
static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    if (!*s || *s == '-')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int is_tty;

static void on_bad_row(void *opaque, const char *msg) {
    (void)opaque;
    fprintf(stderr, "%ssigflow-replay: %s\n", is_tty ? "\r\033[K" : "", msg);
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
           O_TIMEOUT };
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
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *brokers = NULL, *topic = NULL, *xprops[MAX_X];
    size_t n_x = 0;
    int quiet = 0, forever = 0, loop_given = 0;
    double timeout_s = 10;
    sf_replay_opts o;
    sf_replay_opts_init(&o);

    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":b:t:f:qX:h", longopts, NULL)) != -1) {
        const char *bad = NULL;
        switch (opt) {
        case 'b': brokers = optarg; break;
        case 't': topic = optarg; break;
        case 'f': o.path = optarg; break;
        case 'q': quiet = 1; break;
        case 'h': usage(stdout); return 0;
        case 'X':
            if (n_x == MAX_X) {
                fprintf(stderr, "sigflow-replay: more than %d -X options\n", MAX_X);
                return 2;
            }
            xprops[n_x++] = optarg;
            break;
        case O_LIMIT:
            if (parse_u64(optarg, &o.limit) != 0 || o.limit == 0)
                bad = "--limit wants a positive integer";
            break;
        case O_LOOP:
            if (parse_u64(optarg, &o.passes) != 0 || o.passes == 0)
                bad = "--loop wants a positive integer";
            loop_given = 1;
            break;
        case O_FOREVER: forever = 1; break;
        case O_INTERVAL:
            if (sf_args_double(optarg, 0, 1e9, &o.interval) != 0)
                bad = "--interval wants a number of seconds >= 0";
            break;
        case O_RATE:
            if (sf_args_double(optarg, 0, 1e12, &o.rate) != 0 || o.rate == 0)
                bad = "--rate wants a positive number of events per second";
            break;
        case O_KEY: o.key_field = optarg; break;
        case O_DROP: o.drop = optarg; break;
        case O_STRICT: o.strict = 1; break;
        case O_TIMEOUT:
            if (sf_args_double(optarg, 0, 1e9, &timeout_s) != 0 || timeout_s < 0.1 || timeout_s > 3600)
                bad = "--timeout wants seconds between 0.1 and 3600";
            break;
        case ':':
            fprintf(stderr, "sigflow-replay: option '%s' needs a value (see --help)\n",
                    argv[optind - 1]);
            return 2;
        default:
            if (optopt)
                fprintf(stderr, "sigflow-replay: unknown option '-%c' (see --help)\n", optopt);
            else
                fprintf(stderr, "sigflow-replay: unknown option '%s' (see --help)\n",
                        argv[optind - 1]);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "sigflow-replay: %s, not '%s'\n", bad, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sigflow-replay: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (!brokers || !topic || !o.path) {
        fprintf(stderr, "sigflow-replay: --brokers, --topic and --file are required (see --help)\n");
        return 2;
    }
    if (forever && loop_given) {
        fprintf(stderr, "sigflow-replay: --loop and --forever exclude each other\n");
        return 2;
    }
    if (forever)
        o.passes = 0;
    o.timeout_ms = (int)(timeout_s * 1000);

    char errstr[512], tmo[32];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    snprintf(tmo, sizeof tmo, "%d", o.timeout_ms);
    /* librdkafka's own log lines would repeat every connection failure; the
     * run reports one clear error instead (-X log_level=7 brings them back). */
    if (sf_replay_conf_init(conf, errstr, sizeof errstr) != 0 ||
        sf_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof errstr) != 0 ||
        sf_kafka_conf_set(conf, "message.timeout.ms", tmo, errstr, sizeof errstr) != 0 ||
        sf_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr) != 0) {
        fprintf(stderr, "sigflow-replay: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    for (size_t i = 0; i < n_x; i++) {
        if (sf_kafka_conf_set_kv(conf, xprops[i], errstr, sizeof errstr) != 0) {
            fprintf(stderr, "sigflow-replay: %s\n", errstr);
            rd_kafka_conf_destroy(conf);
            return 2;
        }
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!rk) {
        fprintf(stderr, "sigflow-replay: cannot create the producer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    /* SA_RESETHAND: a second Ctrl-C while flushing kills at once. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    is_tty = isatty(STDERR_FILENO);
    o.on_bad_row = on_bad_row;
    if (is_tty && !quiet)
        o.on_progress = on_progress;

    sf_replay_stats st;
    int rc = sf_replay_run(rk, topic, &o, &st, &stop_flag, errstr, sizeof errstr);
    if (o.on_progress)
        fputs("\r\033[K", stderr);
    rd_kafka_destroy(rk);

    if (rc != 0)
        fprintf(stderr, "sigflow-replay: %s\n", errstr);
    else if (st.read > 0 && st.skipped == st.read)
        fprintf(stderr, "sigflow-replay: nothing sent: all %llu rows were bad\n",
                (unsigned long long)st.read);
    else if (st.failed > 0)
        fprintf(stderr, "sigflow-replay: %llu deliveries failed, first: %s\n",
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
