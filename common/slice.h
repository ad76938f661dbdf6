/* slice.h - borrowed byte views: wire data travels as (ptr, len), never as C strings. */
#ifndef S3TEE_SLICE_H
#define S3TEE_SLICE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct slice {
    const char *ptr; /* borrowed; the API that hands a slice out says how long it lives */
    size_t len;      /* bytes at ptr; no NUL terminator is implied */
};

#define SLICE_LIT(s) ((struct slice){(s), sizeof(s) - 1})
#define SLICE_NULL ((struct slice){NULL, 0})
#define SLICE_ARGS(s) (int)(s).len, (s).ptr

static inline struct slice
slice_make(const char *ptr, size_t len)
{
    struct slice s = {ptr, len};
    return s;
}

static inline struct slice
slice_cstr(const char *s)
{
    return slice_make(s, s ? strlen(s) : 0);
}

int slice_eq(struct slice a, struct slice b);
int slice_eq_nocase(struct slice a, struct slice b);
int slice_starts_with(struct slice s, struct slice prefix);
int slice_starts_with_nocase(struct slice s, struct slice prefix);
/* Compares bytes, then length: the order S3 uses for keys and SigV4 for headers. */
int slice_cmp(struct slice a, struct slice b);
/* Strips spaces and tabs at both ends. */
struct slice slice_trim(struct slice s);
/* Position of the first C in S, or -1. */
long slice_index(struct slice s, char c);
/*
 * slice_to_u64 - parse an unsigned decimal with no sign, no spaces, no leading '+'.
 * Returns 0 and *out, or -1 when empty, not all digits, or above UINT64_MAX.
 */
int slice_to_u64(struct slice s, uint64_t *out);
/* Hex digit value 0-15, or -1. */
int hexval(int c);
/* Writes 2*LEN lowercase hex digits and a NUL to OUT (OUT holds 2*LEN+1). */
void hex_lower(const uint8_t *in, size_t len, char *out);
/*
 * slice_xml_charref - the XML character reference at the start of S ("&#10;", "&#xA;") as
 * UTF-8 in OUT (4 bytes at most, not NUL-terminated; *OUTLEN its length). Returns how many
 * bytes of S the reference spans (always more than *OUTLEN), or 0 when S does not start
 * with a reference to a character XML allows (NUL, other C0 controls but tab, LF and CR,
 * surrogates, U+FFFE/U+FFFF and anything above U+10FFFF are not).
 */
size_t slice_xml_charref(struct slice s, char *out, size_t *outlen);
/* Constant-time equality of two equal-length buffers; different lengths are unequal. */
int ct_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
