/* main.c: the sigflow command, a thin dispatcher to one file per subcommand
 * (the kcat way: a complete tool in a few files). */
#include <stdio.h>
#include <string.h>

#include "sigflow/args.h"
#include "sigflow/blas.h"
#include "sigflow/version.h"
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
    fprintf(f, "usage: sigflow COMMAND [OPTIONS]  (sigflow help COMMAND for details)\n"
               "       sigflow --version\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    /* Before anything else: OpenBLAS may have settled on a generic kernel. */
    sf_blas_select_core(argv);
    sf_cli cli = sf_args_cli("sigflow", argc, argv);
    if (argc < 2) {
        sf_args_usage(&cli, "no command given");
        return sf_args_try(&cli);
    }
    /* "sigflow help CMD" is "sigflow CMD --help". */
    int help = !strcmp(argv[1], "help") && argc > 2;
    if (!help && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help"))) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        sf_version_print(stdout, "sigflow");
        return 0;
    }
    const char *name = argv[help ? 2 : 1];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) {
            if (help) {
                char *help_argv[] = {argv[2], "--help", NULL};
                return commands[i].fn(2, help_argv);
            }
            return commands[i].fn(argc - 1, argv + 1);
        }
    sf_args_usage(&cli, "unknown command '%s'", name);
    return sf_args_try(&cli);
}
