/*
 * kiln_wasi_compat.h - compatibility declarations for building PHP against
 * wasi-libc (WASI preview 1), force-included into every compilation unit
 * with `-include kiln_wasi_compat.h`.
 *
 * wasi-libc leaves out the POSIX process, user, signal and socket APIs that
 * WASI preview 1 cannot provide.  PHP's sources call a number of them
 * unconditionally; clang >= 16 rejects implicit declarations, so they are
 * declared here and implemented in kiln_wasi_stubs.c (failing with ENOSYS,
 * except mkstemp/mktemp which work).
 *
 * This header is read before any other header of the unit, so it must not
 * include system headers (that would fix the feature-test macros before the
 * unit defines _GNU_SOURCE and friends).  It only uses builtin types that
 * are identical to wasi-libc's typedefs on wasm32:
 *   uid_t, gid_t, mode_t, socklen_t, in_addr_t = unsigned int
 *   pid_t = int, ssize_t = long, size_t = __SIZE_TYPE__,
 *   sigset_t = unsigned char, sa_family_t = unsigned short
 * Constants are only defined where wasi-libc defines nothing of that name.
 *
 * Part of the Kiln project.
 */
#ifndef KILN_WASI_COMPAT_H
#define KILN_WASI_COMPAT_H

#if defined(__wasi__) && !defined(__ASSEMBLER__)

#ifdef __cplusplus
extern "C" {
#endif

struct sockaddr;
struct in_addr;
struct _IO_FILE;   /* FILE in wasi-libc (musl) */

/* --- users, groups, ownership, permissions (sys/stat.h, unistd.h) --- */
int chown(const char *path, unsigned int owner, unsigned int group);
int fchown(int fd, unsigned int owner, unsigned int group);
int lchown(const char *path, unsigned int owner, unsigned int group);
unsigned int umask(unsigned int mask);
unsigned int getuid(void);
unsigned int geteuid(void);
unsigned int getgid(void);
unsigned int getegid(void);
int getgroups(int size, unsigned int list[]);

/* --- descriptors (unistd.h) --- */
int dup(int fd);
int dup2(int oldfd, int newfd);
int getdtablesize(void);

/* --- processes (unistd.h, sys/wait.h, signal.h) --- */
int setsid(void);
int getpgrp(void);
int getppid(void);
int fork(void);
int wait(int *status);
int waitpid(int pid, int *status, int options);
int kill(int pid, int sig);
unsigned int alarm(unsigned int seconds);
int pipe(int fds[2]);
int execl(const char *path, const char *arg, ...);
int execle(const char *path, const char *arg, ...);
int execlp(const char *file, const char *arg, ...);
int execv(const char *path, char *const argv[]);
int execve(const char *path, char *const argv[], char *const envp[]);
int execvp(const char *file, char *const argv[]);
struct _IO_FILE *popen(const char *command, const char *type);
int pclose(struct _IO_FILE *stream);

/* --- signal handlers (signal.h): wasi-libc defines neither struct
 *     sigaction nor the functions.  Only sa_handler/sa_mask/sa_flags are
 *     provided (no siginfo in WASI).  sa_mask has sigset_t's type. --- */
#ifndef SA_RESTART
# define SA_RESTART 0x10000000
#endif
struct sigaction {
    void (*sa_handler)(int);
    unsigned char sa_mask;
    int sa_flags;
};
int sigaction(int sig, const struct sigaction *act, struct sigaction *oact);
int sigemptyset(unsigned char *set);
int sigfillset(unsigned char *set);
int sigaddset(unsigned char *set, int sig);
int sigdelset(unsigned char *set, int sig);
int sigismember(const unsigned char *set, int sig);
int sigprocmask(int how, const unsigned char *set, unsigned char *oset);

/* --- temporary files (stdlib.h): real implementations in the stubs --- */
int mkstemp(char *tmpl);
char *mktemp(char *tmpl);

/* --- large aligned blocks for Zend's chunk allocator (zend_alloc.c):
 *     wasi-libc's emulated mmap cannot unmap part of a mapping, and
 *     aligned_alloc()/posix_memalign() do not honour 2 MiB alignment, so
 *     chunks come from an over-allocating malloc aligned by hand. --- */
void *kiln_wasi_chunk_alloc(__SIZE_TYPE__ size, __SIZE_TYPE__ alignment);
void kiln_wasi_chunk_free(void *ptr);

/* --- sockets (sys/socket.h, arpa/inet.h): WASI p1 cannot create them --- */
int socket(int domain, int type, int protocol);
int socketpair(int domain, int type, int protocol, int sv[2]);
int bind(int fd, const struct sockaddr *addr, unsigned int len);
int listen(int fd, int backlog);
int connect(int fd, const struct sockaddr *addr, unsigned int len);
int getsockname(int fd, struct sockaddr *addr, unsigned int *len);
int getpeername(int fd, struct sockaddr *addr, unsigned int *len);
int setsockopt(int fd, int level, int name, const void *val, unsigned int len);
long sendto(int fd, const void *buf, __SIZE_TYPE__ n, int flags,
            const struct sockaddr *addr, unsigned int len);
long recvfrom(int fd, void *buf, __SIZE_TYPE__ n, int flags,
              struct sockaddr *addr, unsigned int *len);
unsigned int inet_addr(const char *cp);
char *inet_ntoa(struct in_addr in);

#ifdef __cplusplus
}
#endif

/* --- constants wasi-libc does not define (Linux values) --- */
#ifndef SOL_IP
# define SOL_IP 0
#endif
#ifndef SO_REUSEADDR
# define SO_REUSEADDR 2
#endif
#ifndef SO_ERROR
# define SO_ERROR 4
#endif
#ifndef SO_BROADCAST
# define SO_BROADCAST 6
#endif
#ifndef SO_SNDBUF
# define SO_SNDBUF 7
#endif
#ifndef SO_RCVBUF
# define SO_RCVBUF 8
#endif
#ifndef SO_KEEPALIVE
# define SO_KEEPALIVE 9
#endif
#ifndef SO_OOBINLINE
# define SO_OOBINLINE 10
#endif
#ifndef SO_LINGER
# define SO_LINGER 13
#endif
#ifndef SO_RCVTIMEO
# define SO_RCVTIMEO 20
#endif
#ifndef SO_SNDTIMEO
# define SO_SNDTIMEO 21
#endif
#ifndef SOMAXCONN
# define SOMAXCONN 128
#endif
#ifndef MSG_OOB
# define MSG_OOB 0x0001
#endif
#ifndef PF_UNIX
# define PF_UNIX 3     /* == AF_UNIX in wasi-libc */
#endif
/* WASI poll has no priority band: a zero flag never matches. */
#ifndef POLLPRI
# define POLLPRI 0
#endif
/* Record locks: fcntl() of wasi-libc rejects these commands (EINVAL). */
#ifndef F_RDLCK
# define F_RDLCK 0
# define F_WRLCK 1
# define F_UNLCK 2
#endif
#ifndef F_GETLK
# define F_GETLK 5
# define F_SETLK 6
# define F_SETLKW 7
#endif

/* wasi-libc leaves P_tmpdir undefined (stdio.h); PHP then substitutes ""
 * and sys_get_temp_dir()/upload temp files end up in the current folder. */
#ifndef P_tmpdir
# define P_tmpdir "/tmp"
#endif

/*
 * <sys/wait.h>: zig ships musl's, which needs siginfo_t (absent on WASI), so
 * it cannot be included.  PHP includes it unconditionally where HAVE_FORK
 * is set (php_cli_server.c), and fork() must exist for cgi_main.c.  Claim
 * the header's include guard and give the status macros here (Linux
 * encoding; no child ever exists, waitpid() fails with ECHILD).
 */
#ifndef _SYS_WAIT_H
#define _SYS_WAIT_H
# define WNOHANG 1
# define WUNTRACED 2
# define WEXITSTATUS(status) (((status) >> 8) & 0xff)
# define WTERMSIG(status) ((status) & 0x7f)
# define WSTOPSIG(status) WEXITSTATUS(status)
# define WIFEXITED(status) (WTERMSIG(status) == 0)
# define WIFSTOPPED(status) (((status) & 0xff) == 0x7f)
# define WIFSIGNALED(status) (WTERMSIG(status) != 0 && WTERMSIG(status) != 0x7f)
#endif

/*
 * fopencookie(): wasi-libc's seek callback takes the offset by pointer
 * (off64_t is off_t).  PHP's configure can only find that out by running a
 * program, which it skips when cross-compiling; PHP 7.4 would then build a
 * by-value seeker whose indirect call traps.  php_config.h only carries a
 * commented-out #undef for it, so this definition stands.
 */
#ifndef COOKIE_SEEKER_USES_OFF64_T
# define COOKIE_SEEKER_USES_OFF64_T 1
#endif

/*
 * struct sockaddr_un: wasi-libc's has only sun_family.  Nothing in wasi-libc
 * takes one (there is no bind/connect), so provide the usual layout and mark
 * wasi-libc's own definition as already seen (its include guard).
 */
#ifndef __wasilibc___struct_sockaddr_un_h
#define __wasilibc___struct_sockaddr_un_h
struct sockaddr_un {
    __attribute__((aligned(__BIGGEST_ALIGNMENT__))) unsigned short sun_family;
    char sun_path[108];
};
#endif

#endif /* __wasi__ && !__ASSEMBLER__ */
#endif /* KILN_WASI_COMPAT_H */
