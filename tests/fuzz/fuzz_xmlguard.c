/*
 * fuzz_xmlguard.c - proxy/xmlguard.c: the streaming bounds on DeleteObjects and
 * CompleteMultipartUpload bodies.
 *
 * Input: a mode byte (bits 0-3: piece size 1..16; bits 4-5: count nothing, "Object" or
 * "Part"; bits 6-7: max_count 0..3), a size byte (max_bytes = 32 * (1 + byte)), then the
 * body. Checks:
 *   - feeding the body in pieces gives the verdict, count and depth of feeding it at once
 *     whenever the body fits max_bytes (the scanner has no state a piece boundary loses);
 *     over max_bytes both refuse;
 *   - the byte count is the bytes fed up to the first refusal; depth stays within
 *     0..XMLGUARD_MAX_DEPTH while accepted (one past either end at a refusal); count
 *     never passes max_count + 1;
 *   - a verdict is sticky, and a refusal carries a message; a body accepted at its end
 *     has exactly one root element and nothing left open.
 */
#include "fuzz.h"

#include "proxy/xmlguard.h"

static const char *const counted_names[] = {NULL, "Object", "Part", NULL};

static enum xmlguard_verdict
feed(struct xmlguard *g, const char *p, size_t n, size_t step)
{
    size_t i;

    for (i = 0; i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        enum xmlguard_verdict v = xmlguard_feed(g, p + i, k);

        FUZZ_CHECK(g->count <= g->max_count + 1);
        if (v == XMLGUARD_OK) {
            FUZZ_CHECK(g->depth >= 0 && g->depth <= XMLGUARD_MAX_DEPTH);
        } else {
            /* the refusing step may have gone one past either end */
            FUZZ_CHECK(g->depth >= -1 && g->depth <= XMLGUARD_MAX_DEPTH + 1);
        }
        if (v != XMLGUARD_OK) {
            FUZZ_CHECK(g->errstr != NULL);
            FUZZ_CHECK(xmlguard_feed(g, "<a>", 3) == v && xmlguard_end(g) == v);
            FUZZ_CHECK(g->bytes <= (int64_t)(i + k));
            return v;
        }
    }
    FUZZ_CHECK(g->bytes == (int64_t)n);
    return xmlguard_end(g);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct xmlguard whole, pieces;
    enum xmlguard_verdict vw, vp;
    const char *body;
    const char *counted;
    size_t n, step;
    int64_t max_bytes;
    uint32_t max_count;

    if (size < 2) {
        return 0;
    }
    step = (size_t)(data[0] & 15) + 1;
    counted = counted_names[(data[0] >> 4) & 3];
    max_count = (uint32_t)(data[0] >> 6);
    max_bytes = 32 * (1 + (int64_t)data[1]);
    body = (const char *)data + 2;
    n = size - 2;

    xmlguard_init(&whole, max_bytes, counted, max_count);
    xmlguard_init(&pieces, max_bytes, counted, max_count);
    vw = feed(&whole, body, n, n ? n : 1);
    vp = feed(&pieces, body, n, step);
    if ((int64_t)n <= max_bytes) {
        FUZZ_CHECK(vw == vp);
        FUZZ_CHECK(whole.count == pieces.count && whole.depth == pieces.depth);
    } else {
        FUZZ_CHECK(vw == XMLGUARD_TOO_LARGE && vp != XMLGUARD_OK);
    }
    if (vw == XMLGUARD_OK) {
        FUZZ_CHECK(whole.roots == 1 && whole.depth == 0);
    }
    return 0;
}
