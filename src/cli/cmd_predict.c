/* PLACEHOLDER: replaced by the real implementation of 'sigflow predict'. */
#include <stdio.h>
#include "commands.h"
int sf_cmd_predict(int argc, char **argv) { (void)argc; (void)argv; fprintf(stderr, "sigflow predict: not built yet\n"); return 2; }
