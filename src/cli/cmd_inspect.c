/* PLACEHOLDER: replaced by the real implementation of 'sigflow inspect'. */
#include <stdio.h>
#include "commands.h"
int sf_cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "sigflow inspect: not built yet\n"); return 2; }
