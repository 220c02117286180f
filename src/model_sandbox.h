/* model_sandbox.h: the confinement the model loader program puts itself in
 * before it parses a byte (model_guard.c runs that program): no new
 * privileges, resource limits, and a seccomp filter that lets it allocate,
 * write to the result pipe and exit, and nothing else. */
#ifndef SIGFLOW_MODEL_SANDBOX_H
#define SIGFLOW_MODEL_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

/* What the loader writes on the pipe when the filter traps a call, just
 * before it dies of SIGSYS: the magic, then the call's number (both uint32,
 * native order). The parent names the call from it. */
#define SF_SANDBOX_TRAP_MAGIC 0x59534653u /* "SFSY" */
#define SF_SANDBOX_TRAP_SIZE 8

typedef struct sf_sandbox_limits {
    int pipe_fd;                /* left open, written to */
    int broker_fd;              /* left open, read and written (the parent's
                                 * answers); above pipe_fd, or -1 for none */
    int cpu_seconds;            /* RLIMIT_CPU (soft; the hard limit is one more) */
    unsigned long long memory;  /* RLIMIT_AS in bytes; 0: none (ASan's shadow) */
} sf_sandbox_limits;

/* Closes every descriptor but the pipe and the broker socket, sets the limits, PR_SET_NO_NEW_PRIVS,
 * a SIGSYS handler that reports the trapped call, and the filter. Returns 0
 * when confined; -1 with errstr when the filter (or another step) could not be
 * put in place, the process then being partly confined (descriptors closed,
 * limits set) and the caller deciding whether to go on. */
int sf_sandbox_enter(const sf_sandbox_limits *lim, char *errstr, size_t errstr_size);

/* The name of system call nr on this architecture into buf ("syscall 999"
 * style "#999" when unknown). Returns buf. */
const char *sf_sandbox_syscall_name(uint32_t nr, char *buf, size_t size);

#endif
