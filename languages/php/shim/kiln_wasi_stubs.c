/*
 * kiln_wasi_stubs.c - the functions PHP needs at link time that wasi-libc
 * (WASI preview 1) does not provide.  Part of the Kiln project.
 *
 * - Process, user, signal and socket functions fail with ENOSYS (or answer
 *   the harmless value a single-user, signal-less sandbox would give).
 * - mkstemp()/mktemp()/tmpfile() really work: they create/choose a fresh name in the
 *   template's directory using arc4random(), with O_CREAT|O_EXCL, so that
 *   PHP's tempnam(), tmpfile() and upload temp files work in a granted,
 *   writable folder (e.g. a host directory preopened as /tmp).
 * - inet_addr()/inet_ntoa() are small real implementations on top of
 *   inet_aton()/inet_ntop(), which wasi-libc has.
 *
 * Declarations for the functions wasi-libc does not declare come from
 * kiln_wasi_compat.h (force-included by the build).
 */
#define _GNU_SOURCE 1
#include "kiln_wasi_compat.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pwd.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#define KILN_FAIL(ret) do { errno = ENOSYS; return (ret); } while (0)

/* ------------------------------------------------------------------ */
/* Temporary files                                                     */
/* ------------------------------------------------------------------ */

static const char kiln_tmp_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/* Replace the trailing "XXXXXX" of tmpl with random characters.
 * Returns 0, or -1 with errno EINVAL if the template is malformed. */
static int kiln_fill_template(char *tmpl)
{
    size_t len = tmpl ? strlen(tmpl) : 0;
    char *x;
    int i;

    if (len < 6 || memcmp(tmpl + len - 6, "XXXXXX", 6) != 0) {
        errno = EINVAL;
        return -1;
    }
    x = tmpl + len - 6;
    for (i = 0; i < 6; i++) {
        x[i] = kiln_tmp_alphabet[arc4random_uniform(sizeof(kiln_tmp_alphabet) - 1)];
    }
    return 0;
}

#define KILN_TMP_ATTEMPTS 100

int mkstemp(char *tmpl)
{
    char saved[6];
    size_t len;
    int attempt;

    if (kiln_fill_template(tmpl) != 0) {
        return -1;
    }
    len = strlen(tmpl);
    memcpy(saved, "XXXXXX", 6);
    for (attempt = 0; attempt < KILN_TMP_ATTEMPTS; attempt++) {
        int fd;
        if (attempt > 0) {
            memcpy(tmpl + len - 6, saved, 6);
            kiln_fill_template(tmpl);
        }
        fd = open(tmpl, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd >= 0) {
            return fd;
        }
        if (errno != EEXIST) {
            break;
        }
    }
    /* leave the template recognisable as unused */
    memcpy(tmpl + len - 6, saved, 6);
    return -1;
}

/* C's tmpfile(), which wasi-libc lacks (libgd writes compressed BMPs through one): a fresh
 * file in /tmp, the writable grant PHP's sys_temp_dir names, unlinked at once so that it
 * goes away when closed. */
FILE *tmpfile(void)
{
    char name[] = "/tmp/kiln-tmpfile-XXXXXX";
    int fd = mkstemp(name);
    FILE *file;

    if (fd < 0) {
        return NULL;
    }
    unlink(name);
    file = fdopen(fd, "w+b");
    if (file == NULL) {
        close(fd);
    }
    return file;
}

char *mktemp(char *tmpl)
{
    size_t len;
    int attempt;
    struct stat st;

    if (kiln_fill_template(tmpl) != 0) {
        if (tmpl) {
            tmpl[0] = '\0';
        }
        return tmpl;
    }
    len = strlen(tmpl);
    for (attempt = 0; attempt < KILN_TMP_ATTEMPTS; attempt++) {
        if (attempt > 0) {
            memcpy(tmpl + len - 6, "XXXXXX", 6);
            kiln_fill_template(tmpl);
        }
        if (lstat(tmpl, &st) != 0 && errno == ENOENT) {
            return tmpl;
        }
    }
    tmpl[0] = '\0';
    errno = EEXIST;
    return tmpl;
}

/* ------------------------------------------------------------------ */
/* Aligned chunks for zend_alloc.c                                     */
/* ------------------------------------------------------------------ */

/* Returns size bytes aligned to alignment (a power of two), or NULL.
 * The pointer malloc() gave is kept in the word just below the block. */
void *kiln_wasi_chunk_alloc(size_t size, size_t alignment)
{
    size_t total;
    uintptr_t raw, aligned;

    if (alignment < sizeof(void *)) {
        alignment = sizeof(void *);
    }
    if ((alignment & (alignment - 1)) != 0
            || size > SIZE_MAX - alignment - sizeof(void *)) {
        errno = EINVAL;
        return NULL;
    }
    total = size + alignment + sizeof(void *);
    raw = (uintptr_t)malloc(total);
    if (!raw) {
        return NULL;
    }
    aligned = (raw + sizeof(void *) + alignment - 1) & ~(uintptr_t)(alignment - 1);
    ((void **)aligned)[-1] = (void *)raw;
    return (void *)aligned;
}

void kiln_wasi_chunk_free(void *ptr)
{
    if (ptr) {
        free(((void **)ptr)[-1]);
    }
}

/* ------------------------------------------------------------------ */
/* Users, groups, ownership: one anonymous user, uid/gid 0 like the    */
/* st_uid/st_gid WASI reports for every file.                          */
/* ------------------------------------------------------------------ */

int chown(const char *path, unsigned int owner, unsigned int group)
{ (void)path; (void)owner; (void)group; KILN_FAIL(-1); }
int fchown(int fd, unsigned int owner, unsigned int group)
{ (void)fd; (void)owner; (void)group; KILN_FAIL(-1); }
int lchown(const char *path, unsigned int owner, unsigned int group)
{ (void)path; (void)owner; (void)group; KILN_FAIL(-1); }

/* WASI has no permission bits to mask: remember the value only. */
static unsigned int kiln_umask = 022;
unsigned int umask(unsigned int mask)
{
    unsigned int old = kiln_umask;
    kiln_umask = mask & 0777;
    return old;
}

unsigned int getuid(void)  { return 0; }
unsigned int geteuid(void) { return 0; }
unsigned int getgid(void)  { return 0; }
unsigned int getegid(void) { return 0; }
int getgroups(int size, unsigned int list[]) { (void)size; (void)list; return 0; }

struct passwd *getpwnam(const char *name) { (void)name; errno = ENOSYS; return NULL; }
struct passwd *getpwuid(uid_t uid) { (void)uid; errno = ENOSYS; return NULL; }
struct group *getgrnam(const char *name) { (void)name; errno = ENOSYS; return NULL; }
struct group *getgrgid(gid_t gid) { (void)gid; errno = ENOSYS; return NULL; }

int getpwnam_r(const char *name, struct passwd *pw, char *buf, size_t len, struct passwd **res)
{ (void)name; (void)pw; (void)buf; (void)len; *res = NULL; return ENOSYS; }
int getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len, struct passwd **res)
{ (void)uid; (void)pw; (void)buf; (void)len; *res = NULL; return ENOSYS; }
int getgrnam_r(const char *name, struct group *gr, char *buf, size_t len, struct group **res)
{ (void)name; (void)gr; (void)buf; (void)len; *res = NULL; return ENOSYS; }
int getgrgid_r(gid_t gid, struct group *gr, char *buf, size_t len, struct group **res)
{ (void)gid; (void)gr; (void)buf; (void)len; *res = NULL; return ENOSYS; }

/* ------------------------------------------------------------------ */
/* Descriptors and processes                                           */
/* ------------------------------------------------------------------ */

int dup(int fd) { (void)fd; KILN_FAIL(-1); }
int dup2(int oldfd, int newfd) { (void)oldfd; (void)newfd; KILN_FAIL(-1); }
int getdtablesize(void) { return 1024; }

int setsid(void) { KILN_FAIL(-1); }
int getpgrp(void) { return 1; }
int getppid(void) { return 1; }
int fork(void) { KILN_FAIL(-1); }
int wait(int *status) { (void)status; errno = ECHILD; return -1; }
int waitpid(int pid, int *status, int options)
{ (void)pid; (void)status; (void)options; errno = ECHILD; return -1; }
int kill(int pid, int sig) { (void)pid; (void)sig; KILN_FAIL(-1); }
unsigned int alarm(unsigned int seconds) { (void)seconds; return 0; }
int pipe(int fds[2]) { (void)fds; KILN_FAIL(-1); }
int execl(const char *path, const char *arg, ...) { (void)path; (void)arg; KILN_FAIL(-1); }
int execle(const char *path, const char *arg, ...) { (void)path; (void)arg; KILN_FAIL(-1); }
int execlp(const char *file, const char *arg, ...) { (void)file; (void)arg; KILN_FAIL(-1); }
int execv(const char *path, char *const argv[]) { (void)path; (void)argv; KILN_FAIL(-1); }
int execve(const char *path, char *const argv[], char *const envp[])
{ (void)path; (void)argv; (void)envp; KILN_FAIL(-1); }
int execvp(const char *file, char *const argv[]) { (void)file; (void)argv; KILN_FAIL(-1); }

FILE *popen(const char *command, const char *type)
{ (void)command; (void)type; KILN_FAIL(NULL); }
int pclose(FILE *stream) { (void)stream; KILN_FAIL(-1); }

/* ------------------------------------------------------------------ */
/* Signals: nothing is ever delivered, so masks are bookkeeping only.  */
/* A handler given to sigaction() goes to the emulated signal(), which */
/* raise() honours.                                                    */
/* ------------------------------------------------------------------ */

int sigaction(int sig, const struct sigaction *act, struct sigaction *oact)
{
    if (oact) {
        memset(oact, 0, sizeof(*oact));
    }
    if (act) {
        if (signal(sig, act->sa_handler) == SIG_ERR) {
            return -1;
        }
    }
    return 0;
}

int sigemptyset(unsigned char *set) { *set = 0; return 0; }
int sigfillset(unsigned char *set) { *set = 0xff; return 0; }
int sigaddset(unsigned char *set, int sig)
{
    if (sig <= 0 || sig > 8) { return 0; }
    *set |= (unsigned char)(1u << (sig - 1));
    return 0;
}
int sigdelset(unsigned char *set, int sig)
{
    if (sig <= 0 || sig > 8) { return 0; }
    *set &= (unsigned char)~(1u << (sig - 1));
    return 0;
}
int sigismember(const unsigned char *set, int sig)
{
    if (sig <= 0 || sig > 8) { return 0; }
    return (*set >> (sig - 1)) & 1;
}
int sigprocmask(int how, const unsigned char *set, unsigned char *oset)
{
    (void)how; (void)set;
    if (oset) { *oset = 0; }
    return 0;
}

/* ------------------------------------------------------------------ */
/* Logging: no syslog daemon; messages are dropped.                    */
/* ------------------------------------------------------------------ */

void openlog(const char *ident, int option, int facility)
{ (void)ident; (void)option; (void)facility; }
void closelog(void) { }
void syslog(int priority, const char *format, ...)
{ (void)priority; (void)format; }
void vsyslog(int priority, const char *format, va_list ap)
{ (void)priority; (void)format; (void)ap; }

/* ------------------------------------------------------------------ */
/* Memory advice is optional: accept and ignore it.                    */
/* ------------------------------------------------------------------ */

int madvise(void *addr, size_t len, int advice)
{ (void)addr; (void)len; (void)advice; return 0; }

/* ------------------------------------------------------------------ */
/* Sockets and name resolution: WASI preview 1 cannot create sockets   */
/* or resolve names.                                                   */
/* ------------------------------------------------------------------ */

int socket(int domain, int type, int protocol)
{ (void)domain; (void)type; (void)protocol; KILN_FAIL(-1); }
int socketpair(int domain, int type, int protocol, int sv[2])
{ (void)domain; (void)type; (void)protocol; (void)sv; KILN_FAIL(-1); }
int bind(int fd, const struct sockaddr *addr, unsigned int len)
{ (void)fd; (void)addr; (void)len; KILN_FAIL(-1); }
int listen(int fd, int backlog) { (void)fd; (void)backlog; KILN_FAIL(-1); }
int connect(int fd, const struct sockaddr *addr, unsigned int len)
{ (void)fd; (void)addr; (void)len; KILN_FAIL(-1); }
int getsockname(int fd, struct sockaddr *addr, unsigned int *len)
{ (void)fd; (void)addr; (void)len; KILN_FAIL(-1); }
int getpeername(int fd, struct sockaddr *addr, unsigned int *len)
{ (void)fd; (void)addr; (void)len; KILN_FAIL(-1); }
int setsockopt(int fd, int level, int name, const void *val, unsigned int len)
{ (void)fd; (void)level; (void)name; (void)val; (void)len; KILN_FAIL(-1); }
long sendto(int fd, const void *buf, size_t n, int flags,
            const struct sockaddr *addr, unsigned int len)
{ (void)fd; (void)buf; (void)n; (void)flags; (void)addr; (void)len; KILN_FAIL(-1); }
long recvfrom(int fd, void *buf, size_t n, int flags,
              struct sockaddr *addr, unsigned int *len)
{ (void)fd; (void)buf; (void)n; (void)flags; (void)addr; (void)len; KILN_FAIL(-1); }

unsigned int inet_addr(const char *cp)
{
    struct in_addr a;
    if (!inet_aton(cp, &a)) {
        return 0xffffffffu; /* INADDR_NONE */
    }
    return a.s_addr;
}

char *inet_ntoa(struct in_addr in)
{
    static char buf[16];
    if (!inet_ntop(AF_INET, &in, buf, sizeof(buf))) {
        buf[0] = '\0';
    }
    return buf;
}

struct hostent *gethostbyname(const char *name)
{ (void)name; errno = ENOSYS; return NULL; }

struct hostent *gethostbyaddr(const void *addr, socklen_t len, int type)
{ (void)addr; (void)len; (void)type; errno = ENOSYS; return NULL; }

int getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                char *serv, socklen_t servlen, int flags)
{
    (void)sa; (void)salen; (void)host; (void)hostlen; (void)serv; (void)servlen; (void)flags;
    errno = ENOSYS;
    return EAI_SYSTEM;
}

int gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                    struct hostent **result, int *h_errnop)
{
    (void)name; (void)ret; (void)buf; (void)buflen;
    *result = NULL;
    if (h_errnop) { *h_errnop = NO_RECOVERY; }
    return ENOSYS;
}
