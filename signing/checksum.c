/*
 * checksum.c - CRC32, CRC32C, CRC64/NVME (slice-by-8 tables, SSE4.2 for CRC32C when the CPU
 * has it) and SHA-1/SHA-256 through OpenSSL EVP. Every upload body goes through one of these,
 * so the CRCs process eight bytes per step rather than one.
 */
#include "checksum.h"

#include <pthread.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/slice.h"

/*
 * Tables: t[0] is the classic byte-at-a-time table; t[k][b] is the CRC of byte b followed by
 * k zero bytes, which lets eight table lookups consume eight input bytes at once.
 */
static uint32_t crc32_tab[8][256];
static uint32_t crc32c_tab[8][256];
static uint64_t crc64_tab[8][256];
static int crc32c_use_hw;
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void
build_tables32(uint32_t t[8][256], uint32_t poly)
{
    uint32_t i;
    int k;

    for (i = 0; i < 256; i++) {
        uint32_t c = i;

        for (k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        }
        t[0][i] = c;
    }
    for (i = 0; i < 256; i++) {
        for (k = 1; k < 8; k++) {
            t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
        }
    }
}

static void
build_tables64(uint64_t t[8][256], uint64_t poly)
{
    uint32_t i;
    int k;

    for (i = 0; i < 256; i++) {
        uint64_t c = i;

        for (k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ poly : c >> 1;
        }
        t[0][i] = c;
    }
    for (i = 0; i < 256; i++) {
        for (k = 1; k < 8; k++) {
            t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xff];
        }
    }
}

static void
build_all_tables(void)
{
    build_tables32(crc32_tab, 0xEDB88320u);
    build_tables32(crc32c_tab, 0x82F63B78u);
    build_tables64(crc64_tab, 0x9A6C9329AC4BC9B5ull);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    crc32c_use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static inline uint32_t
load32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
load64le(const uint8_t *p)
{
    return (uint64_t)load32le(p) | (uint64_t)load32le(p + 4) << 32;
}

/* CRC register in, register out (no pre/post inversion here; callers do that). */
static uint32_t
crc32_slice8(const uint32_t t[8][256], uint32_t crc, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint32_t one = load32le(p) ^ crc;
        uint32_t two = load32le(p + 4);

        crc = t[7][one & 0xff] ^ t[6][(one >> 8) & 0xff] ^ t[5][(one >> 16) & 0xff] ^
              t[4][one >> 24] ^ t[3][two & 0xff] ^ t[2][(two >> 8) & 0xff] ^
              t[1][(two >> 16) & 0xff] ^ t[0][two >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) {
        crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
    }
    return crc;
}

static uint64_t
crc64_slice8(uint64_t crc, const uint8_t *p, size_t n)
{
    const uint64_t(*t)[256] = crc64_tab;

    while (n >= 8) {
        crc ^= load64le(p);
        crc = t[7][crc & 0xff] ^ t[6][(crc >> 8) & 0xff] ^ t[5][(crc >> 16) & 0xff] ^
              t[4][(crc >> 24) & 0xff] ^ t[3][(crc >> 32) & 0xff] ^ t[2][(crc >> 40) & 0xff] ^
              t[1][(crc >> 48) & 0xff] ^ t[0][crc >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) {
        crc = (crc >> 8) ^ t[0][(crc ^ *p++) & 0xff];
    }
    return crc;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The SSE4.2 crc32 instruction computes exactly CRC32C, 8 bytes per instruction. */
__attribute__((target("sse4.2"))) static uint32_t
crc32c_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c;

    while (n && ((uintptr_t)p & 7)) {
        crc = __builtin_ia32_crc32qi(crc, *p++);
        n--;
    }
    c = crc;
    while (n >= 8) {
        uint64_t v;

        memcpy(&v, p, 8);
        c = __builtin_ia32_crc32di(c, v);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
    while (n--) {
        crc = __builtin_ia32_crc32qi(crc, *p++);
    }
    return crc;
}
#endif

static uint32_t
crc32c_update(uint32_t crc, const uint8_t *p, size_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (crc32c_use_hw) {
        return crc32c_hw(crc, p, n);
    }
#endif
    return crc32_slice8(crc32c_tab, crc, p, n);
}

uint32_t
checksum_crc32(const void *data, size_t len)
{
    pthread_once(&tables_once, build_all_tables);
    return ~crc32_slice8(crc32_tab, 0xFFFFFFFFu, data, len);
}

uint32_t
checksum_crc32c(const void *data, size_t len)
{
    pthread_once(&tables_once, build_all_tables);
    return ~crc32c_update(0xFFFFFFFFu, data, len);
}

uint64_t
checksum_crc64nvme(const void *data, size_t len)
{
    pthread_once(&tables_once, build_all_tables);
    return ~crc64_slice8(~0ull, data, len);
}

static const struct {
    enum checksum_alg alg;
    const char *header;
    size_t digest_len;
} algs[] = {
    {CHECKSUM_CRC32, "x-amz-checksum-crc32", 4},
    {CHECKSUM_CRC32C, "x-amz-checksum-crc32c", 4},
    {CHECKSUM_SHA1, "x-amz-checksum-sha1", 20},
    {CHECKSUM_SHA256, "x-amz-checksum-sha256", 32},
    {CHECKSUM_CRC64NVME, "x-amz-checksum-crc64nvme", 8},
};

enum checksum_alg
checksum_alg_from_header(struct slice name)
{
    size_t i;

    for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (slice_eq_nocase(name, slice_cstr(algs[i].header))) {
            return algs[i].alg;
        }
    }
    return CHECKSUM_NONE;
}

const char *
checksum_header_name(enum checksum_alg alg)
{
    size_t i;

    for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (algs[i].alg == alg) {
            return algs[i].header;
        }
    }
    return NULL;
}

size_t
checksum_digest_len(enum checksum_alg alg)
{
    size_t i;

    for (i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
        if (algs[i].alg == alg) {
            return algs[i].digest_len;
        }
    }
    return 0;
}

int
checksum_init(struct checksum *c, enum checksum_alg alg)
{
    const EVP_MD *md = NULL;

    c->alg = alg;
    c->crc = ~0ull;
    c->md = NULL;
    switch (alg) {
    case CHECKSUM_NONE:
        return 0;
    case CHECKSUM_CRC32:
    case CHECKSUM_CRC32C:
        c->crc = 0xFFFFFFFFu;
        pthread_once(&tables_once, build_all_tables);
        return 0;
    case CHECKSUM_CRC64NVME:
        pthread_once(&tables_once, build_all_tables);
        return 0;
    case CHECKSUM_SHA1:
        md = EVP_sha1();
        break;
    case CHECKSUM_SHA256:
        md = EVP_sha256();
        break;
    default:
        c->alg = CHECKSUM_NONE;
        return -1;
    }
    c->md = EVP_MD_CTX_new();
    if (c->md == NULL || EVP_DigestInit_ex(c->md, md, NULL) != 1) {
        checksum_deinit(c);
        return -1;
    }
    return 0;
}

void
checksum_update(struct checksum *c, const void *data, size_t len)
{
    switch (c->alg) {
    case CHECKSUM_CRC32:
        c->crc = crc32_slice8(crc32_tab, (uint32_t)c->crc, data, len);
        break;
    case CHECKSUM_CRC32C:
        c->crc = crc32c_update((uint32_t)c->crc, data, len);
        break;
    case CHECKSUM_CRC64NVME:
        c->crc = crc64_slice8(c->crc, data, len);
        break;
    case CHECKSUM_SHA1:
    case CHECKSUM_SHA256:
        EVP_DigestUpdate(c->md, data, len);
        break;
    default:
        break;
    }
}

void
checksum_final_base64(struct checksum *c, char *out)
{
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    int i;

    switch (c->alg) {
    case CHECKSUM_CRC32:
    case CHECKSUM_CRC32C:
        c->crc = ~c->crc & 0xFFFFFFFFu;
        for (i = 0; i < 4; i++) {
            digest[i] = (uint8_t)(c->crc >> (24 - 8 * i));
        }
        n = 4;
        break;
    case CHECKSUM_CRC64NVME:
        c->crc = ~c->crc;
        for (i = 0; i < 8; i++) {
            digest[i] = (uint8_t)(c->crc >> (56 - 8 * i));
        }
        n = 8;
        break;
    case CHECKSUM_SHA1:
    case CHECKSUM_SHA256:
        if (EVP_DigestFinal_ex(c->md, digest, &n) != 1) {
            n = 0;
        }
        break;
    default:
        break;
    }
    EVP_EncodeBlock((unsigned char *)out, digest, (int)n);
    out[4 * ((n + 2) / 3)] = '\0';
}

void
checksum_deinit(struct checksum *c)
{
    EVP_MD_CTX_free(c->md);
    c->md = NULL;
    c->alg = CHECKSUM_NONE;
}
