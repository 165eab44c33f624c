/* Removal of temporary outputs on signals (async-signal-safe: unlink/rmdir/_exit only). */
#include "mal_kernels.h"
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
