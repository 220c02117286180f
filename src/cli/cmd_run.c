/* cmd_run.c: `sigflow run`, the daemon. Parses flags into an sf_pipeline_conf,
 * turns SIGINT/SIGTERM into a drain-and-exit and SIGHUP into a model reload. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sigflow/args.h"
#include "sigflow/http.h"
#include "sigflow/kafka.h"
#include "sigflow/pipeline.h"
#include "commands.h"

/* What the signals ask of the main loop (args.h). */
static sf_stop_flag stop_flag;
static atomic_int reload_flag;

static const char usage[] =
    "usage: sigflow run --brokers B --model PATH --variables PATH [options]\n"
    "       sigflow run --brokers B --model SET.json [options]\n"
    "\n"
    "Consume JSON events, classify them in micro-batches, publish the signals.\n"
    "\n"
    "  -b, --brokers B        Kafka bootstrap servers (host:port,...); or bootstrap.servers\n"
    "                         in a -F file\n"
    "  --input-topic T        events to classify (default events); several as T1,T2 or\n"
    "                         repeated; ^REGEX subscribes to every matching topic\n"
    "  --output-topic T       where predictions go (default signals)\n"
    "  --dlq-topic T          where malformed events go, with the reason in headers\n"
    "                         (default: none, they are logged and counted)\n"
    "  --create-topics        create a missing output, dead-letter or shadow topic\n"
    "                         (default: a missing one is an error naming it)\n"
    "  --group G              consumer group (default sigflow)\n"
    "  -m, --model PATH       Keras model: HDF5 (.h5; whole model, or weights with\n"
    "                         --architecture), a .keras archive or an ONNX model;\n"
    "                         or a model set (JSON: members with their own\n"
    "                         variables)\n"
    "  --architecture PATH    model.to_json() file for a weights-only HDF5\n"
    "  --onnx-output NAME     ONNX: the graph output to serve (default: the only float\n"
    "                         output, or the one named like probabilities)\n"
    "  --variables PATH       lwtnn-style inputs file (names, offset, scale, labels)\n"
    "  --id-field F           event id copied to outputs and used as key (default EventId)\n"
    "  --signal-label L       the label that means signal (default: 's' or 'signal')\n"
    "  --threshold P          publish when P(signal) >= P instead of when it is the argmax\n"
    "  --emit signal|all      publish signals only (default) or every prediction\n"
    "  --emit-members         a set: add each member's probabilities to the outputs\n"
    "  --headers pass|none    copy the input's headers to its output (default pass;\n"
    "                         dead letters always keep them)\n"
    "  --batch-size N         events per micro-batch (default 512)\n"
    "  --batch-wait-ms MS     longest wait of a batch's first event for more (default 0:\n"
    "                         the events that have arrived)\n"
    "  --normalize MODE       standard (default), l2 or none\n"
    "  --max-event-bytes N    larger events are dead letters (default 1048576)\n"
    "  --exactly-once         Kafka transactions: outputs and offsets commit together\n"
    "  --transactional-id ID  stable id of this instance (default sigflow-GROUP-HOST)\n"
    "  --metrics-addr A       HOST:PORT for /metrics, /healthz, /readyz, or none\n"
    "                         (default 127.0.0.1:9464)\n"
    "  --connect-timeout-ms N give up when brokers are unreachable at start (default 10000)\n"
    SF_ARGS_DRIFT_USAGE
    "  --truth-topic T        join delayed truth ({\"EventId\": ..., \"Label\": \"s\"}) with the\n"
    "                         predictions: live accuracy, AUC, log loss, ECE per model\n"
    "  --truth-field F        the truth's label field (default Label)\n"
    "  --truth-id-field F     the truth's event id field (default EventId)\n"
    "  --truth-window-events N  predictions held for their truth, and the quality\n"
    "                         window, in events (default 100000; ~64 bytes each)\n"
    "  --truth-window-s S     also drop predictions older than S seconds\n"
    "  --shadow-model M       also score every batch with M (a model, or a set), never\n"
    "                         on the output topic: label agreement, |dp| histogram,\n"
    "                         live quality\n"
    "  --shadow-variables V   the shadow's variables file (a single model)\n"
    "  --shadow-topic T       publish the shadow's selected outputs to T (default: none),\n"
    "                         with headers sigflow-model (its digest), sigflow-shadow: 1\n"
    SF_ARGS_INFER_USAGE
    SF_ARGS_LOADER_USAGE
    "  --log-level L          error, warn, info (default) or debug\n"
    "  --log-format F         text (default) or json: one object per line\n"
    "  -X key=value           librdkafka property: consumer.key=value for the consumer,\n"
    "                         producer.key=value for the producer, unprefixed for each\n"
    "                         client it applies to (default auto.offset.reset=earliest)\n"
    "  -F FILE                properties file, as a Java Kafka client's: key=value lines,\n"
    "                         # comments, bootstrap.servers, PLAIN/SCRAM sasl.jaas.config\n"
    "                         (keeps secrets out of the process list; in order with -X)\n"
    "\n"
    "  --print-config         print the effective configuration (secrets masked) and exit\n"
    "  -h, --help             this text\n"
    "\n"
    "Every option can come from the environment: SIGFLOW_BROKERS, SIGFLOW_BATCH_SIZE, ...\n"
    "(SIGFLOW_ + the option in capitals, '-' as '_'), librdkafka properties from\n"
    "SIGFLOW_KAFKA_<NAME> (SIGFLOW_KAFKA_SASL_PASSWORD is sasl.password). Flags win.\n"
    "SIGFLOW_MODEL_LOAD_TIMEOUT: seconds a model load may take (default 10).\n"
    "SIGINT/SIGTERM drain the batch in flight, commit and exit 0. SIGHUP reloads the model.\n"
    "Exit status: 0 stopped, 1 runtime failure, 2 usage error or model refused.\n";

/* What run would use, one option=value per line (the long option names;
 * librdkafka properties from -X, -F and SIGFLOW_KAFKA_* as kafka.NAME=VALUE in
 * the order applied, secrets masked), for an operator checking what flags,
 * SIGFLOW_* variables and defaults add up to. */
static void print_config(const sf_pipeline_conf *c) {
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    const sf_engine_conf *e = &c->engine;
    printf("brokers=%s\n", c->brokers);
    printf("input-topic=");
    for (size_t i = 0; i < c->n_input_topics; i++)
        printf("%s%s", i ? "," : "", c->input_topics[i]);
    printf("%s\n", c->n_input_topics ? "" : c->input_topic);
    printf("create-topics=%s\n", c->create_topics ? "true" : "false");
    printf("output-topic=%s\n", c->output_topic);
    printf("dlq-topic=%s\n", c->dlq_topic ? c->dlq_topic : "");
    printf("group=%s\n", c->group);
    printf("model=%s\n", e->model_path);
    printf("architecture=%s\n", e->arch_path ? e->arch_path : "");
    printf("onnx-output=%s\n", e->onnx_output ? e->onnx_output : "");
    printf("variables=%s\n", e->vars_path ? e->vars_path : "");
    printf("id-field=%s\n", e->id_field ? e->id_field : "");
    printf("signal-label=%s\n", e->signal_label ? e->signal_label : "");
    if (e->threshold >= 0)
        printf("threshold=%.17g\n", e->threshold);
    else
        printf("threshold=\n");
    printf("emit=%s\n", e->emit == SF_EMIT_ALL ? "all" : "signal");
    printf("emit-members=%s\n", c->emit_members ? "true" : "false");
    printf("headers=%s\n", c->drop_headers ? "none" : "pass");
    printf("batch-size=%zu\n", e->batch_size);
    printf("batch-wait-ms=%d\n", c->batch_wait_ms);
    printf("normalize=%s\n", e->norm == SF_NORM_L2 ? "l2" : e->norm == SF_NORM_NONE ? "none" : "standard");
    printf("max-event-bytes=%zu\n", c->max_event_bytes);
    printf("exactly-once=%s\n", c->exactly_once ? "true" : "false");
    printf("transactional-id=%s\n", c->transactional_id ? c->transactional_id : "");
    printf("metrics-addr=%s\n", c->metrics_addr ? c->metrics_addr : "none");
    printf("connect-timeout-ms=%d\n", c->connect_timeout_ms);
    printf("drift-window-events=%zu\n", c->drift.window_events);
    printf("drift-window-s=%g\n", c->drift.window_s);
    printf("drift-warn-psi=%g\n", c->drift.warn_psi);
    printf("truth-topic=%s\n", c->truth_topic ? c->truth_topic : "");
    printf("truth-field=%s\n", c->truth_field);
    printf("truth-id-field=%s\n", c->truth_id_field);
    printf("truth-window-events=%zu\n", c->truth.window_events);
    printf("truth-window-s=%g\n", c->truth.window_s);
    printf("shadow-model=%s\n", c->shadow.model_path ? c->shadow.model_path : "");
    printf("shadow-variables=%s\n", c->shadow.vars_path ? c->shadow.vars_path : "");
    printf("shadow-topic=%s\n", c->shadow_topic ? c->shadow_topic : "");
    printf("backend=%s\n", sf_backend_name(e->infer.backend));
    printf("precision=%s\n", sf_precision_name(e->infer.precision));
    printf("unsafe-model-loader=%s\n", e->loader.unsafe ? "true" : "false");
    printf("log-level=%s\n", levels[c->log_level]);
    printf("log-format=%s\n", c->log_format == SF_LOG_JSON ? "json" : "text");
    for (size_t i = 0; i < c->n_kafka_props; i++) {
        const char *p = c->kafka_props[i];
        int name_len = (int)strcspn(p, "=");
        if (sf_kafka_secret(p))
            printf("kafka.%.*s=***\n", name_len, p);
        else
            printf("kafka.%s\n", p);
    }
}

int sf_cmd_run(int argc, char **argv) {
    sf_pipeline_conf c;
    sf_pipeline_conf_init(&c);
    c.metrics_addr = "127.0.0.1:9464";
    sf_kafka_props props = {0};
    char err[1024];
    char txid[300];
    enum { O_IN = 256, O_OUT, O_DLQ, O_GROUP, O_LABEL, O_THR, O_EMIT, O_BW, O_MAXB, O_EOS, O_TXID,
           O_METRICS, O_CONN, O_LOG, O_LOGF, O_PRINT, O_MEMBERS, O_HEADERS, O_CREATE, O_TRUTH,
           O_TRUTH_FIELD, O_TRUTH_ID, O_TRUTH_EVENTS, O_TRUTH_S, O_SHADOW, O_SHADOW_VARS,
           O_SHADOW_TOPIC };
    static const struct option opts[] = {
        {"brokers", required_argument, NULL, 'b'}, {"input-topic", required_argument, NULL, O_IN},
        {"output-topic", required_argument, NULL, O_OUT}, {"dlq-topic", required_argument, NULL, O_DLQ},
        {"group", required_argument, NULL, O_GROUP}, {"model", required_argument, NULL, 'm'},
        {"architecture", required_argument, NULL, SF_ARGS_O_ARCH},
        {"onnx-output", required_argument, NULL, SF_ARGS_O_ONNX_OUTPUT},
        {"variables", required_argument, NULL, SF_ARGS_O_VARS}, {"id-field", required_argument, NULL, SF_ARGS_O_ID},
        {"signal-label", required_argument, NULL, O_LABEL},
        {"threshold", required_argument, NULL, O_THR}, {"emit", required_argument, NULL, O_EMIT},
        {"emit-members", no_argument, NULL, O_MEMBERS},
        {"create-topics", no_argument, NULL, O_CREATE},
        {"headers", required_argument, NULL, O_HEADERS},
        {"batch-size", required_argument, NULL, SF_ARGS_O_BATCH},
        {"batch-wait-ms", required_argument, NULL, O_BW},
        {"normalize", required_argument, NULL, SF_ARGS_O_NORM},
        {"max-event-bytes", required_argument, NULL, O_MAXB},
        {"exactly-once", no_argument, NULL, O_EOS}, {"transactional-id", required_argument, NULL, O_TXID},
        {"metrics-addr", required_argument, NULL, O_METRICS},
        {"connect-timeout-ms", required_argument, NULL, O_CONN},
        {"log-level", required_argument, NULL, O_LOG}, {"help", no_argument, NULL, 'h'},
        {"backend", required_argument, NULL, SF_ARGS_O_BACKEND},
        {"precision", required_argument, NULL, SF_ARGS_O_PRECISION},
        {"unsafe-model-loader", no_argument, NULL, SF_ARGS_O_UNSAFE_LOADER},
        {"log-format", required_argument, NULL, O_LOGF},
        {"print-config", no_argument, NULL, O_PRINT},
        SF_ARGS_DRIFT_OPTIONS,
        {"truth-topic", required_argument, NULL, O_TRUTH},
        {"truth-field", required_argument, NULL, O_TRUTH_FIELD},
        {"truth-id-field", required_argument, NULL, O_TRUTH_ID},
        {"truth-window-events", required_argument, NULL, O_TRUTH_EVENTS},
        {"truth-window-s", required_argument, NULL, O_TRUTH_S},
        {"shadow-model", required_argument, NULL, O_SHADOW},
        {"shadow-variables", required_argument, NULL, O_SHADOW_VARS},
        {"shadow-topic", required_argument, NULL, O_SHADOW_TOPIC},
        {NULL, 0, NULL, 0}};
    /* Variables first, then the command line: getopt keeps the last value. */
    static const char *const not_from_env[] = {"help", "print-config", NULL};
    sf_cli cli = sf_args_cli("sigflow run", argc, argv);
    char **args = sf_args_with_env(opts, not_from_env, 'X', argc, argv, &argc, err, sizeof err);
    if (!args) {
        sf_args_usage(&cli, "%s", err);
        return sf_args_try(&cli);
    }
    argv = args;
    int opt, bad = 0, print = 0;
    const char *in_topics[64];
    char in_buf[4096];
    size_t n_in = 0, in_used = 0;
    const char *shadow_model = NULL, *shadow_vars = NULL;
    long v;
    double d;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":b:m:X:F:h", opts, NULL)) != -1) {
        if (sf_args_engine(&cli, opt, optarg, &c.engine, &bad) ||
            sf_args_drift(&cli, opt, optarg, &c.drift, &bad))
            continue;
        switch (opt) {
        case 'b': c.brokers = optarg; break;
        case O_IN: /* a list: T1,T2 or repeated (a topic name holds no comma) */
            for (const char *t = optarg; !bad && *t;) {
                size_t len = strcspn(t, ",");
                if (len && (n_in == sizeof in_topics / sizeof in_topics[0] ||
                            in_used + len + 1 > sizeof in_buf)) {
                    bad = sf_args_bad(&cli, "--input-topic", optarg,
                                      "at most 64 topics, 4096 characters in all");
                    break;
                }
                if (len) { /* copied: optarg may be the environment's */
                    memcpy(in_buf + in_used, t, len);
                    in_buf[in_used + len] = '\0';
                    in_topics[n_in++] = in_buf + in_used;
                    in_used += len + 1;
                }
                t += len + (t[len] == ',');
            }
            break;
        case O_CREATE: c.create_topics = 1; break;
        case O_OUT: c.output_topic = optarg; break;
        case O_DLQ: c.dlq_topic = optarg; break;
        case O_GROUP: c.group = optarg; break;
        case O_LABEL: c.engine.signal_label = optarg; break;
        case O_THR:
            if (sf_args_double(optarg, 0, 1, &d))
                bad = sf_args_bad(&cli, "--threshold", optarg, "a probability in [0, 1]");
            c.engine.threshold = d;
            break;
        case O_EMIT:
            if (!strcmp(optarg, "all"))
                c.engine.emit = SF_EMIT_ALL;
            else if (!strcmp(optarg, "signal"))
                c.engine.emit = SF_EMIT_SIGNAL;
            else
                bad = sf_args_bad(&cli, "--emit", optarg, "signal or all");
            break;
        case O_MEMBERS: c.emit_members = 1; break;
        case O_HEADERS:
            if (!strcmp(optarg, "pass") || !strcmp(optarg, "none"))
                c.drop_headers = !strcmp(optarg, "none");
            else
                bad = sf_args_bad(&cli, "--headers", optarg, "pass or none");
            break;
        case O_BW:
            if (sf_args_long(optarg, 0, 60000, &v))
                bad = sf_args_bad(&cli, "--batch-wait-ms", optarg, "an integer in 0..60000");
            c.batch_wait_ms = (int)v;
            break;
        case O_MAXB:
            if (sf_args_long(optarg, 1, 256L << 20, &v))
                bad = sf_args_bad(&cli, "--max-event-bytes", optarg, "an integer in 1..268435456");
            c.max_event_bytes = (size_t)v;
            break;
        case O_TRUTH: c.truth_topic = optarg; break;
        case O_SHADOW: shadow_model = optarg; break;
        case O_SHADOW_VARS: shadow_vars = optarg; break;
        case O_SHADOW_TOPIC: c.shadow_topic = optarg; break;
        case O_TRUTH_FIELD: c.truth_field = optarg; break;
        case O_TRUTH_ID: c.truth_id_field = optarg; break;
        case O_TRUTH_EVENTS:
            if (sf_args_long(optarg, 1, 1L << 30, &v))
                bad = sf_args_bad(&cli, "--truth-window-events", optarg,
                                  "an integer in 1..1073741824");
            c.truth.window_events = (size_t)v;
            break;
        case O_TRUTH_S:
            if (sf_args_double(optarg, 0, 86400 * 30, &d))
                bad = sf_args_bad(&cli, "--truth-window-s", optarg, "seconds in 0..2592000");
            c.truth.window_s = d;
            break;
        case O_EOS: c.exactly_once = 1; break;
        case O_TXID: c.transactional_id = optarg; break;
        case O_METRICS:
            c.metrics_addr = optarg;
            if (strcmp(optarg, "none") && sf_http_addr_check(optarg, err, sizeof err))
                bad = sf_args_usage(&cli, "--metrics-addr: %s", err);
            break;
        case O_CONN:
            if (sf_args_long(optarg, 1, 3600000, &v))
                bad = sf_args_bad(&cli, "--connect-timeout-ms", optarg, "an integer in 1..3600000");
            c.connect_timeout_ms = (int)v;
            break;
        case O_LOG:
            if (sf_log_level_parse(optarg, &c.log_level))
                bad = sf_args_bad(&cli, "--log-level", optarg, "error, warn, info or debug");
            break;
        case O_LOGF: bad |= sf_args_log_format(&cli, optarg, &c.log_format); break;
        case 'X':
        case 'F':
            if ((opt == 'X' ? sf_kafka_props_add(&props, optarg, err, sizeof err)
                            : sf_kafka_props_load(&props, optarg, err, sizeof err)))
                bad = sf_args_usage(&cli, "%s", err);
            break;
        case O_PRINT: print = 1; break;
        case 'h': fputs(usage, stdout); sf_kafka_props_free(&props); free(args); return 0;
        default: bad = sf_args_getopt_error(&cli, opt, argv);
        }
    }
    if (!c.brokers) /* a Java client's properties file (-F) names them */
        c.brokers = sf_kafka_props_get(&props, "bootstrap.servers");
    /* --print-config shows what was given, even what this librdkafka would refuse. */
    if (!bad && !print && sf_kafka_props_check((const char *const *)props.kv, props.n,
                                     SF_KAFKA_FOR_CONSUMER | SF_KAFKA_FOR_PRODUCER, err, sizeof err))
        bad = sf_args_usage(&cli, "%s", err);
    if (!bad && !c.brokers)
        bad = sf_args_usage(&cli, "--brokers is required (or bootstrap.servers in a -F file)");
    if (!bad)
        bad = sf_args_engine_check(&cli, &c.engine, argc, argv);
    if (!bad && shadow_model && !shadow_vars && !sf_modelset_is_set(shadow_model))
        bad = sf_args_usage(&cli, "--shadow-model %s needs --shadow-variables (unless it is a set)",
                            shadow_model);
    if (!bad && c.shadow_topic && !shadow_model)
        bad = sf_args_usage(&cli, "--shadow-topic %s needs --shadow-model", c.shadow_topic);
    if (bad) {
        sf_kafka_props_free(&props);
        free(args);
        return sf_args_try(&cli);
    }
    if (shadow_model) { /* the serving model's settings, its own files, this thread only */
        c.shadow = c.engine;
        c.shadow.model_path = shadow_model;
        c.shadow.vars_path = shadow_vars;
        c.shadow.arch_path = NULL;
        c.shadow.threads = 1;
    }
    if (c.exactly_once && !c.transactional_id) {
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(txid, sizeof txid, "sigflow-%s-%s", c.group, host);
        c.transactional_id = txid;
    }
    c.kafka_props = (const char *const *)props.kv;
    c.n_kafka_props = props.n;
    c.input_topics = in_topics;
    c.n_input_topics = n_in;
    if (print) {
        print_config(&c);
        sf_kafka_props_free(&props);
        free(args);
        return 0;
    }
    c.stop = &stop_flag;
    c.reload = &reload_flag;

    sf_metrics *metrics = sf_metrics_new();
    c.metrics = metrics;
    sf_args_signals(&stop_flag, &reload_flag);

    c.engine.loader.log_format = c.log_format;
    c.engine.loader.stop = &stop_flag; /* a SIGTERM ends a slow model load too */
    int r = sf_pipeline_run(&c, err, sizeof err);
    int rc = r == 0 ? 0 : r == -2 ? 2 : 1; /* 2: the model or variables were refused */
    if (rc)
        sf_log_cli(c.log_format, SF_LOG_ERROR, cli.prog, "%s", err);
    sf_metrics_free(metrics);
    sf_kafka_props_free(&props);
    free(args);
    return rc;
}
