/* sanitizer_options.h: how the sanitizers behave inside the model loader
 * program (included once by each loader's main: sigflow-loader and the tests'
 * probe loader; never by a library, whose every user would get it).
 *
 * The loader's environment is empty, so the sanitizers' options come from
 * here. No leak check at exit (it would ptrace the process, which the filter
 * forbids; the in-process tests check the loader's leaks) and no report from
 * a process whose stderr is closed: an AddressSanitizer error ends it with
 * SIGABRT before it reports, so that libhdf5's overflow reads as the crash it
 * is, not as the report's own system calls trapped (tests/fuzz/run.sh replays
 * such inputs in-process for the report). GCC's UndefinedBehaviorSanitizer
 * (sigflow's own code only) sets itself up at its first report, reading
 * /proc/self/exe and /proc/self/cmdline, which the filter traps: such a report
 * ends the loader as a sandbox violation (syscall readlink), and the
 * in-process loader (test_model, the fuzzers' replays) shows it. */
#ifndef SIGFLOW_LOADER_SANITIZER_OPTIONS_H
#define SIGFLOW_LOADER_SANITIZER_OPTIONS_H

#include <stdlib.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SF_LOADER_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SF_LOADER_ASAN 1
#endif

#ifdef SF_LOADER_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void) {
    return "detect_leaks=0:handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_abort=0:"
           "symbolize=0:abort_on_error=1";
}
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) {
    return "print_stacktrace=0:halt_on_error=1:symbolize=0:abort_on_error=1";
}
void __asan_on_error(void);
void __asan_on_error(void) {
    abort();
}
#endif

#endif
