/* How fast this machine hands a process fresh memory: touches GIB GiB of new anonymous pages
 * (one byte per 4 KiB page) on THREADS threads, with or without transparent huge pages, and
 * prints the rate. Every byte a compressed model decodes into lands on such a page, so this is
 * the floor of a decoded load (Docs/PERFORMANCE.md, "Loading at scale"); on a VM whose host
 * backs guest memory lazily it is far below memset speed.
 *
 *   cc -O2 -pthread Benchmarks/fresh_pages.c -o /tmp/fresh_pages && /tmp/fresh_pages 8 1 2
 *   (GIB, huge pages 1|0, THREADS) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static char *base;
static size_t share;

static void *touch(void *arg) {
    char *p = base + (size_t)arg * share;
    for (size_t i = 0; i < share; i += 4096) p[i] = 1;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: fresh_pages GIB HUGE(0|1) THREADS\n"); return 2; }
    size_t gib = (size_t)atol(argv[1]);
    int huge = atoi(argv[2]), threads = atoi(argv[3]);
    if (gib < 1 || threads < 1 || threads > 256) { fprintf(stderr, "GIB >= 1, THREADS in 1...256\n"); return 2; }
    size_t n = gib << 30;
    share = n / (size_t)threads / 4096 * 4096;
    base = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(base, n, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pthread_t t[256];
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, touch, (void *)(size_t)i);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
    printf("%zu GiB of fresh pages, huge pages %s, %d threads: %.2f s, %.2f GiB/s\n", gib, huge ? "on" : "off", threads, s, (double)gib / s);
    return 0;
}
