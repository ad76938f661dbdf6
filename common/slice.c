/* slice.c - borrowed byte views. */
#include "slice.h"

#include <ctype.h>

int
slice_eq(struct slice a, struct slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

int
slice_eq_nocase(struct slice a, struct slice b)
{
    size_t i;

    if (a.len != b.len) {
        return 0;
    }
    for (i = 0; i < a.len; i++) {
        if (tolower((unsigned char)a.ptr[i]) != tolower((unsigned char)b.ptr[i])) {
            return 0;
        }
    }
    return 1;
}

int
slice_starts_with(struct slice s, struct slice prefix)
{
    return s.len >= prefix.len && memcmp(s.ptr, prefix.ptr, prefix.len) == 0;
}

int
slice_starts_with_nocase(struct slice s, struct slice prefix)
{
    return s.len >= prefix.len && slice_eq_nocase(slice_make(s.ptr, prefix.len), prefix);
}

int
slice_cmp(struct slice a, struct slice b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = n ? memcmp(a.ptr, b.ptr, n) : 0;

    if (c != 0) {
        return c;
    }
    return a.len < b.len ? -1 : a.len > b.len;
}

struct slice
slice_trim(struct slice s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t')) {
        s.len--;
    }
    return s;
}

long
slice_index(struct slice s, char c)
{
    const char *p = s.len ? memchr(s.ptr, c, s.len) : NULL;

    return p ? (long)(p - s.ptr) : -1;
}

int
slice_to_u64(struct slice s, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (s.len == 0) {
        return -1;
    }
    for (i = 0; i < s.len; i++) {
        unsigned d;

        if (s.ptr[i] < '0' || s.ptr[i] > '9') {
            return -1;
        }
        d = (unsigned)(s.ptr[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int
hexval(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

void
hex_lower(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int
ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *x = a, *y = b;
    unsigned char diff = 0;
    size_t i;

    if (alen != blen) {
        return 0;
    }
    for (i = 0; i < alen; i++) {
        diff |= x[i] ^ y[i];
    }
    return diff == 0;
}

size_t
slice_xml_charref(struct slice s, char *out, size_t *outlen)
{
    size_t i, digits = 0;
    int hex;
    uint32_t c = 0;

    if (s.len < 4 || s.ptr[0] != '&' || s.ptr[1] != '#') {
        return 0;
    }
    hex = s.ptr[2] == 'x';
    for (i = 2 + (size_t)hex; i < s.len && digits < 8; i++, digits++) {
        int v = hex ? hexval((unsigned char)s.ptr[i])
                    : (s.ptr[i] >= '0' && s.ptr[i] <= '9' ? s.ptr[i] - '0' : -1);

        if (v < 0) {
            break;
        }
        c = c * (hex ? 16 : 10) + (uint32_t)v;
    }
    if (digits == 0 || i >= s.len || s.ptr[i] != ';') {
        return 0;
    }
    if (!(c == 0x9 || c == 0xa || c == 0xd || (c >= 0x20 && c <= 0xd7ff) ||
          (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff))) {
        return 0;
    }
    if (c < 0x80) {
        out[0] = (char)c;
        *outlen = 1;
    } else if (c < 0x800) {
        out[0] = (char)(0xc0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3f));
        *outlen = 2;
    } else if (c < 0x10000) {
        out[0] = (char)(0xe0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        *outlen = 3;
    } else {
        out[0] = (char)(0xf0 | c >> 18);
        out[1] = (char)(0x80 | (c >> 12 & 0x3f));
        out[2] = (char)(0x80 | (c >> 6 & 0x3f));
        out[3] = (char)(0x80 | (c & 0x3f));
        *outlen = 4;
    }
    return i + 1;
}
