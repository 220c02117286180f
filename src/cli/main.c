/* main.c: the sigflow command, a thin dispatcher to one file per subcommand
 * (the kcat way: a complete tool in a few files). */
#include <stdio.h>
#include <string.h>

#include "sigflow/blas.h"
#include "commands.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"run", sf_cmd_run, "consume events from Kafka, classify them, publish signals"},
    {"demo", sf_cmd_demo, "embedded broker + replay + pipeline on the bundled data"},
    {"predict", sf_cmd_predict, "classify JSON events from stdin (one per line)"},
    {"inspect", sf_cmd_inspect, "print a model and its variables as loaded"},
    {"evaluate", sf_cmd_evaluate, "accuracy, ROC AUC, confusion matrix on labeled events"},
    {"broker", sf_cmd_broker, "serve an embedded Kafka-protocol broker for development"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: sigflow COMMAND [OPTIONS]  (sigflow COMMAND --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    /* Before anything else: OpenBLAS may have settled on a generic kernel. */
    sf_blas_select_core(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "sigflow: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
