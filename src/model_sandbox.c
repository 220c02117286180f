/* model_sandbox.c: sf_sandbox_enter, the loader program's confinement (issue 26).
 *
 * libhdf5 has heap overflows a crafted file reaches (tests/fuzz/README.md), so
 * the code that parses a model must be assumed to be the attacker's once it
 * has read the file. What it may then do is decided here, before the first
 * byte is parsed: allocate and free memory, write to the result pipe, read
 * the clock, end itself (abort() included), and nothing else: no open, no
 * socket, no exec, no ptrace, no new descriptor of any kind. The filter's
 * default is SECCOMP_RET_TRAP rather than KILL so that the dying process can
 * say which call it tried (one write on the pipe from the SIGSYS handler);
 * the trapped call never runs either way, and the handler then dies of
 * SIGSYS itself.
 *
 * The handler needs the pipe and the pid, and a signal handler has no other
 * way to them: the two statics below are set once, before the filter, in a
 * process that does nothing but this one load. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "model_h5.h"
#include "model_sandbox.h"


static int trap_fd = -1;
static pid_t self_pid;

static void on_sigsys(int sig, siginfo_t *info, void *ctx) {
    (void)sig;
    (void)ctx;
    uint32_t rec[2] = {SF_SANDBOX_TRAP_MAGIC, (uint32_t)info->si_syscall};
    syscall(SYS_write, trap_fd, rec, sizeof rec);
    /* A second trapped call while SIGSYS is blocked (in here) makes the
     * kernel reset the handler and deliver SIGSYS: the process dies of it,
     * as with SECCOMP_RET_KILL. getppid is never allowed. */
    syscall(SYS_getppid);
    for (;;)
        syscall(SYS_exit_group, 128 + SIGSYS);
}

static int set_limit(int resource, rlim_t soft, rlim_t hard) {
    struct rlimit rl = {soft, hard};
    return setrlimit(resource, &rl);
}

/* libseccomp's SCMP_An() macros leave datum_b to the compiler's zeroing,
 * which clang's -Wmissing-field-initializers reports. */
static struct scmp_arg_cmp arg_eq(unsigned arg, scmp_datum_t v) {
    struct scmp_arg_cmp c = {.arg = arg, .op = SCMP_CMP_EQ, .datum_a = v, .datum_b = 0};
    return c;
}

/* The protection argument (2) of mmap and mprotect without PROT_EXEC. */
static struct scmp_arg_cmp arg_no_exec(void) {
    struct scmp_arg_cmp c = {.arg = 2, .op = SCMP_CMP_MASKED_EQ, .datum_a = PROT_EXEC,
                             .datum_b = 0};
    return c;
}

/* The allow-list. Arguments are checked where a call could reach beyond the
 * process: write only to the pipe (and to fd 2, which is closed: glibc's
 * "double free detected" and the like fail there and abort, a crash, instead
 * of trapping), signals only to itself (abort()), no executable mappings. */
static int add_rules(scmp_filter_ctx f, int pipe_fd, int broker_fd) {
    static const int plain[] = {
        SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(madvise),
        SCMP_SYS(exit), SCMP_SYS(exit_group), SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres),
        SCMP_SYS(gettimeofday), SCMP_SYS(time), SCMP_SYS(futex), SCMP_SYS(rt_sigprocmask),
        SCMP_SYS(rt_sigreturn), SCMP_SYS(getpid), SCMP_SYS(gettid),
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, plain[i], 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(write), 1,
                           arg_eq(0, (scmp_datum_t)pipe_fd));
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(write), 1, arg_eq(0, 2));
    /* The broker socket: the parent's answers, and only that descriptor. */
    if (broker_fd >= 0) {
        rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(write), 1,
                               arg_eq(0, (scmp_datum_t)broker_fd));
        rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(read), 1,
                               arg_eq(0, (scmp_datum_t)broker_fd));
    }
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(writev), 1, arg_eq(0, 2));
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(writev), 1, arg_eq(0, 2));
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                           arg_no_exec());
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                           arg_no_exec());
    /* HDF5's core driver opens its image's name before it reads the image
     * (model_h5.h): that one open, by that one address, fails as if the file
     * did not exist, without running. Any other open traps. */
    rc |= seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOENT), SCMP_SYS(openat), 1,
                           arg_eq(1, (scmp_datum_t)(uintptr_t)sf_h5_image_name));
    /* AddressSanitizer asks for the alternate signal stack (setting none)
     * before every call that does not return (_exit, abort, longjmp). */
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(sigaltstack), 1, arg_eq(0, 0));
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                           arg_eq(0, (scmp_datum_t)self_pid));
    return rc;
}

int sf_sandbox_enter(const sf_sandbox_limits *lim, char *errstr, size_t errstr_size) {
    trap_fd = lim->pipe_fd;
    self_pid = getpid();
    /* Every descriptor but the pipe and the broker socket (the model was
     * read before this). */
    int last = lim->broker_fd > lim->pipe_fd ? lim->broker_fd : lim->pipe_fd;
    for (int fd = 0; fd < lim->pipe_fd; fd++)
        close(fd);
    for (int fd = lim->pipe_fd + 1; fd < last; fd++)
        close(fd);
    if (syscall(SYS_close_range, (unsigned)last + 1, ~0U, 0) < 0) {
        snprintf(errstr, errstr_size, "close_range: %s", strerror(errno));
        return -1;
    }
    rlim_t cpu = lim->cpu_seconds > 0 ? (rlim_t)lim->cpu_seconds : 1;
    if (set_limit(RLIMIT_CPU, cpu, cpu + 1) < 0 || set_limit(RLIMIT_CORE, 0, 0) < 0 ||
        set_limit(RLIMIT_NOFILE, (rlim_t)last + 1, (rlim_t)last + 1) < 0 ||
        set_limit(RLIMIT_FSIZE, 0, 0) < 0 ||
        (lim->memory && set_limit(RLIMIT_AS, lim->memory, lim->memory) < 0)) {
        snprintf(errstr, errstr_size, "setrlimit: %s", strerror(errno));
        return -1;
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        snprintf(errstr, errstr_size, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
        return -1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSYS, &sa, NULL) < 0) {
        snprintf(errstr, errstr_size, "sigaction(SIGSYS): %s", strerror(errno));
        return -1;
    }
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_TRAP);
    if (!f) {
        snprintf(errstr, errstr_size, "seccomp_init failed");
        return -1;
    }
    int rc = add_rules(f, lim->pipe_fd, lim->broker_fd > lim->pipe_fd ? lim->broker_fd : -1);
    if (rc < 0) {
        seccomp_release(f);
        snprintf(errstr, errstr_size, "seccomp_rule_add: %s", strerror(-rc));
        return -1;
    }
    rc = seccomp_load(f);
    seccomp_release(f);
    if (rc < 0) {
        signal(SIGSYS, SIG_DFL);
        snprintf(errstr, errstr_size, "seccomp_load: %s", strerror(-rc));
        return -1;
    }
    return 0;
}

const char *sf_sandbox_syscall_name(uint32_t nr, char *buf, size_t size) {
    char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, (int)nr);
    if (name)
        snprintf(buf, size, "%s", name);
    else
        snprintf(buf, size, "#%u", nr);
    free(name);
    return buf;
}
