/* main.c: sigflow-loader, the program sf_model_load runs for every model load,
 * exec'd afresh so that the parser shares nothing with the daemon
 * (src/model_guard.c says why; the work is all there). */
#include "../model_guard.h"
#include "sanitizer_options.h"

int main(int argc, char **argv) {
    return sf_model_loader_main(argc, argv, NULL);
}
