/* Unit tests for signing/checksum.c: published check values, zlib/hashlib-computed vectors,
 * streaming in odd pieces, and the SSE4.2 CRC32C path against the table path. */
#include "signing/checksum.c"

#include <stdlib.h>
#include <time.h>

#include "test.h"

/* Checksum of DATA fed in pieces of PIECE bytes (0 = all at once), base64 into OUT. */
static void
sum_pieces(enum checksum_alg alg, const uint8_t *data, size_t len, size_t piece, char *out)
{
    struct checksum c;
    size_t off = 0;

    checksum_init(&c, alg);
    while (off < len) {
        size_t n = piece == 0 || len - off < piece ? len - off : piece;

        checksum_update(&c, data + off, n);
        off += n;
    }
    checksum_final_base64(&c, out);
    checksum_deinit(&c);
}

static double
gbps(enum checksum_alg alg, const uint8_t *buf, size_t len)
{
    struct timespec a, b;
    char out[CHECKSUM_BASE64_MAX];
    int i;

    clock_gettime(CLOCK_MONOTONIC, &a);
    for (i = 0; i < 8; i++) {
        sum_pieces(alg, buf, len, 0, out);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    return 8.0 * (double)len / ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec));
}

int
main(void)
{
    static const struct {
        enum checksum_alg alg;
        const char *check;  /* of "123456789" */
        const char *big;    /* of the 100000-byte pattern (python zlib / hashlib) */
    } v[] = {
        {CHECKSUM_CRC32, "y/Q5Jg==", "Q7/utA=="},
        {CHECKSUM_CRC32C, "4waSgw==", "T7Vz/g=="},
        {CHECKSUM_SHA1, "98O8HYCOBHMq32eZZczDTKeuNEE=", "t1VTh6xDlGRlOvBqYXUmtTu27qo="},
        {CHECKSUM_SHA256, "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU=",
         "WImrZCuqCcQVcLiIjL9F83YhUs6iSQ6msVAgipnJKxA="},
        {CHECKSUM_CRC64NVME, "rosUhgp5mIg=", "HLod4RpPXNU="},
    };
    static const size_t pieces[] = {1, 3, 7, 8, 9, 64, 4095, 65536};
    uint8_t *big = malloc(100000), *aaa = malloc(66560), *rnd;
    char out[CHECKSUM_BASE64_MAX], whole[CHECKSUM_BASE64_MAX];
    size_t i, j;
    struct checksum c;
    int all_ok;

    for (i = 0; i < 100000; i++) {
        big[i] = (uint8_t)((i * 7 + 3) % 251);
    }
    memset(aaa, 'a', 66560);

    /* the catalogue check values every CRC implementation quotes */
    ok(checksum_crc32("123456789", 9) == 0xCBF43926u, "crc32 check value 0xCBF43926");
    ok(checksum_crc32c("123456789", 9) == 0xE3069283u, "crc32c check value 0xE3069283");
    ok(checksum_crc64nvme("123456789", 9) == 0xAE8B14860A799888ull,
       "crc64nvme check value 0xAE8B14860A799888");
    ok(checksum_crc32("", 0) == 0 && checksum_crc32c("", 0) == 0, "crc of nothing is 0");

    for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        const char *name = checksum_header_name(v[i].alg);

        sum_pieces(v[i].alg, (const uint8_t *)"123456789", 9, 0, out);
        ok_str(out, v[i].check, "%s of 123456789", name);
        sum_pieces(v[i].alg, big, 100000, 0, out);
        ok_str(out, v[i].big, "%s of 100000 pattern bytes", name);
        all_ok = 1;
        for (j = 0; j < sizeof(pieces) / sizeof(pieces[0]); j++) {
            sum_pieces(v[i].alg, big + 1, 99999, pieces[j], out); /* +1: unaligned start */
            sum_pieces(v[i].alg, big + 1, 99999, 0, whole);
            all_ok &= strcmp(out, whole) == 0;
        }
        ok(all_ok, "%s streamed in odd pieces equals one shot", name);
        ok(checksum_alg_from_header(slice_cstr(name)) == v[i].alg, "%s header name round trip",
           name);
    }
    sum_pieces(CHECKSUM_SHA256, (const uint8_t *)"", 0, 0, out);
    ok_str(out, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "sha256 of nothing");
    sum_pieces(CHECKSUM_SHA1, (const uint8_t *)"abc", 3, 0, out);
    ok_str(out, "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=", "sha1 of abc (FIPS 180 example)");
    sum_pieces(CHECKSUM_SHA256, (const uint8_t *)"abc", 3, 0, out);
    ok_str(out, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=", "sha256 of abc (FIPS 180 example)");
    sum_pieces(CHECKSUM_CRC32, (const uint8_t *)"hello world", 11, 0, out);
    ok_str(out, "DUoRhQ==", "crc32 of hello world (python zlib)");
    /* AWS's signed-trailer example: 66560 bytes of 'a' carry x-amz-checksum-crc32c:sOO8/Q== */
    sum_pieces(CHECKSUM_CRC32C, aaa, 66560, 65536, out);
    ok_str(out, "sOO8/Q==", "crc32c of the AWS trailer example payload");

    ok(checksum_alg_from_header(SLICE_LIT("X-Amz-Checksum-CRC32C")) == CHECKSUM_CRC32C,
       "header name lookup ignores case");
    ok(checksum_alg_from_header(SLICE_LIT("x-amz-checksum-crc32")) == CHECKSUM_CRC32,
       "crc32 is not mistaken for crc32c");
    ok(checksum_alg_from_header(SLICE_LIT("x-amz-checksum-md5")) == CHECKSUM_NONE,
       "unknown algorithm -> CHECKSUM_NONE");
    ok(checksum_alg_from_header(SLICE_LIT("x-amz-checksum-crc32 ")) == CHECKSUM_NONE,
       "no trimming inside the lookup");
    ok(checksum_header_name(CHECKSUM_NONE) == NULL, "no header name for NONE");
    ok(checksum_digest_len(CHECKSUM_SHA1) == 20 && checksum_digest_len(CHECKSUM_CRC64NVME) == 8,
       "digest lengths");
    ok(checksum_init(&c, (enum checksum_alg)99) == -1 && c.alg == CHECKSUM_NONE,
       "unknown alg refused");
    checksum_deinit(&c);
    checksum_init(&c, CHECKSUM_NONE);
    checksum_update(&c, "x", 1);
    checksum_final_base64(&c, out);
    ok_str(out, "", "CHECKSUM_NONE yields an empty string");
    checksum_deinit(&c);
    checksum_deinit(&c);
    ok(c.md == NULL, "deinit twice is harmless");

    /* the hardware path must agree with the tables on every length and alignment */
    rnd = malloc(4096 + 16);
    srand(7);
    for (i = 0; i < 4096 + 16; i++) {
        rnd[i] = (uint8_t)rand();
    }
    all_ok = 1;
    for (i = 0; i < 8; i++) {
        for (j = 0; j <= 4096; j += (j < 64 ? 1 : 61)) {
            uint32_t table = crc32_slice8(crc32c_tab, 0xFFFFFFFFu, rnd + i, j);

            all_ok &= crc32c_update(0xFFFFFFFFu, rnd + i, j) == table;
        }
    }
    ok(all_ok, "crc32c %s path equals the slice-by-8 tables",
       crc32c_use_hw ? "SSE4.2" : "table (no SSE4.2 here)");
    {
        size_t mb = 64u << 20;
        uint8_t *huge = calloc(1, mb);

        printf("# throughput over 64 MiB: crc32 %.2f GB/s, crc32c %.2f GB/s, crc64nvme %.2f GB/s, "
               "sha256 %.2f GB/s\n",
               gbps(CHECKSUM_CRC32, huge, mb), gbps(CHECKSUM_CRC32C, huge, mb),
               gbps(CHECKSUM_CRC64NVME, huge, mb), gbps(CHECKSUM_SHA256, huge, mb));
        free(huge);
    }
    free(rnd);
    free(big);
    free(aaa);
    return done_testing();
}
