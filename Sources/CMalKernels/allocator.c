/* glibc's mmap threshold, fixed (mal_kernels.h, mal_fixed_mmap_threshold). */
#include "mal_kernels.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void mal_fixed_mmap_threshold(size_t bytes) {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, (int)bytes);
#else
    (void)bytes;
#endif
}
