/* PLACEHOLDER: replaced by the real implementation of 'sigflow broker'. */
#include <stdio.h>
#include "commands.h"
int sf_cmd_broker(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "sigflow broker: not built yet\n"); return 2; }
