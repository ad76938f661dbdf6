/* uri.c - S3 URI encoding and percent-decoding. */
#include "uri.h"

static int
is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

size_t
uri_encode(struct slice in, int keep_slash, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t i, n = 0;

    for (i = 0; i < in.len; i++) {
        unsigned char c = (unsigned char)in.ptr[i];

        if (is_unreserved(c) || (keep_slash && c == '/')) {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = digits[c >> 4];
            out[n++] = digits[c & 15];
        }
    }
    out[n] = '\0';
    return n;
}

char *
uri_encode_pool(struct pool *p, struct slice in, int keep_slash)
{
    char *out = pool_alloc(p, 3 * in.len + 1);

    uri_encode(in, keep_slash, out);
    return out;
}

int
uri_decode_pool(struct pool *p, struct slice in, int plus_is_space, struct slice *out)
{
    char *buf = pool_alloc(p, in.len + 1);
    size_t i, n = 0;

    for (i = 0; i < in.len; i++) {
        char c = in.ptr[i];

        if (c == '%') {
            int hi, lo;

            if (in.len - i < 3) {
                return -1;
            }
            hi = hexval((unsigned char)in.ptr[i + 1]);
            lo = hexval((unsigned char)in.ptr[i + 2]);
            if (hi < 0 || lo < 0) {
                return -1;
            }
            c = (char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == '\0') {
            return -1; /* "%00" or a raw NUL: either would cut the C string short */
        }
        buf[n++] = c;
    }
    buf[n] = '\0';
    *out = slice_make(buf, n);
    return 0;
}
