/* XXH64, written from the xxHash specification (doc/xxhash_spec.md). */
#include "mal_kernels.h"
#include <string.h>

static const uint64_t P1 = 0x9E3779B185EBCA87ULL, P2 = 0xC2B2AE3D27D4EB4FULL, P3 = 0x165667B19E3779F9ULL,
                      P4 = 0x85EBCA77C2B2AE63ULL, P5 = 0x27D4EB2F165667C5ULL;

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t round64(uint64_t acc, uint64_t in) { acc += in * P2; acc = rotl(acc, 31); return acc * P1; }
static inline uint64_t merge(uint64_t acc, uint64_t v) { acc ^= round64(0, v); return acc * P1 + P4; }

static uint64_t finish(uint64_t h, const uint8_t *p, size_t len) {
    while (len >= 8) { h ^= round64(0, rd64(p)); h = rotl(h, 27) * P1 + P4; p += 8; len -= 8; }
    if (len >= 4) { h ^= (uint64_t)rd32(p) * P1; h = rotl(h, 23) * P2 + P3; p += 4; len -= 4; }
    while (len > 0) { h ^= (*p) * P5; h = rotl(h, 11) * P1; p++; len--; }
    h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32;
    return h;
}

uint64_t mal_xxh64(const void *data, size_t len, uint64_t seed) {
    mal_xxh64_state s;
    mal_xxh64_reset(&s, seed);
    mal_xxh64_update(&s, data, len);
    return mal_xxh64_digest(&s);
}

void mal_xxh64_reset(mal_xxh64_state *s, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->seed = seed;
    s->v[0] = seed + P1 + P2; s->v[1] = seed + P2; s->v[2] = seed; s->v[3] = seed - P1;
}

void mal_xxh64_update(mal_xxh64_state *s, const void *data, size_t len) {
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    s->total_len += len;
    if (s->memsize + len < 32) { memcpy(s->mem + s->memsize, p, len); s->memsize += (uint32_t)len; return; }
    if (s->memsize) {
        size_t fill = 32 - s->memsize;
        memcpy(s->mem + s->memsize, p, fill);
        for (int i = 0; i < 4; i++) s->v[i] = round64(s->v[i], rd64(s->mem + 8 * i));
        p += fill; s->memsize = 0;
    }
    uint64_t v0 = s->v[0], v1 = s->v[1], v2 = s->v[2], v3 = s->v[3];
    while (p + 32 <= end) {
        v0 = round64(v0, rd64(p)); v1 = round64(v1, rd64(p + 8));
        v2 = round64(v2, rd64(p + 16)); v3 = round64(v3, rd64(p + 24));
        p += 32;
    }
    s->v[0] = v0; s->v[1] = v1; s->v[2] = v2; s->v[3] = v3;
    if (p < end) { memcpy(s->mem, p, (size_t)(end - p)); s->memsize = (uint32_t)(end - p); }
}

uint64_t mal_xxh64_digest(const mal_xxh64_state *s) {
    uint64_t h;
    if (s->total_len >= 32) {
        h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
        for (int i = 0; i < 4; i++) h = merge(h, s->v[i]);
    } else {
        h = s->seed + P5;
    }
    h += s->total_len;
    return finish(h, s->mem, s->memsize);
}
