/* PLACEHOLDER: replaced by the real implementation of 'sigflow run'. */
#include <stdio.h>
#include "commands.h"
int sf_cmd_run(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "sigflow run: not built yet\n"); return 2; }
