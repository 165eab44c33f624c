/* Removal of temporary outputs on signals (async-signal-safe: unlink/rmdir/_exit only). */
#include "mal_kernels.h"
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define MAX_TEMPS 4096
static char *temps[MAX_TEMPS];
static volatile sig_atomic_t ntemps = 0;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void remove_all(void) {
    /* newest first: files inside a temp folder are registered after the folder */
    for (int i = (int)ntemps - 1; i >= 0; i--) {
        if (temps[i]) { if (unlink(temps[i]) != 0) rmdir(temps[i]); }
    }
}

static void on_signal(int sig) {
    remove_all();
    if (sig == SIGBUS) {
        static const char msg[] = "error: memory fault while reading an input (was a file truncated or changed while in use?)\n";
        (void)!write(2, msg, sizeof msg - 1);
    }
    _exit(128 + sig);
}

void mal_install_cleanup_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    /* Past a file-size limit (RLIMIT_FSIZE) a write must fail with EFBIG, reported and cleaned up
       like a full disk, instead of the default SIGXFSZ that kills the process mid-file. */
    signal(SIGXFSZ, SIG_IGN);
    /* A parent may have spawned us with these blocked; interruption must work anyway. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

void mal_register_temp(const char *path) {
    pthread_mutex_lock(&lock);
    if (ntemps < MAX_TEMPS) { temps[ntemps] = strdup(path); ntemps = ntemps + 1; }
    pthread_mutex_unlock(&lock);
}

void mal_unregister_temp(const char *path) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < (int)ntemps; i++) {
        if (temps[i] && strcmp(temps[i], path) == 0) {
            char *p = temps[i];
            temps[i] = NULL;
            free(p);
        }
    }
    while (ntemps > 0 && temps[ntemps - 1] == NULL) ntemps = ntemps - 1;
    pthread_mutex_unlock(&lock);
}

void mal_cleanup_temps(void) {
    pthread_mutex_lock(&lock);
    remove_all();
    for (int i = 0; i < (int)ntemps; i++) { free(temps[i]); temps[i] = NULL; }
    ntemps = 0;
    pthread_mutex_unlock(&lock);
}

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static int renameat2_flags(const char *from, const char *to, unsigned flags) {
#ifdef SYS_renameat2
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int mal_rename_noreplace(const char *from, const char *to) {
    int r = renameat2_flags(from, to, RENAME_NOREPLACE);
    if (r == 0 || (errno != EINVAL && errno != ENOSYS)) return r;
    /* Filesystems without renameat2 flags: a hard link fails if `to` exists, then drop `from`;
       folders cannot be linked, so for them a check precedes a plain rename. */
    if (link(from, to) == 0) { unlink(from); return 0; }
    if (errno != EPERM) return -1;
    struct stat st;
    if (lstat(to, &st) == 0) { errno = EEXIST; return -1; }
    return rename(from, to);
}

int mal_rename_exchange(const char *a, const char *b) { return renameat2_flags(a, b, RENAME_EXCHANGE); }
