/* checksum.h - the x-amz-checksum-* algorithms S3 accepts, run over upload bodies as they stream. */
#ifndef S3TEE_CHECKSUM_H
#define S3TEE_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#include "common/slice.h"

/* Values are stable; CRC64NVME was added after the first four and so comes last. */
enum checksum_alg {
    CHECKSUM_NONE = 0,
    CHECKSUM_CRC32,     /* IEEE 802.3 (zlib's crc32), reflected poly 0xEDB88320 */
    CHECKSUM_CRC32C,    /* Castagnoli, reflected poly 0x82F63B78 */
    CHECKSUM_SHA1,
    CHECKSUM_SHA256,
    CHECKSUM_CRC64NVME, /* CRC-64/NVME, reflected poly 0x9A6C9329AC4BC9B5 */
};

/* Longest checksum_final_base64() result: SHA-256 is 44 characters; OUT needs this many bytes. */
#define CHECKSUM_BASE64_MAX 64

struct evp_md_ctx_st; /* OpenSSL's EVP_MD_CTX, named by its struct tag to keep <openssl/evp.h> out */

struct checksum {
    enum checksum_alg alg;     /* CHECKSUM_NONE makes update a no-op and final "" */
    uint64_t crc;              /* CRC register, pre-inverted (CRC algorithms only) */
    struct evp_md_ctx_st *md;  /* digest state (SHA algorithms only; owned, freed in deinit) */
};

/* From a header name "x-amz-checksum-crc32" (any case) -> alg, or CHECKSUM_NONE. */
enum checksum_alg checksum_alg_from_header(struct slice name);
/* "x-amz-checksum-crc32" etc. (static), or NULL for CHECKSUM_NONE / unknown values. */
const char *checksum_header_name(enum checksum_alg alg);
/* Bytes of the raw digest: 4, 8, 20 or 32 (0 for CHECKSUM_NONE). */
size_t checksum_digest_len(enum checksum_alg alg);
/*
 * checksum_init - start a checksum (caller-owned storage; checksum_deinit() always).
 * Returns 0, or -1 for an unknown ALG or when OpenSSL cannot set up the digest.
 */
int checksum_init(struct checksum *c, enum checksum_alg alg);
void checksum_update(struct checksum *c, const void *data, size_t len);
/*
 * checksum_final_base64 - base64 of the big-endian digest (what S3 puts in x-amz-checksum-*),
 * NUL-terminated, into OUT (>= CHECKSUM_BASE64_MAX bytes). Ends the computation: call it once.
 */
void checksum_final_base64(struct checksum *c, char *out);
/* Releases the digest state; safe on a zeroed or already deinit'ed struct. */
void checksum_deinit(struct checksum *c);

/* One-shot CRCs (the usual check values: crc32("123456789") = 0xCBF43926). */
uint32_t checksum_crc32(const void *data, size_t len);
uint32_t checksum_crc32c(const void *data, size_t len);
uint64_t checksum_crc64nvme(const void *data, size_t len);

#endif
