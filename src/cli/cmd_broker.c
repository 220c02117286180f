/* cmd_broker.c: `sigflow broker`, the embedded Kafka-protocol broker as a
 * process, so kcat, the replay tool and the daemon can be tried locally with
 * no Kafka installation. It prints its address first thing (and can write it
 * to a file) because the port is ephemeral: scripts read it, never guess it. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "sigflow/args.h"
#include "sigflow/broker.h"
#include "sigflow/topics.h"
#include "sigflow/log.h"

#define MAX_TOPICS 64

static void usage(FILE *f) {
    fprintf(f,
        "usage: sigflow broker [--partitions N] [--topic NAME]... [--bootstrap-file PATH]\n"
        "\n"
        "Serves a Kafka-protocol broker on 127.0.0.1 (ephemeral port) until SIGINT or\n"
        "SIGTERM. Prints bootstrap=HOST:PORT as its first line. For development and\n"
        "tests only: it keeps about 5 MB per partition, in memory.\n"
        "\n"
        "  --partitions N         partitions per topic (default 8)\n"
        "  --topic NAME           topic to create (repeatable; default events,\n"
        "                         signals, events.dlq)\n"
        "  --bootstrap-file PATH  also write HOST:PORT to PATH (atomically; removed\n"
        "                         at exit)\n"
        "  --log-format F         stderr messages as text (default) or JSON lines\n");
}

/* Write to a temporary name, then rename: a reader never sees half a line. */
static int write_bootstrap_file(const char *path, const char *addr, char *errstr,
                                size_t errstr_size) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
        snprintf(errstr, errstr_size, "%s: path too long", path);
        return -1;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(errstr, errstr_size, "%s (temporary file): %s", path, strerror(errno));
        return -1;
    }
    int ok = fprintf(f, "%s\n", addr) > 0;
    ok = (fflush(f) == 0) & ok;
    ok = (fsync(fileno(f)) == 0) & ok;
    ok = (fclose(f) == 0) & ok;
    if (!ok || rename(tmp, path) != 0) {
        snprintf(errstr, errstr_size, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

int sf_cmd_broker(int argc, char **argv) {
    static const struct option longopts[] = {
        {"partitions", required_argument, NULL, 'p'},
        {"topic", required_argument, NULL, 't'},
        {"bootstrap-file", required_argument, NULL, 'o'},
        {"log-format", required_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *topics[MAX_TOPICS];
    size_t n_topics = 0;
    int partitions = 8;
    const char *bootstrap_file = NULL;
    char errstr[512];
    sf_cli cli = sf_args_cli("sigflow broker", argc, argv);
    sf_log_format log_format = cli.format;

    opterr = 0;
    optind = 1;
    int opt;
    while ((opt = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p': {
            long v;
            if (sf_args_long(optarg, 1, 10000, &v)) {
                sf_args_bad(&cli, "--partitions", optarg, "1..10000");
                return sf_args_try(&cli);
            }
            partitions = (int)v;
            break;
        }
        case 't':
            if (n_topics == MAX_TOPICS) {
                sf_args_usage(&cli, "more than %d topics", MAX_TOPICS);
                return sf_args_try(&cli);
            }
            if (sf_topic_check(optarg, errstr, sizeof errstr)) {
                sf_args_usage(&cli, "--topic '%s': %s", optarg, errstr);
                return sf_args_try(&cli);
            }
            topics[n_topics++] = optarg;
            break;
        case 'o': bootstrap_file = optarg; break;
        case 'L':
            if (sf_args_log_format(&cli, optarg, &log_format))
                return sf_args_try(&cli);
            break;
        case 'h': usage(stdout); return 0;
        default:
            sf_args_getopt_error(&cli, opt, argv);
            return sf_args_try(&cli);
        }
    }
    if (optind < argc) {
        sf_args_usage(&cli, "unexpected argument '%s'", argv[optind]);
        return sf_args_try(&cli);
    }
    if (n_topics == 0) {
        topics[n_topics++] = "events";
        topics[n_topics++] = "signals";
        topics[n_topics++] = "events.dlq";
    }

    /* Hold the stop signals before any thread exists, so every thread
     * inherits the mask and the wait below is the one place they land. */
    static sf_stop_flag stop;
    sf_args_signals(&stop, NULL);
    sf_args_hold_stop_signals();

    sf_broker *b;
    if (sf_broker_start(&b, partitions, topics, n_topics, errstr, sizeof errstr) != 0) {
        sf_log_cli(log_format, SF_LOG_ERROR, "sigflow broker", "%s", errstr);
        return 1;
    }
    const char *addr = sf_broker_bootstrap(b);
    if (bootstrap_file && write_bootstrap_file(bootstrap_file, addr, errstr, sizeof errstr) != 0) {
        sf_log_cli(log_format, SF_LOG_ERROR, "sigflow broker", "bootstrap file %s", errstr);
        sf_broker_stop(b);
        return 1;
    }
    printf("bootstrap=%s\n", addr);
    fflush(stdout);
    sf_log_cli(log_format, SF_LOG_INFO, "sigflow broker",
               "serving until SIGINT or SIGTERM topics=%zu partitions=%d bootstrap=%s", n_topics,
               partitions, addr);

    sf_args_wait_stop(&stop);
    if (bootstrap_file)
        unlink(bootstrap_file);
    sf_broker_stop(b);
    return 0;
}
