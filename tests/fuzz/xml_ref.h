/*
 * xml_ref.h - a reference decoder for XML character data, for the XML fuzz targets: the five
 * predefined entities and decimal/hex character references (XML 1.0 section 4.1, 4.6),
 * written to UTF-8. The proxy and the replicator decode the text of the S3 bodies they
 * read; whatever a store or a client may write, they must read it as XML would.
 */
#ifndef S3TEE_TESTS_FUZZ_XML_REF_H
#define S3TEE_TESTS_FUZZ_XML_REF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* UTF-8 of code point C into OUT (4 bytes); returns its length. */
static inline size_t
xml_ref_utf8(uint32_t c, char *out)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | c >> 6);
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | c >> 12);
        out[1] = (char)(0x80 | (c >> 6 & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | c >> 18);
    out[1] = (char)(0x80 | (c >> 12 & 0x3f));
    out[2] = (char)(0x80 | (c >> 6 & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/*
 * Decodes IN[0..LEN) into OUT (room for LEN bytes: a reference is never shorter than its
 * UTF-8). Returns the length, or -1 when IN is not well-formed character data: a '&' that
 * does not start a reference, a reference to a character XML does not allow.
 */
static inline long
xml_ref_decode(const char *in, size_t len, char *out)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t i = 0, n = 0, k;

    while (i < len) {
        if (in[i] != '&') {
            out[n++] = in[i++];
            continue;
        }
        for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++) {
            size_t el = strlen(ents[k].ent);

            if (len - i >= el && memcmp(in + i, ents[k].ent, el) == 0) {
                out[n++] = ents[k].c;
                i += el;
                break;
            }
        }
        if (k < sizeof(ents) / sizeof(ents[0])) {
            continue;
        }
        if (len - i >= 4 && in[i + 1] == '#') {
            int hex = in[i + 2] == 'x';
            size_t j = i + 2 + (size_t)hex, digits = 0;
            uint32_t c = 0;

            for (; j < len && digits < 8; j++, digits++) {
                char d = in[j];
                int v = d >= '0' && d <= '9'           ? d - '0'
                        : hex && d >= 'a' && d <= 'f' ? d - 'a' + 10
                        : hex && d >= 'A' && d <= 'F' ? d - 'A' + 10
                                                      : -1;
                if (v < 0) {
                    break;
                }
                c = c * (hex ? 16 : 10) + (uint32_t)v;
            }
            if (digits == 0 || j >= len || in[j] != ';') {
                return -1;
            }
            if (!(c == 0x9 || c == 0xa || c == 0xd || (c >= 0x20 && c <= 0xd7ff) ||
                  (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff))) {
                return -1;
            }
            n += xml_ref_utf8(c, out + n);
            i = j + 1;
            continue;
        }
        return -1;
    }
    return (long)n;
}

#endif
