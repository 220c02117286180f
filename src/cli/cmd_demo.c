/* PLACEHOLDER: replaced by the real implementation of 'sigflow demo'. */
#include <stdio.h>
#include "commands.h"
int sf_cmd_demo(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "sigflow demo: not built yet\n"); return 2; }
